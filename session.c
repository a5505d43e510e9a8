/* The GET/POST tunnel's session holder (PROTOCOL.md).
 *
 * The process that answered an open holds the session: the target socket,
 * a ring of the bytes read from it that the client has not acknowledged,
 * and up to CONNS client connections. Requests for the session that reach
 * other processes are handed here with their socket (session_pass); requests
 * for other sessions met here are handed on the same way, and any other
 * request (an open, a CONNECT) goes to a fresh process (spawn.c): a holder
 * serves its own session and nothing else. One poll loop; every wait has a
 * deadline; memory is the fixed struct below (PROTOCOL.md, Limits). */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <string.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <sys/un.h>
#include <unistd.h>

#include "config.h"
#include "fmt.h"
#include "http.h"
#include "log.h"
#include "session.h"
#include "sandbox.h"
#include "spawn.h"

/* Bytes read from the target, not yet acknowledged: twice the largest
 * answer, so that while one answer travels and the next receive comes, the
 * next answer's bytes are read. */
#define RING (2 * HTTP_ANSWER_MAX)
#define CONNS 6              /* client connections served at once */
#define WAIT_MS 20000        /* longest long poll, and longest wait for the target */
#define WRITE_MS 5000        /* an answer must go on being taken within */
#define ID_LEN 16            /* the token's public half: names the unix socket */
#define TAKE_MS 20000        /* a holder says within this whether it took a connection */
#define BACKLOG 64           /* hand-overs waiting to be taken */
#define FULL_MS 1000         /* a full backlog is tried again for this long */

enum { C_FREE, C_HEAD, C_BODY, C_SEND, C_PARKED, C_PASSING, C_WRITE };

struct hconn {
	int fd, state;
	int u;                    /* C_PASSING: the socket to the other holder */
	struct endpoint client, local;
	struct request req;       /* the request being served */
	long long t;              /* last activity, or when the wait began */
	struct iovec out[3];      /* C_WRITE: what is left of the answer */
	int close_after, from_ring;  /* ... then close; its body is in the ring */
	char head[512];           /* ... its head */
	size_t len;               /* bytes in buf */
	char buf[CONFIG_HEADER_MAX];
};

static struct {
	const struct session_opts *so;
	int target, lfd;
	const struct relay_io *tio;     /* the target's side: NULL plain, or TLS */
	int place, cplace;              /* counted among the sessions, and the client's */
	char token[SESSION_TOKEN_MAX + 2];  /* "NODE." (pre bytes), then the hex */
	size_t pre;
	unsigned long long base, end;   /* receive: acknowledged; read from the target */
	unsigned long long sent;        /* the highest offset answered */
	int eof, err, told, closed;     /* target ended / failed; client told; DELETE */
	unsigned long long taken;       /* send: bytes written to the target */
	int fin;                        /* the target's receiving side is shut */
	struct hconn *up;               /* the connection whose send is in progress */
	size_t up_len, up_pos;          /* its body: bytes read, bytes applied */
	long long seen, moved;          /* the last request; the last byte moved */
	struct hconn c[CONNS];
	unsigned char ring[RING];
	char body[HTTP_BODY_MAX];
	struct handover ho;             /* a connection on its way in or out */
} s;

/* The abstract name (sun_path[0] = 0) of the session with this token id,
 * in this user's tunneld serving scope: "tunneld/UID/SCOPE/ID". */
static socklen_t unix_name(struct sockaddr_un *sa, const char *scope, const char *id)
{
	int n;

	memset(sa, 0, sizeof *sa);
	sa->sun_family = AF_UNIX;
	n = strfmt(sa->sun_path + 1, sizeof sa->sun_path - 1, "tunneld/%u/%s/%.*s",
		     (unsigned)geteuid(), scope, ID_LEN, id);
	return (socklen_t)(offsetof(struct sockaddr_un, sun_path) + 1 + (size_t)n);
}

/* The length of the token's node prefix when it is a token of this node:
 * its prefix names so->node, or it has none and so->node is "". -1 when it
 * is no token, -2 when it is another node's. Names are public: no secret
 * is compared here. */
static int own_token(const struct session_opts *so, const char *token, size_t token_len)
{
	int pre = http_session_token(token, token_len);
	size_t nl = strlen(so->node);

	if (pre < 0)
		return -1;
	if ((size_t)pre != (nl ? nl + 1 : 0) || memcmp(token, so->node, nl))
		return -2;
	return pre;
}

