#ifndef SPAWN_H
#define SPAWN_H
#include <stddef.h>

#include "config.h"
#include "net.h"

/* Client connections moved between tunneld's own processes (the GET/POST
 * tunnel's session holders, and fresh processes for requests they do not
 * serve), and processes counted where no parent counts them. */

/* A connection on the move: who the client is, the address it reached
 * (for the loop check), and the bytes read from it so far. */
struct handover {
	struct endpoint client, local;
	struct endpoint front;  /* where a PROXY header's client connected */
	size_t len;
	char buf[CONFIG_HEADER_MAX];
};

#if CONFIG_HTTP_TUNNEL
/* Send the descriptor fd with ho (its first len bytes of buf) as one message
 * on the unix socket u, waiting at most timeout_ms for room. 0 or -1. */
int fd_send(int u, int fd, const struct handover *ho, int timeout_ms);

/* Receive such a message on u within timeout_ms: the descriptor, or -1
 * (nothing, or a malformed message, whose descriptors are closed). */
int fd_recv(int u, struct handover *ho, int timeout_ms);

/* Where fresh processes come from: the listener (tunneld --listen or
 * LISTEN_FDS) or, in inetd mode, the spawner, asked over chan. */
void spawn_init(int chan);

/* Have a fresh process, started from a clean state, serve connection fd
 * from ho on. 0 when it is on its way (the caller closes its fd), -1 when
 * none could be had (the caller answers 503). */
int spawn(int fd, const struct handover *ho);

/* Take one of max places of a kind ("s", "c", ...) of the tunneld named by
 * scope: the first free abstract unix socket name "tunneld/UID/SCOPE/KIND/K",
 * K < max, bound by this process and freed by the kernel when it closes or
 * ends, however it ends. The descriptor; -1 when every place is taken, -2
 * on another error. */
int place_take(const char *scope, const char *kind, int max);
#else
/* Only the GET/POST tunnel moves connections: compiled out with it. */
static inline int fd_recv(int u, struct handover *ho, int t) { (void)u; (void)ho; (void)t; return -1; }
static inline void spawn_init(int c) { (void)c; }
static inline int place_take(const char *scope, const char *kind, int max)
{
	(void)scope;
	(void)kind;
	(void)max;
	return -2;
}
#endif

#endif
