/* The tunnel: two directions, one poll loop. Each direction holds at most
 * one buffer of bytes: nothing more is read from a side until what it sent
 * has been written to the other (back-pressure, bounded memory). With
 * CONFIG_SPLICE the buffer is a kernel pipe and bytes never enter user
 * space; where splice(2) is refused the direction falls back to copying. */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "config.h"
#include "relay.h"

/* The pipe capacity is 64 KiB by default: move up to that per splice. */
#define SPLICE_CHUNK 65536

struct half {
	int in, out;
	ssize_t (*rd)(int, void *, size_t);        /* read(2) or TLS */
	ssize_t (*wr)(int, const void *, size_t);  /* write(2) or TLS */
	size_t len, off;        /* bytes held, and written so far (copy mode) */
	int eof, shut;
	void (*end)(void);                         /* before the half-close */
	int pipe[2];            /* splice mode when pipe[0] >= 0 */
	unsigned long long *count;
	char *buf;              /* CONFIG_RELAY_BUF bytes, for copy mode */
};

/* Static, not on the stack: while splice(2) moves the bytes these pages
 * are never touched, so they cost a process no memory. */
static char bufs[2][CONFIG_RELAY_BUF];

/* rd and wr: NULL for plain read(2)/write(2), which may splice instead. */
static void half_init(struct half *h, int in, int out, unsigned long long *count,
		      ssize_t (*rd)(int, void *, size_t), ssize_t (*wr)(int, const void *, size_t))
{
	h->in = in;
	h->out = out;
	h->rd = rd ? rd : read;
	h->wr = wr ? wr : write;
	h->len = h->off = 0;
	h->eof = h->shut = 0;
	h->end = NULL;
	h->count = count;
	h->pipe[0] = h->pipe[1] = -1;
	/* Bytes that pass through TLS must come into user space. */
	if (CONFIG_SPLICE && !rd && !wr && pipe2(h->pipe, O_CLOEXEC | O_NONBLOCK) < 0)
		h->pipe[0] = h->pipe[1] = -1;
}

static void half_close(struct half *h)
{
	if (h->pipe[0] >= 0) {
		close(h->pipe[0]);
		close(h->pipe[1]);
	}
}

static ssize_t fill(struct half *h)
{
	ssize_t n;

	if (CONFIG_SPLICE && h->pipe[0] >= 0) {
		n = splice(h->in, NULL, h->pipe[1], NULL, SPLICE_CHUNK,
			   SPLICE_F_MOVE | SPLICE_F_NONBLOCK);
		if (n >= 0 || errno != EINVAL)
			return n;
		half_close(h);  /* this fd cannot splice: copy instead */
		h->pipe[0] = -1;
	}
	n = h->rd(h->in, h->buf, CONFIG_RELAY_BUF);
	h->off = 0;
	return n;
}

static ssize_t drain(struct half *h)
{
	if (CONFIG_SPLICE && h->pipe[0] >= 0)
		return splice(h->pipe[0], NULL, h->out, NULL, h->len,
			      SPLICE_F_MOVE | SPLICE_F_NONBLOCK);
	ssize_t n = h->wr(h->out, h->buf + h->off, h->len);
	if (n > 0)
		h->off += (size_t)n;
	return n;
}

/* Both sockets are dropped with a reset (SO_LINGER 0) when the process
 * exits, so a reset seen on one side reaches the other. */
static void reset(int a, int b)
{
	struct linger lg = { 1, 0 };

	setsockopt(a, SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
	setsockopt(b, SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
}

/* A direction whose poll said ready: read, write what was read, and go on
 * until a side would block (not one call per poll), at most STEPS calls so
 * the other direction gets its turn. NULL or a reason. */
#define STEPS 8
static const char *step(struct half *h, short revents)
{
	ssize_t n;

	for (int k = 0; revents && k < STEPS && !(h->eof && h->len == 0); k++) {
		if (h->len == 0) {
			n = fill(h);
			if (n > 0)
				h->len = (size_t)n;
			else if (n == 0)
				h->eof = 1;
			else if (errno != EAGAIN && errno != EINTR)
				return errno == ECONNRESET ? "reset" : "read-error";
			else
				break;
		} else {
			n = drain(h);
			if (n > 0) {
				h->len -= (size_t)n;
				*h->count += (unsigned long long)n;
			} else if (n < 0 && errno != EAGAIN && errno != EINTR) {
				return errno == EPIPE || errno == ECONNRESET ? "reset" : "write-error";
			} else {
				break;
			}
		}
	}
	/* The side ended and all it sent is delivered: pass the half-close
	 * on and keep relaying the other direction. */
	if (h->eof && h->len == 0 && !h->shut) {
		h->shut = 1;
		if (h->end)
			h->end();
		if (shutdown(h->out, SHUT_WR) < 0 && errno == ENOTSOCK)
			close(h->out);
	}
	return NULL;
}

const char *relay(int cin, int cout, int target, int idle_ms, const struct relay_io *io,
		  struct relay_stats *st)
{
	struct half up, down;
	struct half *hs[2] = { &up, &down };
	const char *why = NULL;

	half_init(&up, cin, target, &st->up, io ? io->read : NULL, NULL);
	half_init(&down, target, cout, &st->down, NULL, io ? io->write : NULL);
	up.buf = bufs[0];
	down.buf = bufs[1];
	if (io)
		down.end = io->end;
	fcntl(cin, F_SETFL, fcntl(cin, F_GETFL) | O_NONBLOCK);
	fcntl(cout, F_SETFL, fcntl(cout, F_GETFL) | O_NONBLOCK);
	fcntl(target, F_SETFL, fcntl(target, F_GETFL) | O_NONBLOCK);

	while (!why && !(up.shut && down.shut)) {
		struct pollfd pfd[2];
		int i, r, held = 0;

		for (i = 0; i < 2; i++) {
			struct half *h = hs[i];

			pfd[i].fd = h->len ? h->out : h->shut || h->eof ? -1 : h->in;
			pfd[i].events = h->len ? POLLOUT : POLLIN;
			pfd[i].revents = 0;
		}
		/* Bytes the TLS library holds are not visible to poll(). */
		if (io && io->pending && !up.len && !up.eof && io->pending()) {
			held = 1;
			pfd[0].fd = -1;
		}
		r = poll(pfd, 2, held ? 0 : idle_ms);
		if (held) {
			pfd[0].revents = POLLIN;
			r = r < 0 ? 1 : r + 1;
		}
		if (r == 0)
			why = "idle";
		else if (r < 0 && errno != EINTR)
			why = "poll-error";
		for (i = 0; r > 0 && !why && i < 2; i++)
			why = step(hs[i], pfd[i].revents);
	}
	if (why && strcmp(why, "idle"))
		reset(cin, target);
	half_close(&up);
	half_close(&down);
	return why;
}
