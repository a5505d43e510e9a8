/* Access rules: "allow|deny CONDITION...", first rule whose conditions all
 * hold decides, none holds: deny. Evaluated once per (name, resolved
 * address) pair, so a name never vouches for the address it resolves to. */
#include <arpa/inet.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "acl.h"
#include "file.h"

enum { C_FROM, C_TO, C_PORT, C_USER, C_TLS, C_SNI };
enum { I_CIDR, I_NAME, I_SUFFIX, I_ANY, I_PORT, I_USER };

const char acl_builtin[] =
	"deny to 127.0.0.0/8,::1,0.0.0.0/8,::,169.254.0.0/16,fe80::/10,224.0.0.0/4,ff00::/8\n"
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
	vsnprintf(why, sizeof why, fmt, ap);
	va_end(ap);
	snprintf(p->err, p->errlen, "%s:%d: %s", p->name, p->line, why);
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

static int is_name(const char *s)
{
	size_t n = name_len(s);

	if (n == 0 || n > 253 || strspn(s, "0123456789.") == strlen(s))
		return 0;
	return strspn(s, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
		      "0123456789-_.") == strlen(s) && !strstr(s, "..") && s[0] != '.';
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
		const char *d = slash + 1;
		size_t n = strlen(d);

		if (n == 0 || n > 3 || strspn(d, "0123456789") != n)
			return -1;
		for (prefix = 0; *d; d++)
			prefix = prefix * 10 + (unsigned)(*d - '0');
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

static int parse_num(const char *s, size_t n, unsigned short *v)
{
	unsigned x = 0;

	if (n == 0 || n > 5 || s[0] == '0')
		return -1;
	for (size_t i = 0; i < n; i++) {
		if (s[i] < '0' || s[i] > '9')
			return -1;
		x = x * 10 + (unsigned)(s[i] - '0');
	}
	if (x > 65535)
		return -1;
	*v = (unsigned short)x;
	return 0;
}

static int parse_item(struct parser *p, int type, char *s, struct acl_item *it)
{
	char *dash;

	memset(it, 0, sizeof *it);
	switch (type) {
	case C_FROM:
		if (parse_cidr(s, it) < 0)
			return fail(p, "'%s' is not an address or CIDR", s);
		return 0;
	case C_TO:
		if (!strcmp(s, "*")) {
			it->kind = I_ANY;
		} else if (!strncmp(s, "*.", 2) && is_name(s + 2)) {
			it->kind = I_SUFFIX;
			it->name = s + 2;
		} else if (strchr(s, ':') || strspn(s, "0123456789./") == strlen(s)) {
			if (parse_cidr(s, it) < 0)
				return fail(p, "'%s' is not an address or CIDR", s);
		} else if (is_name(s)) {
			it->kind = I_NAME;
			it->name = s;
		} else {
			return fail(p, "'%s' is not a host name, address or CIDR", s);
		}
		return 0;
	case C_PORT:
		it->kind = I_PORT;
		dash = strchr(s, '-');
		if (parse_num(s, dash ? (size_t)(dash - s) : strlen(s), &it->lo) < 0 ||
		    parse_num(dash ? dash + 1 : s, strlen(dash ? dash + 1 : s), &it->hi) < 0 ||
		    it->lo > it->hi)
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
	while ((word = next_token(&s)))
		if (parse_cond(p, word, &s) < 0)
			return -1;
	r->count = (unsigned short)(a->nconds - r->first);
	return 0;
}

/* Parse the NUL-terminated text already in a->text. */
static int parse_text(struct acl *a, const char *name, char *err, size_t errlen)
{
	struct parser p = { a, name, 0, err, errlen };
	char *s, *nl;

	a->nrules = a->nconds = a->nitems = 0;
	for (s = a->text; s; s = nl) {
		p.line++;
		if ((nl = strchr(s, '\n')))
			*nl++ = 0;
		if (parse_line(&p, s) < 0)
			return -1;
	}
	return 0;
}

int acl_parse(struct acl *a, const char *text, size_t len, const char *name,
	      char *err, size_t errlen)
{
	if (text_copy(a->text, sizeof a->text, text, len, name, err, errlen) < 0)
		return -1;
	return parse_text(a, name, err, errlen);
}

int acl_load(struct acl *a, const char *path, char *err, size_t errlen)
{
	if (file_read(path, a->text, sizeof a->text, err, errlen) < 0)
		return -1;
	return parse_text(a, path, err, errlen);
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

static int item_match(const struct acl_item *it, int type, const struct acl_query *q)
{
	switch (it->kind) {
	case I_CIDR:   return cidr_match(it, type == C_FROM ? q->client : q->addr);
	case I_ANY:    return 1;
	case I_NAME:
	case I_SUFFIX: return name_match(it, q);
	case I_PORT:   return q->port >= it->lo && q->port <= it->hi;
	default:       return q->user && !strcmp(q->user, it->name);
	}
}

/* 1 holds, 0 does not, -1 cannot tell yet (the ClientHello is unread). */
static int cond_match(const struct acl *a, const struct acl_cond *c, const struct acl_query *q)
{
	if (c->type == C_TLS || c->type == C_SNI)
		return q->tls < 0 ? -1 : q->tls && (c->type == C_TLS || q->sni_match);
	for (int i = c->first; i < c->first + c->count; i++)
		if (item_match(&a->items[i], c->type, q))
			return 1;
	return 0;
}

int acl_check(const struct acl *a, const struct acl_query *q, int *line)
{
	for (int r = 0; r < a->nrules; r++) {
		const struct acl_rule *rule = &a->rules[r];
		int c, m, unknown = 0;

		for (c = rule->first; c < rule->first + rule->count; c++) {
			if (!(m = cond_match(a, &a->conds[c], q)))
				break;
			unknown |= m < 0;
		}
		if (c < rule->first + rule->count)
			continue;
		*line = rule->line;
		if (unknown)
			return ACL_NEED_HELLO;
		return rule->allow ? ACL_ALLOW : ACL_DENY;
	}
	*line = 0;
	return ACL_DENY;
}