/* Send fd and ho to the holder of the session whose token's hex part is
 * token: the socket on which it will say whether it took them, or -1 no
 * such session (or the name is not our own user's), -2 busy. */
static int pass_start(const char *scope, int fd, const char *token,
		      const struct handover *ho, int full_ms)
{
	struct sockaddr_un sa;
	struct ucred cr;
	socklen_t cl = sizeof cr, sl;
	long long deadline = now_ms() + full_ms;
	int u, r = -1;

	if (http_session_token(token, SESSION_TOKEN_LEN) != 0 || strlen(scope) > 47)
		return -1;
	sl = unix_name(&sa, scope, token);
	u = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (u < 0)
		return -2;
	/* A full backlog (a holder busy, or flooded by another user): again
	 * a little later, until full_ms has passed. */
	while (connect(u, (struct sockaddr *)&sa, sl) < 0) {
		r = errno == EAGAIN ? -2 : -1;
		if (r == -1 || now_ms() >= deadline)
			goto out;
		poll(NULL, 0, 5);
	}
	/* Only to ourselves: a name another user bound gets no byte and no
	 * descriptor, and the client a 404. */
	if (getsockopt(u, SOL_SOCKET, SO_PEERCRED, &cr, &cl) < 0 || cr.uid != geteuid())
		goto out;
	if (fd_send(u, fd, ho, WRITE_MS) == 0)
		return u;
out:
	close(u);
	return r;
}

/* What the holder said on u, which is readable (or timed out: ready 0).
 * 0 it took the connection; -1 it ended with the message still queued,
 * without a word: no such session; -2 busy; -3 no word in time, and the
 * connection is shut, so that two processes never answer it. */
static int pass_outcome(int u, int fd, int ready)
{
	char took = 0;
	int r = -1;

	if (!ready) {
		shutdown(fd, SHUT_RDWR);
		r = -3;
	} else if (recv(u, &took, 1, MSG_DONTWAIT) == 1) {
		r = took == 'y' ? 0 : -2;
	}
	close(u);
	return r;
}

int session_pass(const struct session_opts *so, const char *token, size_t token_len,
		 const struct handover *ho)
{
	int pre = own_token(so, token, token_len), u;
	struct pollfd p;

	if (pre < 0)
		return pre == -1 ? -1 : -4;
	u = pass_start(so->scope, 0, token + pre, ho, FULL_MS);
	p = (struct pollfd){ u, POLLIN, 0 };
	return u < 0 ? u : pass_outcome(u, 0, poll(&p, 1, TAKE_MS));
}

/* Write what the non-blocking fd takes of the three iovecs (advanced as
 * they go), waiting for the rest until deadline (0: no wait). 0 all
 * written, 1 some left, -1 an error or the deadline passed. */
static int write_iov(int fd, struct iovec *iov, long long deadline)
{
	for (;;) {
		int i = 0;
		ssize_t w;

		while (i < 3 && iov[i].iov_len == 0)
			i++;
		if (i == 3)
			return 0;
		w = writev(fd, iov + i, 3 - i);
		if (w < 0 && errno == EINTR)
			continue;
		if (w < 0 && errno != EAGAIN)
			return -1;
		if (w < 0 && !deadline)
			return 1;
		if (w < 0 && net_wait(fd, POLLOUT, deadline) < 0)
			return -1;
		for (; w > 0; i++) {
			size_t k = (size_t)w < iov[i].iov_len ? (size_t)w : iov[i].iov_len;

			iov[i].iov_base = (char *)iov[i].iov_base + k;
			iov[i].iov_len -= k;
			w -= (ssize_t)k;
		}
	}
}

static void conn_close(struct hconn *h)
{
	if (s.up == h)
		s.up = NULL;
	if (h->state == C_PASSING)
		close(h->u);
	close(h->fd);
	h->fd = -1;
	h->state = C_FREE;
}

/* Go on writing h's answer, waiting for the socket until deadline (0:
 * not at all). 0 written or under way (C_WRITE), -1 h is closed: it failed,
 * or the answer says so. */
