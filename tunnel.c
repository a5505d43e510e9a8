/* tunnel: the client of tunneld. It carries one TCP stream (stdin/stdout,
 * or each connection accepted on --listen) to TARGET through SERVER.
 *
 * http mode (PROTOCOL.md): open a session with a POST; then this process
 * sends what the local side writes (POST ?o=N, keeping the bytes until they
 * are acknowledged and resending the rest) while a forked one long-polls
 * for what the target sends (GET ?o=N). Each keeps its own connection. When
 * both directions have ended, DELETE.
 * connect mode: one CONNECT TARGET to SERVER, then relay() both ways.
 *
 * Answers are read by their Content-Length into one fixed buffer. Every wait
 * on the network has a deadline; the local side sets its own pace. Terminal
 * paths go through die(): one line on stderr and a sysexits status. */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "config.h"
#include "file.h"
#include "http.h"
#include "net.h"
#include "relay.h"
#include "tls.h"

#include "version.h"

#define EXIT_BROKE 1         /* the tunnel broke after it was open */
#define EXIT_USAGE 64
#define EXIT_UNAVAILABLE 69  /* SERVER, the proxy or the target unreachable */
#define EXIT_PROTOCOL 76     /* an answer that is not the protocol */
#define EXIT_NOPERM 77       /* 401, 403, 407 */

#define HEAD_MAX 8192        /* an answer's head */
#define BODY_MAX 65536       /* an answer's body: PROTOCOL.md's 64 KiB */
#define CHUNK 65536          /* bytes sent in one POST, the server's limit */
#define REQ_MAX 4096         /* a request's head: path, names, two credentials */
#define PATH_LEN 256
#define CRED_MAX 512         /* "user:password" */
#define AUTH_B64 ((CRED_MAX + 2) / 3 * 4)
#define TOKEN_LEN 48
#define ADDRS_MAX 8          /* resolved addresses tried */
#define CONNECT_MS 10000     /* TCP connect, and the TLS handshake */
#define REQUEST_MS 30000     /* a request and its answer: above the 20 s long poll */
#define RETRY_MS 30000       /* failures in a row before the tunnel is broken */
#define PAUSE_MAX_MS 2000    /* the longest pause between retries */
#define TUNNELS_MAX 64       /* --listen: tunnels at once */

/* SERVER or the proxy, from its URL. */
struct url {
	int tls;                        /* https:// */
	char host[HOST_MAX + 2];        /* without [] */
	unsigned port;                  /* 0: no such URL (no proxy) */
	char authority[HOST_MAX + 10];  /* host:port, [v6]:port: for Host: */
	char path[PATH_LEN + 1];        /* SERVER's endpoint, "/..." */
	char auth[AUTH_B64 + 1];        /* proxy: Basic token of user:pass, or "" */
};

/* An answer: the head and the body in one buffer. */
struct answer {
	struct reply h;
	char *body;
	size_t blen;
	char buf[HEAD_MAX + BODY_MAX];
};

/* One HTTP connection to SERVER (through the proxy, if any). The TLS
 * session, if any, is tls.c's: one connection per process. */
struct link {
	int fd;                         /* -1: none */
	int tls;
};

struct tun {
	struct url server, proxy;
	int connect_mode, verbose;
	const char *target;             /* host:port, checked */
	const char *user;               /* --user, for messages */
	char auth[AUTH_B64 + 1];        /* --user: Basic token, "" once used */
	const char *listen;
	char sname[HOST_MAX + 20], pname[HOST_MAX + 20];  /* "server H:P", "proxy H:P" */
	struct endpoint addr[ADDRS_MAX];  /* the first hop: the proxy or SERVER */
	int naddr;
	char token[TOKEN_LEN + 1];      /* the session's, "" before the open */
	char why[1024];                 /* the last failure */
	struct answer a;
};

/* http mode: the receiving process, ended with the sending one. */
static pid_t peer;
/* Where die() tells why: stderr, or in the receiving process a pipe to the
 * sending one, which prints it unless it has its own reason: one line. */
static int report_fd = 2;
/* http mode: the signal that asks the sending process to stop, 0 if none. */
static volatile sig_atomic_t stopping;

static void vsay(int fd, const char *fmt, va_list ap)
{
	char line[600];
	int n = vsnprintf(line + 8, sizeof line - 9, fmt, ap);

	if (n < 0)
		return;
	if (n > (int)sizeof line - 10)
		n = (int)sizeof line - 10;
	memcpy(line, "tunnel: ", 8);
	line[8 + n] = '\n';
	(void)!write(fd, line, (size_t)n + 9);  /* one write: lines of two processes do not mix */
}

static void __attribute__((format(printf, 1, 2))) say(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsay(2, fmt, ap);
	va_end(ap);
}

static void __attribute__((noreturn, format(printf, 2, 3))) die(int code, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsay(report_fd, fmt, ap);
	va_end(ap);
	if (peer > 0)
		kill(peer, SIGTERM);
	exit(code);
}

static void __attribute__((noreturn, format(printf, 1, 2))) usage_error(const char *fmt, ...)
{
	char msg[500];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof msg, fmt, ap);
	va_end(ap);
	die(EXIT_USAGE, "%s (see --help)", msg);
}

static void sleep_ms(int ms)
{
	struct timespec ts = { ms / 1000, ms % 1000 * 1000000L };

	while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
		;
}

/* ---- Credentials ---------------------------------------------------- */

static int has_ctl(const char *s, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if ((unsigned char)s[i] < 0x20 || s[i] == 0x7f)
			return 1;
	return 0;
}

