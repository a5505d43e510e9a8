#ifndef HTTP_H
#define HTTP_H
#include <stddef.h>

#include "config.h"

#define HOST_MAX 253

#define HTTP_BODY_MAX 65536     /* a tunnel request's body; a receive's answer without max= */
/* A receive's answer with max=: at most this (Kconfig HTTP_ANSWER_MAX);
 * tunneld reads twice it ahead (its memory per session), tunnel asks for
 * it. Either end may be built with another: each takes the smaller. */
#define HTTP_ANSWER_MAX CONFIG_HTTP_ANSWER_MAX
#if HTTP_ANSWER_MAX < HTTP_BODY_MAX || HTTP_ANSWER_MAX > (8 << 20)
#error "HTTP_ANSWER_MAX: from HTTP_BODY_MAX (64 KiB) to 8 MiB"
#endif
#define SESSION_TOKEN_LEN 48    /* hex: a 64-bit id, then a 128-bit secret */
#define NODE_MAX 32             /* --node NAME: the token's "NAME." prefix */
#define SESSION_TOKEN_MAX (NODE_MAX + 1 + SESSION_TOKEN_LEN)

enum { HTTP_CONNECT = 1, HTTP_GET, HTTP_POST, HTTP_DELETE };

struct request {
	int method;
	char host[HOST_MAX + 2];  /* as sent, without [], NUL-terminated */
	unsigned port;
	int literal;              /* host is an address literal, not a name */
	const char *auth;         /* the credentials in the head, or NULL: */
	size_t auth_len;          /* Proxy-Authorization for CONNECT, else Authorization */
	/* GET/POST tunnel requests (PROTOCOL.md) */
	const char *token;        /* Tunnel-Token value, or NULL */
	size_t token_len;
	size_t clen;              /* Content-Length */
	int clen_seen;
	unsigned long long off;   /* ?o=N */
	int fin;                  /* ?fin */
	size_t max;               /* ?max=N, at most HTTP_ANSWER_MAX; 0: not given */
	int close;                /* Connection: close, or HTTP/1.0 without keep-alive */
	int http10;               /* HTTP/1.0: a kept connection is said so */
};

/* Length of the request head through its blank line, or 0 if buf does not
 * hold a whole head yet. Bare LF line ends are accepted. */
size_t http_head_end(const char *buf, size_t len);

/* 1 when the len bytes that have arrived can no longer begin a request
 * line (a method is a token: a TLS ClientHello, say, is not), so there is
 * no need to wait for the rest. */
int http_not_request(const char *buf, size_t len);

/* Parse a whole head (as measured by http_head_end). Returns 0 for a valid
 * CONNECT or, when tunnel_path is not NULL, a GET, POST or DELETE of that
 * path; else the HTTP status to answer. */
int http_parse(const char *buf, size_t len, const char *tunnel_path, struct request *req);

/* Parse an authority-form "host:port" of len bytes into req. 0 or 400. */
int http_parse_target(const char *s, size_t len, struct request *req);

/* An answer's head, as the client reads it. */
struct reply {
	int status;
	char line[80];            /* "403 Forbidden", printable, for messages */
	long long clen, offset;   /* Content-Length, Tunnel-Offset; -1: none */
	int eof;                  /* Tunnel-Eof: 1 */
	int close;                /* HTTP/1.0, or Connection: close */
	int chunked;              /* a Transfer-Encoding */
	int tunnel;               /* a Tunnel-* field: tunneld itself answered */
};

/* 1 when the len bytes that have arrived cannot begin an HTTP/1 answer
 * (an ssh banner, say): no need to wait for a head that never comes. */
int http_not_reply(const char *buf, size_t len);

/* Parse a whole answer head (as measured by http_head_end) into r: 0, or -1
 * when it is not an HTTP/1 answer. */
int http_parse_reply(const char *buf, size_t len, struct reply *r);

/* The shared scanners. Plain decimal of 1 to max (at most 18) digits: the
 * value, or -1. */
long long http_decimal(const char *s, size_t n, size_t max);

/* A host name, one set of rules for targets, rules and URLs: letters,
 * digits, '_', '-' (not first in a label) and '.', labels of 1-63 bytes,
 * one trailing dot allowed, at most HOST_MAX bytes without it; and a last
 * label that is not a number (decimal, or 0x and hex digits): so nothing
 * the C library would read as an IPv4 address (2130706433, 0x7f.1, 127.1,
 * 0177.0.0.1: never a real name, they only serve to slip past rules). A
 * dotted quad is an address, not a name. */
int http_is_name(const char *s, size_t len);
/* A port: plain decimal 1-65535 without a leading zero, or -1. */
int http_port(const char *s, size_t len);

/* The Basic token of user:pass (RFC 7617), NUL-terminated, into out (cap
 * bytes). 0, or -1 when the name is empty or holds ':', either holds a
 * control character, or the token does not fit. */
int http_basic(const char *user, size_t ulen, const char *pass, size_t plen, char *out,
	       size_t cap);

/* Whether the comma-separated list v[0..n) holds the token tok (any case). */
int http_has_token(const char *v, size_t n, const char *tok);
/* A node name (--node, PROTOCOL.md): 1 to NODE_MAX lower-case letters,
 * digits and '-'. */
int http_is_node_name(const char *s, size_t n);
/* A session token (Tunnel-Token, PROTOCOL.md): SESSION_TOKEN_LEN lower-case
 * hex digits, after a node name and a '.' when its tunneld has --node. The
 * length of that prefix (0 without one), or -1: not a token. */
int http_session_token(const char *s, size_t n);

/* Reason phrase for a status code. */
const char *http_reason(int status);

/* An answer's head into out[size]: the status line, the header lines in
 * extra (each ending in CRLF, or ""), Content-Type, Content-Length, and
 * "Connection: close" when close (and Retry-After on a 503). An error (400
 * and up) names its cause in Proxy-Status, from reason (the log's reason=,
 * or NULL), and carries its status's
 * one line of text as the body, written here too; the blen bytes of any
 * other body follow from the caller. Returns the length, or 0 when it did
 * not fit: a truncated answer is never sent. */
size_t http_answer(char *out, size_t size, int status, const char *reason, const char *extra,
		   size_t blen, int close);

#endif
