/* The resolver's messages: questions built, and answers built here byte by
 * byte, each cut short at every length, with wrong ids and questions,
 * compression loops, CNAME chains and odd records. */
#include <arpa/inet.h>
#include <string.h>

#include "check.h"
#include "dns.h"

static unsigned char msg[4096];
static const unsigned char a1[4] = { 192, 0, 2, 1 }, a2[4] = { 192, 0, 2, 2 };
static size_t len;

static void put16(unsigned v)
{
	msg[len++] = (unsigned char)(v >> 8);
	msg[len++] = (unsigned char)v;
}

/* name in wire form at out: its length */
static size_t wire(unsigned char *out, const char *name)
{
	size_t o = 0;

	for (const char *p = name; *p;) {
		size_t l = strcspn(p, ".");

		out[o++] = (unsigned char)l;
		memcpy(out + o, p, l);
		o += l;
		p += l + (p[l] == '.');
	}
	out[o++] = 0;
	return o;
}

static void put_name(const char *name)
{
	len += wire(msg + len, name);
}

/* The answer header and question: flags (QR set by the caller's choice),
 * an answer count; the question's name starts at offset 12. */
static void head(unsigned id, unsigned flags, unsigned an, const char *qname, unsigned qtype)
{
	len = 0;
	put16(id);
	put16(flags);
	put16(1);
	put16(an);
	put16(0);
	put16(0);
	put_name(qname);
	put16(qtype);
	put16(1);
}

/* A record's fields after its owner name. */
static void fields(unsigned type, const void *data, size_t dlen)
{
	put16(type);
	put16(1);
	put16(0);
	put16(60);
	put16((unsigned)dlen);
	memcpy(msg + len, data, dlen);
	len += dlen;
}

/* A record: owner as a pointer (ptr) or a name, and its data. */
static void rr(unsigned ptr, const char *owner, unsigned type, const void *data, size_t dlen)
{
	if (ptr)
		put16(0xc000 | ptr);
	else
		put_name(owner);
	fields(type, data, dlen);
}

/* Two records: one of another type whose data is a chain of k pointers,
 * each to the one before, the first to the question; then an A record
 * whose owner is a pointer to the chain's last. */
static void chain(int k)
{
	unsigned char c[64];
	size_t start;

	head(1, 0x8180, 2, "good.test", 1);
	start = len + 12;  /* the first record's data: after its pointer and fields */
	c[0] = 0xc0;
	c[1] = 12;
	for (int i = 1; i < k; i++) {
		c[2 * i] = (unsigned char)(0xc0 | (start + 2 * (i - 1)) >> 8);
		c[2 * i + 1] = (unsigned char)(start + 2 * (i - 1));
	}
	rr(12, NULL, 16, c, 2 * (size_t)k);
	rr((unsigned)(start + 2 * (k - 1)), NULL, 1, a1, 4);
}

static int parse(unsigned id, const char *name, unsigned qtype, struct endpoint *ep, int max,
		 int *n)
{
	return dns_answer(msg, len, id, name, qtype, ep, max, n);
}

static void test_query(void)
{
	unsigned char q[512];
	static const unsigned char want[] = { 0x12, 0x34, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0,
		4, 'G', 'o', 'o', 'd', 4, 't', 'e', 's', 't', 0, 0, 28, 0, 1 };
	char longlabel[80], longname[300];

	CHECK(dns_query(q, sizeof q, 0x1234, "Good.test", 28) == sizeof want &&
	      !memcmp(q, want, sizeof want), "query bytes");
	memset(longlabel, 'a', 64);
	longlabel[64] = 0;
	for (size_t i = 0; i < 254; i++)
		longname[i] = i % 2 ? '.' : 'a';
	longname[253] = 0;
	CHECK(dns_query(q, sizeof q, 1, longname, 1) != 0, "253 bytes fit");
	longname[253] = 'a';
	longname[254] = 0;
	CHECK(dns_query(q, sizeof q, 1, longname, 1) == 0, "254 bytes do not");
	CHECK(dns_query(q, sizeof q, 1, longlabel, 1) == 0, "a 64-byte label");
	CHECK(dns_query(q, sizeof q, 1, "", 1) == 0, "empty");
	CHECK(dns_query(q, sizeof q, 1, "a..b", 1) == 0, "empty label");
	CHECK(dns_query(q, sizeof q, 1, ".a", 1) == 0, "leading dot");
	CHECK(dns_query(q, sizeof q, 1, "a.", 1) == 0, "trailing dot (the caller strips it)");
	CHECK(dns_query(q, 20, 1, "good.test", 1) == 0, "too small a buffer");
}

