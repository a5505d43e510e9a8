/* Fresh processes for connections, connections handed between processes,
 * and places that count processes without a parent (spawn.h).
 *
 * A process that served one session or request must never serve another
 * one from the state it kept: a request it does not own goes to a process
 * that starts clean. With --listen that is a fork of the listener, which
 * has served nothing and counts every process against --max-conns; in inetd
 * mode there is no such parent, so the process re-executes tunneld, which
 * starts with a fresh address space and reads its files anew. */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <sys/un.h>
#include <unistd.h>

#include "spawn.h"

#define HANDED_FD 3            /* where an exec'd process finds its message */
#define HEAD (offsetof(struct handover, buf))

static int chan = -1;          /* the listener's channel, or -1: re-exec */
static int spawn_argc;
static char **spawn_argv;

static int wait_for(int fd, short events, int timeout_ms)
{
	struct pollfd p = { fd, events, 0 };
	long long deadline = now_ms() + timeout_ms;
	int r;

	do {
		long long left = deadline - now_ms();

		r = poll(&p, 1, left > 0 ? (int)left : 0);
	} while (r < 0 && errno == EINTR);
	return r;
}

int fd_send(int u, int fd, const struct handover *ho, int timeout_ms)
{
	union { struct cmsghdr h; char b[CMSG_SPACE(sizeof(int))]; } cm = { 0 };
	struct iovec iov = { (void *)ho, HEAD + ho->len };
	struct msghdr m = { 0 };

	if (ho->len > sizeof ho->buf)
		return -1;
	m.msg_iov = &iov;
	m.msg_iovlen = 1;
	m.msg_control = cm.b;
	m.msg_controllen = sizeof cm.b;
	cm.h.cmsg_level = SOL_SOCKET;
	cm.h.cmsg_type = SCM_RIGHTS;
	cm.h.cmsg_len = CMSG_LEN(sizeof(int));
	memcpy(CMSG_DATA(&cm.h), &fd, sizeof fd);
	for (;;) {
		if (sendmsg(u, &m, MSG_NOSIGNAL | MSG_DONTWAIT) >= 0)
			return 0;
		if ((errno != EAGAIN && errno != EINTR) || wait_for(u, POLLOUT, timeout_ms) <= 0)
			return -1;
	}
}

int fd_recv(int u, struct handover *ho, int timeout_ms)
{
	union { struct cmsghdr h; char b[CMSG_SPACE(4 * sizeof(int))]; } cm;
	struct iovec iov = { ho, sizeof *ho };
	struct msghdr m = { 0 };
	struct cmsghdr *ch;
	ssize_t n;
	int fd = -1, bad;

	m.msg_iov = &iov;
	m.msg_iovlen = 1;
	m.msg_control = cm.b;
	m.msg_controllen = sizeof cm.b;
	if (wait_for(u, POLLIN, timeout_ms) <= 0)
		return -1;
	n = recvmsg(u, &m, MSG_DONTWAIT | MSG_CMSG_CLOEXEC);
	if (n < 0)
		return -1;
	bad = (size_t)n < HEAD || ho->len != (size_t)n - HEAD || m.msg_flags & (MSG_TRUNC | MSG_CTRUNC);
	/* Exactly one descriptor; any other is closed, never kept. */
	for (ch = CMSG_FIRSTHDR(&m); ch; ch = CMSG_NXTHDR(&m, ch)) {
		if (ch->cmsg_level != SOL_SOCKET || ch->cmsg_type != SCM_RIGHTS)
			continue;
		for (size_t i = 0; CMSG_LEN((i + 1) * sizeof(int)) <= ch->cmsg_len; i++) {
			int d;

			memcpy(&d, CMSG_DATA(ch) + i * sizeof(int), sizeof d);
			if (fd < 0 && !bad)
				fd = d;
			else
				close(d);
		}
	}
	return fd;
}

void spawn_init(int c, int argc, char **argv)
{
	chan = c;
	spawn_argc = argc;
	spawn_argv = argv;
}

/* The child of spawn() in inetd mode: nothing of the parent's stays open
 * but the message (every other descriptor is close-on-exec); fd 0 to 2 are
 * /dev/null until the connection arrives, so no diagnostic reaches a
 * client's socket. */
static void __attribute__((noreturn)) reexec(int msg, int err)
{
	char *av[spawn_argc + 2];
	struct stat st;
	int null = open("/dev/null", O_RDWR);

	av[0] = spawn_argv[0];
	av[1] = "--handed";  /* first, where main() looks for it */
	for (int i = 1; i <= spawn_argc; i++)  /* through argv's NULL */
		av[i + 1] = spawn_argv[i];
	signal(SIGCHLD, SIG_DFL);
	if (null >= 0) {
		dup2(null, 0);
		dup2(null, 1);
		if (fstat(2, &st) == 0 && S_ISSOCK(st.st_mode))
			dup2(null, 2);
		if (null > 2)
			close(null);
	}
	if (dup2(msg, HANDED_FD) == HANDED_FD && fcntl(HANDED_FD, F_SETFD, 0) == 0)
		execv("/proc/self/exe", av);
	(void)!write(err, &errno, sizeof errno);
	_exit(127);
}

int spawn(int fd, const struct handover *ho)
{
	int sp[2], ep[2], e;
	pid_t pid;
	ssize_t n;

	if (chan >= 0)
		return fd_send(chan, fd, ho, 2000);
	if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sp) < 0)
		return -1;
	if (pipe2(ep, O_CLOEXEC) < 0) {
		close(sp[0]);
		close(sp[1]);
		return -1;
	}
	pid = fd_send(sp[0], fd, ho, 0) < 0 ? -1 : fork();
	if (pid == 0)
		reexec(sp[1], ep[1]);
	close(sp[0]);
	close(sp[1]);
	close(ep[1]);
	/* Nothing to read: the exec happened. An errno: it did not. */
	do
		n = read(ep[0], &e, sizeof e);
	while (n < 0 && errno == EINTR);
	close(ep[0]);
	return pid < 0 || n != 0 ? -1 : 0;
}

int spawn_received(struct handover *ho)
{
	int fd = fd_recv(HANDED_FD, ho, 1000);

	close(HANDED_FD);
	if (fd < 0)
		return -1;
	if (dup2(fd, 0) < 0 || dup2(fd, 1) < 0)
		return -1;
	if (fd > 1)
		close(fd);
	return 0;
}

int place_take(const char *scope, const char *kind, int max)
{
	for (int k = 0; k < max; k++) {
		struct sockaddr_un sa = { .sun_family = AF_UNIX };
		/* sun_path[0] stays 0: the abstract namespace, nothing on disk. */
		int n = snprintf(sa.sun_path + 1, sizeof sa.sun_path - 1, "tunneld/%u/%s/%s/%d",
				 (unsigned)geteuid(), scope, kind, k);
		int fd;

		if (n < 0 || (size_t)n >= sizeof sa.sun_path - 1)
			return -2;
		/* Bound, never listening: nobody can connect to it or send to it. */
		fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
		if (fd < 0)
			return -2;
		if (bind(fd, (struct sockaddr *)&sa,
			 (socklen_t)(offsetof(struct sockaddr_un, sun_path) + 1 + (size_t)n)) == 0)
			return fd;
		close(fd);
		if (errno != EADDRINUSE)
			return -2;
	}
	return -1;
}
