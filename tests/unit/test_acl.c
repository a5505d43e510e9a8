/* The rule parser and matcher: rule text + one query -> verdict, and every
 * malformed rule -> an error naming file and line. */
#include <arpa/inet.h>
#include <ifaddrs.h>
#include <net/if.h>
#include <string.h>

#include "acl.h"
#include "check.h"

static struct acl acl;

/* An address as a query carries it: after the IPv4-mapped folding. */
static struct ip ip(const char *s)
{
	struct sockaddr_in6 s6 = { .sin6_family = AF_INET6 };
	struct sockaddr_in s4 = { .sin_family = AF_INET };
	struct endpoint ep = { 0 };

	if (inet_pton(AF_INET, s, &s4.sin_addr) == 1)
		ep_from_sockaddr(&ep, (struct sockaddr *)&s4);
	else if (inet_pton(AF_INET6, s, &s6.sin6_addr) == 1)
		ep_from_sockaddr(&ep, (struct sockaddr *)&s6);
	return ep.ip;
}

static const char builtin[] = "@builtin";

static const struct {
	const char *rules;
	const char *client, *host, *addr;
	unsigned port;
	const char *user;
	int tls, sni;
	int verdict;
} rows[] = {
	/* the built-in rules */
	{ builtin, "10.0.0.2", "example.com", "93.184.216.34", 443, 0, 0, 0, ACL_ALLOW },
	{ builtin, "10.0.0.2", "example.com", "93.184.216.34", 80, 0, 0, 0, ACL_DENY },
	{ builtin, "10.0.0.2", "example.com", "127.0.0.1", 443, 0, 0, 0, ACL_DENY },
	{ builtin, "10.0.0.2", "example.com", "127.255.255.254", 443, 0, 0, 0, ACL_DENY },
	{ builtin, "10.0.0.2", "example.com", "::1", 443, 0, 0, 0, ACL_DENY },
	{ builtin, "10.0.0.2", "example.com", "::ffff:127.0.0.1", 443, 0, 0, 0, ACL_DENY },
	{ builtin, "10.0.0.2", "example.com", "0.0.0.0", 443, 0, 0, 0, ACL_DENY },
	{ builtin, "10.0.0.2", "example.com", "::", 443, 0, 0, 0, ACL_DENY },
	{ builtin, "10.0.0.2", "example.com", "169.254.169.254", 443, 0, 0, 0, ACL_DENY },
	{ builtin, "10.0.0.2", "example.com", "fe80::1", 443, 0, 0, 0, ACL_DENY },
	{ builtin, "10.0.0.2", "example.com", "febf::1", 443, 0, 0, 0, ACL_DENY },
	{ builtin, "10.0.0.2", "example.com", "fec0::1", 443, 0, 0, 0, ACL_ALLOW },
	{ builtin, "10.0.0.2", "example.com", "224.0.0.1", 443, 0, 0, 0, ACL_DENY },
	{ builtin, "10.0.0.2", "example.com", "239.255.255.255", 443, 0, 0, 0, ACL_DENY },
	{ builtin, "10.0.0.2", "example.com", "ff02::1", 443, 0, 0, 0, ACL_DENY },
	{ builtin, "10.0.0.2", "example.com", "2001:db8::1", 443, 0, 0, 0, ACL_ALLOW },
	/* IPv6 forms that carry a denied IPv4 address: compatible, NAT64
	 * (RFC 6052 /96 and the /48 layout of RFC 8215's 64:ff9b:1::), 6to4 */
	{ builtin, "10.0.0.2", "h", "::127.0.0.1", 443, 0, 0, 0, ACL_DENY },
	{ builtin, "10.0.0.2", "h", "::169.254.169.254", 443, 0, 0, 0, ACL_DENY },
	{ builtin, "10.0.0.2", "h", "64:ff9b::7f00:1", 443, 0, 0, 0, ACL_DENY },
	{ builtin, "10.0.0.2", "h", "64:ff9b::a9fe:a9fe", 443, 0, 0, 0, ACL_DENY },
	{ builtin, "10.0.0.2", "h", "64:ff9b:1:7f00:0:100::", 443, 0, 0, 0, ACL_DENY },
	{ builtin, "10.0.0.2", "h", "64:ff9b:1:a9fe:a9:fe00::", 443, 0, 0, 0, ACL_DENY },
	{ builtin, "10.0.0.2", "h", "64:ff9b:1:a9fe:ffa9:fe00:1:2", 443, 0, 0, 0, ACL_DENY },
	{ builtin, "10.0.0.2", "h", "2002:7f00:1::", 443, 0, 0, 0, ACL_DENY },
	{ builtin, "10.0.0.2", "h", "2002:a9fe:a9fe:1::1", 443, 0, 0, 0, ACL_DENY },
	{ builtin, "10.0.0.2", "h", "64:ff9b::808:808", 443, 0, 0, 0, ACL_ALLOW },
	{ builtin, "10.0.0.2", "h", "64:ff9b:1:808:8:800::", 443, 0, 0, 0, ACL_ALLOW },
	{ builtin, "10.0.0.2", "h", "2002:808:808::1", 443, 0, 0, 0, ACL_ALLOW },
	{ builtin, "10.0.0.2", "h", "64:ff9b::7f00:1", 80, 0, 0, 0, ACL_DENY },
	/* a deny holds through either form, an allow only as the address is */
	{ "deny to 169.254.0.0/16\nallow\n", 0, "h", "64:ff9b::a9fe:a9fe", 1, 0, 0, 0, ACL_DENY },
	{ "deny to 169.254.0.0/16\nallow\n", 0, "h", "64:ff9b::a00:1", 1, 0, 0, 0, ACL_ALLOW },
	{ "deny to 169.254.0.0/16\nallow to 64:ff9b::/96\n", 0, "h", "64:ff9b::a9fe:1", 1, 0, 0, 0,
	  ACL_DENY },
	{ "allow to 64:ff9b::/96\ndeny to 169.254.0.0/16\n", 0, "h", "64:ff9b::a9fe:1", 1, 0, 0, 0,
	  ACL_ALLOW },  /* the first rule decides: an explicit allow of the prefix */
	{ "allow to 10.0.0.0/8\ndeny\n", 0, "h", "64:ff9b::a00:1", 1, 0, 0, 0, ACL_DENY },
	{ "allow to 10.0.0.0/8\ndeny\n", 0, "h", "2002:a00:1::", 1, 0, 0, 0, ACL_DENY },
	{ "allow to 10.0.0.0/8\ndeny\n", 0, "h", "::10.0.0.1", 1, 0, 0, 0, ACL_DENY },
	{ "deny to 10.0.0.0/8 port 22\nallow\n", 0, "h", "::10.0.0.1", 22, 0, 0, 0, ACL_DENY },
	{ "deny to 10.0.0.0/8 port 22\nallow\n", 0, "h", "::10.0.0.1", 23, 0, 0, 0, ACL_ALLOW },
	{ "deny to 0.0.0.0/8\nallow\n", 0, "h", "::1", 1, 0, 0, 0, ACL_ALLOW },
	{ "deny to 0.0.0.0/8\nallow\n", 0, "h", "::", 1, 0, 0, 0, ACL_ALLOW },
	{ "deny to 0.0.0.0/8\nallow\n", 0, "h", "::2", 1, 0, 0, 0, ACL_DENY },
	{ "deny to 0.0.0.0/8\nallow\n", 0, "h", "64:ff9a::2", 1, 0, 0, 0, ACL_ALLOW },
	/* self: this host's addresses, all of lo's 127.0.0.0/8, unspecified */
	{ "deny to self\nallow\n", 0, "h", "127.0.0.1", 1, 0, 0, 0, ACL_DENY },
	{ "deny to self\nallow\n", 0, "h", "127.1.2.3", 1, 0, 0, 0, ACL_DENY },
	{ "deny to self\nallow\n", 0, "h", "::1", 1, 0, 0, 0, ACL_DENY },
	{ "deny to self\nallow\n", 0, "h", "0.0.0.0", 1, 0, 0, 0, ACL_DENY },
	{ "deny to self\nallow\n", 0, "h", "::", 1, 0, 0, 0, ACL_DENY },
	{ "deny to self\nallow\n", 0, "h", "64:ff9b::7f00:1", 1, 0, 0, 0, ACL_DENY },
	{ "deny to self\nallow\n", 0, "h", "192.0.2.199", 1, 0, 0, 0, ACL_ALLOW },
	{ "deny to self\nallow\n", 0, "h", "2001:db8::1", 1, 0, 0, 0, ACL_ALLOW },
	{ "allow to self\ndeny\n", 0, "h", "127.0.0.1", 1, 0, 0, 0, ACL_ALLOW },
	{ "allow to self\ndeny\n", 0, "h", "64:ff9b::7f00:1", 1, 0, 0, 0, ACL_DENY },
	{ "allow to self.\ndeny\n", 0, "self", "192.0.2.199", 1, 0, 0, 0, ACL_ALLOW },
	{ "allow to self\ndeny\n", 0, "self", "192.0.2.199", 1, 0, 0, 0, ACL_DENY },
	/* CIDR edges */
	{ "allow to 10.0.0.0/8\n", 0, "h", "10.255.0.1", 1, 0, 0, 0, ACL_ALLOW },
	{ "allow to 10.0.0.0/8\n", 0, "h", "11.0.0.1", 1, 0, 0, 0, ACL_DENY },
	{ "allow to 192.168.1.128/25\n", 0, "h", "192.168.1.128", 1, 0, 0, 0, ACL_ALLOW },
	{ "allow to 192.168.1.128/25\n", 0, "h", "192.168.1.127", 1, 0, 0, 0, ACL_DENY },
	{ "allow to 0.0.0.0/0\n", 0, "h", "8.8.8.8", 1, 0, 0, 0, ACL_ALLOW },
	{ "allow to 0.0.0.0/0\n", 0, "h", "2001:db8::1", 1, 0, 0, 0, ACL_DENY },
	{ "allow to ::/0\n", 0, "h", "2001:db8::1", 1, 0, 0, 0, ACL_ALLOW },
	{ "allow to 1.2.3.4\n", 0, "h", "1.2.3.4", 1, 0, 0, 0, ACL_ALLOW },
	{ "allow to 1.2.3.4\n", 0, "h", "1.2.3.5", 1, 0, 0, 0, ACL_DENY },
	{ "allow to ::ffff:10.0.0.0/104\n", 0, "h", "10.9.9.9", 1, 0, 0, 0, ACL_ALLOW },
	{ "allow to ::ffff:1.2.3.4\n", 0, "h", "1.2.3.4", 1, 0, 0, 0, ACL_ALLOW },
	{ "allow to 2001:db8::/33\n", 0, "h", "2001:db8:7fff::1", 1, 0, 0, 0, ACL_ALLOW },
	{ "allow to 2001:db8::/33\n", 0, "h", "2001:db8:8000::1", 1, 0, 0, 0, ACL_DENY },
	/* names */
	{ "allow to example.com\n", 0, "example.com", "1.1.1.1", 1, 0, 0, 0, ACL_ALLOW },
	{ "allow to example.com\n", 0, "EXAMPLE.com.", "1.1.1.1", 1, 0, 0, 0, ACL_ALLOW },
	{ "allow to example.com.\n", 0, "example.com", "1.1.1.1", 1, 0, 0, 0, ACL_ALLOW },
	{ "allow to example.com\n", 0, "www.example.com", "1.1.1.1", 1, 0, 0, 0, ACL_DENY },
	{ "allow to example.com\n", 0, "badexample.com", "1.1.1.1", 1, 0, 0, 0, ACL_DENY },
	{ "allow to *.example.com\n", 0, "www.example.com", "1.1.1.1", 1, 0, 0, 0, ACL_ALLOW },
	{ "allow to *.example.com\n", 0, "a.b.Example.COM.", "1.1.1.1", 1, 0, 0, 0, ACL_ALLOW },
	{ "allow to *.example.com\n", 0, "example.com", "1.1.1.1", 1, 0, 0, 0, ACL_DENY },
	{ "allow to *.example.com\n", 0, "badexample.com", "1.1.1.1", 1, 0, 0, 0, ACL_DENY },
	{ "allow to *\n", 0, "anything", "1.1.1.1", 1, 0, 0, 0, ACL_ALLOW },
	{ "allow to localhost\n", 0, "127.0.0.1", "127.0.0.1", 1, 0, 0, 0, ACL_DENY },
	/* a name never vouches for its address (rebinding) */
	{ "deny to 127.0.0.0/8\nallow to good.test\n", 0, "good.test", "127.0.0.1", 1, 0, 0, 0, ACL_DENY },
	{ "deny to 127.0.0.0/8\nallow to good.test\n", 0, "good.test", "10.0.0.1", 1, 0, 0, 0, ACL_ALLOW },
	/* lists, ports, from, user, conjunction, order */
	{ "allow to a.com,b.com\n", 0, "b.com", "1.1.1.1", 1, 0, 0, 0, ACL_ALLOW },
	{ "allow to a.com, b.com\n", 0, "b.com", "1.1.1.1", 1, 0, 0, 0, ACL_ALLOW },
	{ "allow port 443,8000-8080\n", 0, "h", "1.1.1.1", 8080, 0, 0, 0, ACL_ALLOW },
	{ "allow port 443,8000-8080\n", 0, "h", "1.1.1.1", 8081, 0, 0, 0, ACL_DENY },
	{ "allow port 443,8000-8080\n", 0, "h", "1.1.1.1", 444, 0, 0, 0, ACL_DENY },
	{ "allow from 192.168.0.0/16\n", "192.168.3.4", "h", "1.1.1.1", 1, 0, 0, 0, ACL_ALLOW },
	{ "allow from 192.168.0.0/16\n", "10.0.0.1", "h", "1.1.1.1", 1, 0, 0, 0, ACL_DENY },
	{ "allow from 192.168.0.0/16\n", 0, "h", "1.1.1.1", 1, 0, 0, 0, ACL_DENY },
	{ "allow from 10.0.0.0/8\n", "::ffff:10.1.1.1", "h", "1.1.1.1", 1, 0, 0, 0, ACL_ALLOW },
	{ "allow user alice,bob\n", 0, "h", "1.1.1.1", 1, "bob", 0, 0, ACL_ALLOW },
	{ "allow user alice,bob\n", 0, "h", "1.1.1.1", 1, "Bob", 0, 0, ACL_DENY },
	{ "allow user alice,bob\n", 0, "h", "1.1.1.1", 1, 0, 0, 0, ACL_DENY },
	{ "allow to 1.1.1.1 port 22\n", 0, "h", "1.1.1.1", 22, 0, 0, 0, ACL_ALLOW },
	{ "allow to 1.1.1.1 port 22\n", 0, "h", "1.1.1.1", 23, 0, 0, 0, ACL_DENY },
	{ "allow to 1.1.1.1 port 22\n", 0, "h", "1.1.1.2", 22, 0, 0, 0, ACL_DENY },
	{ "deny port 22\nallow\n", 0, "h", "1.1.1.1", 22, 0, 0, 0, ACL_DENY },
	{ "deny port 22\nallow\n", 0, "h", "1.1.1.1", 23, 0, 0, 0, ACL_ALLOW },
	{ "allow\ndeny port 22\n", 0, "h", "1.1.1.1", 22, 0, 0, 0, ACL_ALLOW },
	{ "", 0, "h", "1.1.1.1", 22, 0, 0, 0, ACL_DENY },
	{ "# only a comment\n\n", 0, "h", "1.1.1.1", 22, 0, 0, 0, ACL_DENY },
	{ "allow port 22 # trailing comment\r\n", 0, "h", "1.1.1.1", 22, 0, 0, 0, ACL_ALLOW },
	/* tls, tls-sni */
	{ "allow tls\n", 0, "h", "1.1.1.1", 1, 0, 1, 0, ACL_ALLOW },
	{ "allow tls\n", 0, "h", "1.1.1.1", 1, 0, 0, 0, ACL_DENY },
	{ "allow tls-sni\n", 0, "h", "1.1.1.1", 1, 0, 1, 1, ACL_ALLOW },
	{ "allow tls-sni\n", 0, "h", "1.1.1.1", 1, 0, 1, 0, ACL_DENY },
	{ "allow tls-sni\n", 0, "h", "1.1.1.1", 1, 0, 0, 1, ACL_DENY },
	/* an address literal is never a server name (RFC 6066 §3) */
	{ "allow tls-sni\n", 0, "1.1.1.1", "1.1.1.1", 1, 0, 1, 1, ACL_DENY },
	{ "allow tls-sni\n", 0, "::1", "::1", 1, 0, 1, 1, ACL_DENY },
	{ "allow tls\n", 0, "1.1.1.1", "1.1.1.1", 1, 0, 1, 1, ACL_ALLOW },
	/* via: how an allow goes, anywhere after the action */
	{ "allow via direct to 1.1.1.1\n", 0, "h", "1.1.1.1", 1, 0, 0, 0, ACL_ALLOW | ACL_VIA_DIRECT },
	{ "allow port 22 via upstream\n", 0, "h", "1.1.1.1", 22, 0, 0, 0,
	  ACL_ALLOW | ACL_VIA_UPSTREAM },
	{ "allow via direct to 10.0.0.0/8\nallow\n", 0, "h", "1.1.1.1", 1, 0, 0, 0, ACL_ALLOW },
	{ "deny to 10.0.0.0/8\nallow via upstream\n", 0, "h", "10.1.2.3", 1, 0, 0, 0, ACL_DENY },
};

