#ifndef UPSTREAM_H
#define UPSTREAM_H
#include <stddef.h>

#include "config.h"
#include "http.h"
#include "net.h"

struct relay_io;

/* The Basic token of user:password (at most 255 bytes, RFC 7617) fits. */
#define UPSTREAM_CRED_MAX 256
#define UPSTREAM_TOKEN_MAX ((UPSTREAM_CRED_MAX + 2) / 3 * 4 + 1)
/* The upstream's answer head (and the target's first bytes behind it). */
#define UPSTREAM_HEAD_MAX 4096

/* An upstream proxy (--upstream): tunnels opened through its CONNECT. */
struct upstream {
	int tls;                    /* https:// (--upstream-cacert) */
	char host[HOST_MAX + 2];    /* without [] */
	unsigned port;
	int literal;                /* host is an address literal */
	char token[UPSTREAM_TOKEN_MAX];  /* Basic token (--upstream-auth), or "" */
};

/* One tunnel through the upstream, or why there is none. */
struct upstream_conn {
	int fd;                     /* the upstream's socket, -1 on failure */
	const struct relay_io *io;  /* NULL: plain */
	struct endpoint ep;         /* the upstream's address tried last */
	const char *early;          /* the target's bytes behind the 200 */
	size_t elen;
	int status;                 /* on failure: tunneld's answer */
	const char *reason;         /* ... and its log reason */
};

#if CONFIG_UPSTREAM
/* "http://host:port" or "https://host:port" (a trailing '/' allowed) into
 * u. 0, or -1 with the why (naming --upstream, never echoing a password)
 * in err. A URL with user:password@ is refused: --upstream-auth. */
int upstream_url(struct upstream *u, const char *url, char *err, size_t errlen);

/* The --upstream-auth file: one line "user:password" (a final newline
 * allowed), made into u->token; what was read is wiped. 0, or -1 with
 * "FILE:1: why" in err. */
int upstream_auth_load(struct upstream *u, const char *path, char *err, size_t errlen);

/* CONNECT host:port through u, everything before deadline (now_ms()): the
 * upstream's name resolved (dns.c), its addresses raced (each only if
 * allow(arg, ep) says so: the loop check), TLS for https://, the request,
 * and the answer's head read into a fixed buffer. 0 with uc->fd and the
 * target's early bytes; or -1 with uc->status (502 the upstream failed or
 * refused, 403 it forbade the target, 504 it or the target took too long)
 * and uc->reason. */
int upstream_open(const struct upstream *u, const char *host, unsigned port, long long deadline,
		  int (*allow)(void *arg, const struct endpoint *ep), void *arg,
		  struct upstream_conn *uc);
#else
static inline int upstream_url(struct upstream *u, const char *url, char *e, size_t n)
{ (void)u; (void)url; (void)e; (void)n; return -1; }
static inline int upstream_auth_load(struct upstream *u, const char *p, char *e, size_t n)
{ (void)u; (void)p; (void)e; (void)n; return -1; }
static inline int upstream_open(const struct upstream *u, const char *h, unsigned p, long long d,
				int (*allow)(void *arg, const struct endpoint *ep), void *arg,
				struct upstream_conn *uc)
{ (void)u; (void)h; (void)p; (void)d; (void)allow; (void)arg; uc->fd = -1; uc->status = 502;
  uc->reason = "no-upstream"; return -1; }
#endif

#endif
