#ifndef RELAY_H
#define RELAY_H
#include <sys/types.h>

/* Bytes moved each way: up is client to target, down target to client. */
struct relay_stats {
	unsigned long long up, down;
};

/* How the client's bytes are read and written when not plainly (TLS):
 * read(2)/write(2)-shaped calls, what the library holds unseen by poll(),
 * and what to do before half-closing toward the client. */
struct relay_io {
	ssize_t (*read)(int fd, void *buf, size_t len);
	ssize_t (*write)(int fd, const void *buf, size_t len);
	int (*pending)(void);
	void (*end)(void);
};

/* Relay between the client (read from cin, write to cout: the same socket
 * in every serving mode) and the target socket until both directions have
 * ended. A half-close is forwarded; a reset resets the other side. Returns
 * NULL for a clean end, else a short reason ("idle", "reset", ...). */
const char *relay(int cin, int cout, int target, int idle_ms, const struct relay_io *io,
		  struct relay_stats *st);

#endif
