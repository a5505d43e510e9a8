/* HTTP/1 for both programs: framing by length (never trusting a
 * terminator), the request heads tunneld reads, the answer heads tunnel
 * reads, and the scanners both share: field lines, token lists, decimal
 * numbers, ports and host names (one set of rules). RFC 9110 §5, §9.3.6,
 * RFC 9112 §2-§5. */
#include <arpa/inet.h>
#include <string.h>

#include "config.h"
#include "fmt.h"
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

long long http_decimal(const char *s, size_t n, size_t max)
{
	long long v = 0;

	if (n == 0 || n > max || max > 18)
		return -1;
	for (size_t i = 0; i < n; i++) {
		if (!is_digit(s[i]))
			return -1;
		v = v * 10 + (s[i] - '0');
	}
	return v;
}

/* Byte i of "user:pass" without assembling it (one copy less of a secret). */
static unsigned char cred_at(const char *user, size_t ulen, const char *pass, size_t i)
{
	return (unsigned char)(i < ulen ? user[i] : i == ulen ? ':' : pass[i - ulen - 1]);
}

int http_basic(const char *user, size_t ulen, const char *pass, size_t plen, char *out,
	       size_t cap)
{
	static const char b[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
	size_t n = ulen + 1 + plen, o = 0;

	if (!ulen || memchr(user, ':', ulen) || (n + 2) / 3 * 4 >= cap)
		return -1;
	for (size_t i = 0; i < n; i++) {
		unsigned char ch = cred_at(user, ulen, pass, i);

		if (ch < 0x20 || ch == 0x7f)
			return -1;
	}
	for (size_t i = 0; i < n; i += 3) {
		unsigned v = (unsigned)cred_at(user, ulen, pass, i) << 16;

		v |= i + 1 < n ? (unsigned)cred_at(user, ulen, pass, i + 1) << 8 : 0;
		v |= i + 2 < n ? cred_at(user, ulen, pass, i + 2) : 0;
		out[o++] = b[v >> 18];
		out[o++] = b[v >> 12 & 63];
		out[o++] = i + 1 < n ? b[v >> 6 & 63] : '=';
		out[o++] = i + 2 < n ? b[v & 63] : '=';
	}
	out[o] = 0;
	return 0;
}

int http_has_token(const char *v, size_t n, const char *tok)
{
	while (n) {
		const char *c = memchr(v, ',', n);
		size_t len = c ? (size_t)(c - v) : n, s = 0, e = len;

		while (s < e && (v[s] == ' ' || v[s] == '\t'))
			s++;
		while (e > s && (v[e - 1] == ' ' || v[e - 1] == '\t'))
			e--;
		if (eq_nocase(v + s, e - s, tok))
			return 1;
		v += len + (c != NULL);
		n -= len + (c != NULL);
	}
	return 0;
}

int http_is_node_name(const char *s, size_t n)
{
	if (n < 1 || n > NODE_MAX)
		return 0;
	for (size_t i = 0; i < n; i++)
		if (!is_digit(s[i]) && !(s[i] >= 'a' && s[i] <= 'z') && s[i] != '-')
			return 0;
	return 1;
}

int http_session_token(const char *s, size_t n)
{
	size_t pre = n > SESSION_TOKEN_LEN ? n - SESSION_TOKEN_LEN : 0;

	if (n < SESSION_TOKEN_LEN || n > SESSION_TOKEN_MAX ||
	    (pre && (s[pre - 1] != '.' || !http_is_node_name(s, pre - 1))))
		return -1;
	for (size_t i = pre; i < n; i++)
		if (!is_digit(s[i]) && !(s[i] >= 'a' && s[i] <= 'f'))
			return -1;
	return (int)pre;
}

/* A field line "name: value" of n bytes into f: a token for the name (so
 * not "Name :", RFC 9112 §5.1), no control byte but HTAB in the value,
 * which loses its surrounding whitespace. 0, or -1. */
struct field {
	const char *name, *v;
	size_t nlen, vlen;
};
static int split_field(const char *l, size_t n, struct field *f)
{
	const char *colon = memchr(l, ':', n), *v, *e;

	if (!colon || colon == l)
		return -1;
	f->name = l;
	f->nlen = (size_t)(colon - l);
	for (size_t i = 0; i < f->nlen; i++)
		if (!is_tchar(l[i]))
			return -1;
	v = colon + 1;
	e = l + n;
	for (const char *c = v; c < e; c++)
		if (((unsigned char)*c < 0x20 && *c != '\t') || *c == 0x7f)
			return -1;  /* NUL, bare CR and other controls */
	while (v < e && (*v == ' ' || *v == '\t'))
		v++;
	while (e > v && (e[-1] == ' ' || e[-1] == '\t'))
		e--;
	f->v = v;
	f->vlen = (size_t)(e - v);
	return 0;
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

int http_is_name(const char *s, size_t len)
{
	size_t last;

	if (!is_name(s, len))
		return 0;
	if (s[len - 1] == '.')
		len--;
	/* The last label: what inet_aton() reads as a number (decimal,
	 * octal, 0x hex) ends every form it takes, and no real name has a
	 * numeric top-level label. */
	for (last = len; last && s[last - 1] != '.'; last--)
		;
	s += last;
	len -= last;
	if (len > 2 && s[0] == '0' && (s[1] | 0x20) == 'x')
		return strspn(s + 2, "0123456789abcdefABCDEF") != len - 2;
	return strspn(s, "0123456789") != len;
}

int http_port(const char *s, size_t len)
{
	long long v = len && s[0] != '0' ? http_decimal(s, len, 5) : -1;

	return v >= 1 && v <= 65535 ? (int)v : -1;
}

int http_parse_target(const char *s, size_t len, struct request *req)
{
	const char *colon;
	size_t hlen;
	int port;

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
		colon = memrchr(s, ':', len);
		if (!colon)
			return 400;
		hlen = (size_t)(colon - s);
		req->literal = is_dotted_quad(s, hlen);
		if (!req->literal && !http_is_name(s, hlen))
			return 400;
		memcpy(req->host, s, hlen);
		req->host[hlen] = 0;
	}
	port = http_port(colon + 1, (size_t)(s + len - colon - 1));
	if (port < 0)
		return 400;
	req->port = (unsigned)port;
	return 0;
}

/* The query of a tunnel request: "o=N", "fin" and "max=N" (from 1; more
 * than HTTP_ANSWER_MAX is that), '&'-separated; other parameters are
 * ignored. 0 or 400. */
static int parse_query(const char *q, size_t n, struct request *req)
{
	const char *end = q + n;

	while (q < end) {
		const char *amp = memchr(q, '&', (size_t)(end - q));
		size_t len = (size_t)((amp ? amp : end) - q);

		if (len > 2 && !memcmp(q, "o=", 2)) {
			long long v = http_decimal(q + 2, len - 2, 15);  /* far below 2^53 */

			if (v < 0)
				return 400;
			req->off = (unsigned long long)v;
		} else if (len > 4 && !memcmp(q, "max=", 4)) {
			long long v = http_decimal(q + 4, len - 4, 15);

			if (v < 1)
				return 400;
			req->max = v < HTTP_ANSWER_MAX ? (size_t)v : HTTP_ANSWER_MAX;
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

/* One header field line; fields we act on are checked here. */
static int parse_field(const char *l, size_t n, struct request *req)
{
	struct field f;

	if (split_field(l, n, &f) < 0)
		return 400;
	if (eq_nocase(f.name, f.nlen, "transfer-encoding"))
		return 400;
	if (eq_nocase(f.name, f.nlen, "content-length")) {
		/* A CONNECT has no body; a tunnel request's is bounded. */
		long long cl = http_decimal(f.v, f.vlen, 7);

		if (cl < 0 || (req->method == HTTP_CONNECT && (f.vlen != 1 || cl != 0)))
			return 400;
		if (req->clen_seen++ && (size_t)cl != req->clen)
			return 400;
		if (cl > HTTP_BODY_MAX)
			return 413;
		req->clen = (size_t)cl;
	}
	if (eq_nocase(f.name, f.nlen, req->method == HTTP_CONNECT ? "proxy-authorization" : "authorization")) {
		if (req->auth)
			return 400;
		req->auth = f.v;
		req->auth_len = f.vlen;
	}
	if (req->method != HTTP_CONNECT && eq_nocase(f.name, f.nlen, "tunnel-token")) {
		if (req->token)
			return 400;
		req->token = f.v;
		req->token_len = f.vlen;
	}
	if (eq_nocase(f.name, f.nlen, "connection")) {
		if (http_has_token(f.v, f.vlen, "close"))
			req->close = 2;  /* said: no keep-alive can undo it */
		else if (req->close == 1 && http_has_token(f.v, f.vlen, "keep-alive"))
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

int http_not_reply(const char *buf, size_t len)
{
	size_t skip = leading_empty_line(buf, len), n = len - skip;

	if (len == 1 && buf[0] == '\r')
		return 0;
	return memcmp(buf + skip, "HTTP/1.", n < 7 ? n : 7) != 0;
}

/* The status line "HTTP/1.x NNN[ reason]" of n bytes. */
static int parse_status(const char *l, size_t n, struct reply *r)
{
	size_t i, o;
	long long code = n >= 12 ? http_decimal(l + 9, 3, 3) : -1;

	if (code < 100 || memcmp(l, "HTTP/1.", 7) || !is_digit(l[7]) || l[8] != ' ' ||
	    (n > 12 && l[12] != ' '))
		return -1;
	r->status = (int)code;
	r->close = l[7] == '0';  /* HTTP/1.0: one request a connection */
	memcpy(r->line, l + 9, 3);
	/* The reason phrase, printable bytes only, for messages. */
	for (i = 12, o = 3; i < n && o < sizeof r->line - 1; i++)
		if (l[i] >= 0x20 && l[i] < 0x7f)
			r->line[o++] = l[i];
	r->line[o] = 0;
	return 0;
}

int http_parse_reply(const char *buf, size_t len, struct reply *r)
{
	const char *p = buf + leading_empty_line(buf, len), *end = buf + len, *l;
	size_t n;

	memset(r, 0, sizeof *r);
	r->clen = r->offset = -1;
	if (!next_line(&p, end, &l, &n) || parse_status(l, n, r) < 0)
		return -1;
	while (next_line(&p, end, &l, &n) && n > 0) {
		struct field f;

		if (split_field(l, n, &f) < 0)
			return -1;
		if (eq_nocase(f.name, f.nlen, "content-length")) {
			long long c = http_decimal(f.v, f.vlen, 18);

			if (c < 0 || (r->clen >= 0 && r->clen != c))
				return -1;
			r->clen = c;
		} else if (eq_nocase(f.name, f.nlen, "tunnel-offset")) {
			if ((r->offset = http_decimal(f.v, f.vlen, 18)) < 0)
				return -1;
		} else if (eq_nocase(f.name, f.nlen, "tunnel-eof")) {
			r->eof = f.vlen == 1 && *f.v == '1';
		} else if (eq_nocase(f.name, f.nlen, "connection")) {
			r->close |= http_has_token(f.v, f.vlen, "close");
		} else if (eq_nocase(f.name, f.nlen, "transfer-encoding")) {
			r->chunked = 1;
		}
		if (f.nlen > 7 && eq_nocase(f.name, 7, "tunnel-"))
			r->tunnel = 1;
	}
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

/* Proxy-Status (RFC 9209 §2.3): pairs of a reason the log line gives, or
 * a status whatever the reason, and the registered error type it gets;
 * otherwise a 5xx is proxy_internal_error, a 4xx http_request_error. A
 * rule's verdict and the loop check give the same type, as they give the
 * same status: which of them refused, and any address, stays in the log.
 * One string, not pointers: no relocation for each. */
static const char errors[] =
	"dns-timeout\0dns_timeout\0"
	"dns-no-such-name\0dns_error; rcode=\"NXDOMAIN\"\0"
	"dns-no-address\0dns_error; rcode=\"NOERROR\"\0"
	"dns-failure\0dns_error\0"
	"connect-timeout\0connection_timeout\0"
	"connect-failed\0connection_refused\0"
	"connect-unreachable\0destination_ip_unroutable\0"
	"bad-config\0proxy_configuration_error\0"
	"bad-user\0proxy_configuration_error\0"
	"403\0destination_ip_prohibited\0"
	"401\0http_request_denied\0"
	"407\0http_request_denied\0"
	"410\0connection_terminated\0"
	"503\0connection_limit_reached\0";

static const char *proxy_error(int status, const char *reason)
{
	char st[8];

	strfmt(st, sizeof st, "%d", status);
	for (const char *p = errors; *p; p += strlen(p) + 1) {
		const char *error = p + strlen(p) + 1;

		if (!strcmp(p, st) || (reason && !strcmp(p, reason)))
			return error;
		p = error;
	}
	return status >= 500 ? "proxy_internal_error" : "http_request_error";
}

size_t http_answer(char *out, size_t size, int status, const char *reason, const char *extra,
		   size_t blen, int close)
{
	size_t i = status_index(status);
	char ps[96] = "";
	const char *text = status >= 400 ? statuses[i].text : "";
	size_t tlen = *text ? strlen(text) + 1 : 0;
	/* A place frees when a session or a connection ends: soon. */
	int n;

	if (status >= 400)
		strfmt(ps, sizeof ps, "Proxy-Status: tunneld; error=%s\r\n", proxy_error(status, reason));
	n = strfmt(out, size, "HTTP/1.1 %d %s\r\n%s%s%sContent-Type: %s\r\nContent-Length: %zu\r\n"
			 "%s\r\n%s%s", statuses[i].status, statuses[i].reason,
			 status == 503 ? "Retry-After: 2\r\n" : "", ps, extra, tlen ? "text/plain" : "application/octet-stream",
			 tlen ? tlen : blen, close ? "Connection: close\r\n" : "", text, tlen ? "\n" : "");

	return n > 0 && (size_t)n < size ? (size_t)n : 0;
}
