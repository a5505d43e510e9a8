/* Access rules: "allow|deny CONDITION...", first rule whose conditions all
 * hold decides, none holds: deny. Evaluated once per (name, resolved
 * address) pair, so a name never vouches for the address it resolves to. */
#include <arpa/inet.h>
#include <stdarg.h>
#include <string.h>

#include "acl.h"
#include "config.h"
#include "file.h"
#include "fmt.h"
#include "http.h"

enum { C_FROM, C_TO, C_PORT, C_USER, C_TLS, C_SNI };
enum { I_CIDR, I_NAME, I_SUFFIX, I_ANY, I_PORT, I_USER, I_SELF };

/* "self" last: the lists before it decide most addresses without a
 * look at the interfaces. */
const char acl_builtin[] =
	"deny to 127.0.0.0/8,::1,0.0.0.0/8,::,169.254.0.0/16,fe80::/10,224.0.0.0/4,ff00::/8,"
	"self\n"
	"allow port 443\n"
	"deny\n";

struct parser {
	struct acl *acl;
	const char *name;
	int line;
	char *err;
	size_t errlen;
};

static int fail(struct parser *p, const char *fmt, ...)
{
	char why[160];
	va_list ap;

	va_start(ap, fmt);
	vstrfmt(why, sizeof why, fmt, ap);
	va_end(ap);
	strfmt(p->err, p->errlen, "%s:%d: %s", p->name, p->line, why);
	return -1;
}

static int ieq(const char *a, const char *b, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if ((a[i] | 0x20) != (b[i] | 0x20))
			return 0;
	return 1;
}

/* Length of a name without one trailing dot. */
static size_t name_len(const char *s)
{
	size_t n = strlen(s);

	return n && s[n - 1] == '.' ? n - 1 : n;
}

/* "ADDR" or "ADDR/PREFIX", IPv4 or IPv6; IPv4-mapped IPv6 becomes IPv4. */
static int parse_cidr(const char *s, struct acl_item *it)
{
	const char *slash = strchr(s, '/');
	size_t alen = slash ? (size_t)(slash - s) : strlen(s);
	char addr[INET6_ADDRSTRLEN];
	unsigned max, prefix;
	struct endpoint ep;
	struct sockaddr_in6 s6 = { .sin6_family = AF_INET6 };
	struct sockaddr_in s4 = { .sin_family = AF_INET };
	int mapped = 0;

	if (alen >= sizeof addr)
		return -1;
	memcpy(addr, s, alen);
	addr[alen] = 0;
	if (inet_pton(AF_INET, addr, &s4.sin_addr) == 1) {
		ep_from_sockaddr(&ep, (struct sockaddr *)&s4);
	} else if (inet_pton(AF_INET6, addr, &s6.sin6_addr) == 1) {
		ep_from_sockaddr(&ep, (struct sockaddr *)&s6);
		mapped = ep.ip.family == AF_INET;
	} else {
		return -1;
	}
	max = ep.ip.family == AF_INET ? 32 : 128;
	prefix = max;
	if (slash) {
		long long v = http_decimal(slash + 1, strlen(slash + 1), 3);

		if (v < 0)
			return -1;
		prefix = (unsigned)v;
		/* ::ffff:a.b.c.d/N is matched as IPv4: drop the 96 bits. */
		if (mapped)
			prefix = prefix >= 96 ? prefix - 96 : 1000;
		if (prefix > max)
			return -1;
	}
	it->kind = I_CIDR;
	it->ip = ep.ip;
	it->prefix = (unsigned char)prefix;
	return 0;
}

/* A port, or the two ends of a range N-M. */
static int parse_ports(const char *s, struct acl_item *it)
{
	const char *dash = strchr(s, '-');
	int lo = http_port(s, dash ? (size_t)(dash - s) : strlen(s));
	int hi = dash ? http_port(dash + 1, strlen(dash + 1)) : lo;

	if (lo < 0 || hi < lo)
		return -1;
	it->lo = (unsigned short)lo;
	it->hi = (unsigned short)hi;
	return 0;
}