static void base64(const unsigned char *in, size_t n, char *out)
{
	static const char b[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

	for (; n >= 3; in += 3, n -= 3) {
		*out++ = b[in[0] >> 2];
		*out++ = b[(in[0] & 3) << 4 | in[1] >> 4];
		*out++ = b[(in[1] & 15) << 2 | in[2] >> 6];
		*out++ = b[in[2] & 63];
	}
	if (n) {
		*out++ = b[in[0] >> 2];
		*out++ = b[(in[0] & 3) << 4 | (n > 1 ? in[1] >> 4 : 0)];
		*out++ = n > 1 ? b[(in[1] & 15) << 2] : '=';
		*out++ = '=';
	}
	*out = 0;
}

/* The Basic token of user:pass (RFC 7617) into out. 0, or -1 when the
 * name holds ':' or either holds a control character, or they are long. */
static int basic(const char *user, size_t ulen, const char *pass, size_t plen,
		 char out[AUTH_B64 + 1])
{
	unsigned char cred[CRED_MAX];

	if (!ulen || memchr(user, ':', ulen) || has_ctl(user, ulen) || has_ctl(pass, plen) ||
	    ulen + 1 + plen > sizeof cred)
		return -1;
	memcpy(cred, user, ulen);
	cred[ulen] = ':';
	memcpy(cred + ulen + 1, pass, plen);
	base64(cred, ulen + 1 + plen, out);
	explicit_bzero(cred, sizeof cred);
	return 0;
}

/* --user's password: the first line of --password-file, or $TUNNEL_PASSWORD.
 * Never from argv, where every user of the machine can read it. */
static void server_credentials(struct tun *t, const char *pwfile)
{
	static char pw[1024];
	char err[300];
	size_t plen;
	const char *env = getenv("TUNNEL_PASSWORD");

	if (pwfile) {
		if (file_read(pwfile, pw, sizeof pw, err, sizeof err) < 0)
			usage_error("--password-file %s", err);
		plen = strcspn(pw, "\r\n");
	} else if (env) {
		plen = strlen(env);
		if (plen >= sizeof pw)
			usage_error("$TUNNEL_PASSWORD: longer than %zu bytes", sizeof pw - 1);
		memcpy(pw, env, plen);
	} else {
		usage_error("--user %s: the password comes from $TUNNEL_PASSWORD or --password-file",
			    t->user);
	}
	if (basic(t->user, strlen(t->user), pw, plen, t->auth) < 0)
		usage_error("--user: a name without ':', a password of one line, together at most "
			    "%d bytes, no control characters", CRED_MAX - 1);
	explicit_bzero(pw, sizeof pw);
}

/* ---- URLs ----------------------------------------------------------- */

static int hexval(int c)
{
	return c >= '0' && c <= '9' ? c - '0' : (c | 0x20) >= 'a' && (c | 0x20) <= 'f' ? (c | 0x20) - 'a' + 10 : -1;
}

/* Percent-decode s[0..n) into out (cap bytes). The length, or -1. */
static int unpercent(const char *s, size_t n, char *out, size_t cap)
{
	size_t o = 0;

	for (size_t i = 0; i < n; i++, o++) {
		if (o == cap)
			return -1;
		if (s[i] != '%') {
			out[o] = s[i];
			continue;
		}
		if (i + 2 >= n || hexval(s[i + 1]) < 0 || hexval(s[i + 2]) < 0)
			return -1;
		out[o] = (char)(hexval(s[i + 1]) << 4 | hexval(s[i + 2]));
		i += 2;
	}
	return (int)o;
}

/* The proxy URL's user:pass@, as its Basic token. */
static void proxy_credentials(const char *s, size_t n, struct url *u)
{
	char user[CRED_MAX], pass[CRED_MAX];
	const char *colon = memchr(s, ':', n);
	int ul, pl = 0;

	ul = unpercent(s, colon ? (size_t)(colon - s) : n, user, sizeof user);
	if (colon)
		pl = unpercent(colon + 1, (size_t)(s + n - colon - 1), pass, sizeof pass);
	if (ul < 0 || pl < 0 || basic(user, (size_t)ul, pass, (size_t)pl, u->auth) < 0)
		usage_error("--proxy: the user:password@ part is not valid (percent-encode ':', '@' "
			    "and '/' inside them; at most %d bytes)", CRED_MAX - 1);
	explicit_bzero(user, sizeof user);
	explicit_bzero(pass, sizeof pass);
}

/* RFC 3986 path characters: unreserved, sub-delims, ':', '@', '%', '/'. */
static int is_path(const char *s, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (!strchr("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"
			    "-._~!$&'()*+,;=:@%/", s[i]) || !s[i])
			return 0;
	return 1;
}

/* SERVER, "http[s]://host[:port][/path]", or the proxy,
 * "http://[user:pass@]host[:port][/]", into u. A usage error if not; a URL
 * that may hold a password is never shown. */
static void parse_url(const char *what, const char *s, struct url *u, int proxy)
{
	size_t n = strlen(s), alen;
	const char *p, *end = s + n, *slash, *at, *rb, *colon;
	int secret = proxy && memchr(s, '@', n);
	struct request r;

	if (!strncasecmp(s, "http://", 7)) {
		p = s + 7;
	} else if (!proxy && !strncasecmp(s, "https://", 8)) {
		p = s + 8;
		u->tls = 1;
	} else {
		usage_error("%s: '%s' is not an %s URL", what, secret ? "..." : s,
			    proxy ? "http://" : "http:// or https://");
	}
	slash = memchr(p, '/', (size_t)(end - p));
	if (!slash)
		slash = end;
	at = memrchr(p, '@', (size_t)(slash - p));
	if (at && !proxy)
		usage_error("%s: no user:password@ in SERVER's URL: use --user", what);
	if (at) {
		proxy_credentials(p, (size_t)(at - p), u);
		p = at + 1;
	}
	/* The authority, with the scheme's port when it names none. */
	alen = (size_t)(slash - p);
	rb = alen && *p == '[' ? memchr(p, ']', alen) : NULL;
	colon = memchr(rb ? rb : p, ':', (size_t)(slash - (rb ? rb : p)));
	if (alen > HOST_MAX + 2 + 6 ||
	    snprintf(u->authority, sizeof u->authority, "%.*s%s", (int)alen, p,
		     colon ? "" : u->tls ? ":443" : ":80") >= (int)sizeof u->authority ||
	    http_parse_target(u->authority, strlen(u->authority), &r))
		usage_error("%s: '%.*s' is not host[:port] (a name, an IPv4 address or [IPv6])",
			    what, secret ? 3 : (int)alen, secret ? "..." : p);
	memcpy(u->host, r.host, sizeof u->host);
	u->port = r.port;
	if (slash == end)
		slash = "/";
	if (proxy && strcmp(slash, "/"))
		usage_error("%s: a proxy URL has no path", what);
	if (strlen(slash) > PATH_LEN || !is_path(slash, strlen(slash)))
		usage_error("%s: the path '%s' is not up to %d bytes of plain path characters "
			    "(no query or fragment)", what, slash, PATH_LEN);
	memcpy(u->path, slash, strlen(slash) + 1);
}

/* ---- The connection to SERVER --------------------------------------- */

/* Wait until fd is ready for ev, or the deadline: 0, or -1 with errno. */
static int wait_fd(int fd, short ev, long long deadline)
{
	struct pollfd p = { fd, ev, 0 };

	for (;;) {
		long long left = deadline - now_ms();
		int r;

		if (left <= 0) {
			errno = ETIMEDOUT;
			return -1;
		}
		r = poll(&p, 1, (int)left);
		if (r > 0)
			return 0;
		if (r < 0 && errno != EINTR)
			return -1;
	}
}

static int lwrite(struct link *l, const char *buf, size_t len, long long deadline)
{
	while (len) {
		ssize_t n = l->tls ? tls_write(l->fd, buf, len)
				   : send(l->fd, buf, len, MSG_NOSIGNAL | MSG_DONTWAIT);

		if (n > 0) {
			buf += n;
			len -= (size_t)n;
		} else if (n < 0 && errno != EAGAIN && errno != EINTR) {
			return -1;
		} else if (wait_fd(l->fd, POLLOUT, deadline) < 0) {
			return -1;
		}
	}
	return 0;
}

/* What the link has, waiting until the deadline: the count, 0 at its end,
 * -1 with errno (ETIMEDOUT when the time ran out). */
static ssize_t lread(struct link *l, char *buf, size_t len, long long deadline)
{
	for (;;) {
		ssize_t n;

		/* What the TLS library already holds, poll() cannot see. */
		if (!(l->tls && tls_pending()) && wait_fd(l->fd, POLLIN, deadline) < 0)
			return -1;
		n = l->tls ? tls_read(l->fd, buf, len) : recv(l->fd, buf, len, MSG_DONTWAIT);
		if (n >= 0 || (errno != EAGAIN && errno != EINTR))
			return n;
	}
}

static void link_close(struct link *l)
{
	if (l->tls)
		tls_close();
	if (l->fd >= 0)
		close(l->fd);
	l->fd = -1;
	l->tls = 0;
}

/* The failure of a request that got no (whole) answer, into t->why. */
static int lost(struct tun *t, struct link *l, const char *who, ssize_t n)
{
	snprintf(t->why, sizeof t->why, "no answer from %s: %s", who,
		 n == 0 ? "the connection closed" :
		 errno == ETIMEDOUT ? "nothing came within 30 s" : strerror(errno));
	link_close(l);
	return -1;
}

/* Read the answer to the request just written into t->a: the head, then
 * the body by its Content-Length, or with head_only nothing more (what came
 * after the head is the tunnel's, left at a->body). 0, or -1 with t->why
 * when the connection failed or the time ran out. An answer that is not
 * HTTP ends the program (76). */
static int read_answer(struct tun *t, struct link *l, long long deadline, int head_only,
		       const char *who)
{
	struct answer *a = &t->a;
	size_t len = 0, hl;
	ssize_t n;

	for (;;) {
		while (!(hl = http_head_end(a->buf, len))) {
			if (len == HEAD_MAX)
				die(EXIT_PROTOCOL, "%s answered a head over %d bytes", who, HEAD_MAX);
			n = lread(l, a->buf + len, HEAD_MAX - len, deadline);
			if (n <= 0)
				return lost(t, l, who, n);
			len += (size_t)n;
			if (http_not_reply(a->buf, len))
				die(EXIT_PROTOCOL, "%s answered something that is not HTTP/1", who);
		}
		if (http_parse_reply(a->buf, hl, &a->h) < 0)
			die(EXIT_PROTOCOL, "%s answered something that is not HTTP/1", who);
		if (a->h.status >= 200 || a->h.status == 101)
			break;
		memmove(a->buf, a->buf + hl, len - hl);  /* an interim 1xx: skipped */
		len -= hl;
	}
	a->body = a->buf + hl;
	a->blen = len - hl;
	if (head_only)
		return 0;
	if (a->h.chunked || a->h.clen < 0 || a->h.clen > BODY_MAX) {
		if (a->h.status == 200)
			die(EXIT_PROTOCOL, "%s answered 200 without a Content-Length of at most %d",
			    who, BODY_MAX);
		a->h.close = 1;  /* an error's body we need not read: drop the connection */
		a->blen = 0;
		return 0;
	}
	if (a->blen > (size_t)a->h.clen) {
		a->h.close = 1;  /* more than the answer: nothing else was asked */
		a->blen = (size_t)a->h.clen;
	}
	while (a->blen < (size_t)a->h.clen) {
		n = lread(l, a->body + a->blen, (size_t)a->h.clen - a->blen, deadline);
		if (n <= 0)
			return lost(t, l, who, n);
		a->blen += (size_t)n;
	}
	return 0;
}

/* Append to buf (cap bytes, *len used) as snprintf does. -1 when it does
 * not fit. */
static int __attribute__((format(printf, 4, 5))) add(char *buf, size_t cap, size_t *len,
						     const char *fmt, ...)
{
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(buf + *len, cap - *len, fmt, ap);
	va_end(ap);
	if (n < 0 || (size_t)n >= cap - *len)
		return -1;
	*len += (size_t)n;
	return 0;
}

/* CONNECT host:port on l, as far as the answer's head. 0 with it in t->a,
 * or -1 with t->why. */
static int send_connect(struct tun *t, struct link *l, const char *hostport, const char *auth,
			const char *who)
{
	char head[REQ_MAX];
	size_t hl = 0;
	long long deadline = now_ms() + REQUEST_MS;
	int bad = add(head, sizeof head, &hl, "CONNECT %s HTTP/1.1\r\nHost: %s\r\n"
		      "User-Agent: tunnel/" VERSION "\r\n", hostport, hostport);

	if (auth[0])
		bad |= add(head, sizeof head, &hl, "Proxy-Authorization: Basic %s\r\n", auth);
	bad |= add(head, sizeof head, &hl, "\r\n");
	if (bad)
		die(EXIT_USAGE, "a request head over %d bytes", REQ_MAX);
	bad = lwrite(l, head, hl, deadline);
	explicit_bzero(head, sizeof head);
	if (bad < 0)
		return lost(t, l, who, -1);
	if (read_answer(t, l, deadline, 1, who) < 0)
		return -1;
	if (t->verbose)
		say("CONNECT %s: %s", hostport, t->a.h.line);
	return 0;
}

/* Through the proxy, the bytes to SERVER must pass unread: CONNECT. 0, or -1
 * with t->why. The proxy refusing us for good ends the program. */
static int proxy_connect(struct tun *t, struct link *l)
{
	const struct answer *a = &t->a;

	if (send_connect(t, l, t->server.authority, t->proxy.auth, t->pname) < 0)
		return -1;
	if (a->h.status == 407)
		die(EXIT_NOPERM, "%s answered %s", t->pname, a->h.line);
	if (a->h.status == 403)
		die(EXIT_NOPERM, "%s refused CONNECT %s: %s", t->pname, t->server.authority, a->h.line);
	if (a->h.status / 100 != 2) {
		snprintf(t->why, sizeof t->why, "%s answered %s to CONNECT %s", t->pname, a->h.line,
			 t->server.authority);
		link_close(l);
		return -1;
	}
	if (a->blen)
		die(EXIT_PROTOCOL, "%s sent bytes of its own after its answer to CONNECT", t->pname);
	return 0;
}

/* The first hop's addresses: the proxy's, or SERVER's. 0, or -1 with t->why. */
static int resolve(struct tun *t)
{
	const struct url *u = t->proxy.port ? &t->proxy : &t->server;
	struct addrinfo hints = { 0 }, *res, *ai;
	int r;

	hints.ai_family = CONFIG_IPV6 ? AF_UNSPEC : AF_INET;
	hints.ai_socktype = SOCK_STREAM;
	r = getaddrinfo(u->host, NULL, &hints, &res);
	if (r) {
		snprintf(t->why, sizeof t->why, "cannot resolve %s: %s", u->host,
			 r == EAI_SYSTEM ? strerror(errno) : gai_strerror(r));
		return -1;
	}
	t->naddr = 0;
	for (ai = res; ai && t->naddr < ADDRS_MAX; ai = ai->ai_next) {
		ep_from_sockaddr(&t->addr[t->naddr], ai->ai_addr);
		t->addr[t->naddr].port = u->port;
		if (t->addr[t->naddr].ip.family)
			t->naddr++;
	}
	freeaddrinfo(res);
	return 0;
}

/* Connect l to SERVER: TCP to the first hop, CONNECT at the proxy when the
 * bytes must pass it unread (https://, or connect mode), then TLS for
 * https://. 0, or -1 with t->why. */
static int dial(struct tun *t, struct link *l)
{
	const struct url *hop = t->proxy.port ? &t->proxy : &t->server;
	char err[200], s[ADDRSTR_MAX];
	int e = EHOSTUNREACH, one = 1;

	l->tls = 0;
	for (int i = 0; i < t->naddr && l->fd < 0; i++) {
		l->fd = net_connect(&t->addr[i], CONNECT_MS);
		if (l->fd < 0 && t->verbose)
			say("%s: %s", ep_str(&t->addr[i], s), strerror(errno));
		if (l->fd < 0)
			e = errno;
	}
	if (l->fd < 0) {
		snprintf(t->why, sizeof t->why, "cannot connect to %s%s: %s",
			 t->proxy.port ? "proxy " : "", hop->authority, strerror(e));
		return -1;
	}
	if (t->verbose)
		say("connected to %s%s", t->proxy.port ? "proxy " : "", hop->authority);
	/* A request's head and its body are two writes: no Nagle wait between. */
	setsockopt(l->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
	if (t->proxy.port && (t->server.tls || t->connect_mode) && proxy_connect(t, l) < 0)
		return -1;
	if (t->server.tls) {
		if (tls_connect(l->fd, t->server.host, CONNECT_MS, err, sizeof err) < 0) {
			snprintf(t->why, sizeof t->why, "TLS to %s: %s", t->server.authority, err);
			link_close(l);
			return -1;
		}
		l->tls = 1;
	}
	return 0;
}

/* ---- The GET/POST tunnel --------------------------------------------- */

/* One request on l, dialing first when it has no connection, and its
 * answer in t->a. 0 with an answer; -1 with t->why when none came. */
static int exchange(struct tun *t, struct link *l, const char *method, const char *query,
		    const char *body, size_t blen)
{
	char head[REQ_MAX];
	size_t hl = 0;
	long long deadline;
	int plain_proxy = t->proxy.port && !t->server.tls, bad;
	const char *who = plain_proxy ? t->pname : t->sname;
	struct pollfd p = { l->fd, POLLIN, 0 };

	/* A kept-alive connection the far end has closed meanwhile is readable
	 * while it should be silent: start afresh rather than lose a request. */
	if (l->fd >= 0 && poll(&p, 1, 0) > 0)
		link_close(l);
	if (l->fd < 0 && dial(t, l) < 0)
		return -1;
	/* Absolute-form through a plain proxy (RFC 9112 §3.2.2). */
	bad = add(head, sizeof head, &hl, "%s %s%s%s%s HTTP/1.1\r\nHost: %s\r\n"
		  "User-Agent: tunnel/" VERSION "\r\n", method, plain_proxy ? "http://" : "",
		  plain_proxy ? t->server.authority : "", t->server.path, query, t->server.authority);
	if (plain_proxy && t->proxy.auth[0])
		bad |= add(head, sizeof head, &hl, "Proxy-Authorization: Basic %s\r\n", t->proxy.auth);
	if (!t->token[0] && t->auth[0])
		bad |= add(head, sizeof head, &hl, "Authorization: Basic %s\r\n", t->auth);
	if (t->token[0])
		bad |= add(head, sizeof head, &hl, "Tunnel-Token: %s\r\n", t->token);
	if (body)
		bad |= add(head, sizeof head, &hl, "Content-Type: application/octet-stream\r\n"
			   "Content-Length: %zu\r\n", blen);
	else if (!strcmp(method, "GET"))
		bad |= add(head, sizeof head, &hl, "Cache-Control: no-cache\r\n");
	bad |= add(head, sizeof head, &hl, "\r\n");
	if (bad)
		die(EXIT_USAGE, "a request head over %d bytes", REQ_MAX);
	deadline = now_ms() + REQUEST_MS;
	bad = lwrite(l, head, hl, deadline) < 0 || (blen && lwrite(l, body, blen, deadline) < 0);
	explicit_bzero(head, sizeof head);  /* it may hold a credential */
	if (bad)
		return lost(t, l, who, -1);
	if (read_answer(t, l, deadline, 0, who) < 0)
		return -1;
	if (t->verbose && t->a.h.offset >= 0)
		say("%s %s%s, %zu bytes: %s, %zu bytes, offset %lld%s", method, t->server.path,
		    query, blen, t->a.h.line, t->a.blen, t->a.h.offset, t->a.h.eof ? ", eof" : "");
	else if (t->verbose)
		say("%s %s%s, %zu bytes: %s, %zu bytes", method, t->server.path, query, blen,
		    t->a.h.line, t->a.blen);
	if (t->a.h.close)
		link_close(l);
	return 0;
}

/* An answer that ends the tunnel (open: the first, or connect mode's). */
static void __attribute__((noreturn)) refused(const struct tun *t, int open)
{
	const struct answer *a = &t->a;
	int st = a->h.status;
	/* Through a plain proxy, an answer without a Tunnel- field may be the
	 * proxy's own. */
	const char *who = t->proxy.port && !t->server.tls && !t->connect_mode && !a->h.tunnel
			  ? "server or proxy" : "server";

	if (st == 407 && t->proxy.port && !t->server.tls && !t->connect_mode)
		die(EXIT_NOPERM, "%s answered %s", t->pname, a->h.line);
	if ((st == 401 || st == 407) && t->user)
		die(EXIT_NOPERM, "server refused the credentials of %s: %s", t->user, a->h.line);
	if (st == 401 || st == 407)
		die(EXIT_NOPERM, "server wants credentials (--user): %s", a->h.line);
	if (st == 403)
		die(EXIT_NOPERM, "%s refused the target: %s", who, a->h.line);
	if (open && st == 503)
		die(EXIT_UNAVAILABLE, "%s answered %s", who, a->h.line);
	if (open && (st == 502 || st == 504))
		die(EXIT_UNAVAILABLE, "%s could not reach the target: %s", who, a->h.line);
	if (!open && st == 404)
		die(EXIT_BROKE, "the server ended the session: %s", a->h.line);
	if (!open && st == 410)
		die(EXIT_BROKE, "the target's connection failed: %s", a->h.line);
	if (!open && st >= 500)
		die(EXIT_BROKE, "%s answered %s", who, a->h.line);
	if (open && !t->connect_mode && (st == 404 || st == 405))
		die(EXIT_PROTOCOL, "%s has no tunnel endpoint at %s: %s", who, t->server.path, a->h.line);
	die(EXIT_PROTOCOL, "%s answered %s: not the tunnel protocol", who, a->h.line);
}

/* A session request, repeated while no answer of tunneld comes: a failed
 * connection, a timeout, a 503, or a 502/504 a proxy made (tunneld's carry
 * Tunnel-Offset). After RETRY_MS of failures in a row the tunnel is broken.
 * The answer is in t->a. */
static void request(struct tun *t, struct link *l, const char *method, const char *query,
		    const char *body, size_t blen)
{
	long long first = 0;
	int pause = 100;

	for (;;) {
		long long start = now_ms();
		const struct answer *a = &t->a;

		if (exchange(t, l, method, query, body, blen) == 0) {
			if (a->h.status != 503 && !((a->h.status == 502 || a->h.status == 504) && a->h.offset < 0))
				return;
			snprintf(t->why, sizeof t->why, "%s answered %s",
				 a->h.tunnel || !t->proxy.port ? t->sname : t->pname, a->h.line);
		}
		if (!first)
			first = start;
		if (now_ms() - first >= RETRY_MS)
			die(EXIT_BROKE, "%s; gave up after %d s of failures", t->why, RETRY_MS / 1000);
		if (t->verbose)
			say("%s; again in %d ms", t->why, pause);
		sleep_ms(pause);
		pause = pause * 2 < PAUSE_MAX_MS ? pause * 2 : PAUSE_MAX_MS;
	}
}

/* The open's body: TOKEN_LEN lower-case hex digits, then a line end. */
static int is_token(const char *s, size_t n)
{
	if (n < TOKEN_LEN || n > TOKEN_LEN + 2)
		return 0;
	for (size_t i = 0; i < TOKEN_LEN; i++)
		if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f')))
			return 0;
	return n == TOKEN_LEN || (n == TOKEN_LEN + 1 && s[TOKEN_LEN] == '\n') ||
	       (n == TOKEN_LEN + 2 && s[TOKEN_LEN] == '\r' && s[TOKEN_LEN + 1] == '\n');
}

/* Open the session: POST the target, take the token. A tunneld at its
 * limit (503) is asked again for RETRY_MS; anything else unanswered ends
 * here, SERVER (or the proxy) being unreachable. */
static void open_session(struct tun *t, struct link *l)
{
	long long first = now_ms();
	int pause = 100;

	for (;;) {
		if (exchange(t, l, "POST", "", t->target, strlen(t->target)) < 0)
			die(EXIT_UNAVAILABLE, "%s", t->why);
		if (t->a.h.status != 503 || now_ms() - first >= RETRY_MS)
			break;
		if (t->verbose)
			say("%s answered %s; again in %d ms", t->sname, t->a.h.line, pause);
		sleep_ms(pause);
		pause = pause * 2 < PAUSE_MAX_MS ? pause * 2 : PAUSE_MAX_MS;
	}
	explicit_bzero(t->auth, sizeof t->auth);  /* from here on the token stands for it */
	if (t->a.h.status != 200)
		refused(t, 1);
	if (!is_token(t->a.body, t->a.blen))
		die(EXIT_PROTOCOL, "%s answered the open without a session token: is %s "
		    "its --http-tunnel path?", t->sname, t->server.path);
	memcpy(t->token, t->a.body, TOKEN_LEN);
	t->token[TOKEN_LEN] = 0;
}

/* DELETE, once: a session left open expires on the server by itself. */
static void close_session(struct tun *t, struct link *l)
{
	if (exchange(t, l, "DELETE", "", NULL, 0) < 0 && t->verbose)
		say("%s", t->why);
}

/* Write all of buf to the local side, at its pace. 0, or -1 with errno. */
static int write_all(int fd, const char *buf, size_t len)
{
	while (len) {
		ssize_t n = write(fd, buf, len);
		struct pollfd p = { fd, POLLOUT, 0 };

		if (n > 0) {
			buf += n;
			len -= (size_t)n;
		} else if (n < 0 && errno == EAGAIN) {
			poll(&p, 1, -1);
		} else if (n < 0 && errno != EINTR) {
			return -1;
		}
	}
	return 0;
}

/* The end of what we write locally: a half-close for a socket, else close. */
static void end_output(int fd)
{
	if (shutdown(fd, SHUT_WR) < 0 && errno == ENOTSOCK)
		close(fd);
}

/* fd becomes /dev/null: this process must not hold the local side open. */
static void null_fd(int fd)
{
	int n = open("/dev/null", O_RDWR | O_CLOEXEC);

	if (n >= 0 && n != fd) {
		dup2(n, fd);
		close(n);
	}
}

/* The receiving process: long polls from offset 0, each answer's bytes
 * written out in order; the target's end becomes the end of out. */
static void __attribute__((noreturn)) receiver(struct tun *t, int out)
{
	struct link l = { -1, 0 };
	unsigned long long off = 0;
	char q[40];

	for (;;) {
		snprintf(q, sizeof q, "?o=%llu", off);
		request(t, &l, "GET", q, NULL, 0);
		if (t->a.h.status != 200)
			refused(t, 0);
		if (t->a.h.offset != (long long)off)
			die(EXIT_PROTOCOL, "%s answered a receive at %llu with offset %lld", t->sname,
			    off, t->a.h.offset);
		if (write_all(out, t->a.body, t->a.blen) < 0)
			die(EXIT_BROKE, "cannot write what came: %s", strerror(errno));
		off += t->a.blen;
		if (t->a.h.eof) {
			end_output(out);
			exit(0);
		}
	}
}

/* The receiving process as the sending one sees it. */
struct recv_proc {
	pid_t pid;
	int fd;         /* its report, then its end; -1 once reaped */
	int status;     /* its exit status, once reaped */
	char why[600];  /* its report: the line die() wrote */
	ssize_t whylen;
};

/* The receiver has reported or ended: its line, and its exit status. */
static void reap(struct recv_proc *r)
{
	int st = 0;

	while ((r->whylen = read(r->fd, r->why, sizeof r->why)) < 0 && errno == EINTR)
		;
	while (waitpid(r->pid, &st, 0) < 0 && errno == EINTR)
		;
	r->status = WIFEXITED(st) ? WEXITSTATUS(st) : EXIT_BROKE;
	close(r->fd);
	r->fd = -1;
	peer = 0;
}

static void on_stop(int sig)
{
	stopping = sig;
}

/* SIGHUP (ssh ends its ProxyCommand so), SIGINT, SIGTERM: they are blocked
 * in the sending process but while it waits on the local side or the
 * receiver, so a request in flight is never cut. */
static void stop_signals(void)
{
	struct sigaction sa = { 0 };
	sigset_t blocked;

	sa.sa_handler = on_stop;  /* no SA_RESTART: the wait returns */
	sigemptyset(&blocked);
	sigaddset(&blocked, SIGHUP);
	sigaddset(&blocked, SIGINT);
	sigaddset(&blocked, SIGTERM);
	sigprocmask(SIG_BLOCK, &blocked, NULL);
	sigaction(SIGHUP, &sa, NULL);
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
}

/* poll() with those signals let in. */
static int wait_local(struct pollfd *p, nfds_t n, int block)
{
	static const struct timespec zero = { 0, 0 };
	sigset_t none;

	sigemptyset(&none);
	return ppoll(p, n, block ? NULL : &zero, &none);
}

/* Asked to stop: end the receiver and the session (so that the target sees
 * the end now, not at the session timeout), then die of the signal. */
static void __attribute__((noreturn)) stop(struct tun *t, struct link *l)
{
	sigset_t sig;

	if (peer > 0)
		kill(peer, SIGTERM);
	close_session(t, l);
	signal(stopping, SIG_DFL);
	sigemptyset(&sig);
	sigaddset(&sig, stopping);
	sigprocmask(SIG_UNBLOCK, &sig, NULL);
	raise(stopping);
	exit(EXIT_BROKE);
}

/* The sending side: what in gives, up to CHUNK bytes a request, kept until
 * the server acknowledges it (Tunnel-Offset) and the rest sent again; the
 * end of in goes as fin. Returns when the fin is acknowledged, or when the
 * receiver failed. */
static void sender(struct tun *t, struct link *l, int in, struct recv_proc *r)
{
	static char buf[CHUNK];
	size_t len = 0, took;
	unsigned long long base = 0;  /* the offset of buf[0] */
	int eof = 0;
	char q[48];

	for (;;) {
		/* Wait for bytes while there are none; then take what is there. */
		while (!eof && len < sizeof buf) {
			struct pollfd p[2] = { { in, POLLIN, 0 }, { r->fd, POLLIN, 0 } };
			ssize_t n;

			if (wait_local(p, 2, !len) < 0 && errno != EINTR)
				die(EXIT_BROKE, "poll: %s", strerror(errno));
			if (stopping)
				stop(t, l);
			if (p[1].revents) {
				reap(r);
				if (r->status)
					return;
				continue;
			}
			if (!p[0].revents)
				break;
			n = read(in, buf + len, sizeof buf - len);
			if (n > 0) {
				len += (size_t)n;
			} else if (n == 0) {
				eof = 1;
			} else if (errno != EAGAIN && errno != EINTR) {
				snprintf(q, sizeof q, "%s", strerror(errno));
				close_session(t, l);
				die(EXIT_BROKE, "cannot read what to send: %s", q);
			}
		}
		snprintf(q, sizeof q, "?o=%llu%s", base, eof ? "&fin" : "");
		request(t, l, "POST", q, buf, len);
		if (t->a.h.status != 200)
			refused(t, 0);
		if (t->a.h.offset < (long long)base || t->a.h.offset > (long long)(base + len))
			die(EXIT_PROTOCOL, "%s acknowledged offset %lld of a send of %llu to %llu",
			    t->sname, t->a.h.offset, base, base + len);
		took = (size_t)(t->a.h.offset - (long long)base);
		memmove(buf, buf + took, len - took);
		len -= took;
		base += took;
		if (eof && len == 0)
			return;
	}
}

static void __attribute__((noreturn)) tunnel_http(struct tun *t, int in, int out)
{
	struct link l = { -1, 0 };
	static struct recv_proc r;
	pid_t parent = getpid();
	int pfd[2];

	open_session(t, &l);
	if (pipe2(pfd, O_CLOEXEC) < 0 || (r.pid = fork()) < 0)
		die(EXIT_BROKE, "cannot start the receiving process: %s", strerror(errno));
	if (r.pid == 0) {
		/* Not one poll more once the sender is gone, even by SIGKILL. */
		if (prctl(PR_SET_PDEATHSIG, SIGTERM) < 0 || getppid() != parent)
			exit(EXIT_BROKE);
		close(pfd[0]);
		report_fd = pfd[1];
		link_close(&l);  /* the connection and its TLS session are the sender's */
		if (in != out)
			null_fd(in);
		receiver(t, out);
	}
	close(pfd[1]);
	r.fd = pfd[0];
	peer = r.pid;
	stop_signals();
	/* The reader of out sees its end when the receiver closes it. */
	if (in != out)
		null_fd(out);
	sender(t, &l, in, &r);
	while (r.fd >= 0) {
		struct pollfd p = { r.fd, POLLIN, 0 };

		wait_local(&p, 1, 1);
		if (stopping)
			stop(t, &l);
		if (p.revents)
			reap(&r);
	}
	close_session(t, &l);
	if (r.status && r.whylen > 0)
		(void)!write(2, r.why, (size_t)r.whylen);
	exit(r.status);
}

/* ---- connect mode ---------------------------------------------------- */

static const struct relay_io tls_io = { tls_read, tls_write, tls_pending, tls_shutdown };

/* relay() speaks TLS on its client side, which is one socket here; a local
 * side of two descriptors (stdin, stdout) is joined into one socket by a
 * helper process running a plain relay. */
static const char *relay_split(struct link *l, int in, int out, struct relay_stats *st)
{
	int sp[2], status;
	pid_t pid;
	const char *why;

	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sp) < 0 || (pid = fork()) < 0)
		return strerror(errno);
	if (pid == 0) {
		struct relay_stats s = { 0, 0 };

		close(sp[0]);
		close(l->fd);  /* the TLS session is the parent's */
		exit(relay(in, out, sp[1], -1, NULL, &s) ? EXIT_BROKE : 0);
	}
	close(sp[1]);
	null_fd(in);
	null_fd(out);
	why = relay(l->fd, l->fd, sp[0], -1, &tls_io, st);
	if (why)
		kill(pid, SIGTERM);
	close(sp[0]);
	while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
		;
	return why;
}

