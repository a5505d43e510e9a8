/* Spares: tunneld --listen (and LISTEN_FDS) workers started ahead of their
 * clients (spare.h).
 *
 * A spare is tunneld itself, started by vfork() and exec of a sealed copy
 * of the listener's own binary (see sealed_copy(): the same code, even if
 * the file was replaced since, and where no /proc is mounted) with
 * the listener's command line, and TUNNELD_SPARE in its environment
 * naming what it inherits: the listening sockets, the snapshot of the
 * files the listener read (file.h), the GET/POST tunnel's channel, and
 * its end of a unix socket pair shared by every spare. On that pair a
 * spare tells the listener, in one message, that it took a client (or a
 * connection the listener passed on), and so is a spare no more; it
 * hears there that the listener ended or stops (end of file). */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/sendfile.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "config.h"
#include "file.h"
#include "fmt.h"
#include "http.h"
#include "net.h"
#include "spare.h"
#include "spawn.h"

#define ENV "TUNNELD_SPARE"
#define LISTEN_MAX 16

extern char **environ;

/* What a spare tells: its pid, and whether it took a client of its own
 * (accept) or one the listener passed on. */
struct report {
	pid_t pid;
	int passed;
};

static int sock = -1;                 /* the listener's end */
static int want;                      /* spares to keep waiting */
static pid_t idle[SPARES_MAX];        /* started, no report yet */
static int nidle, passed_on;          /* passed on: not yet taken */
static char **args;
static int exe = -1;                  /* the binary's sealed copy */
/* A spare's environment: the listener's, with TUNNELD_SPARE=...; built
 * here, not by setenv(), which would link the C library's malloc in. */
#define ENV_MAX 256
static char env_line[sizeof ENV + 256];
static char *env[ENV_MAX + 2];
static int keep[LISTEN_MAX + 3], nkeep; /* what a spare inherits: keep[0] the pair's end */
static volatile int exec_errno;       /* the vforked child's */

#ifndef MFD_EXEC
#define MFD_EXEC 0x10U  /* Linux 6.3: asked for, where exec from memfd is a choice */
#endif

/* A spare runs as the listener's user and holds the files' text (a private
 * key, password hashes) and the listening sockets. The kernel lets other
 * processes of that user attach to a process, or read its memory and
 * descriptors, from its exec until it makes itself non-dumpable, unless
 * the file it executes is one its user may not read. So a spare executes
 * a copy of the binary in a memory file with mode 0111 and sealed against
 * any change: non-dumpable from its first instruction, as a fork of a
 * listener that dropped root is. The descriptor, or -1 with errno. */
static int sealed_copy(const char *argv0)
{
	int src = open("/proc/self/exe", O_RDONLY | O_CLOEXEC), m = -1, e;
	struct stat st;
	off_t at = 0;

	if (src < 0 && strchr(argv0, '/'))
		src = open(argv0, O_RDONLY | O_CLOEXEC);
	if (src < 0 || fstat(src, &st) < 0)
		goto out;
	m = memfd_create("tunneld", MFD_CLOEXEC | MFD_ALLOW_SEALING | MFD_EXEC);
	if (m < 0 && errno == EINVAL)
		m = memfd_create("tunneld", MFD_CLOEXEC | MFD_ALLOW_SEALING);
	while (m >= 0 && at < st.st_size && sendfile(m, src, &at, (size_t)(st.st_size - at)) > 0)
		;
	if (m >= 0 && (at != st.st_size || fchmod(m, 0111) < 0 ||
		       fcntl(m, F_ADD_SEALS, F_SEAL_WRITE | F_SEAL_GROW | F_SEAL_SHRINK | F_SEAL_SEAL) < 0)) {
		e = at != st.st_size ? EIO : errno;
		close(m);
		m = -1;
		errno = e;
	}
out:
	e = errno;
	if (src >= 0)
		close(src);
	errno = e;
	return m;
}

