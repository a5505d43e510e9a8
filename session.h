#ifndef SESSION_H
#define SESSION_H
#include <stddef.h>

#include "http.h"
#include "net.h"
#include "relay.h"
#include "spawn.h"

/* The GET/POST tunnel's sessions (PROTOCOL.md). The process that opened a
 * session holds it: the target connection, the bytes not yet acknowledged,
 * and every client connection that carries its requests. It serves nothing
 * else: other requests go to fresh processes (spawn.h). */

struct session_opts {
	const char *path;          /* the endpoint, --http-tunnel PATH */
	int session_ms;            /* no request for this long: expired */
	int idle_ms;               /* no byte either way for this long: ended */
	int header_ms;             /* a request head must arrive within */
	int max_sessions;          /* sessions at once, of this user's tunneld */
	int max_client;            /* ... and from one client address */
	const char *scope;         /* which tunneld: names its sessions and places */
	const char *node;          /* --node: its tokens' "NAME." prefix, or "" */
};

/* Hand the client connection on fd 0 and ho (the bytes read from it) to
 * the holder of the session the token names, in this tunneld's scope. 0 when it took them (the
 * caller exits); -1 when there is no such session (answer 404); -2 when the
 * holder is busy (503); -3 when it did not answer in time (the connection
 * is shut: exit); -4 when the token is another node's (--node), which is
 * never looked for (answer 404 too). */
int session_pass(const struct session_opts *so, const char *token, size_t token_len,
		 const struct handover *ho);

/* Take this process's places among the sessions open at once in its
 * scope, in total and from the client's address: 0, or -1 when a limit is
 * reached (answer 503). They are freed when the session ends, or the
 * process does. */
int session_places(const struct session_opts *so, const struct endpoint *client);

/* Become the holder of a new session on the connected target (through tio,
 * or plainly when NULL; early: elen bytes it sent that were read already, as
 * behind an upstream's 200): answer the
 * open request on fd 0/1 with the token (keeping the connection as it
 * asks), then
 * serve that connection (from client, to local; rest: the bytes read after
 * the open) and those handed over until the session ends. Then its
 * kept-alive connections go to fresh processes. Returns why it ended
 * (NULL: closed by the client), with the bytes moved each way in st. */
const char *session_hold(const struct session_opts *so, int target, const struct relay_io *tio,
			 const char *early, size_t elen, const struct endpoint *client,
			 const struct endpoint *local, const char *rest, size_t restlen,
			 const struct request *open, struct relay_stats *st);

#endif