static void test_plain(void)
{
	struct endpoint ep[16];
	unsigned char mapped[16] = { 0 }, six[16] = { 0x20, 0x01, 0x0d, 0xb8 };
	int n;

	head(7, 0x8180, 2, "good.test", 1);
	rr(12, NULL, 1, a1, 4);
	rr(12, NULL, 1, a2, 4);
	CHECK(parse(7, "good.test", 1, ep, 16, &n) == DNS_ANS_OK && n == 2, "two A");
	CHECK(ep[0].ip.family == AF_INET && !memcmp(ep[0].ip.a, a1, 4) &&
	      !memcmp(ep[1].ip.a, a2, 4), "in the answer's order");
	CHECK(parse(7, "GOOD.Test", 1, ep, 16, &n) == DNS_ANS_OK && n == 2, "names ignore case");
	CHECK(parse(7, "good.test", 1, ep, 1, &n) == DNS_ANS_OK && n == 1, "max");
	CHECK(parse(8, "good.test", 1, ep, 16, &n) == DNS_ANS_BAD && n == 0, "wrong id");
	CHECK(parse(7, "other.test", 1, ep, 16, &n) == DNS_ANS_BAD, "wrong name");
	CHECK(parse(7, "good.tes", 1, ep, 16, &n) == DNS_ANS_BAD, "a prefix of the name");
	CHECK(parse(7, "good.test", 28, ep, 16, &n) == DNS_ANS_BAD, "wrong type");
	for (size_t cut = len, l = 0; l < cut; l++) {
		len = l;
		CHECK(parse(7, "good.test", 1, ep, 16, &n) == DNS_ANS_BAD && n == 0,
		      "cut at %zu", l);
	}
	head(7, 0x0180, 0, "good.test", 1);
	CHECK(parse(7, "good.test", 1, ep, 16, &n) == DNS_ANS_BAD, "a query, not an answer");
	head(7, 0x8980, 0, "good.test", 1);
	CHECK(parse(7, "good.test", 1, ep, 16, &n) == DNS_ANS_BAD, "opcode 1");
	head(7, 0x8180, 0, "good.test", 1);
	msg[len - 1] = 3;
	CHECK(parse(7, "good.test", 1, ep, 16, &n) == DNS_ANS_BAD, "class CHAOS");
	head(7, 0x8183, 0, "nx.test", 1);
	CHECK(parse(7, "nx.test", 1, ep, 16, &n) == DNS_ANS_NX, "NXDOMAIN");
	head(7, 0x8182, 0, "good.test", 1);
	CHECK(parse(7, "good.test", 1, ep, 16, &n) == DNS_ANS_FAIL, "SERVFAIL");
	head(7, 0x8385, 0, "good.test", 1);
	CHECK(parse(7, "good.test", 1, ep, 16, &n) == DNS_ANS_TC, "TC");
	head(7, 0x8180, 0, "good.test", 1);
	CHECK(parse(7, "good.test", 1, ep, 16, &n) == DNS_ANS_OK && n == 0, "no address");

	mapped[10] = mapped[11] = 0xff;
	memcpy(mapped + 12, a1, 4);
	head(9, 0x8180, 4, "v6.test", 28);
	rr(12, NULL, 28, six, 16);
	rr(12, NULL, 28, a2, 4);           /* wrong length: skipped */
	rr(12, NULL, 1, a2, 4);            /* another type: skipped */
	rr(12, NULL, 28, mapped, 16);
	CHECK(parse(9, "v6.test", 28, ep, 16, &n) == DNS_ANS_OK && n == 2, "AAAA");
	CHECK(ep[0].ip.family == AF_INET6 && !memcmp(ep[0].ip.a, six, 16), "AAAA address");
	CHECK(ep[1].ip.family == AF_INET && !memcmp(ep[1].ip.a, a1, 4), "mapped is IPv4");
}