static const struct {
	const char *rules;
	const char *err;
} bad[] = {
	{ "permit to 1.2.3.4\n", "t:1: a rule starts with 'allow' or 'deny'" },
	{ "allow\nallow bogus\n", "t:2: unknown condition 'bogus'" },
	{ "deny via direct\n", "t:1: 'via' goes with allow, not deny" },
	{ "allow via sideways\n", "t:1: 'via' is followed by 'direct' or 'upstream'" },
	{ "allow via\n", "t:1: 'via' is followed by 'direct' or 'upstream'" },
	{ "allow via direct port 1 via upstream\n", "t:1: 'via' twice" },
	{ "allow to\n", "t:1: 'to' needs a value" },
	{ "allow to 1.2.3.4/33\n", "t:1: '1.2.3.4/33' is not an address or CIDR" },
	{ "allow to ::ffff:1.2.3.4/95\n", "t:1:" },
	{ "allow to ::1/129\n", "t:1:" },
	{ "allow to 1.2.3.4/\n", "t:1:" },
	{ "allow to 1.2.3.4/-1\n", "t:1:" },
	{ "allow to 1.2.3\n", "t:1: '1.2.3' is not an address or CIDR" },
	{ "allow to 2130706433\n", "t:1:" },
	{ "allow to 0177.0.0.1\n", "t:1:" },
	{ "allow to a..b\n", "t:1:" },
	{ "allow to *.\n", "t:1:" },
	/* http_is_name's rules, as for a CONNECT target */
	{ "allow to -a.example\n", "t:1: '-a.example' is not a host name, address or CIDR" },
	{ "allow to a.-b.example\n", "t:1:" },
	{ "allow to 0x7f.1\n", "t:1:" },
	{ "allow to *.0x7f.1\n", "t:1:" },
	{ "allow to aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa.example\n", "t:1:" },
	{ "allow port 022\n", "t:1:" },
	{ "allow to a,,b\n", "t:1: empty item" },
	{ "allow to ,a\n", "t:1: empty item" },
	{ "allow to exa mple.com\n", "t:1: unknown condition 'mple.com'" },
	{ "allow port 0\n", "t:1:" },
	{ "allow port 65536\n", "t:1:" },
	{ "allow port 80-22\n", "t:1:" },
	{ "allow port +22\n", "t:1:" },
	{ "allow port 0x16\n", "t:1:" },
	{ "allow port 22-\n", "t:1:" },
	{ "allow from example.com\n", "t:1: 'example.com' is not an address or CIDR" },
	{ "allow from self\n", "t:1: 'self' is not an address or CIDR" },
	{ "allow user a:b\n", "t:1:" },
	{ "\n\n# c\nallow port 1\ndeny to\n", "t:5:" },
};