static int flush(struct hconn *h, long long deadline)
{
	int r = write_iov(h->fd, h->out, deadline);

	if (r < 0 || (r == 0 && h->close_after)) {
		conn_close(h);
		return -1;
	}
	if (r == 0)
		h->state = C_HEAD;
	h->t = now_ms();
	return 0;
}

/* An answer under way is written whole before the process goes on
 * without h (or ends). */
static void finish(struct hconn *h)
{
	if (h->state == C_WRITE)
		flush(h, now_ms() + WRITE_MS);
}

/* Answer h's request: a 200 with the body b1+b2 (either may be empty), or
 * an error with its one-line text, which also closes the connection. With
 * a Tunnel-Offset when off is not ~0. What the socket does not take at
 * once is written as it does (C_WRITE): a small body is copied after the
 * head, a large one is the ring's, which keeps it until it is acknowledged.
 * 0, or -1 when h was closed. */
static int answer(struct hconn *h, int status, unsigned long long off, int eof,
		  const void *b1, size_t n1, const void *b2, size_t n2)
{
	char extra[192];
	int ok = status == 200, close_it = !ok || h->req.close;
	size_t hl;
	int xl = strfmt(extra, sizeof extra, "Cache-Control: no-store\r\n");

	/* Each at most 40 bytes: extra has room for them all. */
	if (off != ~0ULL)
		xl += strfmt(extra + xl, sizeof extra - (size_t)xl, "Tunnel-Offset: %llu\r\n", off);
	if (eof)
		xl += strfmt(extra + xl, sizeof extra - (size_t)xl, "Tunnel-Eof: 1\r\n");
	if (!close_it && h->req.http10)  /* HTTP/1.0 closes unless told (RFC 9112 §9.3) */
		xl += strfmt(extra + xl, sizeof extra - (size_t)xl, "Connection: keep-alive\r\n");
	if (status == 405)
		strfmt(extra + xl, sizeof extra - (size_t)xl, "Allow: CONNECT, GET, POST, DELETE\r\n");
	if (!ok)
		n1 = n2 = 0;  /* an error's body is its text, in the head */
	hl = http_answer(h->head, sizeof h->head, status, NULL, extra, n1 + n2, close_it);
	if (!hl) {
		conn_close(h);
		return -1;
	}
	h->from_ring = n1 + n2 > sizeof h->head - hl;
	if (!h->from_ring) {
		if (n1)  /* b1 and b2 may be NULL when empty */
			memcpy(h->head + hl, b1, n1);
		if (n2)
			memcpy(h->head + hl + n1, b2, n2);
		hl += n1 + n2;
		n1 = n2 = 0;
	}
	h->out[0] = (struct iovec){ h->head, hl };
	h->out[1] = (struct iovec){ (void *)b1, n1 };
	h->out[2] = (struct iovec){ (void *)b2, n2 };
	h->close_after = close_it;
	h->state = C_WRITE;
	s.seen = now_ms();
	return flush(h, 0);
}

static int fail(struct hconn *h, int status)
{
	return answer(h, status, status == 409 || status == 410 ? h->req.off : ~0ULL, 0, 0, 0, 0, 0);
}

/* Answer a receive at h->req.off with what the ring holds from there. */
static void give(struct hconn *h)
{
	unsigned long long o = h->req.off;
	size_t n = (size_t)(s.end - o), at = (size_t)(o % RING), first;
	size_t most = h->req.max ? h->req.max : HTTP_BODY_MAX;

	if (n > most)
		n = most;
	first = n < RING - at ? n : RING - at;

	if (n == 0 && s.err) {
		s.told = 1;
		fail(h, 410);
		return;
	}
	if (o + n > s.sent)
		s.sent = o + n;
	answer(h, 200, o, s.eof && o + n == s.end, s.ring + at, first, s.ring, n - first);
}

static void receive(struct hconn *h)
{
	unsigned long long o = h->req.off;

	if (o < s.base || o > s.end) {
		fail(h, 409);
		return;
	}
	s.base = o;  /* everything before o arrived: forget it */
	for (int i = 0; i < CONNS; i++) {
		/* Superseded: a receive waiting is answered empty; one whose
		 * answer is still being written from the ring, whose bytes may
		 * now be overwritten, is cut off. */
		if (s.c[i].state == C_PARKED && &s.c[i] != h)
			answer(&s.c[i], 200, s.c[i].req.off, 0, 0, 0, 0, 0);
		else if (s.c[i].state == C_WRITE && s.c[i].from_ring && &s.c[i] != h)
			conn_close(&s.c[i]);
	}
	if (s.end > o || s.eof || s.err) {
		give(h);
		return;
	}
	h->state = C_PARKED;
	h->t = now_ms();
}