static void test_compression(void)
{
	struct endpoint ep[16];
	int n;
	size_t at;

	head(1, 0x8180, 1, "good.test", 1);
	at = len;
	put16(0xc000 | (unsigned)at);      /* points at itself */
	len -= 2;
	rr(at, NULL, 1, a1, 4);
	CHECK(parse(1, "good.test", 1, ep, 16, &n) == DNS_ANS_BAD, "self pointer");
	head(1, 0x8180, 1, "good.test", 1);
	rr((unsigned)len + 20, NULL, 1, a1, 4);
	CHECK(parse(1, "good.test", 1, ep, 16, &n) == DNS_ANS_BAD, "forward pointer");
	head(1, 0x8180, 1, "good.test", 1);
	msg[len++] = 0x40;                 /* label type 01: reserved */
	CHECK(parse(1, "good.test", 1, ep, 16, &n) == DNS_ANS_BAD, "reserved label type");

	chain(16);  /* with the owner's own pointer: 17 */
	CHECK(parse(1, "good.test", 1, ep, 16, &n) == DNS_ANS_BAD, "too many pointers");
	chain(15);
	CHECK(parse(1, "good.test", 1, ep, 16, &n) == DNS_ANS_OK && n == 1, "16 pointers are fine");
	CHECK(!memcmp(ep[0].ip.a, a1, 4), "its address");

	/* one label "good.test" is not the two of the question */
	head(1, 0x8180, 1, "good.test", 1);
	msg[len++] = 9;
	memcpy(msg + len, "good.test", 9);
	len += 9;
	msg[len++] = 0;
	fields(1, a1, 4);
	CHECK(parse(1, "good.test", 1, ep, 16, &n) == DNS_ANS_BAD && n == 0, "dot in a label");
}

/* owner CNAME target, the target as plain labels */
static void cname(unsigned ptr, const char *owner, const char *target)
{
	unsigned char t[256];

	rr(ptr, owner, 5, t, wire(t, target));
}

/* nN.test CNAME nN+1.test from N = first to 8, then n9.test A */
static void cnames(int first)
{
	char owner[8] = "n0.test", target[8] = "n0.test";

	head(3, 0x8180, 10 - (unsigned)first, owner, 1);
	msg[14] = (unsigned char)('0' + first);
	for (int i = first; i < 9; i++) {
		owner[1] = (char)('0' + i);
		target[1] = (char)('1' + i);
		cname(0, owner, target);
	}
	rr(0, target, 1, a1, 4);
}

/* www.test CNAME b.test CNAME C.test A a1, beside x.test A a2 (never
 * taken) and, with own, www.test A a2 first. */
static void www(int own)
{
	head(3, 0x8180, 4 + (unsigned)own, "www.test", 1);
	if (own)
		rr(12, NULL, 1, a2, 4);
	cname(12, NULL, "b.test");
	cname(0, "b.test", "C.test");
	rr(0, "x.test", 1, a2, 4);
	rr(0, "c.test", 1, a1, 4);
}

static void test_cname(void)
{
	struct endpoint ep[16];
	int n;

	www(1);
	CHECK(parse(3, "www.test", 1, ep, 16, &n) == DNS_ANS_OK && n == 1 &&
	      !memcmp(ep[0].ip.a, a2, 4), "an address of the name itself is taken first");
	www(0);
	CHECK(parse(3, "www.test", 1, ep, 16, &n) == DNS_ANS_OK && n == 1 &&
	      !memcmp(ep[0].ip.a, a1, 4), "two CNAMEs followed");

	head(3, 0x8180, 2, "a.test", 1);
	cname(12, NULL, "b.test");
	cname(0, "b.test", "a.test");
	CHECK(parse(3, "a.test", 1, ep, 16, &n) == DNS_ANS_FAIL && n == 0, "a CNAME loop ends");

	cnames(0);
	CHECK(parse(3, "n0.test", 1, ep, 16, &n) == DNS_ANS_FAIL, "nine CNAMEs: too long a chain");
	cnames(1);
	CHECK(parse(3, "n1.test", 1, ep, 16, &n) == DNS_ANS_OK && n == 1, "eight CNAMEs followed");

	head(3, 0x8180, 1, "a.test", 1);
	rr(12, NULL, 5, "\3abc", 4);       /* the target runs out of its record */
	CHECK(parse(3, "a.test", 1, ep, 16, &n) == DNS_ANS_BAD, "CNAME past its rdata");
}

int main(void)
{
	test_query();
	test_plain();
	test_compression();
	test_cname();
	return tally("test_dns");
}
