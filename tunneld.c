/* tunneld: an HTTP CONNECT proxy, one process per connection.
 *
 * The story of a connection, top to bottom in serve(): the client socket is
 * fd 0/1 (inetd, systemd Accept=yes, or our own --listen after fork) -> read
 * the head into a fixed buffer -> parse -> resolve -> for each address: loop
 * check, rules, connect -> 200 -> forward what the client sent early ->
 * relay -> one log line -> exit. Every refusal goes through reply_and_exit(). */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "acl.h"
#include "auth.h"
#include "config.h"
#include "dns.h"
#include "file.h"
#include "fmt.h"
#include "http.h"
#include "log.h"
#include "net.h"
#include "opt.h"
#include "proxyproto.h"
#include "relay.h"
#include "sandbox.h"
#include "session.h"
#include "sni.h"
#include "spare.h"
#include "spawn.h"
#include "tls.h"
#include "upstream.h"
#include "user.h"

#include "version.h"

#define EXIT_USAGE 64
#define EXIT_CONFIG 78
#define LISTEN_MAX 16
#define TRUST_MAX 16  /* --proxy-protocol CIDRs */

struct opts {
	const char *listen[LISTEN_MAX];
	int nlisten;
	const char *acl_path, *users_path, *realm;
	const char *cert, *key;
	struct acl *acl;                 /* the rules, read once or per connection */
	struct auth *auth;               /* NULL: no authentication */
	const char *user;
	const char *tunnel_path;         /* --http-tunnel, or NULL */
	const char *node;                /* --node: its session tokens' prefix, or "" */
	int connect_timeout, header_timeout, idle_timeout, max_conns, session_timeout;
	int max_sessions, max_client;    /* GET/POST tunnel sessions at once */
	enum log_sink log;
	int verbose;
	unsigned own_ports[LISTEN_MAX];  /* for the loop check */
	int nown;                        /* 0: inetd mode */
	char scope[24];                  /* this tunneld among others of its user */
	int ntrust;                      /* --proxy-protocol's list, in trusted[] */
	struct upstream *up;             /* --upstream, or NULL */
	const char *up_auth, *up_cacert; /* --upstream-auth, --upstream-cacert */
	const char *ticket_key;          /* --ticket-key, or NULL */
	int ticket_lifetime;             /* --ticket-lifetime, seconds */
	int spares;                      /* --spares */
};

/* Who may send a PROXY header: apart from struct opts, whose initialised
 * copy would carry it in a build without the feature. */
static struct acl_item trusted[CONFIG_PROXY_PROTOCOL ? TRUST_MAX : 1];

struct conn {
	const struct opts *o;
	struct endpoint client, local, target;
	struct endpoint via, front;  /* a PROXY header's sender, and where its
					client connected (port 0: none) */
	struct request req;
	int parsed;             /* req holds a valid target */
	int answered;           /* 200 sent: no status can reach the client now */
	int tls;                /* the client speaks TLS to us */
	int tunnel;             /* a GET/POST tunnel request, not a CONNECT */
	int kept;               /* a kept-alive connection handed over (spawn.h) */
	int via_up;             /* the tunnel goes through the upstream proxy */
	const struct relay_io *tio;  /* the target's side: NULL plain, or TLS to the upstream */
	const char *early;      /* the target's bytes that came with the upstream's 200 */
	size_t elen;
	char logname[AUTH_LOGNAME_MAX];  /* the user name sent, escaped */
	int status;
	const char *reason;
	struct relay_stats st;
	long long start;
	size_t len, head;       /* bytes in buf; of which the head */
	char buf[CONFIG_HEADER_MAX];  /* last: a short request touches one page */
};

/* This process's one connection; page-aligned, so that its fields and a
 * short request share one page. */
static struct conn conn __attribute__((aligned(4096)));

static void log_conn(const struct conn *c)
{
	char cl[ADDRSTR_MAX], ad[ADDRSTR_MAX], vi[ADDRSTR_MAX + 6] = "", tg[HOST_MAX + 16] = "-";

	if (c->parsed)
		strfmt(tg, sizeof tg, strchr(c->req.host, ':') ? "[%s]:%u" : "%s:%u",
			 c->req.host, c->req.port);
	if (CONFIG_PROXY_PROTOCOL && c->via.ip.family)
		strfmt(vi, sizeof vi, " peer=%s", ep_str(&c->via, ad));
	logmsg(c->status == 200 ? LOG_INFO : LOG_NOTICE,
	       "client=%s%s user=%s target=%s addr=%s status=%d up=%llu down=%llu ms=%lld%s%s%s%s",
	       ep_str(&c->client, cl), vi, c->logname[0] ? c->logname : "-", tg, ep_str(&c->target, ad), c->status,
	       c->st.up, c->st.down, now_ms() - c->start,
	       c->reason ? " reason=" : "", c->reason ? c->reason : "",
	       c->via_up ? " via=upstream" : "",
	       !c->tls ? "" : tls_resumed() ? " tls=resumed" : " tls=full");
}

static int client_write(const struct conn *c, const char *buf, size_t len)
{
	return net_write_all(1, buf, len, CONFIG_TLS && c->tls ? tls_write : NULL, now_ms() + 5000);
}

/* Read what the client sent into buf, waiting until deadline. Returns the
 * count, 0 at its end, -1 on an error, -2 when the time ran out. */
static ssize_t client_read(const struct conn *c, char *buf, size_t len, long long deadline)
{
	for (;;) {
		ssize_t n;

		/* What the TLS library already holds, poll() cannot see. */
		if (!(CONFIG_TLS && c->tls && tls_pending()) && net_wait(0, POLLIN, deadline) < 0)
			return errno == ETIMEDOUT ? -2 : -1;
		n = CONFIG_TLS && c->tls ? tls_read(0, buf, len) : read(0, buf, len);
		if (n >= 0 || (errno != EINTR && errno != EAGAIN))
			return n < 0 ? -1 : n;
	}
}

/* The terminal path: answer (unless the tunnel was already answered), log
 * once, exit. A lingering close lets the client read the answer even if
 * it is still sending: closing with unread input would reset it. */
static void __attribute__((noreturn)) reply_and_exit(struct conn *c, int status,
						     const char *reason, int code)
{
	/* A tunnel request authenticates to tunneld as a server, not a proxy. */
	if (c->tunnel && status == 407)
		status = 401;
	c->status = status;
	c->reason = reason;
	log_conn(c);
	if (status && !c->answered) {
		char msg[768], extra[300] = "";
		size_t n;

		if (status == 405)
			strcpy(extra, c->o->tunnel_path ? "Allow: CONNECT, GET, POST, DELETE\r\n"
							: "Allow: CONNECT\r\n");
		if (status == 407 || status == 401)
			strfmt(extra, sizeof extra, "%s-Authenticate: Basic realm=\"%s\", "
				 "charset=\"UTF-8\"\r\n", status == 401 ? "WWW" : "Proxy", c->o->realm);
		if (c->tunnel)
			strcat(extra, "Cache-Control: no-store\r\n");
		n = http_answer(msg, sizeof msg, status, reason, extra, 0, 1);
		if (n && client_write(c, msg, n) == 0) {
			long long deadline = now_ms() + 2000;
			ssize_t r = 1;

			if (CONFIG_TLS && c->tls)
				tls_shutdown();
			shutdown(1, SHUT_WR);
			for (int drained = 0; drained < 65536 && r > 0; drained += (int)r)
				r = client_read(c, c->buf, sizeof c->buf, deadline);
		}
	}
	exit(code);
}

/* The tunnel is open: exactly this, no other header (RFC 9110 §9.3.6). */
static void answer_200(struct conn *c)
{
	static const char ok[] = "HTTP/1.1 200 Connection established\r\n\r\n";

	if (client_write(c, ok, sizeof ok - 1) < 0)
		reply_and_exit(c, 0, "client-error", 0);
	c->answered = 1;
}

/* A PROXY header where a request should be: from a peer --proxy-protocol
 * does not name (or a second one), a forgery to refuse. */
static int untrusted_header(const struct conn *c)
{
	return CONFIG_PROXY_PROTOCOL && c->len >= 6 && proxy_looks((unsigned char *)c->buf, c->len);
}

/* Read until the head is complete: 431 when it does not fit, 408 when it
 * is not all there within the header timeout, 400 as soon as it cannot be
 * a request (a TLS client on a plain port gets its answer at once). */