int spares_start(const int *fds, int n, int chan, const char *scope, int count, char **argv,
		 char *err, size_t errlen)
{
	char *line = env_line + sizeof ENV;
	size_t room = sizeof env_line - sizeof ENV;
	int sp[2] = { -1, -1 }, snap = file_kept(), k, e = 0;

	strfmt(err, errlen, "no memory file for the files read");
	if (snap < 0)
		goto fail;
	exe = sealed_copy(argv[0]);
	strfmt(err, errlen, "%s: %s", exe < 0 ? "a sealed copy of the binary" : "socketpair",
	       strerror(errno));
	if (exe < 0 || socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sp) < 0)
		goto fail;
	k = strfmt(line, room, "%d %d %d %d %s", (int)getpid(), sp[1], snap, chan, scope);
	for (int i = 0; i < n && k > 0; i++)
		k = strfmt(line + k, room - (size_t)k, " %d", fds[i]) < 0 ? -1 : (int)strlen(line);
	strfmt(err, errlen, "%s: too long", ENV);
	if (k < 0)
		goto fail;
	memcpy(env_line, ENV "=", sizeof ENV);
	strfmt(err, errlen, "more than %d environment variables", ENV_MAX);
	for (char **v = environ; v && *v; v++) {
		if (e == ENV_MAX)
			goto fail;
		if (strncmp(*v, ENV "=", sizeof ENV))
			env[e++] = *v;
	}
	env[e++] = env_line;
	env[e] = NULL;
	keep[nkeep++] = sp[1];
	keep[nkeep++] = snap;
	if (chan >= 0)
		keep[nkeep++] = chan;
	for (int i = 0; i < n; i++)
		keep[nkeep++] = fds[i];
	fcntl(sp[0], F_SETFL, O_NONBLOCK);
	sock = sp[0];
	want = count;
	args = argv;
	return 0;
fail:
	for (int i = 0; i < 2; i++)
		if (sp[i] >= 0)
			close(sp[i]);
	if (exe >= 0)
		close(exe);
	exe = -1;
	file_keep_end();
	return -1;
}

int spares_fd(void)
{
	return sock;
}

void spares_close(void)
{
	if (sock < 0)
		return;
	close(sock);
	close(keep[0]);
	close(exe);
}

int spares_idle(void)
{
	return nidle;
}

int spares_top_up(void)
{
	pid_t pid;
	int r;

	if (sock < 0 || nidle >= want)
		return 0;
	/* vfork: the listener waits the child's exec, a copy of nothing. The
	 * child has its own descriptor table, where what it inherits loses
	 * close-on-exec; the listener's signals stay blocked (the spare
	 * unblocks them), so no handler of the listener runs in it. */
	exec_errno = 0;
	pid = vfork();
	if (pid == 0) {
		for (int i = 0; i < nkeep; i++)
			fcntl(keep[i], F_SETFD, 0);
		fexecve(exe, args, env);
		exec_errno = errno;
		_exit(127);
	}
	if (pid < 0)
		return -1;
	if ((r = exec_errno)) {
		waitpid(pid, NULL, 0);
		errno = r;
		return -1;
	}
	idle[nidle++] = pid;
	return 1;
}

/* Off the list of waiting spares. A spare that ended before its report
 * may have taken a connection passed on: never more passed on than wait. */
static int forget(pid_t pid)
{
	for (int i = 0; i < nidle; i++)
		if (idle[i] == pid) {
			idle[i] = idle[--nidle];
			if (passed_on > nidle)
				passed_on = nidle;
			return 1;
		}
	return 0;
}

int spares_reports(void)
{
	struct report r;
	int n = 0;

	while (sock >= 0 && recv(sock, &r, sizeof r, MSG_DONTWAIT) == (ssize_t)sizeof r)
		if (forget(r.pid)) {
			n++;
			if (r.passed && passed_on > 0)
				passed_on--;
		}
	return n;
}

int spares_ended(pid_t pid)
{
	/* Its report, if it made one, came before its end. */
	spares_reports();
	return forget(pid);
}

int spares_pass(int fd, const struct handover *ho)
{
#if CONFIG_HTTP_TUNNEL
	if (nidle - passed_on > 0 && fd_send(sock, fd, ho, 0) == 0) {
		passed_on++;
		return 0;
	}
#endif
	(void)fd;
	(void)ho;
	return -1;
}

int spares_stop(void)
{
	long long deadline = now_ms() + 1000;
	int ended = 0;

	if (sock < 0)
		return 0;
	shutdown(sock, SHUT_WR);
	while (nidle && now_ms() < deadline) {
		pid_t pid;

		poll(&(struct pollfd){ sock, POLLIN, 0 }, 1, 10);
		spares_reports();
		while ((pid = waitpid(-1, NULL, WNOHANG)) > 0) {
			forget(pid);
			ended++;
		}
	}
	return ended;
}

/* The spare's side. */

static int spare_fd = -1;

/* Up to max decimal numbers (or -1) separated by spaces at s, into v: how
 * many. */
static int numbers(const char *s, long long *v, int max)
{
	int n = 0;

	while (*s && n < max) {
		size_t len = strcspn(s, " ");
		long long x = http_decimal(s, len, 18);

		if (x < 0 && !(len == 2 && s[0] == '-' && s[1] == '1'))
			break;
		v[n++] = x < 0 ? -1 : x;
		s += len;
		s += *s == ' ';
	}
	return n;
}

