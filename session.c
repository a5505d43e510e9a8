/* The GET/POST tunnel's session holder (PROTOCOL.md).
 *
 * The process that answered an open holds the session: the target socket,
 * a ring of the bytes read from it that the client has not acknowledged,
 * and up to CONNS client connections. Requests for the session that reach
 * other processes are handed here with their socket (session_pass); requests
 * for other sessions met here are handed on the same way. One poll loop;
 * every wait has a deadline; memory is the fixed struct below. */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <sys/un.h>
#include <unistd.h>

#include "config.h"
#include "http.h"
#include "log.h"
#include "session.h"

#define RING 65536           /* bytes read from the target, not yet acknowledged */
#define CONNS 6              /* client connections served at once */
#define WAIT_MS 20000        /* longest long poll, and longest wait for the target */
#define KEEP_MS 30000        /* an idle kept-alive connection is closed after */
#define WRITE_MS 5000        /* an answer must be taken within */
#define ID_LEN 16            /* the token's public half: names the unix socket */

enum { C_FREE, C_HEAD, C_BODY, C_SEND, C_PARKED };

struct hconn {
	int fd, state;
	struct endpoint client;
	struct request req;       /* the request being served */
	long long t;              /* last activity, or when the wait began */
	size_t len;               /* bytes in buf */
	char buf[CONFIG_HEADER_MAX];
};

static struct {
	const struct session_opts *so;
	int target, lfd;
	char token[SESSION_TOKEN_LEN + 1];
	unsigned long long base, end;   /* receive: acknowledged; read from the target */
	unsigned long long sent;        /* the highest offset answered */
	int eof, err, told, closed;     /* target ended / failed; client told; DELETE */
	int over;                       /* the session ended: only its connections remain */
	unsigned long long taken;       /* send: bytes written to the target */
	int fin;                        /* the target's receiving side is shut */
	struct hconn *up;               /* the connection whose send is in progress */
	size_t up_len, up_pos;          /* its body: bytes read, bytes applied */
	long long seen, moved;          /* the last request; the last byte moved */
	struct hconn c[CONNS];
	unsigned char ring[RING];
	char body[HTTP_BODY_MAX];
} s;

/* The handed-over message: who the client is, then the bytes read. */
struct handover {
	struct endpoint client;
	char buf[CONFIG_HEADER_MAX];
};

static socklen_t unix_name(struct sockaddr_un *sa, const char *id)
{
	memset(sa, 0, sizeof *sa);
	sa->sun_family = AF_UNIX;
	memcpy(sa->sun_path + 1, "tunneld/", 8);   /* sun_path[0] = 0: abstract */
	memcpy(sa->sun_path + 9, id, ID_LEN);
	return (socklen_t)(offsetof(struct sockaddr_un, sun_path) + 9 + ID_LEN);
}

static int is_token(const char *t, size_t len)
{
	if (len != SESSION_TOKEN_LEN)
		return 0;
	for (size_t i = 0; i < len; i++)
		if (!((t[i] >= '0' && t[i] <= '9') || (t[i] >= 'a' && t[i] <= 'f')))
			return 0;
	return 1;
}

/* Send fd and its bytes to the holder of the token's session. 0 handed
 * over, -1 no such session, -2 the holder is busy. */
static int pass(int fd, const char *token, size_t token_len, const struct endpoint *client,
		const char *buf, size_t len)
{
	struct sockaddr_un sa;
	socklen_t sl;
	struct iovec iov[2] = { { (void *)client, sizeof *client }, { (void *)buf, len } };
	union { struct cmsghdr h; char b[CMSG_SPACE(sizeof(int))]; } cm = { 0 };
	struct msghdr m = { 0 };
	int u, r;

	if (!is_token(token, token_len))
		return -1;
	sl = unix_name(&sa, token);
	u = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (u < 0)
		return -2;
	if (connect(u, (struct sockaddr *)&sa, sl) < 0) {
		r = errno == EAGAIN ? -2 : -1;
		close(u);
		return r;
	}
	m.msg_iov = iov;
	m.msg_iovlen = 2;
	m.msg_control = cm.b;
	m.msg_controllen = sizeof cm.b;
	cm.h.cmsg_level = SOL_SOCKET;
	cm.h.cmsg_type = SCM_RIGHTS;
	cm.h.cmsg_len = CMSG_LEN(sizeof(int));
	memcpy(CMSG_DATA(&cm.h), &fd, sizeof fd);
	r = sendmsg(u, &m, MSG_NOSIGNAL) < 0 ? -2 : 0;
	close(u);
	return r;
}