static void read_head(struct conn *c)
{
	long long deadline = c->start + c->o->header_timeout * 1000LL;

	while (!(c->head = http_head_end(c->buf, c->len))) {
		ssize_t n;

		if (c->len == sizeof c->buf)
			reply_and_exit(c, 431, "header-too-large", 0);
		n = client_read(c, c->buf + c->len, sizeof c->buf - c->len, deadline);
		/* A kept-alive connection may end, or stay quiet, between
		 * requests: no answer, nothing to log. */
		if (n <= 0 && c->kept && !c->len)
			exit(0);
		if (n == -2)
			reply_and_exit(c, 408, "header-timeout", 0);
		if (n <= 0)
			reply_and_exit(c, 0, n ? "client-error" : "client-closed", 0);
		c->len += (size_t)n;
		if (http_not_request(c->buf, c->len))
			reply_and_exit(c, 400, c->buf[0] == 0x16 ? "tls-on-plain-port" :
				       untrusted_header(c) ? "proxy-header-untrusted" : "bad-request", 0);
	}
	if (untrusted_header(c))
		reply_and_exit(c, 400, "proxy-header-untrusted", 0);
}

/* --proxy-protocol: from a peer it names, a PROXY header comes first (before
 * a ClientHello too) and says who the client is; without one, or with a bad
 * one, the connection is closed unanswered, as the protocol's text demands
 * (the sender then sees and logs it; an HTTP answer would reach no client).
 * From anyone else a header is a bad request (read_head). */
static void take_proxy_header(struct conn *c)
{
	const struct opts *o = c->o;
	struct proxy_hdr h;
	int i, r;

	for (i = 0; i < o->ntrust && !acl_cidr_match(&trusted[i], &c->client.ip); i++)
		;
	if (i == o->ntrust)
		return;
	r = proxy_read(0, (unsigned char *)c->buf, sizeof c->buf,
		       c->start + o->header_timeout * 1000LL, &h);
	if (r < 0)
		reply_and_exit(c, 0, r == -2 ? "proxy-header-timeout" : r == -3 ? "proxy-header-missing" :
			       "proxy-header-bad", 0);
	c->via = c->client;
	if (!h.local) {
		c->client = h.src;
		c->front = h.dst;
	}
}

/* For a rule that tests "tls" or "tls-sni": answer 200 before connecting,
 * then read the client's first bytes (its ClientHello) into the buffer after
 * the head. From here on a refusal can only close the connection. */
static void read_hello(struct conn *c, struct acl_query *q)
{
	long long deadline = now_ms() + c->o->header_timeout * 1000LL;
	char sni[HOST_MAX + 2];
	int r;

	answer_200(c);
	while ((r = tls_hello_sni((unsigned char *)c->buf + c->head, c->len - c->head,
				  sni, sizeof sni)) == 0 && c->len < sizeof c->buf) {
		ssize_t n = client_read(c, c->buf + c->len, sizeof c->buf - c->len, deadline);

		if (n == -1)
			reply_and_exit(c, 0, "client-error", 0);
		if (n <= 0)
			break;  /* the end, or no more in time: judge what came */
		c->len += (size_t)n;
	}
	q->tls = r == 1;  /* a whole ClientHello record, nothing less */
	if (q->tls && sni[0]) {
		size_t a = strlen(sni), b = strlen(c->req.host);

		a -= a && sni[a - 1] == '.';
		b -= b && c->req.host[b - 1] == '.';
		q->sni_match = a == b && !strncasecmp(sni, c->req.host, a);
	}
	logmsg(LOG_DEBUG, "first bytes: tls=%d sni=%s", q->tls, sni[0] ? sni : "-");
}

/* A target on one of our own ports at an address of this host would
 * connect the proxy to itself. */
static int is_loop(const struct conn *c, const struct endpoint *ep)
{
	/* Behind a PROXY sender, the address its client reached leads back
	 * here too, and a local one on that port as well. */
	if (CONFIG_PROXY_PROTOCOL && c->front.port && ep->port == c->front.port &&
	    ((ep->ip.family == c->front.ip.family && !memcmp(ep->ip.a, c->front.ip.a, 16)) ||
	     (net_is_local(&c->front) && net_is_local(ep))))
		return 1;
	for (int i = 0; i < c->o->nown; i++)
		if (ep->port == c->o->own_ports[i])
			return net_is_local(ep);
	return ep->port == c->local.port && net_is_local(ep);
}

/* The target's addresses into r, ports aside: the literal, or what the
 * resolver (dns.c) finds before the deadline. Its failure ends the
 * connection, unless soft: then it is returned (r->n 0). */
/* The answer to a name that gave no address (n: a DNS_* of dns.h). */
static void __attribute__((noreturn)) dns_refusal(struct conn *c, int n)
{
	if (n == DNS_TIMEOUT)
		reply_and_exit(c, 504, "dns-timeout", 0);
	reply_and_exit(c, 502, n == DNS_NXDOMAIN ? "dns-no-such-name" :
			       n == DNS_NODATA ? "dns-no-address" : "dns-failure", 0);
}

static int resolve(struct conn *c, struct race *r, long long deadline, int soft)
{
	int n;

	if (c->req.literal) {
		if (net_literal(c->req.host, &r->ep[0]) < 0)
			reply_and_exit(c, 400, "bad-request", 0);
		r->n = 1;
		return 0;
	}
	n = dns_resolve(c->req.host, r->ep, RACE_MAX, deadline);
	if (n < 0 && soft) {
		r->n = 0;
		return n;
	}
	if (n < 0)
		dns_refusal(c, n);
	r->n = n;
	return 0;
}

/* What open_target() checks before each connect attempt, and counts. */
struct pick {
	struct conn *c;
	struct acl_query *q;
	int tried, loop;
};

/* The rules' verdict on the target at address ep (NULL: by its name
 * alone), the client's first bytes read when a rule asks for them. */
static int verdict_on(struct conn *c, struct acl_query *q, const struct endpoint *ep)
{
	char s[ADDRSTR_MAX];
	int line, verdict;

	q->addr = ep ? &ep->ip : NULL;
	verdict = acl_check(c->o->acl, q, &line);
	if (verdict == ACL_NEED_HELLO) {
		read_hello(c, q);
		verdict = acl_check(c->o->acl, q, &line);
	}
	if (ACL_VERDICT(verdict) != ACL_ALLOW)
		logmsg(LOG_DEBUG, "%s denied by rule at line %d", ep ? ep_str(ep, s) : q->host, line);
	return verdict;
}

/* The loop check and the rules, before an attempt starts: an address they
 * deny is never connected to; with an upstream, neither is one whose rule
 * does not say "via direct". */
static int pick_addr(void *arg, const struct endpoint *ep)
{
	struct pick *pk = arg;
	char s[ADDRSTR_MAX];
	int verdict;

	if (is_loop(pk->c, ep)) {
		pk->loop = 1;
		return 0;
	}
	verdict = verdict_on(pk->c, pk->q, ep);
	if (ACL_VERDICT(verdict) != ACL_ALLOW ||
	    (CONFIG_UPSTREAM && pk->c->o->up && !(verdict & ACL_VIA_DIRECT)))
		return 0;
	logmsg(LOG_DEBUG, "%s: connecting", ep_str(ep, s));
	pk->tried++;
	return 1;
}

/* Race the addresses in r, ports set, that pk's checks allow. */
static int race_target(struct conn *c, struct race *r, long long deadline, struct pick *pk)
{
	char s[ADDRSTR_MAX];
	int fd, err, unroutable = 1;

	fd = net_race(r, deadline, pick_addr, pk);
	err = errno;
	c->target = r->ep[0];
	for (int i = 0; i < r->n; i++) {
		if (r->err[i] < 0)
			continue;
		c->target = r->ep[i];  /* the last one tried, unless one won */
		unroutable &= r->err[i] == ENETUNREACH || r->err[i] == EHOSTUNREACH;
		logmsg(LOG_DEBUG, "%s: %s", ep_str(&r->ep[i], s),
		       r->err[i] ? strerror(r->err[i]) : "connected");
	}
	if (fd >= 0) {
		c->target = r->ep[r->won];
		return fd;
	}
	if (err == ETIMEDOUT)
		reply_and_exit(c, 504, "connect-timeout", 0);
	if (!pk->tried)
		reply_and_exit(c, 403, pk->loop ? "loop" : "denied", 0);
	reply_and_exit(c, 502, unroutable ? "connect-unreachable" : "connect-failed", 0);
}

/* The upstream's addresses pass the loop check only: the rules are for
 * the client's targets, the upstream is the administrator's. */