int spare_env(const char *argv0, int *fds, int *n, int *chan, int *snap, char *scope,
	      size_t scopelen)
{
	const char *e = getenv(ENV), *sc = e, *base = strrchr(argv0, '/');
	long long v[4 + LISTEN_MAX];
	int k;

	if (!e)
		return 0;
	/* Non-dumpable already (sealed_copy()), unless fs.suid_dumpable says
	 * otherwise: then from here on. */
	prctl(PR_SET_DUMPABLE, 0, 0, 0, 0);
	/* "PID SOCK SNAP CHAN SCOPE FD...": the scope is the fifth word. PID
	 * is the parent's, unless the listener ended before this spare came
	 * this far (or some other process set TUNNELD_SPARE). */
	for (int w = 0; w < 4 && sc; w++)
		sc = (sc = strchr(sc, ' ')) ? sc + 1 : NULL;
	k = sc ? (int)strcspn(sc, " ") : 0;
	if (!sc || numbers(e, v, 4) != 4 || v[0] != (long long)getppid() || (size_t)k >= scopelen ||
	    (*n = numbers(sc + k + (sc[k] == ' '), v + 4, LISTEN_MAX)) < 1)
		return -1;
	memcpy(scope, sc, (size_t)k);
	scope[k] = 0;
	for (int i = 0; i < *n; i++)
		fds[i] = (int)v[4 + i];
	spare_fd = (int)v[1];
	*snap = (int)v[2];
	*chan = (int)v[3];
	unsetenv(ENV);
	sigprocmask(SIG_SETMASK, &(sigset_t){ 0 }, NULL);
	/* Named as the command, not as the descriptor it was executed from
	 * (ps, pgrep, killall). */
	prctl(PR_SET_NAME, base ? base + 1 : argv0, 0, 0, 0);
	return 1;
}

/* The spares wait in epoll, each its own, with the listening sockets
 * exclusive: a client wakes one spare, not every one (whose accept() all
 * but one would then find nothing), so that --spares costs nothing per
 * connection. The pair is not exclusive: the listener's end wakes all. */
static int spare_ep = -1;

int spare_wait_init(const int *fds, int n)
{
	struct epoll_event ev = { EPOLLIN | EPOLLRDHUP, { .u32 = (uint32_t)n } };

	spare_ep = epoll_create1(EPOLL_CLOEXEC);
	if (spare_ep < 0 || epoll_ctl(spare_ep, EPOLL_CTL_ADD, spare_fd, &ev) < 0)
		return -1;
	for (int i = 0; i < n; i++) {
		ev = (struct epoll_event){ EPOLLIN | EPOLLEXCLUSIVE, { .u32 = (uint32_t)i } };
		if (epoll_ctl(spare_ep, EPOLL_CTL_ADD, fds[i], &ev) < 0) {
			ev.events = EPOLLIN;  /* before Linux 4.5: every spare wakes */
			if (errno != EINVAL || epoll_ctl(spare_ep, EPOLL_CTL_ADD, fds[i], &ev) < 0)
				return -1;
		}
	}
	return 0;
}

int spare_wait(const int *fds, int n, struct sockaddr_storage *peer, socklen_t *plen,
	       struct handover *ho, int *passed)
{
	struct epoll_event ev[LISTEN_MAX + 1];
	struct report r = { getpid(), 0 };
	int fd = -1;

	while (fd < 0) {
		/* No deadline: a spare waits for a client as long as its
		 * listener lives, and ends when it ends. */
		int k = epoll_wait(spare_ep, ev, n + 1, -1);

		for (int j = 0; j < k && fd < 0; j++) {
			uint32_t i = ev[j].data.u32;

			if (i == (uint32_t)n) {
				if (ev[j].events & (EPOLLRDHUP | EPOLLHUP | EPOLLERR))
					_exit(0);
				if (CONFIG_HTTP_TUNNEL && (fd = fd_recv(spare_fd, ho, 0)) >= 0)
					r.passed = 1;
				continue;
			}
			*plen = sizeof *peer;
			fd = accept4(fds[i], (struct sockaddr *)peer, plen, SOCK_CLOEXEC);
			/* Another spare was first, or the client left: wait on.
			 * Out of descriptors or memory: make way for another. */
			if (fd < 0 && errno != EAGAIN && errno != ECONNABORTED && errno != EINTR)
				_exit(1);
		}
	}
	close(spare_ep);
	*passed = r.passed;
	(void)!send(spare_fd, &r, sizeof r, MSG_DONTWAIT | MSG_NOSIGNAL);
	close(spare_fd);
	return fd;
}
