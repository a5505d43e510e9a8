/* The PROXY protocol parser: v1 lines and v2 blocks, good and bad, each
 * good one also cut short at every length (a prefix wants more, never
 * fails and never succeeds), with the client's bytes after it untouched. */
#include <string.h>

#include "check.h"
#include "proxyproto.h"

static unsigned char b[2048];

static const char *addr(const struct endpoint *ep)
{
	static char s[2][ADDRSTR_MAX];
	static int k;

	return ep_str(ep, s[k ^= 1]);
}

/* A v2 block: command (0 LOCAL, 1 PROXY), family byte, then body. */
static size_t v2(int cmd, int fam, const void *body, size_t n)
{
	memcpy(b, "\r\n\r\n\0\r\nQUIT\n", 12);
	b[12] = (unsigned char)(0x20 | cmd);
	b[13] = (unsigned char)fam;
	b[14] = (unsigned char)(n >> 8);
	b[15] = (unsigned char)n;
	memcpy(b + 16, body, n);
	return 16 + n;
}

/* len bytes in b hold a good header of hlen bytes: every prefix wants
 * more, the whole gives hlen, and so does the whole with more after it. */
static void prefixes(size_t hlen, const char *what)
{
	struct proxy_hdr h;

	for (size_t k = 0; k < hlen; k++)
		CHECK(proxy_parse(b, k, &h) == 0, "%s: prefix %zu", what, k);
	memcpy(b + hlen, "CONNECT", 7);
	CHECK(proxy_parse(b, hlen + 7, &h) == (int)hlen, "%s: with bytes after", what);
}

static void good_v1(const char *line, int local, const char *src, const char *dst)
{
	struct proxy_hdr h;
	size_t n = strlen(line);

	memcpy(b, line, n);
	CHECK(proxy_parse(b, n, &h) == (int)n && h.version == 1 && h.local == local,
	      "%s: %d", line, proxy_parse(b, n, &h));
	if (!local)
		CHECK(!strcmp(addr(&h.src), src) && !strcmp(addr(&h.dst), dst), "%s: %s %s",
		      line, addr(&h.src), addr(&h.dst));
	prefixes(n, line);
}

static void bad_v1(const char *line)
{
	struct proxy_hdr h;
	size_t n = strlen(line);

	memcpy(b, line, n);
	CHECK(proxy_parse(b, n, &h) == -1, "%s: not refused", line);
}

