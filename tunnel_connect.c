/* tunnel: the connection to SERVER, and connect mode.
 *
 * A link is one HTTP connection to SERVER: TCP to the first hop (the proxy,
 * or SERVER), a CONNECT at the proxy when the bytes must pass it unread
 * (https://, or connect mode), then TLS for https://. Answers are read by
 * their Content-Length into one fixed buffer with http.c's parser; every
 * wait on the network has a deadline. */
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "config.h"
#include "relay.h"
#include "tls.h"
#include "tunnel.h"
#include "version.h"

int lwrite(struct link *l, const char *buf, size_t len, long long deadline)
{
	while (len) {
		ssize_t n = l->tls ? tls_write(l->fd, buf, len)
				   : send(l->fd, buf, len, MSG_NOSIGNAL | MSG_DONTWAIT);

		if (n > 0) {
			buf += n;
			len -= (size_t)n;
		} else if (n < 0 && errno != EAGAIN && errno != EINTR) {
			return -1;
		} else if (net_wait(l->fd, POLLOUT, deadline) < 0) {
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
		if (!(l->tls && tls_pending()) && net_wait(l->fd, POLLIN, deadline) < 0)
			return -1;
		n = l->tls ? tls_read(l->fd, buf, len) : recv(l->fd, buf, len, MSG_DONTWAIT);
		if (n >= 0 || (errno != EAGAIN && errno != EINTR))
			return n;
	}
}

void link_close(struct link *l)
{
	if (l->tls)
		tls_close();
	if (l->fd >= 0)
		close(l->fd);
	l->fd = -1;
	l->tls = 0;
}

/* The failure of a request that got no (whole) answer, into t->why. */
int lost(struct tun *t, struct link *l, const char *who, ssize_t n)
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
int read_answer(struct tun *t, struct link *l, long long deadline, int head_only,
		       const char *who)
{
	struct answer *a = &t->a;
	size_t len = 0, hl;
	ssize_t n;

	for (;;) {
		while (!(hl = http_head_end(a->buf, len))) {
			if (len == HEAD_MAX)
				die(EX_PROTOCOL, "%s answered a head over %d bytes", who, HEAD_MAX);
			n = lread(l, a->buf + len, HEAD_MAX - len, deadline);
			if (n <= 0)
				return lost(t, l, who, n);
			len += (size_t)n;
			if (http_not_reply(a->buf, len))
				die(EX_PROTOCOL, "%s answered something that is not HTTP/1", who);
		}
		if (http_parse_reply(a->buf, hl, &a->h) < 0)
			die(EX_PROTOCOL, "%s answered something that is not HTTP/1", who);
		if (a->h.status >= 200 || a->h.status == 101)
			break;
		memmove(a->buf, a->buf + hl, len - hl);  /* an interim 1xx: skipped */
		len -= hl;
	}
	a->body = a->buf + hl;
	a->blen = len - hl;
	if (head_only)
		return 0;
	if (a->h.chunked || a->h.clen < 0 || a->h.clen > HTTP_ANSWER_MAX) {
		if (a->h.status == 200)
			die(EX_PROTOCOL, "%s answered 200 without a Content-Length of at most %d",
			    who, HTTP_ANSWER_MAX);
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
int __attribute__((format(printf, 4, 5))) add(char *buf, size_t cap, size_t *len,
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
		die(EX_USAGE, "a request head over %d bytes", REQ_MAX);
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
		die(EX_NOPERM, "%s answered %s", t->pname, a->h.line);
	if (a->h.status == 403)
		die(EX_NOPERM, "%s refused CONNECT %s: %s", t->pname, t->server.authority, a->h.line);
	if (a->h.status / 100 != 2) {
		snprintf(t->why, sizeof t->why, "%s answered %s to CONNECT %s", t->pname, a->h.line,
			 t->server.authority);
		link_close(l);
		return -1;
	}
	if (a->blen)
		die(EX_PROTOCOL, "%s sent bytes of its own after its answer to CONNECT", t->pname);
	return 0;
}

/* The first hop's addresses: the proxy's, or SERVER's. 0, or -1 with t->why. */
int resolve(struct tun *t)
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
	for (ai = res; ai && t->naddr < RACE_MAX; ai = ai->ai_next) {
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
int dial(struct tun *t, struct link *l)
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

/* An answer that ends the tunnel (open: the first, or connect mode's). */
void __attribute__((noreturn)) refused(const struct tun *t, int open)
{
	const struct answer *a = &t->a;
	int st = a->h.status;
	/* Through a plain proxy, an answer without a Tunnel- field may be the
	 * proxy's own. */
	const char *who = t->proxy.port && !t->server.tls && !t->connect_mode && !a->h.tunnel
			  ? "server or proxy" : "server";

	if (st == 407 && t->proxy.port && !t->server.tls && !t->connect_mode)
		die(EX_NOPERM, "%s answered %s", t->pname, a->h.line);
	if ((st == 401 || st == 407) && t->user)
		die(EX_NOPERM, "server refused the credentials of %s: %s", t->user, a->h.line);
	if (st == 401 || st == 407)
		die(EX_NOPERM, "server wants credentials (--user): %s", a->h.line);
	if (st == 403)
		die(EX_NOPERM, "%s refused the target: %s", who, a->h.line);
	if (open && st == 503)
		die(EX_UNAVAILABLE, "%s answered %s", who, a->h.line);
	if (open && (st == 502 || st == 504))
		die(EX_UNAVAILABLE, "%s could not reach the target: %s", who, a->h.line);
	if (!open && st == 404)
		die(EXIT_BROKE, "the server ended the session: %s", a->h.line);
	if (!open && st == 410)
		die(EXIT_BROKE, "the target's connection failed: %s", a->h.line);
	if (!open && st >= 500)
		die(EXIT_BROKE, "%s answered %s", who, a->h.line);
	if (open && !t->connect_mode && (st == 404 || st == 405))
		die(EX_PROTOCOL, "%s has no tunnel endpoint at %s: %s", who, t->server.path, a->h.line);
	die(EX_PROTOCOL, "%s answered %s: not the tunnel protocol", who, a->h.line);
}

/* Connect mode: one CONNECT TARGET to SERVER, then relay() both ways. */
void __attribute__((noreturn)) tunnel_connect(struct tun *t, int in, int out)
{
	struct link l = { -1, 0 };
	struct relay_stats st = { 0, 0 };
	int fin = fcntl(in, F_GETFL), fout = fcntl(out, F_GETFL);
	const char *why;

	if (dial(t, &l) < 0 || send_connect(t, &l, t->target, t->auth, t->sname) < 0)
		die(EX_UNAVAILABLE, "%s", t->why);
	explicit_bzero(t->auth, sizeof t->auth);
	if (t->a.h.status / 100 != 2)
		refused(t, 1);
	/* Bytes the server sent right behind its answer are the target's. */
	if (t->a.blen && net_write_all(out, t->a.body, t->a.blen, NULL, -1) < 0)
		die(EXIT_BROKE, "cannot write what came: %s", strerror(errno));
	why = relay(&(struct relay_side){ in, out, NULL },
		    &(struct relay_side){ l.fd, l.fd, l.tls ? tls_relay_io() : NULL }, -1, &st);
	/* relay() made them non-blocking; a terminal shared with a shell must
	 * not stay so. */
	fcntl(in, F_SETFL, fin);
	fcntl(out, F_SETFL, fout);
	if (why)
		die(EXIT_BROKE, "the tunnel through %s broke: %s", t->sname, why);
	exit(0);
}