static void __attribute__((noreturn)) tunnel_connect(struct tun *t, int in, int out)
{
	struct link l = { -1, 0 };
	struct relay_stats st = { 0, 0 };
	int fin = fcntl(in, F_GETFL), fout = fcntl(out, F_GETFL);
	const char *why;

	if (dial(t, &l) < 0 || send_connect(t, &l, t->target, t->auth, t->sname) < 0)
		die(EXIT_UNAVAILABLE, "%s", t->why);
	explicit_bzero(t->auth, sizeof t->auth);
	if (t->a.h.status / 100 != 2)
		refused(t, 1);
	/* Bytes the server sent right behind its answer are the target's. */
	if (t->a.blen && write_all(out, t->a.body, t->a.blen) < 0)
		die(EXIT_BROKE, "cannot write what came: %s", strerror(errno));
	if (!l.tls)
		why = relay(in, out, l.fd, -1, NULL, &st);
	else if (in == out)
		why = relay(l.fd, l.fd, in, -1, &tls_io, &st);
	else
		why = relay_split(&l, in, out, &st);
	/* relay() made them non-blocking; a terminal shared with a shell must
	 * not stay so. */
	fcntl(in, F_SETFL, fin);
	fcntl(out, F_SETFL, fout);
	if (why)
		die(EXIT_BROKE, "the tunnel through %s broke: %s", t->sname, why);
	exit(0);
}

