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
#include "net.h"
#include "relay.h"

/* The pipe capacity is 64 KiB by default: move up to that per splice. */
#define SPLICE_CHUNK 65536

struct half {
	int in, out;
	ssize_t (*rd)(int, void *, size_t);        /* read(2) or TLS */
	ssize_t (*wr)(int, const void *, size_t);  /* write(2) or TLS */
	size_t len, off;        /* bytes held, and written so far (copy mode) */
	int (*pending)(void);                      /* bytes rd holds unseen by poll() */
	int eof, shut;
	int moved;                                 /* a byte came or went, or the end */
	void (*end)(void);                         /* before the half-close */
	int pipe[2];            /* splice mode when pipe[0] >= 0 */
	unsigned long long *count;
	char *buf;              /* CONFIG_RELAY_BUF bytes, for copy mode */
};

/* Static, not on the stack: while splice(2) moves the bytes these pages
 * are never touched, so they cost a process no memory. */
static char bufs[2][CONFIG_RELAY_BUF];

/* Non-blocking, with no F_SETFL when it is already (the second half's
 * descriptors are the first's, or share their open file). */
static void nonblock(int fd)
{
	int fl = fcntl(fd, F_GETFL);

	if (fl >= 0 && !(fl & O_NONBLOCK))
		fcntl(fd, F_SETFL, fl | O_NONBLOCK);
}

/* Bytes go from side `from` to side `to`: through their io, or plainly
 * (read(2)/write(2), which may splice instead). */
static void half_init(struct half *h, const struct relay_side *from, const struct relay_side *to,
		      unsigned long long *count, char *buf)
{
	const struct relay_io *rio = from->io, *wio = to->io;

	h->in = from->in;
	h->out = to->out;
	h->rd = rio ? rio->read : read;
	h->wr = wio ? wio->write : write;
	h->pending = rio ? rio->pending : NULL;
	h->end = wio ? wio->end : NULL;
	h->len = h->off = 0;
	h->eof = h->shut = h->moved = 0;
	h->count = count;
	h->buf = buf;
	h->pipe[0] = h->pipe[1] = -1;
	/* Bytes that pass through TLS must come into user space. */
	if (CONFIG_SPLICE && !rio && !wio && pipe2(h->pipe, O_CLOEXEC | O_NONBLOCK) < 0)
		h->pipe[0] = h->pipe[1] = -1;
	nonblock(h->in);
	nonblock(h->out);
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

/* Every socket is dropped with a reset (SO_LINGER 0) when the process
 * exits, so a reset seen on one side reaches the other. */
static void reset(const struct half *hs)
{
	struct linger lg = { 1, 0 };

	for (int i = 0; i < 2; i++) {
		setsockopt(hs[i].in, SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
		setsockopt(hs[i].out, SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
	}
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
			if (n < 0 && errno != EAGAIN && errno != EINTR)
				return errno == ECONNRESET ? "reset" : "read-error";
			if (n < 0)
				break;
			h->moved = 1;
			if (n > 0)
				h->len = (size_t)n;
			else
				h->eof = 1;
		} else {
			n = drain(h);
			if (n > 0) {
				h->len -= (size_t)n;
				*h->count += (unsigned long long)n;
				h->moved = 1;
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

/* The poll timeout: none while a direction holds bytes (its peer is slow,
 * the stream is not idle) or without an idle limit; else what is left of
 * idle_ms since a byte last moved. *end is that deadline, -1 for none. */
static int idle_wait(const struct half *hs, int idle_ms, long long *end)
{
	long long now;

	if (idle_ms < 0 || hs[0].len || hs[1].len) {
		*end = -1;
		return -1;
	}
	now = now_ms();
	if (*end < 0 || hs[0].moved || hs[1].moved)
		*end = now + idle_ms;
	return *end > now ? (int)(*end - now) : 0;
}

const char *relay(const struct relay_side *a, const struct relay_side *b, int idle_ms,
		  struct relay_stats *st)
{
	struct half hs[2];
	const char *why = NULL;
	long long end = -1;

	half_init(&hs[0], a, b, &st->up, bufs[0]);
	half_init(&hs[1], b, a, &st->down, bufs[1]);
	while (!why && !(hs[0].shut && hs[1].shut)) {
		struct pollfd pfd[2];
		int i, r, wait = idle_wait(hs, idle_ms, &end), unseen = 0;

		for (i = 0; i < 2; i++) {
			struct half *h = &hs[i];

			pfd[i].fd = h->len ? h->out : h->shut || h->eof ? -1 : h->in;
			pfd[i].events = h->len ? POLLOUT : POLLIN;
			pfd[i].revents = 0;
			h->moved = 0;
			/* Bytes a TLS library holds are not visible to poll(). */
			if (h->pending && !h->len && !h->eof && h->pending()) {
				unseen |= 1 << i;
				pfd[i].fd = -1;
			}
		}
		r = poll(pfd, 2, unseen ? 0 : wait);
		if (unseen && r < 0)
			r = 0;
		for (i = 0; i < 2; i++)
			if (unseen & 1 << i) {
				pfd[i].revents = POLLIN;
				r++;
			}
		if (r == 0 && end >= 0 && now_ms() >= end)
			why = "idle";
		else if (r < 0 && errno != EINTR)
			why = "poll-error";
		for (i = 0; r > 0 && !why && i < 2; i++)
			why = step(&hs[i], pfd[i].revents);
	}
	if (why && strcmp(why, "idle"))
		reset(hs);
	half_close(&hs[0]);
	half_close(&hs[1]);
	return why;
}