/* Write what the target takes of the send in progress; answer it when all
 * of it is taken (or, from the loop, when the target took too long). */
static void push(void)
{
	struct hconn *h = s.up;

	while (s.up_pos < s.up_len) {
		ssize_t n = s.tio ? s.tio->write(s.target, s.body + s.up_pos, s.up_len - s.up_pos)
				  : write(s.target, s.body + s.up_pos, s.up_len - s.up_pos);

		if (n < 0 && (errno == EAGAIN || errno == EINTR))
			return;
		if (n <= 0) {
			s.err = s.told = 1;
			s.up = NULL;
			fail(h, 410);
			return;
		}
		s.up_pos += (size_t)n;
		s.taken += (unsigned long long)n;
		s.moved = now_ms();
	}
	if (h->req.fin && !s.fin) {
		if (s.tio)
			s.tio->end();
		shutdown(s.target, SHUT_WR);
		s.fin = 1;
	}
	s.up = NULL;
	answer(h, 200, s.taken, 0, 0, 0, 0, 0);
}

/* The whole body of a send is in s.body: apply the part not yet taken. */
static void apply(struct hconn *h)
{
	unsigned long long o = h->req.off;

	if (o > s.taken || (s.fin && o + s.up_len > s.taken)) {
		s.up = NULL;
		h->req.off = s.taken;
		fail(h, 409);
		return;
	}
	if (s.err) {
		s.up = NULL;
		s.told = 1;
		h->req.off = s.taken;
		fail(h, 410);
		return;
	}
	s.up_pos = (size_t)(s.taken - o < s.up_len ? s.taken - o : s.up_len);
	h->state = C_SEND;
	h->t = now_ms();
	push();
}

static void consume(struct hconn *h, size_t n)
{
	memmove(h->buf, h->buf + n, h->len - n);
	h->len -= n;
}

static void send_bytes(struct hconn *h)
{
	size_t take = h->len < h->req.clen ? h->len : h->req.clen;

	if (s.up && s.up != h)
		conn_close(s.up);  /* a retry supersedes the send in progress */
	s.up = h;
	memcpy(s.body, h->buf, take);
	consume(h, take);
	s.up_len = take;
	h->state = C_BODY;
	h->t = now_ms();
	if (s.up_len == h->req.clen)
		apply(h);
}

/* A request this holder does not serve (an open, a CONNECT), or a kept-
 * alive connection that outlives the session: a fresh process takes the
 * connection with the bytes read from it. 0, or -1 with h still open. */
static int respawn(struct hconn *h)
{
	s.ho.client = h->client;
	s.ho.local = h->local;
	s.ho.len = h->len;
	memcpy(s.ho.buf, h->buf, h->len);
	fcntl(h->fd, F_SETFL, 0);  /* as a new connection comes */
	if (spawn(h->fd, &s.ho) < 0) {
		fcntl(h->fd, F_SETFL, O_NONBLOCK);
		return -1;
	}
	conn_close(h);
	return 0;
}

/* Hand h on to the holder of the session whose token's hex part is
 * token. Its answer is awaited in the loop, never here: two holders handing
 * connections to each other at once would each wait for the other. */
static void hand_on(struct hconn *h, const char *token)
{
	s.ho.client = h->client;
	s.ho.local = h->local;
	s.ho.len = h->len;
	memcpy(s.ho.buf, h->buf, h->len);
	h->u = pass_start(s.so->scope, h->fd, token, &s.ho, 0);
	if (h->u < 0) {
		fail(h, h->u == -1 ? 404 : 503);
		return;
	}
	h->state = C_PASSING;
	h->t = now_ms();
}

/* The other holder said whether it took h (ready), or did not in time. */
static void handed_on(struct hconn *h, int ready)
{
	int r = pass_outcome(h->u, h->fd, ready);

	h->state = C_HEAD;  /* u is closed */
	if (r == 0 || r == -3)
		conn_close(h);
	else
		fail(h, r == -1 ? 404 : 503);
}