/* ---- main ------------------------------------------------------------ */

static void __attribute__((noreturn)) tunnel_one(struct tun *t, int in, int out)
{
	if (resolve(t) < 0)
		die(EXIT_UNAVAILABLE, "%s", t->why);
	if (t->connect_mode)
		tunnel_connect(t, in, out);
	tunnel_http(t, in, out);
}

static void on_child(int sig)
{
	(void)sig;
}

/* --listen: one process per accepted connection, at most TUNNELS_MAX. */
static void __attribute__((noreturn)) serve_local(struct tun *t)
{
	struct sigaction sa = { 0 };
	char err[300], spec[32];
	int lfd, live = 0;

	/* A bare port is this machine's own (as ssh -L): an address widens it. */
	if (!strchr(t->listen, ':') && strlen(t->listen) < 8) {
		snprintf(spec, sizeof spec, "127.0.0.1:%s", t->listen);
		t->listen = spec;
	}
	lfd = net_listen(t->listen, err, sizeof err);
	if (lfd >= 0 && listen(lfd, 128) < 0) {
		snprintf(err, sizeof err, "%s: %s", t->listen, strerror(errno));
		close(lfd);
		lfd = -1;
	}
	if (lfd < 0)
		usage_error("--listen %s", err);
	sa.sa_handler = on_child;  /* no SA_RESTART: accept() returns to reap */
	sigaction(SIGCHLD, &sa, NULL);
	if (t->verbose)
		say("listening on %s", t->listen);
	for (;;) {
		pid_t pid;
		int c;

		while (waitpid(-1, NULL, WNOHANG) > 0)
			live--;
		if (live >= TUNNELS_MAX) {
			if (waitpid(-1, NULL, 0) > 0)
				live--;
			continue;
		}
		c = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
		if (c < 0) {
			if (errno != EINTR && errno != ECONNABORTED)
				sleep_ms(100);  /* out of descriptors: do not spin */
			continue;
		}
		pid = fork();
		if (pid == 0) {
			close(lfd);
			signal(SIGCHLD, SIG_DFL);
			tunnel_one(t, c, c);
		}
		if (pid < 0)
			say("fork: %s", strerror(errno));
		else
			live++;
		close(c);
	}
}