static int load(const char *rules, char *err, size_t errlen);

/* Before the ClientHello is read (tls = -1), only a rule that would decide
 * and tests tls asks for it; rules decided earlier need no hello. */
static void test_unknown_hello(void)
{
	static const struct { const char *rules; unsigned port; int verdict; } u[] = {
		{ "allow tls-sni\n", 443, ACL_NEED_HELLO },
		{ "allow port 22\nallow port 443 tls\n", 22, ACL_ALLOW },
		{ "allow port 22\nallow port 443 tls\n", 443, ACL_NEED_HELLO },
		{ "allow port 22\nallow port 443 tls\n", 80, ACL_DENY },
		{ "deny port 80\ndeny tls\nallow\n", 80, ACL_DENY },
		{ "deny port 80\ndeny tls\nallow\n", 81, ACL_NEED_HELLO },
	};
	struct ip ad = ip("1.1.1.1");
	char err[256];
	int line;

	for (size_t i = 0; i < sizeof u / sizeof u[0]; i++) {
		struct acl_query q = { .host = "h", .addr = &ad, .port = u[i].port, .tls = -1 };
		int v = -1;

		if (load(u[i].rules, err, sizeof err) == 0)
			v = acl_check(&acl, &q, &line);
		CHECK(v == u[i].verdict, "unknown hello %zu: got %d want %d", i, v, u[i].verdict);
	}
}

