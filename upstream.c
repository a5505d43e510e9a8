/* An upstream proxy (--upstream): tunnels opened through another proxy's
 * CONNECT instead of tunneld's own connect. Its URL, its credentials file,
 * and one CONNECT with every step under one deadline; what it answers is
 * mapped to tunneld's own answers (its 407 is not the client's: 502). */
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "dns.h"
#include "file.h"
#include "fmt.h"
#include "log.h"
#include "relay.h"
#include "tls.h"
#include "upstream.h"

int upstream_url(struct upstream *u, const char *url, char *err, size_t errlen)
{
	struct request r;
	const char *p;
	size_t n;

	/* Before anything is echoed: the part before '@' may be a password. */
	if (strchr(url, '@')) {
		strfmt(err, errlen, "--upstream: no user:password@ in the URL (the command line is "
		       "every local user's to read): put user:password in a file for --upstream-auth");
		return -1;
	}
	if (!strncasecmp(url, "http://", 7)) {
		p = url + 7;
		u->tls = 0;
	} else if (!strncasecmp(url, "https://", 8)) {
		p = url + 8;
		u->tls = 1;
	} else {
		strfmt(err, errlen, "--upstream: '%s' is not an http:// or https:// URL", url);
		return -1;
	}
	n = strlen(p);
	n -= n && p[n - 1] == '/';
	if (http_parse_target(p, n, &r)) {
		strfmt(err, errlen, "--upstream: '%s' is not http[s]://host:port (a name, an IPv4 "
		       "address or [IPv6], and the port: there is no default)", url);
		return -1;
	}
	memcpy(u->host, r.host, sizeof u->host);
	u->port = r.port;
	u->literal = r.literal;
	return 0;
}

int upstream_auth_load(struct upstream *u, const char *path, char *err, size_t errlen)
{
	char buf[UPSTREAM_CRED_MAX + 2];  /* and a CRLF */
	ssize_t n = file_read(path, 0, buf, sizeof buf, err, errlen);
	const char *colon;
	int r = -1;

	if (n < 0)
		return -1;
	n -= n && buf[n - 1] == '\n';
	n -= n && buf[n - 1] == '\r';
	colon = memchr(buf, ':', (size_t)n);
	if (memchr(buf, '\n', (size_t)n))
		strfmt(err, errlen, "%s:2: one line only, user:password", path);
	else if (!colon || colon == buf)
		strfmt(err, errlen, "%s:1: not user:password", path);
	else if (http_basic(buf, (size_t)(colon - buf), colon + 1, (size_t)(buf + n - colon - 1),
			    u->token, sizeof u->token) < 0)
		strfmt(err, errlen, "%s:1: a control character, or longer than %d bytes", path,
		       UPSTREAM_CRED_MAX - 1);
	else
		r = 0;
	explicit_bzero(buf, sizeof buf);
	return r;
}

/* No tunnel: the socket closed, the answer and reason for tunneld's client. */
static int fail(struct upstream_conn *uc, int status, const char *reason)
{
	if (uc->fd >= 0)
		close(uc->fd);
	uc->fd = -1;
	uc->status = status;
	uc->reason = reason;
	return -1;
}

/* The upstream's addresses, raced: 0 with uc->fd, or -1. */
static int dial(const struct upstream *u, long long deadline,
		int (*allow)(void *arg, const struct endpoint *ep), void *arg,
		struct upstream_conn *uc)
{
	struct race r = { .n = 1 };
	int tried = 0;

	if (u->literal) {
		if (net_literal(u->host, &r.ep[0]) < 0)
			return fail(uc, 502, "upstream-bad-address");
	} else {
		r.n = dns_resolve(u->host, r.ep, RACE_MAX, deadline);
		if (r.n < 0)
			return fail(uc, r.n == DNS_TIMEOUT ? 504 : 502,
				    r.n == DNS_TIMEOUT ? "upstream-dns-timeout" : "upstream-dns-failure");
	}
	for (int i = 0; i < r.n; i++)
		r.ep[i].port = u->port;
	uc->fd = net_race(&r, deadline, allow, arg);
	if (uc->fd >= 0) {
		uc->ep = r.ep[r.won];
		return 0;
	}
	for (int i = 0; i < r.n; i++)
		if (r.err[i] >= 0) {
			uc->ep = r.ep[i];
			tried = 1;
		}
	if (!tried)
		return fail(uc, 502, "upstream-loop");  /* the upstream is this tunneld */
	return fail(uc, errno == ETIMEDOUT ? 504 : 502,
		    errno == ETIMEDOUT ? "upstream-connect-timeout" : "upstream-connect-failed");
}

/* Read the upstream's answer head into buf (cap bytes): its length, with
 * *len the bytes read in all; or -1 after fail(). */
