/* Fresh processes for connections, connections handed between processes,
 * and places that count processes without a parent (spawn.h).
 *
 * A process that served one session or request must never serve another
 * one from the state it kept: a request it does not own goes to a process
 * that starts clean, a fork of one that has served nothing. With --listen
 * that is the listener, which counts every process against --max-conns; in
 * inetd mode, a spawner the connection's process forked before it read a
 * byte of the request (tunneld.c), the processes it starts counting
 * themselves. Either way no process that reads requests ever needs fork or
 * exec, and its sandbox forbids both. */
#include <errno.h>
#include <poll.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <sys/un.h>
#include <unistd.h>

#include "fmt.h"
#include "spawn.h"

#define HEAD (offsetof(struct handover, buf))

static int chan = -1;          /* to the listener or the spawner */

int fd_send(int u, int fd, const struct handover *ho, int timeout_ms)
{
	union { struct cmsghdr h; char b[CMSG_SPACE(sizeof(int))]; } cm = { 0 };
	struct iovec iov = { (void *)ho, HEAD + ho->len };
	struct msghdr m = { 0 };
	long long deadline;

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
	deadline = now_ms() + timeout_ms;
	for (;;) {
		if (sendmsg(u, &m, MSG_NOSIGNAL | MSG_DONTWAIT) >= 0)
			return 0;
		if ((errno != EAGAIN && errno != EINTR) || net_wait(u, POLLOUT, deadline) < 0)
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
	if (net_wait(u, POLLIN, now_ms() + timeout_ms) < 0)
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

void spawn_init(int c)
{
	chan = c;
}

int spawn(int fd, const struct handover *ho)
{
	return chan >= 0 ? fd_send(chan, fd, ho, 2000) : -1;
}

int place_take(const char *scope, const char *kind, int max)
{
	for (int k = 0; k < max; k++) {
		struct sockaddr_un sa = { .sun_family = AF_UNIX };
		/* sun_path[0] stays 0: the abstract namespace, nothing on disk. */
		int n = strfmt(sa.sun_path + 1, sizeof sa.sun_path - 1, "tunneld/%u/%s/%s/%d",
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