static int up_allow(void *arg, const struct endpoint *ep)
{
	return !is_loop(arg, ep);
}

/* CONNECT through the upstream, with a deadline of its own. */
static int through_upstream(struct conn *c)
{
	long long deadline = now_ms() + c->o->connect_timeout * 1000LL;
	struct upstream_conn uc;

	c->via_up = 1;
	if (upstream_open(c->o->up, c->req.host, c->req.port, deadline, up_allow, c, &uc) < 0) {
		c->target = uc.ep;
		reply_and_exit(c, uc.status, uc.reason, 0);
	}
	c->target = uc.ep;
	c->tio = uc.io;
	c->early = uc.early;
	c->elen = uc.elen;
	return uc.fd;
}

/* With an upstream the rules decide first: on each address the name has
 * here, or on the name alone when it has none here (a company network's
 * resolver may know no outside name). The first address allowed, in the
 * resolver's order, says the way: "via direct", or else the upstream.
 * The upstream connects where it likes, so it is asked only when the
 * rules deny none of the name's addresses here. */
static int open_routed(struct conn *c, struct acl_query *q, struct race *r, long long deadline)
{
	struct pick pk = { c, q, 0, 0 };
	int dns = resolve(c, r, deadline, 1), via = 0, denied = 0, loop = 0;

	for (int i = 0; i < r->n; i++) {
		int v = 0;

		r->ep[i].port = c->req.port;
		if (is_loop(c, &r->ep[i]))
			loop = 1;
		else
			v = verdict_on(c, q, &r->ep[i]);
		if (ACL_VERDICT(v) != ACL_ALLOW)
			denied = 1;
		else if (!via)
			via = v & ACL_VIA_DIRECT ? ACL_VIA_DIRECT : ACL_VIA_UPSTREAM;
	}
	if (!r->n) {
		int v = verdict_on(c, q, NULL);

		if (ACL_VERDICT(v) == ACL_ALLOW)
			via = v & ACL_VIA_DIRECT ? ACL_VIA_DIRECT : ACL_VIA_UPSTREAM;
		/* Direct, the name must resolve here: its failure is the answer. */
		if (via == ACL_VIA_DIRECT)
			dns_refusal(c, dns);
	}
	if (!via)
		reply_and_exit(c, 403, loop ? "loop" : "denied", 0);
	if (via == ACL_VIA_DIRECT)
		return race_target(c, r, deadline, &pk);
	if (denied)
		reply_and_exit(c, 403, loop ? "loop" : "denied", 0);
	return through_upstream(c);
}

/* Race the resolved addresses the rules allow (net_race(): RFC 8305, at
 * most RACE_MAX). One deadline, --connect-timeout from here, bounds the
 * lookup and every attempt together. Returns the connected socket. */
static int open_target(struct conn *c, struct acl_query *q)
{
	long long deadline = now_ms() + c->o->connect_timeout * 1000LL;
	struct race r = { .n = 0 };
	struct pick pk = { c, q, 0, 0 };

	if (CONFIG_UPSTREAM && c->o->up)
		return open_routed(c, q, &r, deadline);
	resolve(c, &r, deadline, 0);
	for (int i = 0; i < r.n; i++)
		r.ep[i].port = c->req.port;
	return race_target(c, &r, deadline, &pk);
}

/* The rule and credential files: read once with --listen, for every
 * connection in inetd mode (so edits apply to the next connection). */
static int load_config(const struct opts *o, char *err, size_t errlen)
{
	if (acl_load(o->acl, o->acl_path ? o->acl_path : "built-in",
		     o->acl_path ? NULL : acl_builtin, strlen(acl_builtin), err, errlen) < 0)
		return -1;
	if (CONFIG_AUTH && o->auth && auth_load(o->auth, o->users_path, NULL, 0, err, errlen) < 0)
		return -1;
	if (CONFIG_UPSTREAM && o->up) {
		if (o->up_auth && upstream_auth_load(o->up, o->up_auth, err, errlen) < 0)
			return -1;
		if (CONFIG_TLS && o->up->tls && tls_client_init(o->up_cacert, err, errlen) < 0)
			return -1;
	}
	/* "via upstream" with no upstream to go through is a rule in error. */
	for (int i = 0; CONFIG_UPSTREAM && !o->up && i < o->acl->nrules; i++)
		if (o->acl->rules[i].via == ACL_VIA_UPSTREAM) {
			strfmt(err, errlen, "%s:%d: 'via upstream' without --upstream",
			       o->acl_path ? o->acl_path : "built-in", o->acl->rules[i].line);
			return -1;
		}
	return 0;
}

/* Basic authentication, when --users is given: the user's name for the
 * rules, or a 407 (401 for a tunnel request). */
static void authenticate(struct conn *c, struct acl_query *q)
{
	char cl[ADDRSTR_MAX];

	if (!CONFIG_AUTH || !c->o->auth)
		return;
	q->user = auth_check(c->o->auth, c->req.auth, c->req.auth_len, c->logname);
	/* The token is the password in base64: gone from the buffer too. */
	if (c->req.auth)
		explicit_bzero((char *)c->req.auth, c->req.auth_len);
	if (!q->user) {
		/* One line per failure, for fail2ban; never the password. */
		if (c->req.auth)
			logmsg(LOG_WARNING, "auth failed: client=%s user=%s",
			       ep_str(&c->client, cl), c->logname);
		reply_and_exit(c, 407, c->req.auth ? "bad-credentials" : "no-credentials", 0);
	}
}

static void serve_tunnel(struct conn *c, struct acl_query *q);

/* One request whose head is in c->buf, or arrives on fd 0. */
static void __attribute__((noreturn)) serve_request(struct conn *c)
{
	const struct opts *o = c->o;
	struct acl_query q = { 0 };
	const char *why;
	int fd;

	read_head(c);
	int st = http_parse(c->buf, c->head, o->tunnel_path, &c->req);
	if (st)
		reply_and_exit(c, st, "bad-request", 0);

	q.client = c->client.ip.family ? &c->client.ip : NULL;
	q.tls = -1;
	if (CONFIG_HTTP_TUNNEL && c->req.method != HTTP_CONNECT)
		serve_tunnel(c, &q);
	c->parsed = 1;
	q.host = c->req.host;
	q.literal = c->req.literal;
	q.port = c->req.port;
	authenticate(c, &q);

	fd = open_target(c, &q);
	sandbox_enter(SANDBOX_RELAY);
	if (!c->answered)
		answer_200(c);
	c->status = 200;
	/* The target's bytes that came behind the upstream's answer. */
	if (c->elen) {
		if (client_write(c, c->early, c->elen) < 0)
			reply_and_exit(c, 200, "client-error", 0);
		c->st.down += c->elen;
	}
	/* Bytes the client sent before the answer go first. */
	if (c->len > c->head) {
		if (net_write_all(fd, c->buf + c->head, c->len - c->head, c->tio ? c->tio->write : NULL,
				  now_ms() + o->idle_timeout * 1000) < 0)
			reply_and_exit(c, 200, "target-error", 0);
		c->st.up += c->len - c->head;
	}
	why = relay(&(struct relay_side){ 0, 1, c->tls ? tls_relay_io() : NULL },
		    &(struct relay_side){ fd, fd, c->tio }, o->idle_timeout * 1000, &c->st);
	reply_and_exit(c, 200, why, 0);
}

/* Whether descriptors a and b are one socket. */
static int same_socket(int a, int b)
{
	struct stat sa, sb;

	return fstat(a, &sa) == 0 && fstat(b, &sb) == 0 && S_ISSOCK(sa.st_mode) &&
	       sa.st_dev == sb.st_dev && sa.st_ino == sb.st_ino;
}

/* The answer when no process can be had: what the client sent is read
 * first, since closing on unread bytes would reset the connection, answer
 * and all. */
static void answer_busy(int fd)
{
	char msg[256], sink[4096];
	size_t n = http_answer(msg, sizeof msg, 503, "too-many-processes", "", 0, 1);

	for (int k = 0; k < 16 && recv(fd, sink, sizeof sink, MSG_DONTWAIT) > 0; k++)
		;
	(void)!send(fd, msg, n, MSG_DONTWAIT | MSG_NOSIGNAL);
	shutdown(fd, SHUT_WR);
}

