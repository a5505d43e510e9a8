/* The CONNECT request head: framing and parsing, by length, never trusting a
 * terminator. RFC 9110 §9.3.6, RFC 9112 §3 and §5. */
#include <arpa/inet.h>
#include <stdio.h>
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

int http_not_request(const char *buf, size_t len)
{
	size_t i = leading_empty_line(buf, len);

	if (len == 1 && buf[0] == '\r')
		return 0;  /* the CR of an empty line */
	for (; i < len && buf[i] != ' '; i++)
		if (!is_tchar((unsigned char)buf[i]))
			return 1;
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

/* The query of a tunnel request: "o=N" and "fin", '&'-separated; other
 * parameters are ignored. 0 or 400. */
static int parse_query(const char *q, size_t n, struct request *req)
{
	const char *end = q + n;

	while (q < end) {
		const char *amp = memchr(q, '&', (size_t)(end - q));
		size_t len = (size_t)((amp ? amp : end) - q);

		if (len > 2 && !memcmp(q, "o=", 2)) {
			unsigned long long v = 0;

			if (len > 2 + 15)
				return 400;  /* offsets stay far below 2^53 */
			for (size_t i = 2; i < len; i++) {
				if (!is_digit(q[i]))
					return 400;
				v = v * 10 + (unsigned)(q[i] - '0');
			}
			req->off = v;
		} else if ((len == 3 && !memcmp(q, "fin", 3)) || (len == 5 && !memcmp(q, "fin=1", 5))) {
			req->fin = 1;
		}
		q += len + (amp != NULL);
	}
	return 0;
}

/* A tunnel request's target: "PATH[?QUERY]" or "http://authority" followed
 * by them. The path must be the tunnel's: 404 otherwise. */
static int parse_tunnel_target(const char *t, size_t n, const char *path, struct request *req)
{
	const char *end = t + n, *q;

	if (n > 7 && eq_nocase(t, 7, "http://")) {
		t += 7;
		while (t < end && *t != '/' && *t != '?')
			t++;
		if (t == end)
			return strcmp(path, "/") ? 404 : 0;
	}
	if (t == end || (*t != '/' && *t != '?'))
		return 400;
	q = memchr(t, '?', (size_t)(end - t));
	if (!q)
		q = end;
	/* An absolute-form "http://h?o=1" has the empty path, which is "/". */
	if (q == t ? strcmp(path, "/") : (strlen(path) != (size_t)(q - t) || memcmp(t, path, (size_t)(q - t))))
		return 404;
	return q < end ? parse_query(q + 1, (size_t)(end - q - 1), req) : 0;
}

/* The request line: "CONNECT host:port HTTP/1.x", or with a tunnel path
 * "GET|POST|DELETE PATH?QUERY HTTP/1.x". */
static int parse_request_line(const char *l, size_t n, const char *path, struct request *req)
{
	const char *sp1 = memchr(l, ' ', n), *sp2, *v;
	size_t i, vlen, mlen;

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
	req->close = req->http10 = v[7] == '0';  /* HTTP/1.0: closes unless keep-alive */
	mlen = (size_t)(sp1 - l);
	if (mlen == 7 && !memcmp(l, "CONNECT", 7)) {
		req->method = HTTP_CONNECT;
		return http_parse_target(sp1 + 1, (size_t)(sp2 - sp1 - 1), req);
	}
	if (!path)
		return 405;
	if (mlen == 3 && !memcmp(l, "GET", 3))
		req->method = HTTP_GET;
	else if (mlen == 4 && !memcmp(l, "POST", 4))
		req->method = HTTP_POST;
	else if (mlen == 6 && !memcmp(l, "DELETE", 6))
		req->method = HTTP_DELETE;
	else
		return 405;
	return parse_tunnel_target(sp1 + 1, (size_t)(sp2 - sp1 - 1), path, req);
}

/* Whether v[0..n) is a list of comma-separated tokens holding tok. */
static int has_token(const char *v, size_t n, const char *tok)
{
	size_t t = strlen(tok);

	for (size_t i = 0; i + t <= n; i++)
		if (eq_nocase(v + i, t, tok) && (i == 0 || v[i - 1] == ',' || v[i - 1] == ' ') &&
		    (i + t == n || v[i + t] == ',' || v[i + t] == ' '))
			return 1;
	return 0;
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
	if (eq_nocase(l, nlen, "content-length")) {
		size_t cl = 0;

		/* A CONNECT has no body; a tunnel request's is bounded. */
		if (v == e || e - v > 7 || (req->method == HTTP_CONNECT && (e - v != 1 || *v != '0')))
			return 400;
		for (const char *d = v; d < e; d++) {
			if (!is_digit(*d))
				return 400;
			cl = cl * 10 + (size_t)(*d - '0');
		}
		if (req->clen_seen++ && cl != req->clen)
			return 400;
		if (cl > HTTP_BODY_MAX)
			return 413;
		req->clen = cl;
	}
	if (eq_nocase(l, nlen, req->method == HTTP_CONNECT ? "proxy-authorization" : "authorization")) {
		if (req->auth)
			return 400;
		req->auth = v;
		req->auth_len = (size_t)(e - v);
	}
	if (req->method != HTTP_CONNECT && eq_nocase(l, nlen, "tunnel-token")) {
		if (req->token)
			return 400;
		req->token = v;
		req->token_len = (size_t)(e - v);
	}
	if (eq_nocase(l, nlen, "connection")) {
		if (has_token(v, (size_t)(e - v), "close"))
			req->close = 2;  /* said: no keep-alive can undo it */
		else if (req->close == 1 && has_token(v, (size_t)(e - v), "keep-alive"))
			req->close = 0;
	}
	return 0;
}

int http_parse(const char *buf, size_t len, const char *tunnel_path, struct request *req)
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
	st = parse_request_line(l, n, tunnel_path, req);
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
	req->close = req->close != 0;
	return 0;
}

