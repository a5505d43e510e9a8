/* The CONNECT request head: framing and parsing, by length, never trusting a
 * terminator. RFC 9110 §9.3.6, RFC 9112 §3 and §5. */
#include <arpa/inet.h>
#include <string.h>

#include "config.h"
#include "http.h"

static int is_digit(int c) { return c >= '0' && c <= '9'; }
static int is_alpha(int c) { return (c | 0x20) >= 'a' && (c | 0x20) <= 'z'; }

/* RFC 9110 §5.6.2 token characters. */
static int is_tchar(int c)
{
	return is_alpha(c) || is_digit(c) || (c && strchr("!#$%&'*+-.^_`|~", c));
}

static int eq_nocase(const char *a, size_t alen, const char *b)
{
	size_t i;

	for (i = 0; i < alen && b[i]; i++)
		if ((a[i] | 0x20) != (b[i] | 0x20))
			return 0;
	return i == alen && !b[i];
}

/* Whether buf starts with one empty line, which RFC 9112 §2.2 asks a
 * server to ignore before the request line; its length or 0. */
static size_t leading_empty_line(const char *buf, size_t len)
{
	if (len >= 1 && buf[0] == '\n')
		return 1;
	return len >= 2 && buf[0] == '\r' && buf[1] == '\n' ? 2 : 0;
}

size_t http_head_end(const char *buf, size_t len)
{
	size_t start = leading_empty_line(buf, len), i;

	for (i = start; i < len; i++) {
		if (buf[i] != '\n')
			continue;
		if (i == start || (i == start + 1 && buf[start] == '\r'))
			return i + 1;
		start = i + 1;
	}
	return 0;
}

/* Next line of [*p, end) without its LF and one CR before it. */
static int next_line(const char **p, const char *end, const char **line, size_t *n)
{
	const char *nl = memchr(*p, '\n', (size_t)(end - *p));

	if (!nl)
		return 0;
	*line = *p;
	*n = (size_t)(nl - *p);
	if (*n && nl[-1] == '\r')
		(*n)--;
	*p = nl + 1;
	return 1;
}

/* Dotted-quad with four decimal parts 0-255 and no leading zeros. */
static int is_dotted_quad(const char *s, size_t len)
{
	size_t i = 0;
	int part;

	for (part = 0; part < 4; part++) {
		size_t start = i;
		unsigned v = 0;

		while (i < len && is_digit(s[i]) && i - start < 3)
			v = v * 10 + (unsigned)(s[i++] - '0');
		if (i == start || v > 255 || (s[start] == '0' && i - start > 1))
			return 0;
		if (part < 3 && (i >= len || s[i++] != '.'))
			return 0;
	}
	return i == len;
}

/* A DNS name: letters, digits, '-', '_', '.', labels of 1-63 bytes, one
 * trailing dot allowed, at most 253 bytes without it. */
static int is_name(const char *s, size_t len)
{
	size_t i, label = 0;

	if (len && s[len - 1] == '.')
		len--;
	if (len == 0 || len > HOST_MAX)
		return 0;
	for (i = 0; i < len; i++) {
		int c = s[i];

		if (c == '.') {
			if (label == 0)
				return 0;
			label = 0;
		} else if (is_alpha(c) || is_digit(c) || c == '_' || (c == '-' && label)) {
			if (++label > 63)
				return 0;
		} else {
			return 0;
		}
	}
	return label > 0;
}

static int parse_port(const char *s, size_t len, unsigned *port)
{
	unsigned v = 0;
	size_t i;

	if (len == 0 || len > 5 || s[0] == '0')
		return 0;
	for (i = 0; i < len; i++) {
		if (!is_digit(s[i]))
			return 0;
		v = v * 10 + (unsigned)(s[i] - '0');
	}
	if (v > 65535)
		return 0;
	*port = v;
	return 1;
}