int session_pass(const char *token, size_t token_len, const struct endpoint *client,
		 const char *buf, size_t len)
{
	return pass(0, token, token_len, client, buf, len);
}

/* Write the iovecs to a non-blocking fd within WRITE_MS. 0 or -1. */
static int write_iov(int fd, struct iovec *iov, int n)
{
	long long deadline = now_ms() + WRITE_MS;

	while (n > 0) {
		struct pollfd p = { fd, POLLOUT, 0 };
		ssize_t w = writev(fd, iov, n);

		if (w < 0 && errno != EAGAIN && errno != EINTR)
			return -1;
		for (; w > 0 && n > 0; iov++, n--) {
			if ((size_t)w < iov->iov_len) {
				iov->iov_base = (char *)iov->iov_base + w;
				iov->iov_len -= (size_t)w;
				break;
			}
			w -= (ssize_t)iov->iov_len;
		}
		while (n > 0 && iov->iov_len == 0)
			iov++, n--;
		long long left = deadline - now_ms();
		if (n > 0 && (left <= 0 || poll(&p, 1, (int)left) == 0))
			return -1;
	}
	return 0;
}

static void conn_close(struct hconn *h)
{
	if (s.up == h)
		s.up = NULL;
	close(h->fd);
	h->fd = -1;
	h->state = C_FREE;
}

static const char *text_for(int status)
{
	switch (status) {
	case 400: return "Bad request: see the tunnel protocol.";
	case 404: return "No such tunnel session.";
	case 405: return "Method not allowed: this endpoint serves GET, POST and DELETE.";
	case 408: return "The request did not arrive in time.";
	case 409: return "The offset is out of range.";
	case 410: return "The destination's connection failed.";
	case 413: return "The request body is too large.";
	case 431: return "The request header is too large.";
	case 503: return "The tunnel server is busy.";
	default:  return "The tunnel server failed; its log says why.";
	}
}

/* Answer h's request: a 200 with the body b1+b2 (either may be empty), or
 * an error with its one-line text, which also closes the connection. With
 * a Tunnel-Offset when off is not ~0. 0, or -1 when h was closed. */
static int answer(struct hconn *h, int status, unsigned long long off, int eof,
		  const void *b1, size_t n1, const void *b2, size_t n2)
{
	char head[400], text[100];
	int ok = status == 200, close_it = !ok || h->req.close, hl;
	struct iovec iov[3];

	if (!ok) {
		n1 = (size_t)snprintf(text, sizeof text, "%s\n", text_for(status));
		b1 = text;
		n2 = 0;
	}
	hl = snprintf(head, sizeof head, "HTTP/1.1 %d %s\r\nCache-Control: no-store\r\n"
		      "Content-Type: %s\r\nContent-Length: %zu\r\n",
		      status, ok ? "OK" : http_reason(status),
		      ok ? "application/octet-stream" : "text/plain", n1 + n2);
	if (off != ~0ULL)
		hl += snprintf(head + hl, sizeof head - (size_t)hl, "Tunnel-Offset: %llu\r\n", off);
	if (eof)
		hl += snprintf(head + hl, sizeof head - (size_t)hl, "Tunnel-Eof: 1\r\n");
	if (status == 405)
		hl += snprintf(head + hl, sizeof head - (size_t)hl, "Allow: CONNECT, GET, POST, DELETE\r\n");
	hl += snprintf(head + hl, sizeof head - (size_t)hl, "%s\r\n", close_it ? "Connection: close\r\n" : "");
	iov[0] = (struct iovec){ head, (size_t)hl };
	iov[1] = (struct iovec){ (void *)b1, n1 };
	iov[2] = (struct iovec){ (void *)b2, n2 };
	if (write_iov(h->fd, iov, 3) < 0 || close_it) {
		conn_close(h);
		return -1;
	}
	h->state = C_HEAD;
	h->t = s.seen = now_ms();
	return 0;
}