static int load(const char *rules, char *err, size_t errlen)
{
	if (rules == builtin)
		return acl_load(&acl, "built-in", acl_builtin, strlen(acl_builtin), err, errlen);
	return acl_load(&acl, "t", rules, strlen(rules), err, errlen);
}

/* net_self() against the C library's getifaddrs() on this host: the same
 * addresses, prefix lengths and loopback flags, in the same order. */
struct seen {
	struct ip ip[64];
	unsigned prefix[64];
	int lo[64], n;
};

static void seen_one(void *arg, const struct ip *a, unsigned prefix, int lo)
{
	struct seen *s = arg;

	if (s->n < 64) {
		s->ip[s->n] = *a;
		s->prefix[s->n] = prefix;
		s->lo[s->n++] = lo;
	}
}

static unsigned prefix_of(const struct sockaddr *mask)
{
	const unsigned char *m = mask->sa_family == AF_INET ?
		(const unsigned char *)&((const struct sockaddr_in *)mask)->sin_addr :
		((const struct sockaddr_in6 *)mask)->sin6_addr.s6_addr;
	unsigned n = 0;

	for (int i = 0; i < (mask->sa_family == AF_INET ? 4 : 16); i++)
		n += (unsigned)__builtin_popcount(m[i]);
	return n;
}