/* The status codes tunneld answers with: reason phrase and one line of text. */
static const struct {
	int status;
	const char *reason, *text;
} statuses[] = {
	{ 200, "OK", "" },
	{ 400, "Bad Request", "Bad request: not a valid CONNECT or tunnel request." },
	{ 401, "Unauthorized", "Authentication required." },
	{ 403, "Forbidden", "Forbidden: this proxy does not connect to that destination." },
	{ 404, "Not Found", "Not found: no such tunnel endpoint or session." },
	{ 405, "Method Not Allowed", "Method not allowed: see the Allow header." },
	{ 407, "Proxy Authentication Required", "Proxy authentication required." },
	{ 408, "Request Timeout", "The request did not arrive in time." },
	{ 409, "Conflict", "The offset is out of range." },
	{ 410, "Gone", "The destination's connection failed." },
	{ 413, "Content Too Large", "The request body is too large." },
	{ 431, "Request Header Fields Too Large", "The request header is too large." },
	{ 502, "Bad Gateway", "The destination could not be resolved or refused the connection." },
	{ 503, "Service Unavailable", "The proxy is busy; try again." },
	{ 504, "Gateway Timeout", "The destination did not answer in time." },
	{ 505, "HTTP Version Not Supported", "HTTP version not supported: use HTTP/1.1." },
	{ 500, "Internal Server Error", "The proxy failed or is misconfigured; its log says why." },
};

static size_t status_index(int status)
{
	size_t i;

	for (i = 0; i < sizeof statuses / sizeof statuses[0] - 1; i++)
		if (statuses[i].status == status)
			break;
	return i;  /* the last: 500 */
}

const char *http_reason(int status)
{
	return statuses[status_index(status)].reason;
}

size_t http_answer(char *out, size_t size, int status, const char *extra, size_t blen, int close)
{
	size_t i = status_index(status);
	const char *text = status >= 400 ? statuses[i].text : "";
	size_t tlen = *text ? strlen(text) + 1 : 0;
	/* A place frees when a session or a connection ends: soon. */
	int n = snprintf(out, size, "HTTP/1.1 %d %s\r\n%s%sContent-Type: %s\r\nContent-Length: %zu\r\n"
			 "%s\r\n%s%s", statuses[i].status, statuses[i].reason,
			 status == 503 ? "Retry-After: 2\r\n" : "", extra, tlen ? "text/plain" : "application/octet-stream",
			 tlen ? tlen : blen, close ? "Connection: close\r\n" : "", text, tlen ? "\n" : "");

	return n > 0 && (size_t)n < size ? (size_t)n : 0;
}
