/* A bounded reader for the server_name extension of a TLS ClientHello
 * (RFC 8446 §4.1.2, RFC 6066 §3), for the "tls" and "tls-sni" rules. */
#include <string.h>

#include "sni.h"

struct cur {
	const unsigned char *p, *end;
};

/* Take an n-byte big-endian length (n = 1..3); -1 if out of bytes. */
static long take_len(struct cur *c, int n)
{
	long v = 0;

	if (c->end - c->p < n)
		return -1;
	while (n--)
		v = v << 8 | *c->p++;
	return v;
}

/* Narrow c to the next len bytes, moving the outer cursor past them. */
static int sub(struct cur *c, long len, struct cur *in)
{
	if (len < 0 || c->end - c->p < len)
		return -1;
	in->p = c->p;
	in->end = c->p + len;
	c->p += len;
	return 0;
}

static void copy_name(struct cur *n, char *sni, size_t max)
{
	size_t len = (size_t)(n->end - n->p);

	if (len == 0 || len >= max)
		return;
	for (size_t i = 0; i < len; i++)
		if (!strchr("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.",
			    n->p[i]) || !n->p[i])
			return;
	memcpy(sni, n->p, len);
	sni[len] = 0;
}

int tls_hello_sni(const unsigned char *buf, size_t len, char *sni, size_t max)
{
	struct cur rec = { buf, buf + len }, hello, exts, ext, list, name;
	long rlen, n;

	if (max)
		sni[0] = 0;
	if ((len >= 1 && buf[0] != 0x16) || (len >= 2 && buf[1] != 0x03))
		return -1;
	if (len < 5)
		return 0;
	rec.p += 3;
	rlen = take_len(&rec, 2);
	if (rlen < 4 || rlen > 16384)
		return -1;
	if ((size_t)rlen > len - 5)
		return 0;
	rec.end = rec.p + rlen;
	if (*rec.p++ != 1)
		return -1;  /* not a ClientHello */
	n = take_len(&rec, 3);
	if (sub(&rec, n, &hello) < 0)
		return 1;   /* spans records: TLS, but no name to read */
	if (hello.end - hello.p < 34)
		return 1;
	hello.p += 34;  /* legacy_version, random */
	if (sub(&hello, take_len(&hello, 1), &list) < 0 ||  /* session id */
	    sub(&hello, take_len(&hello, 2), &list) < 0 ||  /* cipher suites */
	    sub(&hello, take_len(&hello, 1), &list) < 0 ||  /* compression */
	    sub(&hello, take_len(&hello, 2), &exts) < 0)
		return 1;
	while (exts.p < exts.end) {
		long type = take_len(&exts, 2);

		if (type < 0 || sub(&exts, take_len(&exts, 2), &ext) < 0)
			return 1;
		if (type != 0)
			continue;
		if (sub(&ext, take_len(&ext, 2), &list) < 0)
			return 1;
		while (list.p < list.end) {
			long kind = take_len(&list, 1);

			if (kind < 0 || sub(&list, take_len(&list, 2), &name) < 0)
				return 1;
			if (kind == 0) {
				copy_name(&name, sni, max);
				return 1;
			}
		}
		return 1;
	}
	return 1;
}
