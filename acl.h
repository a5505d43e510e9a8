#ifndef ACL_H
#define ACL_H
#include <stddef.h>

#include "net.h"

/* Bounds on a rule file: its size, and the counts of rules, conditions
 * and list items it may hold. */
#define ACL_TEXT_MAX  16384
#define ACL_RULES_MAX 256
#define ACL_CONDS_MAX 512
#define ACL_ITEMS_MAX 1024

struct acl_item {
	unsigned char kind;     /* I_* in acl.c */
	unsigned char prefix;   /* CIDR prefix length */
	unsigned short lo, hi;  /* port range */
	struct ip ip;
	const char *name;       /* NUL-terminated, inside acl.text */
};

struct acl_cond {
	unsigned char type;     /* C_* in acl.c */
	unsigned short first, count;
};

struct acl_rule {
	unsigned char allow;
	unsigned char via;      /* ACL_VIA_* bits: how an allow goes, 0: not said */
	unsigned short first, count;
	int line;
};

/* Counts first and the text last: a short rule file writes the first
 * pages of the struct only (in inetd mode, memory each connection pays). */
struct acl {
	int nrules, nconds, nitems;
	struct acl_rule rules[ACL_RULES_MAX];
	struct acl_cond conds[ACL_CONDS_MAX];
	struct acl_item items[ACL_ITEMS_MAX];
	char text[ACL_TEXT_MAX];
};

/* What one connection attempt looks like to the rules. */
struct acl_query {
	const struct ip *client;  /* NULL when unknown */
	const char *host;         /* CONNECT host as sent */
	int literal;              /* host is an address literal */
	const struct ip *addr;    /* the resolved address about to be connected */
	unsigned port;
	const char *user;         /* NULL until authenticated */
	int tls;                  /* the client's first bytes are a ClientHello;
				     -1: not read yet */
	int sni_match;            /* ... whose SNI equals host (tls-sni
				     also needs host not to be literal) */
};

/* ACL_NEED_HELLO: the deciding rule tests "tls" or "tls-sni" and the query
 * has tls = -1; read the client's first bytes and ask again. */
enum { ACL_DENY = 0, ACL_ALLOW = 1, ACL_NEED_HELLO = 2 };
/* An allow whose rule says "via direct" or "via upstream" (CONFIG_UPSTREAM)
 * has that bit too: test the verdict with ACL_VERDICT(). A caller that
 * compares with ACL_ALLOW alone denies it. */
enum { ACL_VIA_DIRECT = 4, ACL_VIA_UPSTREAM = 8 };
#define ACL_VERDICT(v) ((v) & 3)

/* "ADDR" or "ADDR/PREFIX", IPv4 or IPv6 (IPv4-mapped IPv6 becomes IPv4),
 * into it as a CIDR item. 0 or -1. */
int acl_parse_cidr(const char *s, struct acl_item *it);
/* Whether ip (NULL: unknown, never) is inside the CIDR item it. */
int acl_cidr_match(const struct acl_item *it, const struct ip *ip);

/* The rules built in for when no --acl is given. */
extern const char acl_builtin[];

/* Read the rules: len bytes of text (copied into acl), or with text NULL
 * the file at name. name labels errors: "name:line: why". 0 or -1. */
int acl_load(struct acl *acl, const char *name, const char *text, size_t len,
	     char *err, size_t errlen);
/* ACL_ALLOW (with its rule's ACL_VIA_* bit), ACL_DENY or ACL_NEED_HELLO; *line is the deciding rule's line,
 * 0 if none held. A deny also holds for the IPv4 address that q->addr
 * carries (NAT64, 6to4, compatible). q->addr NULL: a name that did not
 * resolve here, judged without an address (no CIDR nor "self" item holds). Reaching a "self" item reads the
 * interfaces once (getifaddrs: an AF_NETLINK socket and malloc). */
int acl_check(const struct acl *acl, const struct acl_query *q, int *line);

#endif