static void self_like_getifaddrs(void)
{
	struct seen got = { .n = 0 }, want = { .n = 0 };
	struct ifaddrs *ifs;

	CHECK(net_self(seen_one, &got) == 0, "net_self failed");
	CHECK(getifaddrs(&ifs) == 0, "getifaddrs failed");
	for (struct ifaddrs *i = ifs; i; i = i->ifa_next) {
		struct endpoint ep;

		if (!i->ifa_addr || (i->ifa_addr->sa_family != AF_INET &&
				     i->ifa_addr->sa_family != AF_INET6))
			continue;
		ep_from_sockaddr(&ep, i->ifa_addr);
		seen_one(&want, &ep.ip, i->ifa_netmask ? prefix_of(i->ifa_netmask) : 0,
			 !!(i->ifa_flags & IFF_LOOPBACK));
	}
	freeifaddrs(ifs);
	CHECK(got.n == want.n && got.n > 0, "net_self: %d addresses, getifaddrs %d", got.n, want.n);
	for (int k = 0; k < got.n && k < want.n; k++)
		CHECK(!memcmp(&got.ip[k], &want.ip[k], sizeof got.ip[k]) &&
		      got.prefix[k] == want.prefix[k] && got.lo[k] == want.lo[k],
		      "address %d: prefix %u/%u, loopback %d/%d", k, got.prefix[k], want.prefix[k],
		      got.lo[k], want.lo[k]);
}

