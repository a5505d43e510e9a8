#ifndef SESSION_H
#define SESSION_H
#include <stddef.h>

#include "net.h"
#include "relay.h"

/* The GET/POST tunnel's sessions (PROTOCOL.md). The process that opened a
 * session holds it: the target connection, the bytes not yet acknowledged,
 * and every client connection that carries its requests. */

#define SESSION_TOKEN_LEN 48   /* hex: a 64-bit id, then a 128-bit secret */

struct session_opts {
	const char *path;          /* the endpoint, --http-tunnel PATH */
	int session_ms;            /* no request for this long: expired */
	int idle_ms;               /* no byte either way for this long: ended */
	int header_ms;             /* a request head must arrive within */
	/* Serve an open (or CONNECT) request met on a kept-alive connection:
	 * called in a new process with that connection on fd 0/1 and the
	 * bytes read from it; does not return. */
	void (*open)(const struct endpoint *client, const char *buf, size_t len);
};

/* Hand the client connection on fd 0 and the len bytes read from it to the
 * holder of the session the token names. 0 when it took them (the caller
 * exits); -1 when there is no such session (answer 404). */
int session_pass(const char *token, size_t token_len, const struct endpoint *client,
		 const char *buf, size_t len);

/* Become the holder of a new session on the connected target: answer the
 * open on fd 0/1 with the token, then serve that connection and those
 * handed over (rest: bytes read after the open request) until the session
 * ends. Returns why it ended (NULL: closed by the client), with the bytes
 * moved each way in st. */
const char *session_hold(const struct session_opts *so, int target, const struct endpoint *client,
			 const char *rest, size_t restlen, struct relay_stats *st);

/* After session_hold: serve the session's connections that remain (their
 * requests for other sessions are handed on) until they close. */
void session_linger(void);

#endif
