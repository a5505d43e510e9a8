#ifndef HTTP_H
#define HTTP_H
#include <stddef.h>

#define HOST_MAX 253

struct request {
	char host[HOST_MAX + 2];  /* as sent, without [], NUL-terminated */
	unsigned port;
	int literal;              /* host is an address literal, not a name */
	const char *auth;         /* Proxy-Authorization value in the head, or NULL */
	size_t auth_len;
};

/* Length of the request head through its blank line, or 0 if buf does not
 * hold a whole head yet. Bare LF line ends are accepted. */
size_t http_head_end(const char *buf, size_t len);

/* Parse a whole head (as measured by http_head_end). Returns 0 for a valid
 * CONNECT, else the HTTP status to answer. */
int http_parse(const char *buf, size_t len, struct request *req);

/* Parse an authority-form "host:port" of len bytes into req. 0 or 400. */
int http_parse_target(const char *s, size_t len, struct request *req);

/* Reason phrase for a status code. */
const char *http_reason(int status);

#endif
