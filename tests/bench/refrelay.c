/* The reference relay of `make bench`: the least a TCP relay can do. No
 * request to read, no rules, no log: connect to a fixed target and splice
 * both ways through two default (64 KiB) pipes, each direction pumped
 * (in -> pipe -> out, again) until a side would block, and only then poll;
 * the half-close is passed on. What tunneld's relay is measured
 * against.
 *
 *   refrelay -l PORT HOST PORT   listen on 127.0.0.1:PORT, fork per connection
 *   refrelay HOST PORT           inetd style: the client's socket on stdin/stdout
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define CHUNK 65536

struct dir { int in, out, p[2]; size_t held; int eof, shut; };

static void pump(struct dir *d)
{
	for (;;) {
		if (!d->held && !d->eof) {
			ssize_t n = splice(d->in, NULL, d->p[1], NULL, CHUNK, SPLICE_F_MOVE | SPLICE_F_NONBLOCK);
			if (n > 0)
				d->held = (size_t)n;
			else if (n == 0)
				d->eof = 1;
			else if (errno == EAGAIN)
				break;
			else
				exit(1);
		}
		if (!d->held)
			break;
		ssize_t m = splice(d->p[0], NULL, d->out, NULL, d->held, SPLICE_F_MOVE | SPLICE_F_NONBLOCK);
		if (m > 0)
			d->held -= (size_t)m;
		else if (errno == EAGAIN)
			break;  /* out is full: poll for it */
		else
			exit(1);
	}
	if (d->eof && !d->held && !d->shut) {
		d->shut = 1;
		shutdown(d->out, SHUT_WR);
	}
}

static void relay(int cin, int cout, int t)
{
	struct dir d[2] = { { cin, t, { -1, -1 }, 0, 0, 0 }, { t, cout, { -1, -1 }, 0, 0, 0 } };
	int i;

	for (i = 0; i < 2; i++)
		if (pipe2(d[i].p, O_NONBLOCK) < 0)
			exit(1);
	fcntl(cin, F_SETFL, O_NONBLOCK);
	fcntl(cout, F_SETFL, O_NONBLOCK);
	fcntl(t, F_SETFL, O_NONBLOCK);
	while (!d[0].shut || !d[1].shut) {
		struct pollfd pf[4];
		int n = 0;
		for (i = 0; i < 2; i++) {
			if (!d[i].eof && !d[i].held)
				pf[n++] = (struct pollfd){ d[i].in, POLLIN, 0 };
			if (d[i].held)
				pf[n++] = (struct pollfd){ d[i].out, POLLOUT, 0 };
		}
		if (poll(pf, (nfds_t)n, -1) < 0 && errno != EINTR)
			exit(1);
		pump(&d[0]);
		pump(&d[1]);
	}
}

static int tcp(const char *host, const char *port, int listening)
{
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons((unsigned short)atoi(port)) };
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0), one = 1;

	inet_pton(AF_INET, host, &a.sin_addr);
	if (listening) {
		setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
		if (bind(fd, (struct sockaddr *)&a, sizeof a) < 0 || listen(fd, 1024) < 0)
			exit(2);
	} else if (connect(fd, (struct sockaddr *)&a, sizeof a) < 0) {
		exit(1);
	}
	return fd;
}

int main(int argc, char **argv)
{
	signal(SIGPIPE, SIG_IGN);
	if (argc == 5 && !strcmp(argv[1], "-l")) {
		int l = tcp("127.0.0.1", argv[2], 1);
		signal(SIGCHLD, SIG_IGN);  /* children reap themselves */
		for (;;) {
			int c = accept4(l, NULL, NULL, SOCK_CLOEXEC);
			if (c < 0)
				continue;
			if (fork() == 0) {
				close(l);
				relay(c, c, tcp(argv[3], argv[4], 0));
				_exit(0);
			}
			close(c);
		}
	}
	if (argc != 3)
		return 64;
	relay(0, 1, tcp(argv[1], argv[2], 0));
	return 0;
}
