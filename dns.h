#ifndef DNS_H
#define DNS_H
#include <stddef.h>

#include "net.h"

/* What dns_resolve() returns when it finds no address. */
enum {
	DNS_NXDOMAIN = -1,  /* no such name (NXDOMAIN, or none a server could hold) */
	DNS_TIMEOUT = -2,   /* the caller's deadline came first */
	DNS_FAIL = -3,      /* no server answered in time, or each refused */
	DNS_NODATA = -4,    /* the name is, with no address of the families asked */
};

/* The addresses of name (not an address literal: the caller tells those
 * apart) into ep[0..max), ports 0: those /etc/hosts gives it, else the A
 * and AAAA answers (A only without CONFIG_IPV6) of the nameservers of
 * /etc/resolv.conf, AAAA first. Returns their count, or a DNS_* above.
 * No wait outlasts deadline (now_ms()). */
int dns_resolve(const char *name, struct endpoint *ep, int max, long long deadline);

/* The question (qtype 1 A, 28 AAAA) for name, without its trailing dot,
 * with id, into m: its length, or 0 when name cannot be one. */
size_t dns_query(unsigned char *m, size_t cap, unsigned id, const char *name, unsigned qtype);

/* What dns_answer() makes of a message. */
enum { DNS_ANS_OK, DNS_ANS_NX, DNS_ANS_FAIL, DNS_ANS_TC, DNS_ANS_BAD };

/* An answer to dns_query(id, name, qtype), len bytes at m: DNS_ANS_OK with
 * the addresses of name, after the CNAMEs the answer holds, in
 * ep[0..*n) (at most max); _NX no such name; _FAIL the server's error;
 * _TC truncated; _BAD not an answer to that question, or malformed. */
int dns_answer(const unsigned char *m, size_t len, unsigned id, const char *name,
	       unsigned qtype, struct endpoint *ep, int max, int *n);

#endif