static int fail(struct hconn *h, int status)
{
	return answer(h, status, status == 409 || status == 410 ? h->req.off : ~0ULL, 0, 0, 0, 0, 0);
}

/* Answer a receive at h->req.off with what the ring holds from there. */
static void give(struct hconn *h)
{
	unsigned long long o = h->req.off;
	size_t n = (size_t)(s.end - o), at = (size_t)(o % RING), first = n < RING - at ? n : RING - at;

	if (n == 0 && s.err) {
		s.told = 1;
		fail(h, 410);
		return;
	}
	if (o + n > s.sent)
		s.sent = o + n;
	answer(h, 200, o, s.eof, s.ring + at, first, s.ring, n - first);
}

static void receive(struct hconn *h)
{
	unsigned long long o = h->req.off;

	if (o < s.base || o > s.end) {
		fail(h, 409);
		return;
	}
	s.base = o;  /* everything before o arrived: forget it */
	for (int i = 0; i < CONNS; i++)
		if (s.c[i].state == C_PARKED && &s.c[i] != h)
			answer(&s.c[i], 200, s.c[i].req.off, 0, 0, 0, 0, 0);  /* superseded */
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
		ssize_t n = write(s.target, s.body + s.up_pos, s.up_len - s.up_pos);

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

/* An open or a CONNECT on a kept-alive connection: a new process serves
 * it, as if it had come on a connection of its own. */
static void fork_open(struct hconn *h)
{
	pid_t pid = fork();

	if (pid == 0) {
		int fd = h->fd;

		close(s.target);
		close(s.lfd);
		for (int i = 0; i < CONNS; i++)
			if (s.c[i].state != C_FREE && &s.c[i] != h)
				close(s.c[i].fd);
		fcntl(fd, F_SETFL, 0);
		dup2(fd, 0);
		dup2(fd, 1);
		if (fd > 1)
			close(fd);
		s.so->open(&h->client, h->buf, h->len);
	}
	if (pid < 0) {
		fail(h, 503);
		return;
	}
	conn_close(h);
}

/* A whole request head of hl bytes is in h->buf. */
static void request(struct hconn *h, size_t hl)
{
	struct request *r = &h->req;
	int st = http_parse(h->buf, hl, s.so->path, r);
	volatile unsigned char d = 0;

	if (st || (r->method != HTTP_POST && r->clen)) {
		fail(h, st ? st : 400);
		return;
	}
	if (r->method == HTTP_CONNECT || (r->method == HTTP_POST && !r->token)) {
		fork_open(h);
		return;
	}
	if (s.over || !r->token || r->token_len != SESSION_TOKEN_LEN || memcmp(r->token, s.token, ID_LEN)) {
		st = r->token ? pass(h->fd, r->token, r->token_len, &h->client, h->buf, h->len) : -1;
		if (st == 0)
			conn_close(h);
		else
			fail(h, st == -1 ? 404 : 503);
		return;
	}
	for (int i = ID_LEN; i < SESSION_TOKEN_LEN; i++)
		d |= (unsigned char)(r->token[i] ^ s.token[i]);
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

/* A connection handed over by another process. */
static void take_handover(void)
{
	static struct handover ho;
	struct ucred cred;
	socklen_t cl = sizeof cred;
	union { struct cmsghdr h; char b[CMSG_SPACE(sizeof(int))]; } cm;
	struct iovec iov = { &ho, sizeof ho };
	struct msghdr m = { 0 };
	struct pollfd p;
	struct cmsghdr *ch;
	struct hconn *h = NULL;
	int u = accept4(s.lfd, NULL, NULL, SOCK_CLOEXEC), fd = -1;
	ssize_t n;

	if (u < 0)
		return;
	p = (struct pollfd){ u, POLLIN, 0 };
	m.msg_iov = &iov;
	m.msg_iovlen = 1;
	m.msg_control = cm.b;
	m.msg_controllen = sizeof cm.b;
	/* Only a process of our own user may hand us a connection. */
	if (getsockopt(u, SOL_SOCKET, SO_PEERCRED, &cred, &cl) < 0 || cred.uid != geteuid() ||
	    poll(&p, 1, 1000) != 1 || (n = recvmsg(u, &m, MSG_CMSG_CLOEXEC)) < (ssize_t)sizeof ho.client) {
		close(u);
		return;
	}
	close(u);
	for (ch = CMSG_FIRSTHDR(&m); ch; ch = CMSG_NXTHDR(&m, ch))
		if (ch->cmsg_level == SOL_SOCKET && ch->cmsg_type == SCM_RIGHTS &&
		    ch->cmsg_len == CMSG_LEN(sizeof(int)))
			memcpy(&fd, CMSG_DATA(ch), sizeof fd);
	if (fd < 0)
		return;
	for (int i = 0; i < CONNS && !h; i++)
		if (s.c[i].state == C_FREE)
			h = &s.c[i];
	/* Full: make room by closing the longest idle kept-alive connection. */
	for (int i = 0; i < CONNS && !h; i++)
		if (s.c[i].state == C_HEAD && s.c[i].len == 0 && (!h || s.c[i].t < h->t))
			h = &s.c[i];
	if (!h) {
		static const char busy[] = "HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\n"
					   "Connection: close\r\n\r\n";
		(void)!send(fd, busy, sizeof busy - 1, MSG_DONTWAIT | MSG_NOSIGNAL);
		close(fd);
		return;
	}
	if (h->state != C_FREE)
		conn_close(h);
	fcntl(fd, F_SETFL, O_NONBLOCK);
	h->fd = fd;
	h->state = C_HEAD;
	h->client = ho.client;
	h->len = (size_t)n - sizeof ho.client;
	memcpy(h->buf, ho.buf, h->len);
	h->t = now_ms();
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
	ssize_t n = read(s.target, s.ring + at, room);

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
	case C_SEND: return h->t + WAIT_MS;
	case C_BODY: return h->t + s.so->header_ms;
	case C_HEAD: return h->t + (h->len ? s.so->header_ms : KEEP_MS);
	default: return 0;
	}
}

/* The deadline of h has passed. */
static void conn_expire(struct hconn *h)
{
	if (h->state == C_PARKED) {
		give(h);
	} else if (h->state == C_SEND) {
		s.up = NULL;  /* the target is slow: say how far it got */
		answer(h, 200, s.taken, 0, 0, 0, 0, 0);
	} else if (h->state == C_HEAD && h->len) {
		fail(h, 408);
	} else {
		conn_close(h);
	}
}

/* Listen on the abstract unix socket named by a fresh token's id. */
static int make_token(void)
{
	static const char hex[] = "0123456789abcdef";
	unsigned char rnd[SESSION_TOKEN_LEN / 2];

	for (int tries = 0; tries < 4; tries++) {
		struct sockaddr_un sa;
		socklen_t sl;

		if (getrandom(rnd, sizeof rnd, 0) != (ssize_t)sizeof rnd)
			return -1;
		for (size_t i = 0; i < sizeof rnd; i++) {
			s.token[2 * i] = hex[rnd[i] >> 4];
			s.token[2 * i + 1] = hex[rnd[i] & 15];
		}
		s.token[SESSION_TOKEN_LEN] = 0;
		explicit_bzero(rnd, sizeof rnd);
		sl = unix_name(&sa, s.token);
		s.lfd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
		if (s.lfd < 0)
			return -1;
		if (bind(s.lfd, (struct sockaddr *)&sa, sl) == 0 && listen(s.lfd, 16) == 0)
			return 0;
		close(s.lfd);
		if (errno != EADDRINUSE)
			return -1;
	}
	return -1;
}

/* fd 0/1 become /dev/null, and fd 2 too when it is the client's socket
 * (inetd): the connection now lives in s.c[0] only. */
static int take_client(void)
{
	struct stat a, b;
	int fd = fcntl(0, F_DUPFD_CLOEXEC, 3), null = open("/dev/null", O_RDWR);

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

/* Serve the connections, and the session until it ends. After its end
 * (s.over) the connections are still served: a proxy's kept-alive
 * connection may carry other sessions' requests, which are handed on. */
static const char *run(void)
{
	const struct session_opts *so = s.so;
	int poll_ms = so->session_ms / 2 < WAIT_MS ? so->session_ms / 2 : WAIT_MS;
	const char *why = NULL;

	for (;;) {
		struct pollfd p[CONNS + 2];
		long long now, next, busy = 0, open = 0;
		int i, left;

		/* Requests already buffered (pipelined, or handed over). */
		for (i = 0; i < CONNS; i++) {
			size_t hl;

			while (s.c[i].state == C_HEAD && (hl = http_head_end(s.c[i].buf, s.c[i].len)))
				request(&s.c[i], hl);
			if (s.c[i].state == C_HEAD && s.c[i].len == sizeof s.c[i].buf)
				fail(&s.c[i], 431);
		}
		now = now_ms();
		next = s.over ? now + KEEP_MS : s.moved + so->idle_ms;
		for (i = 0; i < CONNS; i++) {
			long long d = conn_deadline(&s.c[i], poll_ms);

			busy |= s.c[i].state == C_PARKED || s.c[i].state == C_SEND || s.c[i].state == C_BODY;
			if (d && d <= now)
				conn_expire(&s.c[i]);
			else if (d && d < next)
				next = d;
			open |= s.c[i].state != C_FREE;
		}
		if (s.over) {
			if (!open)
				return NULL;
		} else {
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
		}

		p[0] = (struct pollfd){ s.over ? -1 : s.lfd, POLLIN, 0 };
		p[1] = (struct pollfd){ s.over ? -1 : s.target, 0, 0 };
		if (!s.eof && !s.err && s.end - s.base < RING)
			p[1].events |= POLLIN;
		if (s.up && s.up->state == C_SEND)
			p[1].events |= POLLOUT;
		if (!p[1].events)
			p[1].fd = -1;  /* a hang-up would wake poll() for nothing */
		for (i = 0; i < CONNS; i++) {
			struct hconn *c = &s.c[i];
			int want = c->state == C_BODY || (c->state != C_FREE && c->len < sizeof c->buf);

			p[i + 2] = (struct pollfd){ want ? c->fd : -1, POLLIN, 0 };
		}
		left = (int)(next - now);
		if (poll(p, CONNS + 2, left > 0 ? left : 0) < 0 && errno != EINTR)
			return "poll-failed";
		if (p[1].revents & (POLLIN | POLLHUP | POLLERR) && p[1].events & POLLIN)
			pull();
		if (p[1].revents & (POLLOUT | POLLERR | POLLHUP) && s.up && s.up->state == C_SEND)
			push();
		for (i = 0; i < CONNS; i++)
			if (p[i + 2].revents && s.c[i].state != C_FREE && s.c[i].fd == p[i + 2].fd)
				conn_read(&s.c[i]);
		if (p[0].revents & POLLIN)
			take_handover();
	}
}

const char *session_hold(const struct session_opts *so, int target, const struct endpoint *client,
			 const char *rest, size_t restlen, struct relay_stats *st)
{
	const char *why;
	struct hconn *h = &s.c[0];

	s.so = so;
	s.target = target;
	for (int i = 0; i < CONNS; i++)
		s.c[i].fd = -1;
	signal(SIGCHLD, SIG_IGN);  /* the processes fork_open starts reap themselves */
	fcntl(target, F_SETFL, O_NONBLOCK);
	if (make_token() < 0 || (h->fd = take_client()) < 0) {
		static const char busy[] = "HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\n"
					   "Connection: close\r\n\r\n";

		logmsg(LOG_ERR, "session: %s", strerror(errno));
		(void)!write(1, busy, sizeof busy - 1);
		return "session-failed";
	}
	h->state = C_HEAD;
	h->client = *client;
	h->len = restlen < sizeof h->buf ? restlen : sizeof h->buf;
	memcpy(h->buf, rest, h->len);
	h->t = now_ms();
	s.token[SESSION_TOKEN_LEN] = '\n';
	answer(h, 200, ~0ULL, 0, s.token, SESSION_TOKEN_LEN + 1, 0, 0);
	s.token[SESSION_TOKEN_LEN] = 0;
	s.moved = now_ms();

	why = run();
	/* The end: the target goes, and nobody can find the session again. */
	s.over = 1;
	s.up = NULL;
	for (int i = 0; i < CONNS; i++)
		if (s.c[i].state != C_HEAD && s.c[i].state != C_FREE)
			conn_close(&s.c[i]);
	close(s.lfd);
	close(target);
	s.lfd = s.target = -1;
	explicit_bzero(s.token, sizeof s.token);
	st->up = s.taken;
	st->down = s.sent;
	return why;
}

void session_linger(void)
{
	run();
}