static int parse_item(struct parser *p, int type, char *s, struct acl_item *it)
{
	memset(it, 0, sizeof *it);
	switch (type) {
	case C_FROM:
		if (parse_cidr(s, it) < 0)
			return fail(p, "'%s' is not an address or CIDR", s);
		return 0;
	case C_TO:
		if (!strcmp(s, "*")) {
			it->kind = I_ANY;
		} else if (!strcmp(s, "self")) {
			it->kind = I_SELF;  /* a host named so is written "self." */
		} else if (!strncmp(s, "*.", 2) && http_is_name(s + 2, strlen(s + 2))) {
			it->kind = I_SUFFIX;
			it->name = s + 2;
		} else if (strchr(s, ':') || strspn(s, "0123456789./") == strlen(s)) {
			if (parse_cidr(s, it) < 0)
				return fail(p, "'%s' is not an address or CIDR", s);
		} else if (http_is_name(s, strlen(s))) {
			it->kind = I_NAME;
			it->name = s;
		} else {
			return fail(p, "'%s' is not a host name, address or CIDR", s);
		}
		return 0;
	case C_PORT:
		it->kind = I_PORT;
		if (parse_ports(s, it) < 0)
			return fail(p, "'%s' is not a port (1-65535) or range N-M", s);
		return 0;
	default: /* C_USER */
		for (const char *c = s; *c; c++)
			if ((unsigned char)*c < 0x21 || *c == ':' || *c == 0x7f)
				return fail(p, "'%s' is not a user name", s);
		it->kind = I_USER;
		it->name = s;
		return 0;
	}
}

static char *next_token(char **s)
{
	char *t = *s + strspn(*s, " \t\r");

	if (!*t)
		return NULL;
	*s = t + strcspn(t, " \t\r");
	if (**s)
		*(*s)++ = 0;
	return t;
}

/* One condition and its list; a list ending in ',' goes on in the next
 * word, so "to a.com, b.com" reads as one list. */
static int parse_cond(struct parser *p, const char *word, char **rest)
{
	static const char *const names[] = { "from", "to", "port", "user", "tls", "tls-sni" };
	struct acl *a = p->acl;
	struct acl_cond *c;
	char *list, *item;
	int type, more;

	for (type = 0; type < 6 && strcmp(word, names[type]); type++)
		;
	if (type == 6)
		return fail(p, "unknown condition '%s'", word);
	if (a->nconds >= ACL_CONDS_MAX)
		return fail(p, "more than %d conditions", ACL_CONDS_MAX);
	c = &a->conds[a->nconds++];
	c->type = (unsigned char)type;
	c->first = (unsigned short)a->nitems;
	c->count = 0;
	if (type == C_TLS || type == C_SNI)
		return 0;
	do {
		if (!(list = next_token(rest)))
			return fail(p, "'%s' needs a value", word);
		more = list[strlen(list) - 1] == ',';
		while ((item = strsep(&list, ","))) {
			if (!*item && !list && more)
				break;
			if (!*item)
				return fail(p, "empty item in '%s' list", word);
			if (a->nitems >= ACL_ITEMS_MAX)
				return fail(p, "more than %d list items", ACL_ITEMS_MAX);
			if (parse_item(p, type, item, &a->items[a->nitems]) < 0)
				return -1;
			a->nitems++;
			c->count++;
		}
	} while (more);
	return 0;
}

static int parse_line(struct parser *p, char *s)
{
	struct acl *a = p->acl;
	struct acl_rule *r;
	char *word;

	if ((word = strchr(s, '#')))
		*word = 0;
	if (!(word = next_token(&s)))
		return 0;
	if (strcmp(word, "allow") && strcmp(word, "deny"))
		return fail(p, "a rule starts with 'allow' or 'deny', not '%s'", word);
	if (a->nrules >= ACL_RULES_MAX)
		return fail(p, "more than %d rules", ACL_RULES_MAX);
	r = &a->rules[a->nrules++];
	r->allow = word[0] == 'a';
	r->first = (unsigned short)a->nconds;
	r->line = p->line;
	r->via = 0;
	while ((word = next_token(&s))) {
		/* "via direct|upstream": not a condition, how an allow goes. */
		if (CONFIG_UPSTREAM && !strcmp(word, "via")) {
			char *how = next_token(&s);

			if (!r->allow)
				return fail(p, "'via' goes with allow, not deny");
			if (r->via)
				return fail(p, "'via' twice");
			if (!how || (strcmp(how, "direct") && strcmp(how, "upstream")))
				return fail(p, "'via' is followed by 'direct' or 'upstream'");
			r->via = how[0] == 'd' ? ACL_VIA_DIRECT : ACL_VIA_UPSTREAM;
		} else if (parse_cond(p, word, &s) < 0) {
			return -1;
		}
	}
	r->count = (unsigned short)(a->nconds - r->first);
	return 0;
}