/* --user: the user's groups and ids, for good. 0, or -1 logged. */
static int drop_privileges(const char *name)
{
	uid_t uid;
	gid_t gid;

	if (user_lookup(USER_PASSWD, name, &uid, &gid) < 0) {
		logmsg(LOG_ERR, "--user %s: no such user", name);
		return -1;
	}
	/* Started as that user already (by an inetd that dropped root): so be. */
	if (geteuid() && getuid() == uid && geteuid() == uid && getgid() == gid && getegid() == gid)
		return 0;
	if (setgroups(0, NULL) < 0 || setgid(gid) < 0 || setuid(uid) < 0) {
		logmsg(LOG_ERR, "--user %s: %s", name, strerror(errno));
		return -1;
	}
	return 0;
}

static void start_spawner(const struct opts *o);

static void __attribute__((noreturn)) serve(const struct opts *o, const struct sockaddr *peer)
{
	struct conn *c = &conn;
	struct sockaddr_storage ss;
	socklen_t sl = sizeof ss;
	char err[256];
	const char *why;
	int bad = 0;

	c->o = o;
	c->start = now_ms();
	/* accept() told the listener already: a client that reset since
	 * would leave getpeername() nothing to say. */
	if (peer)
		ep_from_sockaddr(&c->client, peer);
	else if (getpeername(0, (struct sockaddr *)&ss, &sl) == 0)
		ep_from_sockaddr(&c->client, (struct sockaddr *)&ss);
	sl = sizeof ss;
	if (getsockname(0, (struct sockaddr *)&ss, &sl) == 0)
		ep_from_sockaddr(&c->local, (struct sockaddr *)&ss);
	signal(SIGPIPE, SIG_IGN);

	/* In inetd mode the key and the rules are read per connection, and
	 * then what reads no more files drops its privileges. */
	if (!o->nown && CONFIG_TLS && o->cert &&
	    (tls_server_init(o->cert, o->key, TLS_PAIR_ON_MISTRUST, err, sizeof err) < 0 ||
	    (CONFIG_TLS_TICKETS && o->ticket_key &&
	     tls_tickets_load(o->ticket_key, (unsigned)o->ticket_lifetime, err, sizeof err) < 0))) {
		logmsg(LOG_ERR, "%s", err);
		reply_and_exit(c, 0, "bad-tls-files", EXIT_CONFIG);
	}
	if (!o->nown && (bad = load_config(o, err, sizeof err) < 0))
		logmsg(LOG_ERR, "%s", err);
	/* Never a byte of the client's as root: no handshake, and without
	 * TLS the 500 goes out from the sandbox. */
	if (!o->nown && o->user && drop_privileges(o->user) < 0) {
		sandbox_enter(SANDBOX_REQUEST);
		reply_and_exit(c, o->cert ? 0 : 500, "bad-user", EXIT_CONFIG);
	}
	if (!o->nown && !bad && CONFIG_HTTP_TUNNEL && o->tunnel_path)
		start_spawner(o);
	/* From here on the client's bytes are read (a PROXY header, a
	 * ClientHello, the request). */
	sandbox_enter(SANDBOX_REQUEST);
	if (CONFIG_PROXY_PROTOCOL && o->ntrust)
		take_proxy_header(c);
	if (CONFIG_TLS && o->cert) {
		/* Records go out whole, not held back for the peer's ACK. */
		setsockopt(1, IPPROTO_TCP, TCP_NODELAY, &(int){ 1 }, sizeof(int));
		if (tls_accept(o->header_timeout * 1000, &why) < 0) {
			int mismatch = !strcmp(why, "tls-key-mismatch");

			if (mismatch)
				logmsg(LOG_ERR, "%s: the key does not belong to the certificate in %s",
				       o->key, o->cert);
			reply_and_exit(c, 0, why, mismatch ? EXIT_CONFIG : 0);
		}
		c->tls = 1;
	}
	if (bad)
		reply_and_exit(c, 500, "bad-config", EXIT_CONFIG);
	serve_request(c);
}

#if CONFIG_HTTP_TUNNEL
/* Which tunneld this is, for the names of its sessions and places (so that
 * two tunnelds of one user keep apart, in one container or two): with a
 * listener, a random name it drew at start, whatever its ports; in inetd
 * mode, the port the client reached and the options tunneld was started
 * with (two services on one port are one tunneld only when alike). */
static const char *scope_of(const struct conn *c)
{
	static char scope[48];

	if (c->o->nown)
		return c->o->scope;
	strfmt(scope, sizeof scope, "p%u-%s", c->local.port, c->o->scope);
	return scope;
}

/* A connection handed over with the bytes read from it (a request that a
 * session holder does not serve, a kept-alive connection that outlived its
 * session, the plain side of a TLS connection), served from a clean state
 * as if it were new. It never speaks TLS. In inetd mode this process is a
 * child of the spawner, which read the files before --user dropped the
 * right to, and it counts itself against --max-conns. */
static void __attribute__((noreturn)) serve_kept(const struct opts *o, const struct handover *ho)
{
	struct conn *c = &conn;

	c->o = o;
	c->start = now_ms();
	c->kept = 1;
	c->client = ho->client;
	c->local = ho->local;
	c->front = ho->front;
	c->len = ho->len;
	memcpy(c->buf, ho->buf, c->len);
	signal(SIGPIPE, SIG_IGN);
	if (!o->nown && place_take(scope_of(c), "c", o->max_conns) < 0) {
		if (!c->len)
			exit(0);  /* no request yet: nothing to answer */
		reply_and_exit(c, 503, "too-many-processes", 0);
	}
	sandbox_enter(SANDBOX_REQUEST);  /* in inetd mode, no more fork */
	serve_request(c);
}

/* inetd mode has no listener to fork fresh processes: the connection's
 * process forks a spawner before it reads a byte of the request (and before
 * its sandbox forbids fork), whose children have served nothing. They are
 * the processes of every later request of this connection's sessions, and
 * ask it in turn over a channel of their own (kids); it ends once the
 * connection's process and every child have. */
static void __attribute__((noreturn)) spawner(const struct opts *o, int u, int kids[2])
{
	static struct handover ho;
	struct pollfd p[2] = { { u, POLLIN, 0 }, { kids[0], POLLIN, 0 } };
	int null = open("/dev/null", O_RDONLY), live = 0;

	/* The client's connection ends with the process that serves it. */
	if (same_socket(0, 2))
		dup2(null, 2);
	dup2(null, 0);
	dup2(null, 1);
	sandbox_enter(SANDBOX_SPAWNER);
	for (;;) {
		while (waitpid(-1, NULL, WNOHANG) > 0)
			live--;
		if (p[0].fd < 0 && !live)
			_exit(0);
		/* A second at most: a child's end is seen by waitpid() above. */
		if (poll(p, 2, 1000) <= 0)
			continue;
		for (int i = 0; i < 2; i++) {
			int fd = p[i].revents ? fd_recv(p[i].fd, &ho, 0) : -1;
			pid_t pid;

			if (fd < 0) {
				if (i == 0 && p[0].revents & (POLLHUP | POLLERR)) {
					close(u);
					p[0].fd = -1;
				}
				continue;
			}
			pid = fork();
			if (pid == 0) {
				if (p[0].fd >= 0)
					close(u);
				close(kids[0]);
				spawn_init(kids[1]);
				dup2(fd, 0);
				dup2(fd, 1);
				if (fd > 1)
					close(fd);
				serve_kept(o, &ho);
			}
			if (pid > 0)
				live++;
			else if (ho.len)
				answer_busy(fd);
			close(fd);
		}
	}
}

static void start_spawner(const struct opts *o)
{
	int sp[2], kids[2];
	pid_t pid;

	if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sp) < 0)
		return;  /* spawn() then fails, and the request is answered 503 */
	if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, kids) < 0) {
		close(sp[0]);
		close(sp[1]);
		return;
	}
	pid = fork();
	if (pid == 0) {
		close(sp[0]);
		spawner(o, sp[1], kids);
	}
	close(sp[1]);
	close(kids[0]);
	close(kids[1]);
	if (pid < 0)
		close(sp[0]);
	else
		spawn_init(sp[0]);
}

/* The handover of this connection: who, and the bytes read. */
static void handover_of(const struct conn *c, struct handover *ho)
{
	ho->client = c->client;
	ho->local = c->local;
	ho->front = c->front;
	ho->len = c->len;
	memcpy(ho->buf, c->buf, ho->len);
}

/* A TLS connection cannot be handed to a session holder: this process
 * keeps it and relays the decrypted stream over a socket pair, whose other
 * end a fresh process serves; that one can be handed over. */
