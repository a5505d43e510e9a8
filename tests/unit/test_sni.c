/* The ClientHello reader: hellos built here byte by byte, each cut short at
 * every length, and malformed ones. */
#include <string.h>

#include "check.h"
#include "sni.h"

static unsigned char msg[4096];

static size_t put16(unsigned char *p, size_t v)
{
	p[0] = (unsigned char)(v >> 8);
	p[1] = (unsigned char)v;
	return 2;
}

/* A TLS record holding a ClientHello with the given server name (NULL:
 * no server_name extension) behind one unrelated extension. */
static size_t hello(const char *name, int name_type)
{
	unsigned char body[2048], *p = body;
	size_t n, ext_start;

	*p++ = 3; *p++ = 3;                       /* legacy_version */
	memset(p, 0xab, 32); p += 32;             /* random */
	*p++ = 32; memset(p, 1, 32); p += 32;     /* session id */
	p += put16(p, 4); p += put16(p, 0x1301); p += put16(p, 0x1302);
	*p++ = 1; *p++ = 0;                       /* compression: null */
	ext_start = (size_t)(p - body);
	p += 2;
	p += put16(p, 0x000a); p += put16(p, 4); p += put16(p, 2); p += put16(p, 0x001d);
	if (name) {
		size_t len = strlen(name);

		p += put16(p, 0); p += put16(p, len + 5); p += put16(p, len + 3);
		*p++ = (unsigned char)name_type;
		p += put16(p, len);
		memcpy(p, name, len); p += len;
	}
	n = (size_t)(p - body);
	put16(body + ext_start, n - ext_start - 2);

	msg[0] = 0x16; msg[1] = 3; msg[2] = 1;
	put16(msg + 3, n + 4);
	msg[5] = 1; msg[6] = 0;
	put16(msg + 7, n);
	memcpy(msg + 9, body, n);
	return n + 9;
}

int main(void)
{
	char sni[256];
	size_t len = hello("good.test", 0);
	int r;

	CHECK(tls_hello_sni(msg, len, sni, sizeof sni) == 1 && !strcmp(sni, "good.test"),
	      "server name read: '%s'", sni);
	for (size_t cut = 0; cut < len; cut++) {
		r = tls_hello_sni(msg, cut, sni, sizeof sni);
		CHECK(r == 0, "cut at %zu: %d, wants more bytes", cut, r);
	}
	/* Bytes after the record (the client's next flight) change nothing. */
	memset(msg + len, 0x17, 100);
	CHECK(tls_hello_sni(msg, len + 100, sni, sizeof sni) == 1 && !strcmp(sni, "good.test"),
	      "trailing bytes");

	len = hello(NULL, 0);
	CHECK(tls_hello_sni(msg, len, sni, sizeof sni) == 1 && sni[0] == 0, "no SNI");
	len = hello("good.test", 1);
	CHECK(tls_hello_sni(msg, len, sni, sizeof sni) == 1 && sni[0] == 0, "other name type");
	len = hello("bad name\n", 0);
	CHECK(tls_hello_sni(msg, len, sni, sizeof sni) == 1 && sni[0] == 0, "name with space");
	len = hello("good.test", 0);
	CHECK(tls_hello_sni(msg, len, sni, 5) == 1 && sni[0] == 0, "name longer than the buffer");

	/* A lying inner length: TLS all the same, but no name read past it. */
	len = hello("good.test", 0);
	msg[len - 12] = 0xff;
	CHECK(tls_hello_sni(msg, len, sni, sizeof sni) == 1 && sni[0] == 0, "bad name length");

	static const struct { const char *b; size_t n; int want; } raw[] = {
		{ "GET / HTTP/1.1\r\n\r\n", 18, -1 },
		{ "SSH-2.0-OpenSSH\r\n", 17, -1 },
		{ "\x16\x02", 2, -1 },
		{ "\x16\x03\x01\x00\x00", 5, -1 },           /* empty record */
		{ "\x16\x03\x01\xff\xff", 5, -1 },           /* longer than 2^14 */
		{ "\x16\x03\x01\x00\x04\x02\x00\x00\x00", 9, -1 },  /* ServerHello */
		{ "\x16\x03\x01\x00\x04\x01\x00\x00\x00", 9, 1 },   /* empty hello */
		{ "\x16\x03\x01\x00\x04\x01\x00\x10\x00", 9, 1 },   /* spans records */
		{ "\x16", 1, 0 },
		{ "", 0, 0 },
	};
	for (size_t i = 0; i < sizeof raw / sizeof raw[0]; i++) {
		r = tls_hello_sni((const unsigned char *)raw[i].b, raw[i].n, sni, sizeof sni);
		CHECK(r == raw[i].want && (r != 1 || !sni[0]), "raw %zu: %d", i, r);
	}
	return tally("test_sni");
}