/* A whole request head of hl bytes is in h->buf. */
static void request(struct hconn *h, size_t hl)
{
	struct request *r = &h->req;
	int st = http_parse(h->buf, hl, s.so->path, r), pre;
	const char *t, *mine = s.token + s.pre;
	volatile unsigned char d = 0;

	if (st || (r->method != HTTP_POST && r->clen)) {
		fail(h, st ? st : 400);
		return;
	}
	if (r->method == HTTP_CONNECT || (r->method == HTTP_POST && !r->token)) {
		if (respawn(h) < 0)
			fail(h, 503);
		return;
	}
	/* No token, or one of another node: never looked for. */
	if (!r->token || (pre = own_token(s.so, r->token, r->token_len)) < 0) {
		fail(h, 404);
		return;
	}
	t = r->token + pre;
	if (memcmp(t, mine, ID_LEN)) {
		hand_on(h, t);
		return;
	}
	for (int i = ID_LEN; i < SESSION_TOKEN_LEN; i++)
		d |= (unsigned char)(t[i] ^ mine[i]);
	if (d) {
		fail(h, 404);
		return;
	}
	s.seen = now_ms();
	consume(h, hl);  /* r->token pointed into it: no more use of it */
	r->token = NULL;
	if (r->method == HTTP_DELETE) {
		s.closed = 1;
		answer(h, 200, s.taken, 0, 0, 0, 0, 0);
	} else if (r->method == HTTP_GET) {
		receive(h);
	} else {
		send_bytes(h);
	}
}

/* A connection handed over on u by another process of our own user, which
 * learns whether it was taken ('y') or not ('n': busy). */
static struct hconn *take_handover(int u)
{
	struct ucred cred;
	socklen_t cl = sizeof cred;
	struct hconn *h = NULL, *idle = NULL;
	int fd;

	if (getsockopt(u, SOL_SOCKET, SO_PEERCRED, &cred, &cl) < 0 || cred.uid != geteuid()) {
		close(u);
		return NULL;
	}
	/* Room first (the message waits in u meanwhile): a free place, or the
	 * longest idle kept-alive connection, moved to a fresh process. None:
	 * 'n', and the message goes unread with u. */
	for (int i = 0; i < CONNS && !h; i++)
		if (s.c[i].state == C_FREE)
			h = &s.c[i];
	for (int i = 0; i < CONNS; i++)
		if (s.c[i].state == C_HEAD && s.c[i].len == 0 &&
		    (!idle || s.c[i].t < idle->t))
			idle = &s.c[i];
	if (!h && idle && respawn(idle) < 0)
		conn_close(idle);
	h = h ? h : idle;
	fd = h ? fd_recv(u, &s.ho, 1000) : -1;
	if (fd < 0 || send(u, "y", 1, MSG_DONTWAIT | MSG_NOSIGNAL) != 1) {
		if (!h)
			(void)!send(u, "n", 1, MSG_DONTWAIT | MSG_NOSIGNAL);
		close(u);
		if (fd >= 0)
			close(fd);  /* the sender answers, or has shut the connection */
		return NULL;
	}
	close(u);
	fcntl(fd, F_SETFL, O_NONBLOCK);
	h->fd = fd;
	h->state = C_HEAD;
	h->client = s.ho.client;
	h->local = s.ho.local;
	h->len = s.ho.len;
	memcpy(h->buf, s.ho.buf, h->len);
	h->t = now_ms();
	return h;
}

/* Read what a connection sent: into the send body while one is read,
 * else into its buffer. */
static void conn_read(struct hconn *h)
{
	ssize_t n;

	if (h->state == C_BODY)
		n = read(h->fd, s.body + s.up_len, h->req.clen - s.up_len);
	else if (h->len < sizeof h->buf)
		n = read(h->fd, h->buf + h->len, sizeof h->buf - h->len);
	else
		return;
	if (n < 0 && (errno == EAGAIN || errno == EINTR))
		return;
	if (n <= 0) {
		conn_close(h);  /* gone; a send half read is dropped, the client resends */
		return;
	}
	/* The clock of a head starts with its first byte, not its last: a
	 * head sent a byte at a time still has its deadline. */
	if (h->state == C_HEAD && h->len == 0)
		h->t = now_ms();
	if (h->state != C_BODY) {
		h->len += (size_t)n;
		return;
	}
	s.up_len += (size_t)n;
	if (s.up_len == h->req.clen)
		apply(h);
}