static void __attribute__((noreturn)) split_tls(struct conn *c)
{
	static struct handover ho;
	struct relay_stats st = { 0 };
	int sp[2];

	handover_of(c, &ho);
	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sp) < 0)
		reply_and_exit(c, 503, "socketpair-failed", 0);
	if (spawn(sp[1], &ho) < 0)
		reply_and_exit(c, 503, "spawn-failed", 0);
	close(sp[1]);
	sandbox_enter(SANDBOX_RELAY);
	relay(&(struct relay_side){ 0, 1, tls_relay_io() }, &(struct relay_side){ sp[0], sp[0], NULL },
	      c->o->idle_timeout * 1000, &st);
	exit(0);
}

/* The open of a GET/POST tunnel session (body "host:port"), or a request
 * for a session, which goes to its holder. */
static void serve_tunnel(struct conn *c, struct acl_query *q)
{
	const struct opts *o = c->o;
	struct session_opts so = { o->tunnel_path, o->session_timeout * 1000, o->idle_timeout * 1000,
				   o->header_timeout * 1000, o->max_sessions, o->max_client,
				   scope_of(c), o->node };
	long long deadline = now_ms() + o->header_timeout * 1000LL;
	size_t end = c->head + c->req.clen;
	static struct handover ho;
	int fd;

	c->tunnel = 1;
	if (CONFIG_TLS && c->tls)
		split_tls(c);
	if (c->req.token) {
		handover_of(c, &ho);
		int r = session_pass(&so, c->req.token, c->req.token_len, &ho);

		if (r == 0)
			exit(0);  /* the holder serves it, and logs the session */
		/* Another node's token is no session here either: the same 404,
		 * and the log says the load balancer sent it astray. */
		reply_and_exit(c, r == -1 || r == -4 ? 404 : r == -2 ? 503 : 0, r == -1 ? "no-session" :
			       r == -4 ? "other-node" : r == -2 ? "busy" : "holder-timeout", 0);
	}
	if (c->req.method != HTTP_POST)
		reply_and_exit(c, 404, "no-session", 0);
	if (c->req.clen > HOST_MAX + 8 || end > sizeof c->buf)
		reply_and_exit(c, 400, "bad-request", 0);
	while (c->len < end) {
		ssize_t n = client_read(c, c->buf + c->len, sizeof c->buf - c->len, deadline);

		if (n == -2)
			reply_and_exit(c, 408, "header-timeout", 0);
		if (n <= 0)
			reply_and_exit(c, 0, n ? "client-error" : "client-closed", 0);
		c->len += (size_t)n;
	}
	if (http_parse_target(c->buf + c->head, c->req.clen, &c->req))
		reply_and_exit(c, 400, "bad-request", 0);
	c->parsed = 1;
	q->host = c->req.host;
	q->literal = c->req.literal;
	q->port = c->req.port;
	q->tls = 0;  /* the stream's first bytes are not known yet */
	authenticate(c, q);
	/* Counted before the target is connected: over a limit, it never is. */
	if (session_places(&so, &c->client) < 0)
		reply_and_exit(c, 503, "too-many-sessions", 0);
	fd = open_target(c, q);
	c->answered = 1;
	c->status = 200;
	c->reason = session_hold(&so, fd, c->tio, c->early, c->elen, &c->client, &c->local,
				 c->buf + end, c->len - end, &c->req, &c->st);
	log_conn(c);
	exit(0);
}
#else
static void serve_tunnel(struct conn *c, struct acl_query *q) { (void)c; (void)q; }
static void start_spawner(const struct opts *o) { (void)o; }
static void __attribute__((noreturn)) serve_kept(const struct opts *o, const struct handover *ho)
{
	(void)o;
	(void)ho;
	exit(1);
}
#endif

static volatile sig_atomic_t stopping;

static void on_signal(int sig)
{
	if (sig == SIGTERM)
		stopping = 1;
}

/* A child of the listener serving one connection, fd: the listener's
 * descriptors closed, the connection on fd 0/1. */
static void child_of_listener(const int *fds, int n, int chan, int fd)
{
	for (int j = 0; j < n; j++)
		close(fds[j]);
	if (chan >= 0)
		close(chan);
	spares_close();
	if (file_kept() >= 0)
		close(file_kept());
	dup2(fd, 0);
	dup2(fd, 1);
	if (fd > 1)
		close(fd);
	signal(SIGCHLD, SIG_DFL);
	sigprocmask(SIG_SETMASK, &(sigset_t){ 0 }, NULL);
}

/* A listener reads --ticket-key again when it changed (a new key moved into
 * place), before the next connection's process starts: that one seals with
 * the new first key; live connections keep what they have. */
static void reread_ticket_keys(const struct opts *o)
{
	char err[256];
	int r = tls_tickets_reload(err, sizeof err);

	if (r < 0)
		logmsg(LOG_ERR, "%s; the keys read before stay in use", err);
	else if (r > 0)
		logmsg(LOG_INFO, "%s: ticket keys read again", o->ticket_key);
}

/* Spares that could not be started, or ended before a client came: the
 * next is tried after a pause that doubles, 0.1 s to 1.6 s, until one
 * takes a client; the first trouble of a run is logged. */
static struct {
	int failing, pause_ms;
	long long retry_at;
} tending = { 0, 100, 0 };

static void spare_trouble(const char *msg)
{
	if (!tending.failing)
		logmsg(LOG_ERR, "%s", msg);
	tending.failing = 1;
	tending.retry_at = now_ms() + tending.pause_ms;
	if (tending.pause_ms < 1600)
		tending.pause_ms *= 2;
}

/* The spares' part of the listener's loop: the reports read, spares
 * started while fewer than --spares wait and --max-conns allows; *live
 * counts them. 1 when the listener should accept itself and fork, as
 * without spares: in trouble, and none waiting. */
static int tend_spares(const struct opts *o, int *live)
{
	char msg[128];
	int r;

	if (spares_reports()) {
		tending.failing = 0;
		tending.pause_ms = 100;
		if (CONFIG_TLS_TICKETS && o->ticket_key)
			reread_ticket_keys(o);
	}
	while (*live < o->max_conns && now_ms() >= tending.retry_at && (r = spares_top_up()) != 0) {
		if (r < 0) {
			strfmt(msg, sizeof msg, "starting a spare: %s", strerror(errno));
			spare_trouble(msg);
			break;
		}
		++*live;
	}
	return tending.failing && !spares_idle();
}

/* Children of the listener that ended; *live counts them. */
static void reap(int *live)
{
	char msg[64];
	pid_t pid;

	while ((pid = waitpid(-1, NULL, WNOHANG)) > 0) {
		--*live;
		if (spares_ended(pid)) {
			strfmt(msg, sizeof msg, "spare %d ended before a client came", (int)pid);
			spare_trouble(msg);
		}
	}
}

/* Accept on the listening sockets, one process per connection, at most
 * max_conns at once: spares (spare.h) that accept themselves, or, with
 * --spares 0 (or none to be had), a fork of the listener per connection;
 * children are reaped as they end. With the GET/POST tunnel, children
 * also ask here (over chan) for fresh processes for connections they hand
 * on (spawn.c): a spare, or a fork; those count too, so every process but
 * the listener is its child and counted. */