int http_parse_target(const char *s, size_t len, struct request *req)
{
	const char *colon;
	size_t hlen;

	if (len && s[0] == '[') {
		const char *rb = memchr(s, ']', len);
		struct in6_addr a6;

		if (!CONFIG_IPV6 || !rb)
			return 400;
		hlen = (size_t)(rb - s - 1);
		colon = rb + 1;
		if (hlen == 0 || hlen > 45 || colon >= s + len || *colon != ':')
			return 400;
		memcpy(req->host, s + 1, hlen);
		req->host[hlen] = 0;
		if (inet_pton(AF_INET6, req->host, &a6) != 1)
			return 400;
		req->literal = 1;
	} else {
		struct in_addr a4;

		colon = memrchr(s, ':', len);
		if (!colon)
			return 400;
		hlen = (size_t)(colon - s);
		if (!is_name(s, hlen))
			return 400;
		memcpy(req->host, s, hlen);
		req->host[hlen] = 0;
		req->literal = is_dotted_quad(s, hlen);
		/* Anything else the C library would read as an IPv4 address
		 * (2130706433, 0x7f.1, 127.1, 0177.0.0.1) is refused: it is
		 * never a real name and only serves to slip past rules. */
		if (!req->literal && inet_aton(req->host, &a4))
			return 400;
		if (!req->literal && strspn(req->host, "0123456789.") == hlen)
			return 400;
	}
	if (!parse_port(colon + 1, (size_t)(s + len - colon - 1), &req->port))
		return 400;
	return 0;
}

/* The request line: "CONNECT host:port HTTP/1.x". */
static int parse_request_line(const char *l, size_t n, struct request *req)
{
	const char *sp1 = memchr(l, ' ', n), *sp2, *v;
	size_t i, vlen;

	if (!sp1 || sp1 == l)
		return 400;
	for (i = 0; l + i < sp1; i++)
		if (!is_tchar(l[i]))
			return 400;
	sp2 = memchr(sp1 + 1, ' ', (size_t)(l + n - sp1 - 1));
	if (!sp2 || sp2 == sp1 + 1)
		return 400;
	v = sp2 + 1;
	vlen = (size_t)(l + n - v);
	if (vlen < 6 || memcmp(v, "HTTP/", 5) || !is_digit(v[5]))
		return 400;
	if (v[5] != '1')
		return 505;
	if (vlen != 8 || v[6] != '.' || !is_digit(v[7]))
		return 400;
	if ((size_t)(sp1 - l) != 7 || memcmp(l, "CONNECT", 7))
		return 405;
	return http_parse_target(sp1 + 1, (size_t)(sp2 - sp1 - 1), req);
}

/* One header field line; fields we act on are checked here. */
static int parse_field(const char *l, size_t n, struct request *req)
{
	const char *colon = memchr(l, ':', n), *v, *e;
	size_t i, nlen;

	if (!colon || colon == l)
		return 400;
	nlen = (size_t)(colon - l);
	for (i = 0; i < nlen; i++)
		if (!is_tchar(l[i]))
			return 400;  /* includes "Name :" (RFC 9112 §5.1) */
	v = colon + 1;
	e = l + n;
	for (const char *c = v; c < e; c++)
		if (((unsigned char)*c < 0x20 && *c != '\t') || *c == 0x7f)
			return 400;  /* NUL, bare CR and other controls */
	while (v < e && (*v == ' ' || *v == '\t'))
		v++;
	while (e > v && (e[-1] == ' ' || e[-1] == '\t'))
		e--;
	if (eq_nocase(l, nlen, "transfer-encoding"))
		return 400;
	if (eq_nocase(l, nlen, "content-length") && (e - v != 1 || *v != '0'))
		return 400;
	if (eq_nocase(l, nlen, "proxy-authorization")) {
		if (req->auth)
			return 400;
		req->auth = v;
		req->auth_len = (size_t)(e - v);
	}
	return 0;
}

int http_parse(const char *buf, size_t len, struct request *req)
{
	const char *p = buf, *end = buf + len, *l;
	size_t n, i;
	int count = 0, st;

	memset(req, 0, sizeof *req);
	p += leading_empty_line(buf, len);
	if (!next_line(&p, end, &l, &n))
		return 400;
	for (i = 0; i < n; i++)
		if ((unsigned char)l[i] < 0x20 || l[i] == 0x7f)
			return 400;
	st = parse_request_line(l, n, req);
	if (st)
		return st;
	while (next_line(&p, end, &l, &n) && n > 0) {
		if (++count > CONFIG_HEADER_COUNT)
			return 431;
		if (l[0] == ' ' || l[0] == '\t')
			return 400;  /* obs-fold */
		st = parse_field(l, n, req);
		if (st)
			return st;
	}
	return 0;
}

const char *http_reason(int status)
{
	switch (status) {
	case 200: return "Connection established";
	case 400: return "Bad Request";
	case 403: return "Forbidden";
	case 404: return "Not Found";
	case 405: return "Method Not Allowed";
	case 407: return "Proxy Authentication Required";
	case 408: return "Request Timeout";
	case 431: return "Request Header Fields Too Large";
	case 502: return "Bad Gateway";
	case 504: return "Gateway Timeout";
	case 505: return "HTTP Version Not Supported";
	default: return "Internal Server Error";
	}
}