static ssize_t read_answer(struct upstream_conn *uc, char *buf, size_t cap, size_t *len,
			   long long deadline)
{
	size_t head;

	*len = 0;
	while (!(head = http_head_end(buf, *len))) {
		ssize_t n;

		if (*len == cap)
			return fail(uc, 502, "upstream-answer-too-large");
		/* What the TLS library holds, poll() cannot see. */
		if (!(uc->io && uc->io->pending()) && net_wait(uc->fd, POLLIN, deadline) < 0)
			return fail(uc, errno == ETIMEDOUT ? 504 : 502,
				    errno == ETIMEDOUT ? "upstream-timeout" : "upstream-error");
		n = uc->io ? uc->io->read(uc->fd, buf + *len, cap - *len) : read(uc->fd, buf + *len, cap - *len);
		if (n < 0 && (errno == EAGAIN || errno == EINTR))
			continue;
		if (n <= 0)
			return fail(uc, 502, "upstream-closed");
		*len += (size_t)n;
		if (http_not_reply(buf, *len))
			return fail(uc, 502, "upstream-bad-answer");
	}
	return (ssize_t)head;
}

/* The upstream's refusal as tunneld's answer. Its 407 asks tunneld for
 * credentials, not the client: a fault of this proxy's (502). Its 403 is
 * a policy's refusal of this target, which is what tunneld's own 403
 * says; its 504, the target's time ran out. Anything else: the target
 * could not be had (502). */
static int refused(struct upstream_conn *uc, int status)
{
	if (status == 407)
		return fail(uc, 502, "upstream-auth");
	if (status == 403)
		return fail(uc, 403, "upstream-denied");
	if (status == 504)
		return fail(uc, 504, "upstream-timeout");
	return fail(uc, 502, "upstream-refused");
}

int upstream_open(const struct upstream *u, const char *host, unsigned port, long long deadline,
		  int (*allow)(void *arg, const struct endpoint *ep), void *arg,
		  struct upstream_conn *uc)
{
	/* Static: one tunnel per process, and the early bytes live on in it. */
	static char buf[UPSTREAM_HEAD_MAX];
	const char *lb = strchr(host, ':') ? "[" : "", *rb = *lb ? "]" : "";
	char req[HOST_MAX * 2 + UPSTREAM_TOKEN_MAX + 128], err[200];
	struct reply rep;
	size_t len;
	ssize_t head;
	int n;

	memset(uc, 0, sizeof *uc);
	uc->fd = -1;
	if (dial(u, deadline, allow, arg, uc) < 0)
		return -1;
	/* The request goes out in one write: no Nagle wait on its last bytes. */
	setsockopt(uc->fd, IPPROTO_TCP, TCP_NODELAY, &(int){ 1 }, sizeof(int));
	if (CONFIG_TLS && u->tls) {
		long long left = deadline - now_ms();

		if (left <= 0 || tls_up_connect(uc->fd, u->host, (int)left, err, sizeof err) < 0) {
			logmsg(LOG_WARNING, "upstream %s: TLS: %s", u->host,
			       left > 0 ? err : "no time left");
			return fail(uc, now_ms() >= deadline ? 504 : 502, "upstream-tls");
		}
		uc->io = tls_up_relay_io();
	}
	/* Exactly "Basic": some proxies refuse the scheme in another case. */
	n = strfmt(req, sizeof req, "CONNECT %s%s%s:%u HTTP/1.1\r\nHost: %s%s%s:%u\r\n%s%s%s\r\n",
		   lb, host, rb, port, lb, host, rb, port,
		   u->token[0] ? "Proxy-Authorization: Basic " : "", u->token,
		   u->token[0] ? "\r\n" : "");
	if (n >= (int)sizeof req)
		return fail(uc, 500, "upstream-request-too-large");
	if (net_write_all(uc->fd, req, (size_t)n, uc->io ? uc->io->write : NULL, deadline) < 0) {
		explicit_bzero(req, sizeof req);
		return fail(uc, errno == ETIMEDOUT ? 504 : 502, "upstream-error");
	}
	explicit_bzero(req, sizeof req);
	if ((head = read_answer(uc, buf, sizeof buf, &len, deadline)) < 0)
		return -1;
	if (http_parse_reply(buf, (size_t)head, &rep) < 0)
		return fail(uc, 502, "upstream-bad-answer");
	/* Any 2xx makes the tunnel (RFC 9110 §9.3.6); its Content-Length or
	 * Transfer-Encoding means nothing (RFC 9112 §6.3). */
	if (rep.status / 100 != 2) {
		logmsg(LOG_NOTICE, "upstream %s answered CONNECT %s%s%s:%u: %s", u->host, lb, host, rb,
		       port, rep.line);
		return refused(uc, rep.status);
	}
	uc->early = buf + head;
	uc->elen = len - (size_t)head;
	return 0;
}
