/* tunnel: the client of tunneld. It carries one TCP stream (stdin/stdout,
 * or each connection accepted on --listen) to TARGET through SERVER, as
 * GET/POST requests (http mode, tunnel_http.c) or one CONNECT (connect mode,
 * tunnel_connect.c). This file: the options, the credentials and URLs they
 * name, the messages, and --listen's one process per connection.
 *
 * Terminal paths go through die(): one line on stderr and a sysexits status. */
#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "config.h"
#include "file.h"
#include "tls.h"
#include "tunnel.h"
#include "version.h"

#define TUNNELS_MAX 64       /* --listen: tunnels at once */

pid_t peer;
int report_fd = 2;

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

void say(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsay(2, fmt, ap);
	va_end(ap);
}

void die(int code, const char *fmt, ...)
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
	die(EX_USAGE, "%s (see --help)", msg);
}

void sleep_ms(int ms)
{
	struct timespec ts = { ms / 1000, ms % 1000 * 1000000L };

	while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
		;
}

/* ---- Credentials ---------------------------------------------------- */

/* The Basic token of user:pass (RFC 7617) into out: http.c's. */
static int basic(const char *user, size_t ulen, const char *pass, size_t plen,
		 char out[AUTH_B64 + 1])
{
	return http_basic(user, ulen, pass, plen, out, AUTH_B64 + 1);
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
		if (file_read(pwfile, 1, pw, sizeof pw, err, sizeof err) < 0)
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

/* ---- main ------------------------------------------------------------ */

static void __attribute__((noreturn)) tunnel_one(struct tun *t, int in, int out)
{
	if (resolve(t) < 0)
		die(EX_UNAVAILABLE, "%s", t->why);
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
