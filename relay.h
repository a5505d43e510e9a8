#ifndef RELAY_H
#define RELAY_H

/* Bytes moved each way: up is client to target, down target to client. */
struct relay_stats {
	unsigned long long up, down;
};

/* Relay between the client (read from cin, write to cout: the same socket
 * in every serving mode) and the target socket until both directions have
 * ended. A half-close is forwarded; a reset resets the other side. Returns
 * NULL for a clean end, else a short reason ("idle", "reset", ...). */
const char *relay(int cin, int cout, int target, int idle_ms, struct relay_stats *st);

#endif