static void __attribute__((noreturn)) serve_listeners(const int *fds, int n,
						      const struct opts *o, char **argv)
{
	static struct handover ho;
	struct sigaction sa = { 0 };
	sigset_t block, none;
	int live = 0, pause_ms = -1, chan[2] = { -1, -1 }, spares = 0;
	char err[256];

	sa.sa_handler = on_signal;
	sigaction(SIGCHLD, &sa, NULL);
	/* The C library finds its clock in the vDSO on first use: let that
	 * write happen here, before fork, not in every child. */
	(void)now_ms();
	signal(SIGPIPE, SIG_IGN);
	sigemptyset(&none);
	sigemptyset(&block);
	sigaddset(&block, SIGCHLD);
	if (CONFIG_HTTP_TUNNEL && o->tunnel_path) {
		if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, chan) < 0) {
			logmsg(LOG_ERR, "socketpair: %s", strerror(errno));
			exit(1);
		}
		fcntl(chan[0], F_SETFL, O_NONBLOCK);
		spawn_init(chan[1]);
	}
	if (o->spares) {
		spares = spares_start(fds, n, chan[1], o->scope, o->spares, argv, err, sizeof err) == 0;
		if (!spares)
			logmsg(LOG_WARNING, "spares: %s; a fork per connection", err);
	}
	/* SIGTERM ends the waiting spares first (they hold the listening
	 * sockets too), then the listener as before. */
	if (spares) {
		sigaction(SIGTERM, &sa, NULL);
		sigaddset(&block, SIGTERM);
	}
	sigprocmask(SIG_BLOCK, &block, NULL);

	for (;;) {
		struct pollfd pfd[LISTEN_MAX + 2];
		int i, here = 1, wait_ms = pause_ms;
		struct timespec ts;

		reap(&live);
		if (stopping) {
			spares_stop();
			signal(SIGTERM, SIG_DFL);
			sigprocmask(SIG_SETMASK, &none, NULL);
			raise(SIGTERM);
			_exit(1);
		}
		if (spares) {
			here = tend_spares(o, &live);
			if (spares_idle() < o->spares && live < o->max_conns) {
				long long left = tending.retry_at - now_ms();

				if (wait_ms < 0 || left < wait_ms)
					wait_ms = left < 0 ? 0 : (int)left;
			}
		}
		for (i = 0; i < n; i++) {
			pfd[i].fd = fds[i];
			pfd[i].events = here && live < o->max_conns && pause_ms < 0 ? POLLIN : 0;
		}
		pfd[n] = (struct pollfd){ chan[0], POLLIN, 0 };
		pfd[n + 1] = (struct pollfd){ spares_fd(), POLLIN, 0 };
		ts = (struct timespec){ wait_ms / 1000, wait_ms % 1000 * 1000000L };
		/* Interrupted (a child ended): revents say nothing, start over. */
		if (ppoll(pfd, (nfds_t)n + 2, wait_ms < 0 ? NULL : &ts, &none) < 0)
			continue;
		pause_ms = -1;
		for (i = 0; i <= n; i++) {
			struct sockaddr_storage peer;
			socklen_t plen = sizeof peer;
			int cfd;
			pid_t pid;

			if (!(pfd[i].revents & POLLIN))
				continue;
			if (i == n) {
				/* A child hands on a connection: to a spare, else a
				 * fork; at the limit it is answered, never left
				 * waiting. */
				if ((cfd = fd_recv(chan[0], &ho, 0)) < 0)
					continue;
				if (spares && spares_pass(cfd, &ho) == 0) {
					close(cfd);
					continue;
				}
				pid = live < o->max_conns ? fork() : -1;
				if (pid == 0) {
					child_of_listener(fds, n, chan[0], cfd);
					serve_kept(o, &ho);
				}
			} else {
				cfd = accept4(fds[i], (struct sockaddr *)&peer, &plen, SOCK_CLOEXEC);
				if (cfd < 0) {
					/* Out of descriptors: wait a little rather than spin. */
					if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM)
						pause_ms = 100;
					continue;
				}
				if (CONFIG_TLS_TICKETS && o->ticket_key)
					reread_ticket_keys(o);
				pid = fork();
				if (pid == 0) {
					child_of_listener(fds, n, chan[0], cfd);
					serve(o, (struct sockaddr *)&peer);
				}
			}
			if (pid < 0) {
				if (live < o->max_conns) {
					logmsg(LOG_ERR, "fork: %s", strerror(errno));
					pause_ms = 100;
				}
				if (i < n || ho.len)
					answer_busy(cfd);  /* else a kept-alive connection between requests */
			} else {
				live++;
			}
			close(cfd);
		}
	}
}

/* The listening sockets' ports, for the loop check; o->nown from here on
 * says how many (0: inetd mode). */
static void own_ports(struct opts *o, const int *fds, int n)
{
	for (int i = 0; i < n; i++) {
		struct sockaddr_storage ss;
		socklen_t sl = sizeof ss;
		struct endpoint ep = { 0 };

		/* Never block in accept() on a connection that went away. */
		fcntl(fds[i], F_SETFL, fcntl(fds[i], F_GETFL) | O_NONBLOCK);
		if (getsockname(fds[i], (struct sockaddr *)&ss, &sl) == 0)
			ep_from_sockaddr(&ep, (struct sockaddr *)&ss);
		o->own_ports[i] = ep.port;
	}
	o->nown = n;
}

/* A spare (spare.h): the files from the listener's snapshot, then one
 * connection, as a fork of the listener would serve it. */
static void __attribute__((noreturn)) serve_spare(struct opts *o, const int *fds, int n, int chan,
						  int snap)
{
	static struct handover ho;
	struct sockaddr_storage peer;
	socklen_t plen;
	char err[256] = "the listener's snapshot: unreadable";
	int fd, passed;

	if (file_snapshot(snap) < 0 || load_config(o, err, sizeof err) < 0 ||
	    (CONFIG_TLS && o->cert && tls_server_init(o->cert, o->key, TLS_PAIR_CHECKED, err, sizeof err) < 0) ||
	    (CONFIG_TLS_TICKETS && o->ticket_key &&
	     tls_tickets_load(o->ticket_key, (unsigned)o->ticket_lifetime, err, sizeof err) < 0)) {
		logmsg(LOG_ERR, "spare: %s", err);
		exit(EXIT_CONFIG);
	}
	file_snapshot_end();
	own_ports(o, fds, n);
	if (chan >= 0)
		spawn_init(chan);
	(void)now_ms();
	if (spare_wait_init(fds, n) < 0) {
		logmsg(LOG_ERR, "spare: epoll: %s", strerror(errno));
		exit(1);
	}
	/* The request's stage before the client comes: what a spare does
	 * until then is in it, and its cost is off the client's path. */
	sandbox_enter(SANDBOX_REQUEST);
	fd = spare_wait(fds, n, &peer, &plen, &ho, &passed);
	child_of_listener(fds, n, -1, fd);
	if (passed)
		serve_kept(o, &ho);
	/* Rotated since the snapshot: read as the listener would have (which
	 * says so in the log, and what went wrong). */
	if (CONFIG_TLS_TICKETS && o->ticket_key)
		(void)tls_tickets_reload(err, sizeof err);
	serve(o, (struct sockaddr *)&peer);
}

/* systemd socket activation with Accept=no: LISTEN_FDS sockets from fd 3. */
static int inherited_listeners(int *fds)
{
	const char *pid = getenv("LISTEN_PID"), *nfds = getenv("LISTEN_FDS");
	long long n;

	if (!pid || !nfds || http_decimal(pid, strlen(pid), 18) != (long long)getpid())
		return 0;
	n = http_decimal(nfds, strlen(nfds), 18);
	if (n < 1 || n > LISTEN_MAX)
		return 0;
	for (int i = 0; i < n; i++) {
		fds[i] = 3 + i;
		fcntl(fds[i], F_SETFD, FD_CLOEXEC);
	}
	unsetenv("LISTEN_PID");
	unsetenv("LISTEN_FDS");
	unsetenv("LISTEN_FDNAMES");
	return (int)n;
}

/* FNV-1a of the arguments after argv[0]: tells configurations apart (not
 * a secret: the names it goes into are listed for everyone). */
static unsigned fnv1a(int argc, char **argv)
{
	unsigned h = 2166136261u;

	for (int i = 1; i < argc; i++)
		for (const char *p = argv[i]; ; p++) {
			h = (h ^ (unsigned char)*p) * 16777619u;
			if (!*p)
				break;
		}
	return h;
}