int acl_load(struct acl *a, const char *name, const char *text, size_t len,
	     char *err, size_t errlen)
{
	struct parser p = { a, name, 0, err, errlen };
	char *s, *rest = a->text;

	if (file_text(a->text, sizeof a->text, name, text, len, err, errlen) < 0)
		return -1;
	a->nrules = a->nconds = a->nitems = 0;
	while ((s = text_line(&rest))) {
		p.line++;
		if (parse_line(&p, s) < 0)
			return -1;
	}
	return 0;
}

static int cidr_match(const struct acl_item *it, const struct ip *ip)
{
	unsigned bits = it->prefix, i;

	if (!ip || ip->family != it->ip.family)
		return 0;
	for (i = 0; bits >= 8; i++, bits -= 8)
		if (ip->a[i] != it->ip.a[i])
			return 0;
	return !bits || !((ip->a[i] ^ it->ip.a[i]) & (0xff00 >> bits));
}

/* For --proxy-protocol's list; unused (and dropped) in a build without it. */
int acl_parse_cidr(const char *s, struct acl_item *it)
{
	return parse_cidr(s, it);
}

int acl_cidr_match(const struct acl_item *it, const struct ip *ip)
{
	return cidr_match(it, ip);
}

/* The IPv4 address an IPv6 one carries, in v4; 0 if it carries none.
 * IPv4-mapped ::ffff:0:0/96 is IPv4 already (net.c). */
static int embedded_v4(const struct ip *ip, struct ip *v4)
{
	static const unsigned char zero[12], nat64[12] = { 0, 0x64, 0xff, 0x9b },
				   nat64_local[6] = { 0, 0x64, 0xff, 0x9b, 0, 1 };
	const unsigned char *a;

	if (!ip || ip->family != AF_INET6)
		return 0;
	a = ip->a;
	if (!memcmp(a, zero, 12)) {
		/* IPv4-compatible ::a.b.c.d (RFC 4291 §2.5.5.1); :: and ::1 are not. */
		if (!a[12] && !a[13] && !a[14] && a[15] <= 1)
			return 0;
		memcpy(v4->a, a + 12, 4);
	} else if (!memcmp(a, nat64, 12)) {
		memcpy(v4->a, a + 12, 4);  /* NAT64 64:ff9b::/96 (RFC 6052) */
	} else if (!memcmp(a, nat64_local, 6)) {
		/* Local-use NAT64 64:ff9b:1::/48 (RFC 8215) in RFC 6052's /48
		 * layout: 16 bits, the u octet (bits 64..71), 16 bits. */
		v4->a[0] = a[6], v4->a[1] = a[7], v4->a[2] = a[9], v4->a[3] = a[10];
	} else if (a[0] == 0x20 && a[1] == 0x02) {
		memcpy(v4->a, a + 2, 4);   /* 6to4 2002:V4ADDR::/48 (RFC 3056) */
	} else {
		return 0;
	}
	v4->family = AF_INET;
	return 1;
}

/* One check's target: the address as it is (to[0]), the IPv4 address it
 * carries (to[1], or NULL), and which of them are this host's own. */
struct check {
	const struct acl_query *q;
	const struct ip *to[2];
	struct ip v4;
	int self;  /* bit i: to[i] is ours; -1 not looked up yet, -2 failed */
};

/* One of this host's addresses (net_self()): which of to[] it makes ours. */
struct self_scan {
	const struct ip *const *to;
	int bits;
};

static void self_one(void *arg, const struct ip *ip, unsigned prefix, int loopback)
{
	struct self_scan *sc = arg;
	struct acl_item it = { .kind = I_CIDR, .ip = *ip };

	it.prefix = (unsigned char)(ip->family == AF_INET && loopback ? prefix :
				    ip->family == AF_INET ? 32 : 128);
	for (int k = 0; k < 2; k++)
		if (cidr_match(&it, sc->to[k]))
			sc->bits |= 1 << k;
}

