#ifndef RELAY_H
#define RELAY_H
#include <sys/types.h>

/* Bytes moved each way: up is client to target, down target to client. */
struct relay_stats {
	unsigned long long up, down;
};

/* How a side's bytes are read and written when not plainly (TLS):
 * read(2)/write(2)-shaped calls, what the library holds unseen by poll(),
 * and what to do before half-closing toward that side. */
struct relay_io {
	ssize_t (*read)(int fd, void *buf, size_t len);
	ssize_t (*write)(int fd, const void *buf, size_t len);
	int (*pending)(void);
	void (*end)(void);
};

/* One end of the relay: read from in, written to out (one socket, or a
 * pair such as stdin/stdout), through io, or plainly when io is NULL. */
struct relay_side {
	int in, out;
	const struct relay_io *io;
};

/* Relay between a and b until both directions have ended: up counts a to
 * b, down b to a. Either side, or both, may have an io. A half-close is
 * forwarded; a reset resets the other side. Returns NULL for a clean end,
 * else a short reason ("idle", "reset", ...). idle_ms < 0: no idle limit. */
const char *relay(const struct relay_side *a, const struct relay_side *b, int idle_ms,
		  struct relay_stats *st);

#endif