static const char usage[] =
	"Usage: tunneld [OPTION]...\n"
	"An HTTP CONNECT proxy. Without --listen it serves the one connection on\n"
	"stdin/stdout (inetd, systemd Accept=yes, tcpserver); with LISTEN_FDS set\n"
	"(systemd Accept=no) it accepts on those sockets.\n"
	"\n"
	"  -l, --listen [ADDR:]PORT  accept connections itself, one process each;\n"
	"                            repeatable; IPv6 as [::1]:3128\n"
	"  -u, --users FILE          credential file: require Basic authentication\n"
	"  -r, --realm TEXT          realm in Proxy-Authenticate (default \"tunneld\")\n"
	"  -a, --acl FILE            access rules (default: the built-in rules)\n"
	"  -c, --cert FILE           TLS certificate chain, PEM  } both given: clients\n"
	"  -k, --key FILE            TLS private key, PEM        } speak TLS to tunneld\n"
	"      --ticket-key FILE     TLS session tickets sealed with the keys in FILE\n"
	"                            (64 hex digits a line, the first seals): clients\n"
	"                            resume in any process that reads it\n"
	"      --ticket-lifetime SEC how long a ticket resumes (default 86400)\n"
	"      --http-tunnel[=PATH]  also serve the GET/POST tunnel at PATH (default /)\n"
	"      --session-timeout SEC a tunnel session with no request (default 60)\n"
	"      --max-sessions N      tunnel sessions open at once (default 32)\n"
	"      --max-client-sessions N  ... from one client address (default 8)\n"
	"      --node NAME           name this node in its session tokens, for a load\n"
	"                            balancer to route on (a-z, 0-9, '-'; at most 32)\n"
	"      --connect-timeout SEC connecting to the target (default 10)\n"
	"      --header-timeout SEC  the whole request header (default 10)\n"
	"      --idle-timeout SEC    a tunnel with no traffic either way (default 600)\n"
	"      --proxy-protocol CIDR[,CIDR]...  peers that send a PROXY header\n"
	"                            (v1 or v2) first, naming the real client\n"
	"      --max-conns N         processes at once (default 256); in inetd mode,\n"
	"                            those tunneld starts itself\n"
	"      --spares N            with a listener: processes started ahead to\n"
	"                            wait for clients (default 4; 0: a fork each)\n"
	"      --upstream URL        open tunnels through this proxy's CONNECT:\n"
	"                            http://host:port or https://host:port\n"
	"      --upstream-auth FILE  user:password for the upstream (Basic)\n"
	"      --upstream-cacert FILE  CA bundle for an https:// upstream\n"
	"      --user NAME           run as NAME once the files are read (and, with\n"
	"                            --listen, the ports bound)\n"
	"      --log syslog|stderr   where log lines go (default syslog)\n"
	"  -v, --verbose             also log each address tried and rule matched\n"
	"      --hash-password       read a password on stdin, print its hash for --users\n"
	"  -V, --version             print the version and exit\n"
	"  -h, --help                print this help and exit\n"
	"\n"
	"Exit status: 0 done, 64 bad usage, 78 unreadable or invalid config file.\n";

/* The features compiled in, for scripts and tests. */
static void print_version(void)
{
	char v[128];

	strfmt(v, sizeof v, "tunneld %s (%cauth %ctls %ctls-tickets %cipv6 %csplice %chttp-tunnel "
	       "%csandbox %cproxy-protocol %cupstream)\n",
	       VERSION, CONFIG_AUTH ? '+' : '-', CONFIG_TLS ? '+' : '-', CONFIG_TLS_TICKETS ? '+' : '-',
	       CONFIG_IPV6 ? '+' : '-', CONFIG_SPLICE ? '+' : '-',
	       CONFIG_HTTP_TUNNEL ? '+' : '-', CONFIG_SANDBOX ? '+' : '-',
	       CONFIG_PROXY_PROTOCOL ? '+' : '-', CONFIG_UPSTREAM ? '+' : '-');
	(void)fd_puts(1, v);
}

static void __attribute__((noreturn)) usage_error(const char *fmt, const char *arg)
{
	char msg[256];

	strfmt(msg, sizeof msg, fmt, arg);
	logmsg(LOG_ERR, "%s (see --help)", msg);
	exit(EXIT_USAGE);
}

/* A whole decimal number in [min, max], or a usage error. */
static int number(const char *opt, const char *s, long min, long max)
{
	long long v = http_decimal(s, strlen(s), 18);

	if (v < min || v > max) {
		char what[64];

		strfmt(what, sizeof what, "%s: '%%s' is not a number from %ld to %ld", opt, min, max);
		usage_error(what, s);
	}
	return (int)v;
}

/* --proxy-protocol's list: addresses or CIDRs, comma-separated. */
static void trusted_peers(struct opts *o, const char *list)
{
	char one[INET6_ADDRSTRLEN + 8];

	if (!CONFIG_PROXY_PROTOCOL)
		usage_error("%s", "--proxy-protocol: this tunneld was built without it (CONFIG_PROXY_PROTOCOL)");
	for (const char *p = list, *e; ; p = e + 1) {
		size_t n;

		e = strchr(p, ',');
		n = e ? (size_t)(e - p) : strlen(p);
		if (o->ntrust == TRUST_MAX)
			usage_error("--proxy-protocol: at most %s addresses or CIDRs", "16");
		if (n >= sizeof one)
			n = sizeof one - 1;  /* too long for an address: refused below */
		memcpy(one, p, n);
		one[n] = 0;
		if (!n || acl_parse_cidr(one, &trusted[o->ntrust]) < 0)
			usage_error("--proxy-protocol: '%s' is not an address or ADDR/PREFIX", one);
		o->ntrust++;
		if (!e)
			break;
	}
}

/* The command line into o; --help, --version and --hash-password end here. */
static void parse_options(int argc, char **argv, struct opts *o)
{
	static const struct opt_long longopts[] = {
		{ "listen", OPT_REQUIRED, 'l' },
		{ "acl", OPT_REQUIRED, 'a' },
		{ "users", OPT_REQUIRED, 'u' },
		{ "realm", OPT_REQUIRED, 'r' },
		{ "hash-password", OPT_NONE, 7 },
		{ "cert", OPT_REQUIRED, 'c' },
		{ "key", OPT_REQUIRED, 'k' },
		{ "http-tunnel", OPT_OPTIONAL, 8 },
		{ "session-timeout", OPT_REQUIRED, 9 },
		{ "max-sessions", OPT_REQUIRED, 10 },
		{ "max-client-sessions", OPT_REQUIRED, 11 },
		{ "node", OPT_REQUIRED, 12 },
		{ "connect-timeout", OPT_REQUIRED, 1 },
		{ "header-timeout", OPT_REQUIRED, 2 },
		{ "idle-timeout", OPT_REQUIRED, 3 },
		{ "max-conns", OPT_REQUIRED, 4 },
		{ "proxy-protocol", OPT_REQUIRED, 13 },
		{ "user", OPT_REQUIRED, 5 },
		{ "upstream", OPT_REQUIRED, 20 },
		{ "upstream-auth", OPT_REQUIRED, 21 },
		{ "upstream-cacert", OPT_REQUIRED, 22 },
		{ "ticket-key", OPT_REQUIRED, 23 },
		{ "ticket-lifetime", OPT_REQUIRED, 24 },
		{ "spares", OPT_REQUIRED, 25 },
		{ "log", OPT_REQUIRED, 6 },
		{ "verbose", OPT_NONE, 'v' },
		{ "version", OPT_NONE, 'V' },
		{ "help", OPT_NONE, 'h' },
		{ 0, 0, 0 }
	};
	struct opt_state st = { .argc = argc, .argv = argv, .i = 1 };
	int ch;

	while ((ch = opt_next(&st, "l:a:u:r:c:k:vVh", longopts)) != -1) {
		switch (ch) {
		case 'l':
			if (o->nlisten == LISTEN_MAX)
				usage_error("at most %s --listen addresses", "16");
			o->listen[o->nlisten++] = st.arg;
			break;
		case 'a': o->acl_path = st.arg; break;
		case 'u': o->users_path = st.arg; break;
		case 'r': o->realm = st.arg; break;
		case 7:
			if (!CONFIG_AUTH)
				usage_error("%s", "--hash-password: built without authentication (CONFIG_AUTH)");
			exit(auth_hash_password());
		case 8: o->tunnel_path = st.arg ? st.arg : "/"; break;
		case 9: o->session_timeout = number("--session-timeout", st.arg, 2, 86400); break;
		case 10: o->max_sessions = number("--max-sessions", st.arg, 1, 4096); break;
		case 11: o->max_client = number("--max-client-sessions", st.arg, 1, 4096); break;
		case 12:
			if (!CONFIG_HTTP_TUNNEL)
				usage_error("%s", "--node: this tunneld was built without --http-tunnel (CONFIG_HTTP_TUNNEL)");
			if (!http_is_node_name(st.arg, strlen(st.arg)))
				usage_error("--node: '%s' is not 1 to 32 of a-z, 0-9 and '-'", st.arg);
			o->node = st.arg;
			break;
		case 'c': o->cert = st.arg; break;
		case 'k': o->key = st.arg; break;
		case 1: o->connect_timeout = number("--connect-timeout", st.arg, 1, 3600); break;
		case 2: o->header_timeout = number("--header-timeout", st.arg, 1, 3600); break;
		case 3: o->idle_timeout = number("--idle-timeout", st.arg, 1, 86400 * 7); break;
		case 4: o->max_conns = number("--max-conns", st.arg, 1, 65536); break;
		case 5: o->user = st.arg; break;
		case 13: trusted_peers(o, st.arg); break;
		case 20: {
			static struct upstream up;
			char err[300];

			if (!CONFIG_UPSTREAM)
				usage_error("%s", "--upstream: this tunneld was built without it (CONFIG_UPSTREAM)");
			if (upstream_url(&up, st.arg, err, sizeof err) < 0)
				usage_error("%s", err);
			o->up = &up;
			break;
		}
		case 21: o->up_auth = st.arg; break;
		case 22: o->up_cacert = st.arg; break;
		case 23:
			if (!CONFIG_TLS_TICKETS)
				usage_error("%s", "--ticket-key: this tunneld was built without tickets (CONFIG_TLS_TICKETS)");
			o->ticket_key = st.arg;
			break;
		/* RFC 8446 4.6.1: at most seven days. */
		case 24: o->ticket_lifetime = number("--ticket-lifetime", st.arg, 1, 86400 * 7); break;
		case 25: o->spares = number("--spares", st.arg, 0, SPARES_MAX); break;
		case 6:
			if (!strcmp(st.arg, "syslog"))
				o->log = LOG_TO_SYSLOG;
			else if (!strcmp(st.arg, "stderr"))
				o->log = LOG_TO_STDERR;
			else
				usage_error("--log: '%s' is not syslog or stderr", st.arg);
			break;
		case 'v': o->verbose = 1; break;
		case 'V':
			print_version();
			exit(0);
		case 'h': (void)fd_puts(1, usage); exit(0);
		case ':': usage_error("%s needs a value", st.elem);
		default: usage_error("unknown option '%s'", st.elem);
		}
	}
	if (st.operand)
		usage_error("unexpected argument '%s'", st.operand);
}