/* Which of to[] are this host's own: an address of one of its interfaces,
 * anything in a loopback interface's IPv4 prefix (Linux answers all of
 * 127.0.0.0/8 on lo; an IPv6 prefix there is routed, not local), or
 * unspecified (a connect there reaches this host).
 * Read afresh for each check, so an address that came later (DHCP)
 * counts: one netlink dump of links and one of addresses. */
static int self_lookup(const struct ip *const to[2])
{
	static const unsigned char zero[16];
	struct self_scan sc = { to, 0 };

	for (int k = 0; k < 2; k++)
		if (to[k] && !memcmp(to[k]->a, zero, to[k]->family == AF_INET ? 4 : 16))
			sc.bits |= 1 << k;
	return net_self(self_one, &sc) < 0 ? -2 : sc.bits;
}

/* Names compare case-insensitively and without a trailing dot. */
static int name_match(const struct acl_item *it, const struct acl_query *q)
{
	size_t hn = name_len(q->host), pn = name_len(it->name);

	if (q->literal)
		return 0;
	if (it->kind == I_NAME)
		return hn == pn && ieq(q->host, it->name, pn);
	return hn > pn + 1 && q->host[hn - pn - 1] == '.' && ieq(q->host + hn - pn, it->name, pn);
}

static int item_match(const struct acl_item *it, int type, struct check *ck, int form)
{
	const struct acl_query *q = ck->q;

	switch (it->kind) {
	case I_CIDR:   return cidr_match(it, type == C_FROM ? q->client : ck->to[form]);
	case I_SELF:
		if (ck->self == -1)
			ck->self = self_lookup(ck->to);
		return ck->self >= 0 && ck->self >> form & 1;
	case I_ANY:    return 1;
	case I_NAME:
	case I_SUFFIX: return name_match(it, q);
	case I_PORT:   return q->port >= it->lo && q->port <= it->hi;
	default:       return q->user && !strcmp(q->user, it->name);
	}
}

/* 1 holds, 0 does not, -1 cannot tell yet (the ClientHello is unread).
 * An SNI that equals an address literal never passes tls-sni (RFC 6066
 * §3 allows no literal in HostName); a host that is not q->literal is
 * never one (http.c refuses other numeric spellings). */
static int cond_match(const struct acl *a, const struct acl_cond *c, struct check *ck, int form)
{
	const struct acl_query *q = ck->q;

	if (c->type == C_TLS || c->type == C_SNI)
		return q->tls < 0 ? -1 : q->tls && (c->type == C_TLS || (q->sni_match && !q->literal));
	for (int i = c->first; i < c->first + c->count; i++)
		if (item_match(&a->items[i], c->type, ck, form))
			return 1;
	return 0;
}

/* Whether all of a rule's conditions hold for to[form]: 1, 0, or -1 when
 * they hold but for a ClientHello not read yet. */
static int rule_match(const struct acl *a, const struct acl_rule *rule, struct check *ck,
		      int form)
{
	int m, unknown = 0;

	for (int c = rule->first; c < rule->first + rule->count; c++) {
		if (!(m = cond_match(a, &a->conds[c], ck, form)))
			return 0;
		unknown |= m < 0;
	}
	return unknown ? -1 : 1;
}

/* A deny holds for the address as it is or for the IPv4 address it
 * carries, an allow only for the address as it is: an embedded address
 * can deny more, never allow more. */
int acl_check(const struct acl *a, const struct acl_query *q, int *line)
{
	struct check ck = { q, { q->addr, NULL }, { 0 }, -1 };

	if (embedded_v4(q->addr, &ck.v4))
		ck.to[1] = &ck.v4;
	for (int r = 0; r < a->nrules; r++) {
		const struct acl_rule *rule = &a->rules[r];
		int m = rule_match(a, rule, &ck, 0);

		if (m != 1 && !rule->allow && ck.to[1]) {
			int m4 = rule_match(a, rule, &ck, 1);

			m = m4 == 1 ? 1 : m ? m : m4;  /* holds, else may hold */
		}
		/* The interfaces could not be read: stop, as for any error. */
		if (ck.self == -2) {
			*line = rule->line;
			return ACL_DENY;
		}
		if (!m)
			continue;
		*line = rule->line;
		if (m < 0)
			return ACL_NEED_HELLO;
		return rule->allow ? ACL_ALLOW | rule->via : ACL_DENY;
	}
	*line = 0;
	return ACL_DENY;
}