/* Read from the target into the ring, as far as it has room. */
static void pull(void)
{
	size_t used = (size_t)(s.end - s.base), at = (size_t)(s.end % RING);
	size_t room = RING - used < RING - at ? RING - used : RING - at;
	ssize_t n = s.tio ? s.tio->read(s.target, s.ring + at, room) : read(s.target, s.ring + at, room);

	if (n < 0 && (errno == EAGAIN || errno == EINTR))
		return;
	if (n > 0) {
		s.end += (unsigned long long)n;
		s.moved = now_ms();
	} else if (n == 0) {
		s.eof = 1;
	} else {
		s.err = 1;
	}
	for (int i = 0; i < CONNS; i++)
		if (s.c[i].state == C_PARKED)
			give(&s.c[i]);
}

/* When h's current wait ends, or 0 if it is not waiting on time. */
static long long conn_deadline(const struct hconn *h, int poll_ms)
{
	switch (h->state) {
	case C_PARKED: return h->t + poll_ms;
	case C_PASSING: return h->t + TAKE_MS;
	case C_WRITE: return h->t + WRITE_MS;
	case C_SEND: return h->t + WAIT_MS;
	case C_BODY: return h->t + s.so->header_ms + WAIT_MS;
	case C_HEAD: return h->t + s.so->header_ms;
	default: return 0;
	}
}

/* The deadline of h has passed. */
static void conn_expire(struct hconn *h)
{
	if (h->state == C_PARKED) {
		give(h);
	} else if (h->state == C_PASSING) {
		handed_on(h, 0);
	} else if (h->state == C_WRITE) {
		conn_close(h);  /* the answer is not taken: the client asks again */
	} else if (h->state == C_SEND) {
		s.up = NULL;  /* the target is slow: say how far it got */
		answer(h, 200, s.taken, 0, 0, 0, 0, 0);
	} else if (h->state == C_HEAD && h->len) {
		fail(h, 408);
	} else {
		conn_close(h);
	}
}

/* Listen on the abstract unix socket named by a fresh token's id; the
 * token is "NODE." (with --node) and the hex digits. */
static int make_token(void)
{
	static const char hex[] = "0123456789abcdef";
	unsigned char rnd[SESSION_TOKEN_LEN / 2];
	size_t nl = strlen(s.so->node);
	char *t = s.token + (nl ? nl + 1 : 0);

	if (nl > NODE_MAX)
		return -1;
	if (nl) {
		memcpy(s.token, s.so->node, nl);
		s.token[nl] = '.';
	}
	s.pre = (size_t)(t - s.token);
	for (int tries = 0; tries < 4; tries++) {
		struct sockaddr_un sa;
		socklen_t sl;

		if (getrandom(rnd, sizeof rnd, 0) != (ssize_t)sizeof rnd)
			return -1;
		for (size_t i = 0; i < sizeof rnd; i++) {
			t[2 * i] = hex[rnd[i] >> 4];
			t[2 * i + 1] = hex[rnd[i] & 15];
		}
		t[SESSION_TOKEN_LEN] = 0;
		explicit_bzero(rnd, sizeof rnd);
		sl = unix_name(&sa, s.so->scope, t);
		s.lfd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
		if (s.lfd < 0)
			return -1;
		if (bind(s.lfd, (struct sockaddr *)&sa, sl) == 0 && listen(s.lfd, BACKLOG) == 0)
			return 0;
		close(s.lfd);
		if (errno != EADDRINUSE)
			return -1;
	}
	return -1;
}

/* fd 0/1 become /dev/null, and fd 2 too when it is the client's socket
 * (inetd): the connection now lives in s.c[0] only. Read-only, as the
 * sandbox opens files: a stray write there fails, and reaches nobody. */
static int take_client(void)
{
	struct stat a, b;
	int fd = fcntl(0, F_DUPFD_CLOEXEC, 3), null = open("/dev/null", O_RDONLY);

	if (fd < 0 || null < 0)
		return -1;
	if (fstat(2, &a) == 0 && fstat(fd, &b) == 0 && a.st_dev == b.st_dev && a.st_ino == b.st_ino)
		dup2(null, 2);
	dup2(null, 0);
	dup2(null, 1);
	if (null > 2)
		close(null);
	fcntl(fd, F_SETFL, O_NONBLOCK);
	return fd;
}

