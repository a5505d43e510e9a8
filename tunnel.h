#ifndef TUNNEL_H
#define TUNNEL_H
/* The client, tunnel, in three parts on the shared HTTP layer (http.h):
 *   tunnel.c          main, the options, credentials and URLs, messages, --listen
 *   tunnel_connect.c  the connection to SERVER (through the proxy, TLS), and
 *                     connect mode: one CONNECT, then relay()
 *   tunnel_http.c     the GET/POST session client (PROTOCOL.md)
 * Exit codes are sysexits(3)'s, and EXIT_BROKE. */
#include <stdarg.h>
#include <sys/types.h>
#include <sysexits.h>

#include "http.h"
#include "net.h"

#define EXIT_BROKE 1         /* the tunnel broke after it was open */

#define HEAD_MAX 8192        /* an answer's head */
#define CHUNK HTTP_BODY_MAX  /* bytes sent in one POST, the server's limit */
#define REQ_MAX 4096         /* a request's head: path, names, two credentials */
#define PATH_LEN 256
#define CRED_MAX 512         /* "user:password" */
#define AUTH_B64 ((CRED_MAX + 2) / 3 * 4)
#define CONNECT_MS 10000     /* TCP connect, and the TLS handshake */
#define REQUEST_MS 30000     /* a request and its answer: above the 20 s long poll */
#define RETRY_MS 30000       /* failures in a row before the tunnel is broken */
#define PAUSE_MAX_MS 2000    /* the longest pause between retries */

/* SERVER or the proxy, from its URL. */
struct url {
	int tls;                        /* https:// */
	char host[HOST_MAX + 2];        /* without [] */
	unsigned port;                  /* 0: no such URL (no proxy) */
	char authority[HOST_MAX + 10];  /* host:port, [v6]:port: for Host: */
	char path[PATH_LEN + 1];        /* SERVER's endpoint, "/..." */
	char auth[AUTH_B64 + 1];        /* proxy: Basic token of user:pass, or "" */
};

/* An answer: the head and the body in one buffer (a receive asks for at
 * most HTTP_ANSWER_MAX bytes: max=). */
struct answer {
	struct reply h;
	char *body;
	size_t blen;
	char buf[HEAD_MAX + HTTP_ANSWER_MAX];
};

/* One HTTP connection to SERVER (through the proxy, if any). The TLS
 * session, if any, is tls.c's: one connection per process. */
struct link {
	int fd;                         /* -1: none */
	int tls;
};

struct tun {
	struct url server, proxy;
	int connect_mode, verbose;
	const char *target;             /* host:port, checked */
	const char *user;               /* --user, for messages */
	char auth[AUTH_B64 + 1];        /* --user: Basic token, "" once used */
	const char *listen;
	char sname[HOST_MAX + 20], pname[HOST_MAX + 20];  /* "server H:P", "proxy H:P" */
	struct endpoint addr[RACE_MAX];  /* the first hop: the proxy or SERVER */
	int naddr;
	char token[SESSION_TOKEN_MAX + 1];      /* the session's, "" before the open */
	char why[1024];                 /* the last failure */
	struct answer a;
};

/* http mode: the receiving process, ended with the sending one. */
extern pid_t peer;
/* Where die() tells why: stderr, or in the receiving process a pipe to the
 * sending one, which prints it unless it has its own reason: one line. */
extern int report_fd;

/* tunnel.c: "tunnel: ..." lines on stderr; die() ends the program. */
void __attribute__((format(printf, 1, 2))) say(const char *fmt, ...);
void __attribute__((noreturn, format(printf, 2, 3))) die(int code, const char *fmt, ...);
void sleep_ms(int ms);

/* tunnel_connect.c */
int lwrite(struct link *l, const char *buf, size_t len, long long deadline);
void link_close(struct link *l);
/* Read the answer to the request just written into t->a (head_only: what
 * follows the head is left at t->a.body). 0, or -1 with t->why. */
int read_answer(struct tun *t, struct link *l, long long deadline, int head_only,
		const char *who);
int lost(struct tun *t, struct link *l, const char *who, ssize_t n);
int __attribute__((format(printf, 4, 5))) add(char *buf, size_t cap, size_t *len,
					      const char *fmt, ...);
int resolve(struct tun *t);
int dial(struct tun *t, struct link *l);
void __attribute__((noreturn)) refused(const struct tun *t, int open);
void __attribute__((noreturn)) tunnel_connect(struct tun *t, int in, int out);

/* tunnel_http.c */
void __attribute__((noreturn)) tunnel_http(struct tun *t, int in, int out);

#endif