static const char usage[] =
	"Usage: tunnel [OPTION]... SERVER TARGET\n"
	"Carry one TCP stream to TARGET (host:port) through tunneld at SERVER\n"
	"(http[s]://host[:port][/path]): stdin/stdout, or each connection to --listen.\n"
	"\n"
	"  -m, --mode http|connect   GET/POST tunnel (default) or one plain CONNECT\n"
	"  -x, --proxy URL           reach SERVER through this HTTP proxy:\n"
	"                            http://[user:pass@]host[:port]\n"
	"  -u, --user NAME           authenticate to SERVER as NAME; the password comes\n"
	"                            from $TUNNEL_PASSWORD or --password-file, never argv\n"
	"      --password-file FILE  the password is the first line of FILE\n"
	"  -l, --listen [ADDR:]PORT  accept local connections and tunnel each one (a\n"
	"                            process each); default: stdin/stdout (ssh ProxyCommand)\n"
	"      --cacert FILE         CA bundle (PEM) to verify an https:// SERVER\n"
	"  -v, --verbose             log each request to stderr\n"
	"  -V, --version             print the version and exit\n"
	"  -h, --help                print this help and exit\n"
	"\n"
	"Exit status: 0 the stream ended, 1 the tunnel broke, 64 bad usage, 69 SERVER,\n"
	"the proxy or the target unreachable, 76 not the tunnel protocol, 77 refused\n"
	"(401, 403, 407).\n";