/* Serve the requests h holds whole (pipelined, or handed over); none after
 * the session's end, which the loop sees. */
static void serve_buffered(struct hconn *h)
{
	size_t hl;

	while (!s.closed && !s.told && h->state == C_HEAD && (hl = http_head_end(h->buf, h->len)))
		request(h, hl);
	/* Full without a whole head: too large. (Full with one, after the
	 * session's end, the request goes on in a fresh process.) */
	if (h->state == C_HEAD && h->len == sizeof h->buf && !http_head_end(h->buf, h->len))
		fail(h, 431);
}

/* Serve the connections and the session until it ends. */
static const char *run(void)
{
	const struct session_opts *so = s.so;
	int poll_ms = so->session_ms / 2 < WAIT_MS ? so->session_ms / 2 : WAIT_MS;
	const char *why = NULL;

	for (;;) {
		struct pollfd p[CONNS + 2];
		long long now, next, busy = 0;
		int i, left, held;

		for (i = 0; i < CONNS; i++)
			serve_buffered(&s.c[i]);
		now = now_ms();
		next = s.moved + so->idle_ms;
		for (i = 0; i < CONNS; i++) {
			long long d = conn_deadline(&s.c[i], poll_ms);

			busy |= s.c[i].state == C_PARKED || s.c[i].state == C_SEND ||
				s.c[i].state == C_BODY || s.c[i].state == C_WRITE;
			if (d && d <= now)
				conn_expire(&s.c[i]);
			else if (d && d < next)
				next = d;
		}
		if (s.told)
			why = "target-error";
		else if (!busy && now - s.seen >= so->session_ms)
			why = "expired";
		else if (now - s.moved >= so->idle_ms)
			why = "idle";
		if (s.closed || why)
			return why;
		if (!busy && s.seen + so->session_ms < next)
			next = s.seen + so->session_ms;

		p[0] = (struct pollfd){ s.lfd, POLLIN, 0 };
		p[1] = (struct pollfd){ s.target, 0, 0 };
		if (!s.eof && !s.err && s.end - s.base < RING)
			p[1].events |= POLLIN;
		if (s.up && s.up->state == C_SEND)
			p[1].events |= POLLOUT;
		if (!p[1].events)
			p[1].fd = -1;  /* a hang-up would wake poll() for nothing */
		for (i = 0; i < CONNS; i++) {
			struct hconn *c = &s.c[i];
			int want = c->state == C_BODY ||
				   (c->state != C_FREE && c->state != C_PASSING && c->len < sizeof c->buf);

			p[i + 2] = (struct pollfd){ c->state == C_PASSING ? c->u : want ? c->fd : -1,
						    POLLIN, 0 };
			if (c->state == C_WRITE)
				p[i + 2] = (struct pollfd){ c->fd, (short)(want ? POLLIN | POLLOUT : POLLOUT), 0 };
		}
		/* What the TLS library holds already, poll() cannot see. */
		held = s.tio && p[1].events & POLLIN && s.tio->pending();
		left = held ? 0 : (int)(next - now);
		if (poll(p, CONNS + 2, left > 0 ? left : 0) < 0 && errno != EINTR)
			return "poll-failed";
		if ((held || p[1].revents & (POLLIN | POLLHUP | POLLERR)) && p[1].events & POLLIN)
			pull();
		if (p[1].revents & (POLLOUT | POLLERR | POLLHUP) && s.up && s.up->state == C_SEND)
			push();
		for (i = 0; i < CONNS; i++) {
			if (!p[i + 2].revents || p[i + 2].fd < 0)
				continue;
			if (s.c[i].state == C_PASSING && s.c[i].u == p[i + 2].fd) {
				handed_on(&s.c[i], 1);
				continue;
			}
			if (s.c[i].state == C_WRITE && p[i + 2].revents & (POLLOUT | POLLERR | POLLHUP))
				flush(&s.c[i], 0);
			if (s.c[i].state != C_FREE && s.c[i].fd == p[i + 2].fd &&
			    p[i + 2].revents & (POLLIN | POLLERR | POLLHUP))
				conn_read(&s.c[i]);
		}
		/* Every connection waiting, up to the backlog: another user
		 * connecting to the name in a loop must not fill it for us.
		 * Each is served at once, so that a receive superseding one
		 * parked frees its connection for the next. */
		for (i = 0; i < 2 * BACKLOG && p[0].revents & POLLIN; i++) {
			int u = accept4(s.lfd, NULL, NULL, SOCK_CLOEXEC);
			struct hconn *h;

			if (u < 0)
				break;
			if ((h = take_handover(u)))
				serve_buffered(h);
		}
	}
}