/* Options that cannot work together or in this build: a usage error. */
static void check_options(const struct opts *o)
{
	if (!CONFIG_AUTH && o->users_path)
		usage_error("%s", "--users: this tunneld was built without authentication (CONFIG_AUTH)");
	/* Printable ASCII without '"' and '\\': it goes inside a quoted string. */
	if (strlen(o->realm) > 64 ||
	    strspn(o->realm, " !#$%&'()*+,-./0123456789:;<=>?@ABCDEFGHIJKLMNOPQRSTUVWXYZ[]^_`"
			    "abcdefghijklmnopqrstuvwxyz{|}~") != strlen(o->realm))
		usage_error("--realm: '%s' is not up to 64 printable ASCII characters without quotes", o->realm);
	if (!o->cert != !o->key)
		usage_error("%s", "--cert and --key go together");
	if (!CONFIG_TLS && o->cert)
		usage_error("%s", "--cert/--key: this tunneld was built without TLS (CONFIG_TLS)");
	if (o->ticket_key && !o->cert)
		usage_error("%s", "--ticket-key needs --cert and --key");
	if (!CONFIG_HTTP_TUNNEL && o->tunnel_path)
		usage_error("%s", "--http-tunnel: this tunneld was built without it (CONFIG_HTTP_TUNNEL)");
	if (CONFIG_HTTP_TUNNEL && o->node[0] && !o->tunnel_path)
		usage_error("%s", "--node: names the sessions of --http-tunnel, which is not given");
	if ((o->up_auth || o->up_cacert) && !o->up)
		usage_error("%s", o->up_auth ? "--upstream-auth needs --upstream"
					     : "--upstream-cacert needs --upstream");
	if (o->up && o->up->tls && !CONFIG_TLS)
		usage_error("%s", "--upstream https://: this tunneld was built without TLS (CONFIG_TLS)");
	if (o->up && o->up->tls != !!o->up_cacert)
		usage_error("%s", o->up_cacert ? "--upstream-cacert: the upstream is http://, not https://"
					       : "--upstream https:// needs --upstream-cacert FILE");
	/* The path is compared byte for byte with the request's. */
	if (o->tunnel_path && (o->tunnel_path[0] != '/' || strlen(o->tunnel_path) > 128 ||
			       strcspn(o->tunnel_path, "?# \t\r\n") != strlen(o->tunnel_path)))
		usage_error("--http-tunnel: '%s' is not a path like /tunnel (no '?', '#' or space)",
			    o->tunnel_path);
}

int main(int argc, char **argv)
{
	static struct opts o = { .realm = "tunneld", .connect_timeout = 10, .header_timeout = 10,
				 .idle_timeout = 600, .max_conns = 256, .session_timeout = 60,
				 .max_sessions = 32, .max_client = 8, .node = "",
				 .ticket_lifetime = 86400, .spares = 4 };
	static struct acl acl;
	static struct auth auth;
	struct stat sb;
	int fds[LISTEN_MAX], nfds = 0, chan = -1, snap = -1;
	unsigned long long rnd[1];
	char err[256];
	int spare = spare_env(argv[0], fds, &nfds, &chan, &snap, o.scope, sizeof o.scope);

	/* Until --log is known, messages go to stderr unless it is a socket:
	 * in inetd mode it is the client's connection. */
	int err_sock = fstat(2, &sb) == 0 && S_ISSOCK(sb.st_mode);

	o.log = err_sock ? LOG_TO_SYSLOG : LOG_TO_STDERR;
	log_open(o.log, 0);
	parse_options(argc, argv, &o);
	/* Under busybox inetd fd 2 is the client's socket too: no log text may
	 * reach a client, whatever --log says (a standard error that is no
	 * socket is none: no fstat() of both). */
	int stderr_is_client = o.log == LOG_TO_STDERR && err_sock && same_socket(0, 2);
	if (stderr_is_client)
		o.log = LOG_TO_SYSLOG;
	log_open(o.log, o.verbose);
	if (stderr_is_client)
		logmsg(LOG_WARNING, "--log stderr: standard error is the client's socket; logging to syslog");
	if (spare < 0) {
		logmsg(LOG_ERR, "TUNNELD_SPARE: not a spare of its parent (its listener ended?)");
		return 1;
	}

	if (!o.nlisten && !spare)
		nfds = inherited_listeners(fds);
	check_options(&o);
	o.acl = &acl;
	o.auth = o.users_path ? &auth : NULL;
	if (spare)
		serve_spare(&o, fds, nfds, chan, snap);
	/* Serving many connections, the files are read once, and before
	 * binding: a bad file never opens a port that then closes at once. */
	if (o.nlisten || nfds) {
		/* What the spares will read instead (spare.h). */
		if (o.spares)
			file_keep();
		if (load_config(&o, err, sizeof err) < 0 ||
		    (CONFIG_TLS && o.cert && tls_server_init(o.cert, o.key, TLS_PAIR_CHECK, err, sizeof err) < 0) ||
		    (CONFIG_TLS_TICKETS && o.ticket_key &&
		     tls_tickets_load(o.ticket_key, (unsigned)o.ticket_lifetime, err, sizeof err) < 0)) {
			logmsg(LOG_ERR, "%s", err);
			return EXIT_CONFIG;
		}
	}
	for (int i = 0; i < o.nlisten; i++) {
		fds[nfds] = net_listen(o.listen[i], err, sizeof err);
		/* Few descriptors: the ports come first, then spares if room. */
		if (fds[nfds] < 0 && errno == EMFILE && file_kept() >= 0) {
			file_keep_end();
			fds[nfds] = net_listen(o.listen[i], err, sizeof err);
		}
		if (fds[nfds] < 0) {
			logmsg(LOG_ERR, "--listen %s", err);
			return EXIT_USAGE;
		}
		nfds++;
	}
	own_ports(&o, fds, nfds);
	if (!nfds)
		strfmt(o.scope, sizeof o.scope, "%08x", fnv1a(argc, argv));
	if (!o.user && geteuid() == 0)
		logmsg(LOG_WARNING, "running as root: --user NAME would drop root after the files are read");
	if (!nfds)
		serve(&o, NULL);
	if (o.user && drop_privileges(o.user) < 0)
		return EXIT_USAGE;
	/* Connections come once tunneld is what serves them: privileges
	 * dropped (binding a port below 1024 needed them). */
	for (int i = 0; i < o.nlisten; i++)
		if (listen(fds[nfds - o.nlisten + i], 128) < 0) {
			logmsg(LOG_ERR, "--listen %s: %s", o.listen[i], strerror(errno));
			return EXIT_USAGE;
		}
	if (getrandom(rnd, sizeof rnd, 0) != (ssize_t)sizeof rnd) {
		logmsg(LOG_ERR, "getrandom: %s", strerror(errno));
		return 1;
	}
	strfmt(o.scope, sizeof o.scope, "l%016llx", rnd[0]);
	logmsg(LOG_INFO, "listening on %d socket%s", nfds, nfds > 1 ? "s" : "");
	serve_listeners(fds, nfds, &o, argv);
}