int main(void)
{
	char err[256];

	for (size_t i = 0; i < sizeof rows / sizeof rows[0]; i++) {
		struct ip cl = rows[i].client ? ip(rows[i].client) : (struct ip){ 0 };
		struct ip ad = ip(rows[i].addr);
		struct acl_query q = {
			.client = rows[i].client ? &cl : NULL,
			.host = rows[i].host,
			.literal = ip(rows[i].host).family != 0,
			.addr = &ad,
			.port = rows[i].port,
			.user = rows[i].user,
			.tls = rows[i].tls,
			.sni_match = rows[i].sni,
		};
		int line, v;

		if (load(rows[i].rules, err, sizeof err) < 0) {
			CHECK(0, "row %zu: %s", i, err);
			continue;
		}
		v = acl_check(&acl, &q, &line);
		CHECK(v == rows[i].verdict, "row %zu: got %d want %d", i, v, rows[i].verdict);
	}
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		err[0] = 0;
		CHECK(load(bad[i].rules, err, sizeof err) < 0, "bad %zu accepted", i);
		CHECK(!strncmp(err, bad[i].err, strlen(bad[i].err)), "bad %zu: '%s'", i, err);
	}

	/* Limits: too many rules, a file too large, a NUL byte. */
	static char big[ACL_TEXT_MAX + 16];
	size_t n = 0;
	for (int i = 0; i < ACL_RULES_MAX + 1; i++)
		n += (size_t)snprintf(big + n, sizeof big - n, "deny\n");
	CHECK(acl_load(&acl, "t", big, n, err, sizeof err) < 0 && strstr(err, "more than"),
	      "too many rules: %s", err);
	memset(big, '#', sizeof big);
	CHECK(acl_load(&acl, "t", big, sizeof big, err, sizeof err) < 0 && strstr(err, "larger"),
	      "file too large: %s", err);
	CHECK(acl_load(&acl, "t", "allow\0", 6, err, sizeof err) < 0 && strstr(err, "NUL"),
	      "NUL byte: %s", err);
	CHECK(acl_load(&acl, "/nonexistent/rules", NULL, 0, err, sizeof err) < 0 &&
	      strstr(err, "/nonexistent/rules"), "missing file named: %s", err);
	test_unknown_hello();
	self_like_getifaddrs();
	return tally("test_acl");
}