/* The client's address as a place kind: "a" and its bytes in hex. */
static void client_kind(char *kind, const struct endpoint *client)
{
	static const char hex[] = "0123456789abcdef";
	int n = client->ip.family == AF_INET ? 4 : 16;

	kind[0] = 'a';
	for (int i = 0; i < n; i++) {
		kind[1 + 2 * i] = hex[client->ip.a[i] >> 4];
		kind[2 + 2 * i] = hex[client->ip.a[i] & 15];
	}
	kind[1 + 2 * n] = 0;
}

int session_places(const struct session_opts *so, const struct endpoint *client)
{
	char kind[34];

	client_kind(kind, client);
	if ((s.place = place_take(so->scope, "s", so->max_sessions)) < 0)
		return -1;
	if ((s.cplace = place_take(so->scope, kind, so->max_client)) < 0) {
		close(s.place);
		return -1;
	}
	return 0;
}

const char *session_hold(const struct session_opts *so, int target, const struct relay_io *tio,
			 const char *early, size_t elen, const struct endpoint *client,
			 const struct endpoint *local, const char *rest, size_t restlen,
			 const struct request *open, struct relay_stats *st)
{
	const char *why;
	struct hconn *h = &s.c[0];

	s.so = so;
	s.target = target;
	s.tio = tio;
	s.end = elen < RING ? elen : RING;  /* the target's first bytes, already read */
	if (s.end)
		memcpy(s.ring, early, s.end);
	for (int i = 0; i < CONNS; i++)
		s.c[i].fd = -1;
	signal(SIGCHLD, SIG_IGN);  /* inetd mode's spawner, should it end first */
	fcntl(target, F_SETFL, O_NONBLOCK);
	if ((h->fd = take_client()) < 0)
		return "session-failed";
	h->state = C_HEAD;
	h->client = *client;
	h->local = *local;
	h->len = restlen < sizeof h->buf ? restlen : sizeof h->buf;
	memcpy(h->buf, rest, h->len);
	h->req.close = open->close;  /* how the open's answer keeps the connection */
	h->req.http10 = open->http10;
	h->t = now_ms();
	if (make_token() < 0) {
		logmsg(LOG_ERR, "session: %s", strerror(errno));
		fail(h, 503);
		return "session-failed";
	}
	/* Named and connected: from here on only unix sockets come and go. */
	sandbox_enter(SANDBOX_SESSION);
	s.token[s.pre + SESSION_TOKEN_LEN] = '\n';
	answer(h, 200, ~0ULL, 0, s.token, s.pre + SESSION_TOKEN_LEN + 1, 0, 0);
	s.token[s.pre + SESSION_TOKEN_LEN] = 0;
	s.moved = s.seen = now_ms();  /* the open is a request, even if it closed */

	why = run();
	/* The end: its places free, nobody can find the session again (a
	 * request still queued for it is answered 404 by its sender), and the
	 * target goes. Kept-alive connections go on in fresh processes; a
	 * request of the session in progress is answered 404. */
	close(s.place);
	close(s.cplace);
	close(s.lfd);
	close(target);
	explicit_bzero(s.token, sizeof s.token);
	s.up = NULL;
	for (int i = 0; i < CONNS; i++) {
		/* The other holder answers within a turn of its loop (whose
		 * writes wait at most WRITE_MS), or ends with its name closed
		 * first, which ends this wait too. After 2 s the connection is
		 * shut: never two answers, and the client repeats. */
		if (s.c[i].state == C_PASSING) {
			struct pollfd p = { s.c[i].u, POLLIN, 0 };

			handed_on(&s.c[i], poll(&p, 1, 2000));
		}
		finish(&s.c[i]);
		if (s.c[i].state == C_HEAD && respawn(&s.c[i]) < 0)
			conn_close(&s.c[i]);
		else if (s.c[i].state != C_FREE && fail(&s.c[i], 404) == 0)
			finish(&s.c[i]);
	}
	st->up = s.taken;
	st->down = s.sent;
	return why;
}
