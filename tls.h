#ifndef TLS_H
#define TLS_H
#include <stddef.h>
#include <sys/types.h>

#include "config.h"

/* Tickets need TLS: a build that turns TLS off with -DCONFIG_TLS=0 (the
 * Makefile's tunneld-min, tunneld-notls) has none either. */
#if !CONFIG_TLS
#undef CONFIG_TLS_TICKETS
#define CONFIG_TLS_TICKETS 0
#endif

struct relay_io;

/* TLS toward the client (mbedTLS 3.6). One connection per process, so the
 * session lives in tls.c. The read/write calls have read(2)'s shape for the
 * relay: -1 with errno EAGAIN when they would block, 0 at the peer's end. */
/* Whether the key belongs to the certificate: a private-key operation, as
 * costly as the signature of a handshake. */
enum tls_pair {
	TLS_PAIR_CHECK,        /* checked here, where the files are read once */
	TLS_PAIR_CHECKED,      /* by whoever read them (a spare's listener) */
	TLS_PAIR_ON_MISTRUST,  /* when a client finds the signature bad (inetd
				  mode: each connection reads the files) */
};

#if CONFIG_TLS
/* Load the certificate chain and key; 0, or -1 with "FILE: why" in err. */
int tls_server_init(const char *cert, const char *key, enum tls_pair pair, char *err,
		    size_t errlen);
/* Handshake on the client socket (fd 0 reads, fd 1 writes) within
 * timeout_ms. 0, or -1 with a short reason in *why: "tls-key-mismatch"
 * when the client found the signature bad and the key does not belong to
 * the certificate. */
int tls_accept(int timeout_ms, const char **why);
ssize_t tls_read(int fd, void *buf, size_t len);
ssize_t tls_write(int fd, const void *buf, size_t len);
/* Decrypted or undecrypted bytes held inside the library: poll() cannot
 * see them, so the caller reads before polling again. */
int tls_pending(void);
/* Send close_notify: the end of what we send, as a TCP half-close. */
void tls_shutdown(void);
/* The calls above, as relay() takes them for the TLS side. */
const struct relay_io *tls_relay_io(void);

/* Session tickets (CONFIG_TLS_TICKETS): the keys of the file at path (one
 * a line, 64 hex digits; the first seals, all open; at most 8; the file
 * readable by its owner only), for tickets valid lifetime seconds. Before
 * tls_accept(). 0, or -1 with "FILE[:LINE]: why" in err. */
int tls_tickets_load(const char *path, unsigned lifetime, char *err, size_t errlen);
/* Read the file again if it changed since (a long-lived listener): 1 read,
 * 0 unchanged (or no tickets), -1 with why in err, the old keys kept and
 * the same change not tried again. */
int tls_tickets_reload(char *err, size_t errlen);
/* 1 when tls_accept()'s handshake resumed a session from a ticket. */
int tls_resumed(void);

/* The client side (tunnel): trust the PEM bundle cafile. 0, or -1 with
 * "FILE: why" in err. */
int tls_client_init(const char *cafile, char *err, size_t errlen);
/* Handshake on the connected socket fd within timeout_ms, checking the
 * server's chain against the bundle and its name against host (also sent
 * as SNI). It replaces any session this process had. 0, or -1 with why in
 * err. The calls above then read and write fd. */
int tls_connect(int fd, const char *host, int timeout_ms, char *err, size_t errlen);
/* Forget the session without a word to the peer (a dropped connection, or
 * one a forked process inherited and must not touch). */
void tls_close(void);

/* tunneld toward an https:// upstream proxy (upstream.c): tls_connect()'s
 * handshake, in a second session of its own beside the client's (after
 * tls_client_init()), and its calls as relay() takes them. */
int tls_up_connect(int fd, const char *host, int timeout_ms, char *err, size_t errlen);
const struct relay_io *tls_up_relay_io(void);
#else
static inline int tls_server_init(const char *c, const char *k, enum tls_pair ch, char *e,
				  size_t n)
{ (void)c; (void)k; (void)ch; (void)e; (void)n; return -1; }
static inline int tls_accept(int t, const char **w) { (void)t; *w = "no-tls"; return -1; }
static inline ssize_t tls_read(int f, void *b, size_t n) { (void)f; (void)b; (void)n; return -1; }
static inline ssize_t tls_write(int f, const void *b, size_t n) { (void)f; (void)b; (void)n; return -1; }
static inline int tls_pending(void) { return 0; }
static inline void tls_shutdown(void) { }
static inline const struct relay_io *tls_relay_io(void) { return 0; }
static inline int tls_tickets_load(const char *p, unsigned l, char *e, size_t n)
{ (void)p; (void)l; (void)e; (void)n; return -1; }
static inline int tls_tickets_reload(char *e, size_t n) { (void)e; (void)n; return 0; }
static inline int tls_resumed(void) { return 0; }
static inline int tls_client_init(const char *c, char *e, size_t n)
{ (void)c; (void)e; (void)n; return -1; }
static inline int tls_connect(int f, const char *h, int t, char *e, size_t n)
{ (void)f; (void)h; (void)t; (void)e; (void)n; return -1; }
static inline void tls_close(void) { }
static inline int tls_up_connect(int f, const char *h, int t, char *e, size_t n)
{ (void)f; (void)h; (void)t; (void)e; (void)n; return -1; }
static inline const struct relay_io *tls_up_relay_io(void) { return 0; }
#endif

#endif