int main(void)
{
	struct proxy_hdr h;
	unsigned char body[1100] = { 0 };
	size_t n;

	good_v1("PROXY TCP4 192.0.2.7 198.51.100.1 56324 443\r\n", 0, "192.0.2.7:56324",
		"198.51.100.1:443");
	good_v1("PROXY TCP6 2001:db8::7 2001:db8::1 65535 0\r\n", 0, "[2001:db8::7]:65535",
		"[2001:db8::1]:0");
	good_v1("PROXY TCP6 ::ffff:192.0.2.7 ::1 1 2\r\n", 0, "192.0.2.7:1", "[::1]:2");
	good_v1("PROXY UNKNOWN\r\n", 1, 0, 0);
	good_v1("PROXY UNKNOWN ffff:f...f:ffff 1.2.3.4 65535 65535\r\n", 1, 0, 0);
	/* The longest line there is: 107 bytes with its CRLF. */
	good_v1("PROXY TCP6 ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff "
		"ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff 65535 65535\r\n", 0,
		"[ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff]:65535",
		"[ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff]:65535");

	bad_v1("PROXY TCP4 192.0.2.7 198.51.100.1 56324 443\n");      /* no CR */
	bad_v1("PROXY TCP4 192.0.2.7 198.51.100.1 56324 443 \r\n");   /* a space too many */
	bad_v1("PROXY TCP4  192.0.2.7 198.51.100.1 56324 443\r\n");
	bad_v1("PROXY TCP4 192.0.2.7 198.51.100.1 56324\r\n");        /* a field short */
	bad_v1("PROXY TCP4 192.0.2.7 198.51.100.1 56324 443 9\r\n");
	bad_v1("PROXY TCP4 2001:db8::7 198.51.100.1 1 2\r\n");        /* family mismatch */
	bad_v1("PROXY TCP6 192.0.2.7 2001:db8::1 1 2\r\n");
	bad_v1("PROXY TCP4 192.0.2.7 198.51.100.1 65536 443\r\n");   /* port range */
	bad_v1("PROXY TCP4 192.0.2.7 198.51.100.1 0443 443\r\n");    /* leading zero */
	bad_v1("PROXY TCP4 192.0.2.7 198.51.100.1 -1 443\r\n");
	bad_v1("PROXY TCP4 192.0.2.7 198.51.100.1 +1 443\r\n");
	bad_v1("PROXY TCP4 192.0.2 198.51.100.1 1 443\r\n");
	bad_v1("PROXY UDP4 192.0.2.7 198.51.100.1 1 2\r\n");
	bad_v1("PROXY UNKNOWNX\r\n");
	bad_v1("PROXY \r\n");
	bad_v1("PROXY UNKNOWN a\rb\r\n");
	bad_v1("proxy TCP4 192.0.2.7 198.51.100.1 1 2\r\n");
	bad_v1("PROXYTCP4 192.0.2.7 198.51.100.1 1 2\r\n");
	bad_v1("CONNECT a:1 HTTP/1.1\r\n\r\n");
	/* 107 bytes and no line end yet: refused, not waited for. */
	memset(b, 'x', 200);
	memcpy(b, "PROXY UNKNOWN ", 14);
	CHECK(proxy_parse(b, 106, &h) == 0, "106 bytes: more wanted");
	CHECK(proxy_parse(b, 107, &h) == -1, "107 bytes without CRLF");
	memcpy(b + 106, "\r\n", 2);
	CHECK(proxy_parse(b, 108, &h) == -1, "a 108-byte line");

	/* v2: TCP over IPv4 and IPv6, with and without TLVs. */
	memcpy(body, "\xc0\x00\x02\x07\xc6\x33\x64\x01\xdc\x04\x01\xbb", 12);
	n = v2(1, 0x11, body, 12);
	CHECK(proxy_parse(b, n, &h) == 28 && h.version == 2 && !h.local &&
	      !strcmp(addr(&h.src), "192.0.2.7:56324") && !strcmp(addr(&h.dst), "198.51.100.1:443"),
	      "v2 tcp4: %s %s", addr(&h.src), addr(&h.dst));
	prefixes(n, "v2 tcp4");
	memcpy(body + 12, "\x04\x00\x03xyz\x01\x00\x00", 9);  /* a NOOP TLV and an empty ALPN */
	n = v2(1, 0x11, body, 21);
	CHECK(proxy_parse(b, n, &h) == 37 && !h.local, "v2 tcp4 with TLVs");
	prefixes(n, "v2 tlvs");
	n = v2(1, 0x11, body, 20);  /* the last TLV cut: its length word half there */
	CHECK(proxy_parse(b, n, &h) == -1, "v2 TLV head cut");
	n = v2(1, 0x11, body, 19);
	CHECK(proxy_parse(b, n, &h) == -1, "v2 TLV head cut shorter");
	memcpy(body + 12, "\x04\x00\x09xyz", 6);  /* claims 9, has 3 */
	n = v2(1, 0x11, body, 18);
	CHECK(proxy_parse(b, n, &h) == -1, "v2 TLV overruns the block");
	memset(body, 0, 36);
	body[15] = 7;   /* ::7 */
	body[31] = 1;   /* ::1 */
	body[33] = 80;
	body[35] = 81;
	n = v2(1, 0x21, body, 36);
	CHECK(proxy_parse(b, n, &h) == 52 && !strcmp(addr(&h.src), "[::7]:80") &&
	      !strcmp(addr(&h.dst), "[::1]:81"), "v2 tcp6: %s %s", addr(&h.src), addr(&h.dst));
	prefixes(n, "v2 tcp6");
	/* LOCAL (a health check), UNSPEC and unix: the socket's addresses. */
	n = v2(0, 0x00, body, 0);
	CHECK(proxy_parse(b, n, &h) == 16 && h.local, "v2 LOCAL");
	prefixes(n, "v2 local");
	n = v2(0, 0x11, body, 12);
	CHECK(proxy_parse(b, n, &h) == 28 && h.local, "v2 LOCAL with addresses");
	n = v2(1, 0x00, body, 0);
	CHECK(proxy_parse(b, n, &h) == 16 && h.local, "v2 PROXY UNSPEC");
	n = v2(1, 0x31, body, 216);
	CHECK(proxy_parse(b, n, &h) == 232 && h.local, "v2 unix stream");
	/* Refused: a short block, datagrams, other versions and commands,
	 * families that do not exist, a length over the bound. */
	n = v2(1, 0x11, body, 11);
	CHECK(proxy_parse(b, n, &h) == -1, "v2 tcp4 block short");
	n = v2(1, 0x21, body, 35);
	CHECK(proxy_parse(b, n, &h) == -1, "v2 tcp6 block short");
	n = v2(1, 0x12, body, 12);
	CHECK(proxy_parse(b, n, &h) == -1, "v2 udp4");
	n = v2(1, 0x41, body, 12);
	CHECK(proxy_parse(b, n, &h) == -1, "v2 family 4");
	n = v2(2, 0x11, body, 12);
	CHECK(proxy_parse(b, n, &h) == -1, "v2 command 2");
	CHECK(proxy_parse(b, 13, &h) == -1, "v2 command 2, seen at byte 13");
	n = v2(1, 0x11, body, 12);
	b[12] = 0x11;
	CHECK(proxy_parse(b, n, &h) == -1, "version 1 in a v2 block");
	memset(body, 0, sizeof body);
	n = v2(1, 0x11, body, PROXY_V2_LEN_MAX);
	/* The longest block: its rest a run of empty TLVs (3 bytes each). */
	CHECK(proxy_parse(b, n, &h) == (int)n, "v2 at the bound");
	n = v2(1, 0x11, body, PROXY_V2_LEN_MAX + 1);
	CHECK(proxy_parse(b, 16, &h) == -1, "v2 length over the bound: refused at once");
	n = v2(1, 0x11, body, 12);
	b[11] = 'X';
	CHECK(proxy_parse(b, 12, &h) == -1 && proxy_parse(b, 16, &h) == -1, "v2 signature");
	CHECK(proxy_parse((const unsigned char *)"\r\n\r\n", 4, &h) == 0, "v2 signature prefix");
	CHECK(proxy_parse((const unsigned char *)"\x16\x03\x01", 3, &h) == -1, "a ClientHello");

	CHECK(proxy_looks((const unsigned char *)"PRO", 3) && proxy_looks((const unsigned char *)"\r\n\r", 3) &&
	      !proxy_looks((const unsigned char *)"PROPFIND", 8) && !proxy_looks((const unsigned char *)"\r\n\n", 3),
	      "proxy_looks");
	return tally("test_proxyproto");
}
