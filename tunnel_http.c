/* tunnel: the GET/POST session client (PROTOCOL.md).
 *
 * Open a session with a POST; then this process sends what the local side
 * writes (POST ?o=N, keeping the bytes until they are acknowledged and
 * resending the rest) while a forked one long-polls for what the target
 * sends (GET ?o=N). Each keeps its own connection (a link, tunnel_connect.c).
 * When both directions have ended, DELETE. */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "config.h"
#include "tunnel.h"
#include "version.h"

/* The signal that asks the sending process to stop, 0 if none. */
static volatile sig_atomic_t stopping;

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
		die(EX_USAGE, "a request head over %d bytes", REQ_MAX);
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

/* The open's body: a session token (with a node name or without, taken
 * as it is), then a line end or none. Its length, or 0. */
static size_t token_line(const char *s, size_t n)
{
	if (n && s[n - 1] == '\n')
		n -= 1 + (n > 1 && s[n - 2] == '\r');
	return http_session_token(s, n) < 0 ? 0 : n;
}

/* Open the session: POST the target, take the token. A tunneld at its
 * limit (503) is asked again for RETRY_MS; anything else unanswered ends
 * here, SERVER (or the proxy) being unreachable. */
static void open_session(struct tun *t, struct link *l)
{
	long long first = now_ms();
	int pause = 100;
	size_t n;

	for (;;) {
		if (exchange(t, l, "POST", "", t->target, strlen(t->target)) < 0)
			die(EX_UNAVAILABLE, "%s", t->why);
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
	if (!(n = token_line(t->a.body, t->a.blen)))
		die(EX_PROTOCOL, "%s answered the open without a session token: is %s "
		    "its --http-tunnel path?", t->sname, t->server.path);
	memcpy(t->token, t->a.body, n);
	t->token[n] = 0;
}

/* DELETE, once: a session left open expires on the server by itself. */
static void close_session(struct tun *t, struct link *l)
{
	if (exchange(t, l, "DELETE", "", NULL, 0) < 0 && t->verbose)
		say("%s", t->why);
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

/* The receiving process: long polls from offset 0, each taking up to
 * HTTP_ANSWER_MAX bytes (a tunneld before max= answers 64 KiB at most),
 * each answer's bytes written out in order; the target's end becomes the
 * end of out. */
static void __attribute__((noreturn)) receiver(struct tun *t, int out)
{
	struct link l = { -1, 0 };
	unsigned long long off = 0;
	char q[40];

	for (;;) {
		snprintf(q, sizeof q, "?o=%llu&max=%d", off, HTTP_ANSWER_MAX);
		request(t, &l, "GET", q, NULL, 0);
		if (t->a.h.status != 200)
			refused(t, 0);
		if (t->a.h.offset != (long long)off)
			die(EX_PROTOCOL, "%s answered a receive at %llu with offset %lld", t->sname,
			    off, t->a.h.offset);
		if (net_write_all(out, t->a.body, t->a.blen, NULL, -1) < 0)
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
			die(EX_PROTOCOL, "%s acknowledged offset %lld of a send of %llu to %llu",
			    t->sname, t->a.h.offset, base, base + len);
		took = (size_t)(t->a.h.offset - (long long)base);
		memmove(buf, buf + took, len - took);
		len -= took;
		base += took;
		if (eof && len == 0)
			return;
	}
}

void __attribute__((noreturn)) tunnel_http(struct tun *t, int in, int out)
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