int main(int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "mode", required_argument, 0, 'm' },
		{ "proxy", required_argument, 0, 'x' },
		{ "user", required_argument, 0, 'u' },
		{ "password-file", required_argument, 0, 1 },
		{ "listen", required_argument, 0, 'l' },
		{ "cacert", required_argument, 0, 2 },
		{ "verbose", no_argument, 0, 'v' },
		{ "version", no_argument, 0, 'V' },
		{ "help", no_argument, 0, 'h' },
		{ 0, 0, 0, 0 }
	};
	static struct tun tun;
	struct tun *t = &tun;
	const char *pwfile = NULL, *cacert = NULL;
	char *proxy = NULL;
	char err[300];
	struct request r;
	int ch;

	signal(SIGPIPE, SIG_IGN);
	opterr = 0;
	while ((ch = getopt_long(argc, argv, ":m:x:u:l:vVh", longopts, NULL)) != -1) {
		switch (ch) {
		case 'm':
			if (strcmp(optarg, "http") && strcmp(optarg, "connect"))
				usage_error("--mode: '%s' is not http or connect", optarg);
			t->connect_mode = !strcmp(optarg, "connect");
			break;
		case 'x': proxy = optarg; break;
		case 'u': t->user = optarg; break;
		case 1: pwfile = optarg; break;
		case 'l': t->listen = optarg; break;
		case 2: cacert = optarg; break;
		case 'v': t->verbose = 1; break;
		case 'V':
			printf("tunnel %s (%ctls %cipv6)\n", VERSION, CONFIG_TLS ? '+' : '-',
			       CONFIG_IPV6 ? '+' : '-');
			return 0;
		case 'h': fputs(usage, stdout); return 0;
		case ':': usage_error("%s needs a value", argv[optind - 1]);
		default: usage_error("unknown option '%s'", argv[optind - 1]);
		}
	}
	if (argc - optind != 2)
		usage_error("%s", argc - optind < 2 ? "SERVER and TARGET are needed" :
			    "only SERVER and TARGET follow the options");
	parse_url("SERVER", argv[optind], &t->server, 0);
	t->target = argv[optind + 1];
	if (strlen(t->target) > HOST_MAX + 8 || http_parse_target(t->target, strlen(t->target), &r))
		usage_error("TARGET: '%s' is not host:port (a name, an IPv4 address or [IPv6])",
			    t->target);
	if (proxy) {
		char *at = strrchr(proxy, '@'), *p = strstr(proxy, "://");

		parse_url("--proxy", proxy, &t->proxy, 1);
		/* The password no longer shows in ps (it did until now). */
		for (p = at && p ? p + 3 : at; p && p < at; p++)
			*p = '*';
	}
	if (snprintf(t->sname, sizeof t->sname, "server %s", t->server.authority) >= (int)sizeof t->sname ||
	    snprintf(t->pname, sizeof t->pname, "proxy %s", t->proxy.authority) >= (int)sizeof t->pname)
		usage_error("%s", "a host name too long");
	if (t->server.tls && !CONFIG_TLS)
		usage_error("SERVER: https:// but this tunnel was built without TLS");
	if (t->server.tls && !cacert)
		usage_error("SERVER: https:// needs --cacert FILE (no unverified TLS)");
	if (cacert && !t->server.tls)
		usage_error("--cacert is for an https:// SERVER");
	if (pwfile && !t->user)
		usage_error("--password-file goes with --user");
	if (t->user)
		server_credentials(t, pwfile);
	if (t->server.tls && tls_client_init(cacert, err, sizeof err) < 0)
		usage_error("--cacert %s", err);
	if (t->listen)
		serve_local(t);
	tunnel_one(t, 0, 1);
}
