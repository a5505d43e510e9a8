/* Request head framing and parsing: every accepted and rejected form. */
#include <string.h>

#include "check.h"
#include "http.h"

/* R() keeps the length of heads that hold a NUL byte. */
#define R(s) s, sizeof(s) - 1

static const struct {
	const char *head;
	size_t len;
	int status;
	const char *host;
	unsigned port;
} rows[] = {
	/* accepted */
	{ R("CONNECT example.com:443 HTTP/1.1\r\n\r\n"), 0, "example.com", 443 },
	{ R("CONNECT example.com:443 HTTP/1.0\r\nHost: example.com:443\r\n\r\n"), 0, "example.com", 443 },
	{ R("CONNECT a.b-c_d.example.:1 HTTP/1.1\n\n"), 0, "a.b-c_d.example.", 1 },
	{ R("CONNECT 10.0.0.1:65535 HTTP/1.1\r\n\r\n"), 0, "10.0.0.1", 65535 },
	{ R("CONNECT [::1]:22 HTTP/1.1\r\n\r\n"), 0, "::1", 22 },
	{ R("CONNECT [::ffff:127.0.0.1]:22 HTTP/1.1\r\n\r\n"), 0, "::ffff:127.0.0.1", 22 },
	{ R("CONNECT h:80 HTTP/1.1\r\nContent-Length: 0\r\n\r\n"), 0, "h", 80 },
	{ R("CONNECT h:80 HTTP/1.1\r\nContent-Length:   0  \r\n\r\n"), 0, "h", 80 },
	{ R("CONNECT h:80 HTTP/1.1\r\nX-A:\r\nX-B: \t v\t\r\n\r\n"), 0, "h", 80 },
	{ R("CONNECT h:80 HTTP/1.1\r\nProxy-Authorization: Basic eDp5\r\n\r\n"), 0, "h", 80 },
	/* request line; one empty line before it is ignored (RFC 9112 §2.2) */
	{ R("\r\nCONNECT h:80 HTTP/1.1\r\n\r\n"), 0, "h", 80 },
	{ R("\nCONNECT h:80 HTTP/1.1\r\n\r\n"), 0, "h", 80 },
	{ R("\r\n\r\nCONNECT h:80 HTTP/1.1\r\n\r\n"), 400, 0, 0 },
	{ R("CONNECT\r\n\r\n"), 400, 0, 0 },
	{ R("CONNECT  HTTP/1.1\r\n\r\n"), 400, 0, 0 },
	{ R(" http://x/ HTTP/1.1\r\n\r\n"), 400, 0, 0 },
	{ R("CONNECT h:80  HTTP/1.1\r\n\r\n"), 400, 0, 0 },
	{ R("CONNECT h:80 HTTP/1.1 \r\n\r\n"), 400, 0, 0 },
	{ R("CONNECT h:80\r\n\r\n"), 400, 0, 0 },
	{ R("CONNECT h:80 HTTP/1\r\n\r\n"), 400, 0, 0 },
	{ R("CONNECT h:80 HTTP/1.10\r\n\r\n"), 400, 0, 0 },
	{ R("CONNECT h:80 http/1.1\r\n\r\n"), 400, 0, 0 },
	{ R("CONNECT h:80 HTTP/x.1\r\n\r\n"), 400, 0, 0 },
	{ R("CONNECT\th:80 HTTP/1.1\r\n\r\n"), 400, 0, 0 },
	{ R("CONNECT h:80 HTTP/1.1\r\r\n\r\n"), 400, 0, 0 },
	{ R("CONNECT h:8\0 HTTP/1.1\r\n\r\n"), 400, 0, 0 },
	{ R("CONNECT h:80 HTTP/2.0\r\n\r\n"), 505, 0, 0 },
	{ R("CONNECT h:80 HTTP/2\r\n\r\n"), 505, 0, 0 },
	{ R("CONNECT h:80 HTTP/3\r\n\r\n"), 505, 0, 0 },
	{ R("CONNECT h:80 HTTP/0.9\r\n\r\n"), 505, 0, 0 },
	{ R("GET http://x/ HTTP/1.1\r\n\r\n"), 405, 0, 0 },
	{ R("connect h:80 HTTP/1.1\r\n\r\n"), 405, 0, 0 },
	{ R("CONNECTX h:80 HTTP/1.1\r\n\r\n"), 405, 0, 0 },
	{ R("G(T h:80 HTTP/1.1\r\n\r\n"), 400, 0, 0 },
	/* ports */
	{ R("CONNECT h:0 HTTP/1.1\r\n\r\n"), 400, 0, 0 },
	{ R("CONNECT h:65536 HTTP/1.1\r\n\r\n"), 400, 0, 0 },
	{ R("CONNECT h:99999 HTTP/1.1\r\n\r\n"), 400, 0, 0 },
	{ R("CONNECT h:-1 HTTP/1.1\r\n\r\n"), 400, 0, 0 },
	{ R("CONNECT h:+443 HTTP/1.1\r\n\r\n"), 400, 0, 0 },
	{ R("CONNECT h:0x1bb HTTP/1.1\r\n\r\n"), 400, 0, 0 },
	{ R("CONNECT h:0443 HTTP/1.1\r\n\r\n"), 400, 0, 0 },
	{ R("CONNECT h:000443 HTTP/1.1\r\n\r\n"), 400, 0, 0 },
	{ R("CONNECT h:4431234 HTTP/1.1\r\n\r\n"), 400, 0, 0 },
	{ R("CONNECT h: HTTP/1.1\r\n\r\n"), 400, 0, 0 },
	{ R("CONNECT h HTTP/1.1\r\n\r\n"), 400, 0, 0 },
	{ R("CONNECT h::443 HTTP/1.1\r\n\r\n"), 400, 0, 0 },
	{ R("CONNECT h:44a HTTP/1.1\r\n\r\n"), 400, 0, 0 },
	{ R("CONNECT :443 HTTP/1.1\r\n\r\n"), 400, 0, 0 },
	/* hosts */
	{ R("CONNECT [::1] HTTP/1.1\r\n\r\n"), 400, 0, 0 },
	{ R("CONNECT [::1]443 HTTP/1.1\r\n\r\n"), 400, 0, 0 },
	{ R("CONNECT ::1:443 HTTP/1.1\r\n\r\n"), 400, 0, 0 },
	{ R("CONNECT []:443 HTTP/1.1\r\n\r\n"), 400, 0, 0 },
	{ R("CONNECT [::g]:443 HTTP/1.1\r\n\r\n"), 400, 0, 0 },
	{ R("CONNECT [fe80::1%eth0]:443 HTTP/1.1\r\n\r\n"), 400, 0, 0 },
	{ R("CONNECT [127.0.0.1]:443 HTTP/1.1\r\n\r\n"), 400, 0, 0 },
	{ R("CONNECT 2130706433:443 HTTP/1.1\r\n\r\n"), 400, 0, 0 },
	{ R("CONNECT 0x7f.1:443 HTTP/1.1\r\n\r\n"), 400, 0, 0 },
	{ R("CONNECT 0x7f000001:443 HTTP/1.1\r\n\r\n"), 400, 0, 0 },
	{ R("CONNECT 017700000001:443 HTTP/1.1\r\n\r\n"), 400, 0, 0 },
	{ R("CONNECT 127.1:443 HTTP/1.1\r\n\r\n"), 400, 0, 0 },
	{ R("CONNECT 0177.0.0.1:443 HTTP/1.1\r\n\r\n"), 400, 0, 0 },
	{ R("CONNECT 127.0.0.01:443 HTTP/1.1\r\n\r\n"), 400, 0, 0 },
	{ R("CONNECT 256.0.0.1:443 HTTP/1.1\r\n\r\n"), 400, 0, 0 },
	{ R("CONNECT 1.2.3.4.5:443 HTTP/1.1\r\n\r\n"), 400, 0, 0 },
	{ R("CONNECT 1.2.3.4.:443 HTTP/1.1\r\n\r\n"), 400, 0, 0 },
	{ R("CONNECT a..b:443 HTTP/1.1\r\n\r\n"), 400, 0, 0 },
	{ R(".a:443 HTTP/1.1\r\n\r\n"), 400, 0, 0 },
	{ R("CONNECT .a:443 HTTP/1.1\r\n\r\n"), 400, 0, 0 },
	{ R("CONNECT -a:443 HTTP/1.1\r\n\r\n"), 400, 0, 0 },
	{ R("CONNECT a/b:443 HTTP/1.1\r\n\r\n"), 400, 0, 0 },
	{ R("CONNECT user@h:443 HTTP/1.1\r\n\r\n"), 400, 0, 0 },
	{ R("CONNECT http://h:443 HTTP/1.1\r\n\r\n"), 400, 0, 0 },
	{ R("CONNECT h%00:443 HTTP/1.1\r\n\r\n"), 400, 0, 0 },
	{ R("CONNECT aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa.b:443 HTTP/1.1\r\n\r\n"), 400, 0, 0 },
	/* header fields */
	{ R("CONNECT h:80 HTTP/1.1\r\nContent-Length : 0\r\n\r\n"), 400, 0, 0 },
	{ R("CONNECT h:80 HTTP/1.1\r\nHost\t: h\r\n\r\n"), 400, 0, 0 },
	{ R("CONNECT h:80 HTTP/1.1\r\nX-A: a\r\n b\r\n\r\n"), 400, 0, 0 },
	{ R("CONNECT h:80 HTTP/1.1\r\nX-A: a\r\n\tb\r\n\r\n"), 400, 0, 0 },
	{ R("CONNECT h:80 HTTP/1.1\r\nX-A: a\rb\r\n\r\n"), 400, 0, 0 },
	{ R("CONNECT h:80 HTTP/1.1\r\nX-A: a\0b\r\n\r\n"), 400, 0, 0 },
	{ R("CONNECT h:80 HTTP/1.1\r\nX-A: a\x01\r\n\r\n"), 400, 0, 0 },
	{ R("CONNECT h:80 HTTP/1.1\r\nX-A a\r\n\r\n"), 400, 0, 0 },
	{ R("CONNECT h:80 HTTP/1.1\r\n: a\r\n\r\n"), 400, 0, 0 },
	{ R("CONNECT h:80 HTTP/1.1\r\nX(A): a\r\n\r\n"), 400, 0, 0 },
	{ R("CONNECT h:80 HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"), 400, 0, 0 },
	{ R("CONNECT h:80 HTTP/1.1\r\ntransfer-encoding: identity\r\n\r\n"), 400, 0, 0 },
	{ R("CONNECT h:80 HTTP/1.1\r\nContent-Length: 5\r\n\r\n"), 400, 0, 0 },
	{ R("CONNECT h:80 HTTP/1.1\r\nContent-Length: 00\r\n\r\n"), 400, 0, 0 },
	{ R("CONNECT h:80 HTTP/1.1\r\nContent-Length: +0\r\n\r\n"), 400, 0, 0 },
	{ R("CONNECT h:80 HTTP/1.1\r\nContent-Length:\r\n\r\n"), 400, 0, 0 },
	{ R("CONNECT h:80 HTTP/1.1\r\nProxy-Authorization: a\r\nproxy-authorization: b\r\n\r\n"), 400, 0, 0 },
};

/* A head with n header lines. */
static size_t many_headers(char *buf, size_t cap, int n)
{
	size_t len = (size_t)snprintf(buf, cap, "CONNECT h:80 HTTP/1.1\r\n");

	for (int i = 0; i < n; i++)
		len += (size_t)snprintf(buf + len, cap - len, "X-%d: v\r\n", i);
	len += (size_t)snprintf(buf + len, cap - len, "\r\n");
	return len;
}

static void test_rows(void)
{
	for (size_t i = 0; i < sizeof rows / sizeof rows[0]; i++) {
		struct request req;
		int st = http_parse(rows[i].head, rows[i].len, NULL, &req);

		CHECK(st == rows[i].status, "row %zu: got %d want %d", i, st, rows[i].status);
		if (!st && rows[i].host) {
			CHECK(!strcmp(req.host, rows[i].host), "row %zu: host %s", i, req.host);
			CHECK(req.port == rows[i].port, "row %zu: port %u", i, req.port);
		}
	}
}

static void test_limits(void)
{
	static char buf[16384];
	struct request req;
	size_t len;

	len = many_headers(buf, sizeof buf, 64);
	CHECK(http_parse(buf, len, NULL, &req) == 0, "64 header lines accepted");
	len = many_headers(buf, sizeof buf, 65);
	CHECK(http_parse(buf, len, NULL, &req) == 431, "65 header lines -> 431");

	/* The longest name is 253 bytes (254 with its trailing dot). */
	char host[300];
	int n;
	memset(host, 'a', sizeof host);
	for (int i = 63; i < 300; i += 64)
		host[i] = '.';
	host[253] = 0;
	n = snprintf(buf, sizeof buf, "CONNECT %s:1 HTTP/1.1\r\n\r\n", host);
	CHECK(http_parse(buf, (size_t)n, NULL, &req) == 0, "253-byte name accepted");
	host[253] = 'a';
	host[254] = 0;
	n = snprintf(buf, sizeof buf, "CONNECT %s:1 HTTP/1.1\r\n\r\n", host);
	CHECK(http_parse(buf, (size_t)n, NULL, &req) == 400, "254-byte name refused");
}

static void test_literal_and_auth(void)
{
	struct request req;
	const char *h = "CONNECT 1.2.3.4:80 HTTP/1.1\r\nProxy-Authorization:  Basic eDp5 \r\n\r\n";

	CHECK(http_parse(h, strlen(h), NULL, &req) == 0 && req.literal, "dotted quad is a literal");
	CHECK(req.auth && req.auth_len == 10 && !memcmp(req.auth, "Basic eDp5", 10),
	      "Proxy-Authorization value without surrounding space");
	h = "CONNECT example.com:80 HTTP/1.1\r\n\r\n";
	CHECK(http_parse(h, strlen(h), NULL, &req) == 0 && !req.literal && !req.auth, "name is not a literal");
}

/* GET/POST tunnel requests (PROTOCOL.md) at the path "/t". */
static const struct {
	const char *head;
	int status, method;
	unsigned long long off;
	int fin, close;
	size_t clen;
	const char *token;
} trows[] = {
	{ "POST /t HTTP/1.1\r\nContent-Length: 15\r\n\r\n", 0, HTTP_POST, 0, 0, 0, 15, 0 },
	{ "POST /t?o=42 HTTP/1.1\r\nTunnel-Token: ab\r\nContent-Length: 3\r\n\r\n", 0, HTTP_POST, 42, 0, 0, 3, "ab" },
	{ "POST /t?o=7&fin HTTP/1.1\r\nContent-Length: 0\r\n\r\n", 0, HTTP_POST, 7, 1, 0, 0, 0 },
	{ "POST /t?fin=1&o=7 HTTP/1.1\r\n\r\n", 0, HTTP_POST, 7, 1, 0, 0, 0 },
	{ "GET /t?o=999999999999999 HTTP/1.1\r\ntunnel-token:  x \r\n\r\n", 0, HTTP_GET, 999999999999999ULL, 0, 0, 0, "x" },
	{ "GET /t?x=1&o=5&y HTTP/1.1\r\nConnection: keep-alive, Close\r\n\r\n", 0, HTTP_GET, 5, 0, 1, 0, 0 },
	{ "GET http://tunnel.example:8080/t?o=1 HTTP/1.1\r\n\r\n", 0, HTTP_GET, 1, 0, 0, 0, 0 },
	{ "GET HTTP://h/t HTTP/1.1\r\n\r\n", 0, HTTP_GET, 0, 0, 0, 0, 0 },
	{ "DELETE /t HTTP/1.1\r\nConnection: closed\r\n\r\n", 0, HTTP_DELETE, 0, 0, 0, 0, 0 },
	/* HTTP/1.0 closes unless it asks to keep the connection */
	{ "GET /t?o=1 HTTP/1.0\r\n\r\n", 0, HTTP_GET, 1, 0, 1, 0, 0 },
	{ "GET /t?o=1 HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n", 0, HTTP_GET, 1, 0, 0, 0, 0 },
	{ "GET /t?o=1 HTTP/1.0\r\nConnection: keep-alive\r\nConnection: close\r\n\r\n", 0, HTTP_GET, 1, 0, 1, 0, 0 },
	{ "GET /t?o=1 HTTP/1.0\r\nConnection: close\r\nConnection: keep-alive\r\n\r\n", 0, HTTP_GET, 1, 0, 1, 0, 0 },
	{ "GET /t?o=1 HTTP/1.1\r\nConnection: keep-alive\r\n\r\n", 0, HTTP_GET, 1, 0, 0, 0, 0 },
	{ "CONNECT h:1 HTTP/1.1\r\nTunnel-Token: t\r\n\r\n", 0, HTTP_CONNECT, 0, 0, 0, 0, 0 },
	/* refused */
	{ "GET /t?o=1000000000000000 HTTP/1.1\r\n\r\n", 400, 0, 0, 0, 0, 0, 0 },
	{ "GET /t?o=-1 HTTP/1.1\r\n\r\n", 400, 0, 0, 0, 0, 0, 0 },
	{ "GET /t?o=1x HTTP/1.1\r\n\r\n", 400, 0, 0, 0, 0, 0, 0 },
	{ "GET /tt HTTP/1.1\r\n\r\n", 404, 0, 0, 0, 0, 0, 0 },
	{ "GET / HTTP/1.1\r\n\r\n", 404, 0, 0, 0, 0, 0, 0 },
	{ "GET /t/ HTTP/1.1\r\n\r\n", 404, 0, 0, 0, 0, 0, 0 },
	{ "GET http://h HTTP/1.1\r\n\r\n", 404, 0, 0, 0, 0, 0, 0 },
	{ "GET t HTTP/1.1\r\n\r\n", 400, 0, 0, 0, 0, 0, 0 },
	{ "PUT /t HTTP/1.1\r\n\r\n", 405, 0, 0, 0, 0, 0, 0 },
	{ "get /t HTTP/1.1\r\n\r\n", 405, 0, 0, 0, 0, 0, 0 },
	{ "POST /t HTTP/1.1\r\nContent-Length: 65537\r\n\r\n", 413, 0, 0, 0, 0, 0, 0 },
	{ "POST /t HTTP/1.1\r\nContent-Length: 65536\r\n\r\n", 0, HTTP_POST, 0, 0, 0, 65536, 0 },
	{ "POST /t HTTP/1.1\r\nContent-Length: 12345678\r\n\r\n", 400, 0, 0, 0, 0, 0, 0 },
	{ "POST /t HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n", 400, 0, 0, 0, 0, 0, 0 },
	{ "POST /t HTTP/1.1\r\nContent-Length: 2\r\nContent-Length: 2\r\n\r\n", 0, HTTP_POST, 0, 0, 0, 2, 0 },
	{ "POST /t HTTP/1.1\r\nContent-Length: +2\r\n\r\n", 400, 0, 0, 0, 0, 0, 0 },
	{ "POST /t HTTP/1.1\r\nContent-Length:\r\n\r\n", 400, 0, 0, 0, 0, 0, 0 },
	{ "POST /t HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n", 400, 0, 0, 0, 0, 0, 0 },
	{ "POST /t HTTP/1.1\r\nTunnel-Token: a\r\nTunnel-Token: a\r\n\r\n", 400, 0, 0, 0, 0, 0, 0 },
	{ "CONNECT h:1 HTTP/1.1\r\nContent-Length: 1\r\n\r\n", 400, 0, 0, 0, 0, 0, 0 },
};

/* ?max=N: from 1, more is the bound; absent is 0 (the server's default). */
static const struct {
	const char *head;
	int status;
	size_t max;
} mrows[] = {
	{ "GET /t?o=1 HTTP/1.1\r\n\r\n", 0, 0 },
	{ "GET /t?o=1&max=1 HTTP/1.1\r\n\r\n", 0, 1 },
	{ "GET /t?max=524288&o=1 HTTP/1.1\r\n\r\n", 0, 524288 },
	{ "GET /t?o=1&max=524289 HTTP/1.1\r\n\r\n", 0, HTTP_ANSWER_MAX },
	{ "GET /t?o=1&max=999999999999999 HTTP/1.1\r\n\r\n", 0, HTTP_ANSWER_MAX },
	{ "GET /t?o=1&max=0 HTTP/1.1\r\n\r\n", 400, 0 },
	{ "GET /t?o=1&max=-5 HTTP/1.1\r\n\r\n", 400, 0 },
	{ "GET /t?o=1&max=1000000000000000 HTTP/1.1\r\n\r\n", 400, 0 },
	{ "GET /t?o=1&max= HTTP/1.1\r\n\r\n", 0, 0 },
};

static void test_max_rows(void)
{
	struct request req;

	for (size_t i = 0; i < sizeof mrows / sizeof mrows[0]; i++) {
		int st = http_parse(mrows[i].head, strlen(mrows[i].head), "/t", &req);

		CHECK(st == mrows[i].status, mrows[i].head);
		CHECK(st || req.max == mrows[i].max, mrows[i].head);
	}
}

static void test_tunnel_rows(void)
{
	struct request req;
	const char *h = "GET /t HTTP/1.1\r\n\r\n";

	CHECK(http_parse(h, strlen(h), NULL, &req) == 405, "GET without a tunnel path is 405");
	for (size_t i = 0; i < sizeof trows / sizeof trows[0]; i++) {
		int st = http_parse(trows[i].head, strlen(trows[i].head), "/t", &req);

		CHECK(st == trows[i].status, "tunnel row %zu: got %d want %d", i, st, trows[i].status);
		if (st || trows[i].status)
			continue;
		CHECK(req.method == trows[i].method && req.off == trows[i].off && req.fin == trows[i].fin &&
		      req.close == trows[i].close && req.clen == trows[i].clen,
		      "tunnel row %zu: method %d off %llu fin %d close %d clen %zu", i, req.method,
		      req.off, req.fin, req.close, req.clen);
		CHECK(trows[i].token ? req.token && req.token_len == strlen(trows[i].token) &&
				       !memcmp(req.token, trows[i].token, req.token_len)
				     : !req.token, "tunnel row %zu: token", i);
	}
	h = "GET http://h?o=3 HTTP/1.1\r\n\r\n";
	CHECK(http_parse(h, strlen(h), "/", &req) == 0 && req.off == 3, "absolute form, empty path is /");
}

static void test_head_end(void)
{
	static const struct { const char *s; size_t end; } ends[] = {
		{ "CONNECT h:1 HTTP/1.1\r\n\r\nDATA", 24 },
		{ "CONNECT h:1 HTTP/1.1\n\nDATA", 22 },
		{ "CONNECT h:1 HTTP/1.1\r\n\nX", 23 },
		{ "CONNECT h:1 HTTP/1.1\nA: b\r\n\r\n", 29 },
		{ "CONNECT h:1 HTTP/1.1\r\n", 0 },
		{ "CONNECT h:1 HTTP/1.1\r\nA: b\r\n\r", 0 },
		{ "CONNECT h:1 HTTP/1.1\r\n\r\r\n", 0 },
		{ "", 0 },
		{ "\r\n", 0 },
		{ "\r\nCONNECT h:1 HTTP/1.1\r\n\r\n", 26 },
		{ "\r\n\r\n", 4 },
	};

	for (size_t i = 0; i < sizeof ends / sizeof ends[0]; i++) {
		size_t e = http_head_end(ends[i].s, strlen(ends[i].s));
		CHECK(e == ends[i].end, "head end %zu: got %zu want %zu", i, e, ends[i].end);
	}
	/* Framing is independent of how the bytes arrived: every split. */
	const char *s = "CONNECT h:1 HTTP/1.1\r\nA: b\r\n\r\nX";
	for (size_t cut = 0; cut < strlen(s); cut++) {
		size_t e = http_head_end(s, cut);
		CHECK(e == (cut >= 30 ? 30 : 0), "prefix %zu: %zu", cut, e);
	}
}

/* Bytes that cannot begin a request are refused early; no prefix of a
 * head that parses (or of a tunnel request) ever is. */
static void test_not_request(void)
{
	static const struct { const char *s; size_t len; int no; } pre[] = {
		{ R("\x16\x03\x01\x02\x00\x01"), 1 },  /* a TLS ClientHello */
		{ R("\x16"), 1 },
		{ R("GE\0"), 1 },
		{ R("CON(ECT"), 1 },
		{ R("\r\n\r\n"), 1 },
		{ R("\r\n\x80"), 1 },
		{ R(""), 0 },
		{ R("\r"), 0 },
		{ R("\r\n"), 0 },
		{ R("\n"), 0 },
		{ R("CONNEC"), 0 },
		{ R("GET /\x16"), 0 },  /* past the method: the parser's to judge */
		{ R(" x"), 0 },
	};
	static const char *good[] = {
		"\r\nGET /t?s=abc HTTP/1.1\r\nHost: h\r\n\r\n",
		"POST /t HTTP/1.0\r\nContent-Length: 6\r\n\r\nh:1234",
		"DELETE /t?s=abc HTTP/1.1\r\n\r\n",
	};

	for (size_t i = 0; i < sizeof pre / sizeof pre[0]; i++)
		CHECK(http_not_request(pre[i].s, pre[i].len) == pre[i].no, "not request %zu", i);
	for (size_t i = 0; i < sizeof rows / sizeof rows[0]; i++)
		for (size_t cut = 0; !rows[i].status && cut <= rows[i].len; cut++)
			CHECK(!http_not_request(rows[i].head, cut), "row %zu prefix %zu refused", i, cut);
	for (size_t i = 0; i < sizeof good / sizeof good[0]; i++)
		for (size_t cut = 0; cut <= strlen(good[i]); cut++)
			CHECK(!http_not_request(good[i], cut), "tunnel %zu prefix %zu refused", i, cut);
}

/* Answer heads as the client reads them. */
static void test_replies(void)
{
	static const struct {
		const char *head;
		size_t len;
		int status;
		long long clen, offset;
		int eof, close, chunked, tunnel;
		const char *line;
	} r[] = {
		{ R("HTTP/1.1 200 Connection established\r\n\r\n"), 200, -1, -1, 0, 0, 0, 0,
		  "200 Connection established" },
		{ R("HTTP/1.0 200\r\n\r\n"), 200, -1, -1, 0, 1, 0, 0, "200" },
		{ R("\r\nHTTP/1.1 404 Not Found\nContent-Length:  12 \n\n"), 404, 12, -1, 0, 0, 0, 0,
		  "404 Not Found" },
		{ R("HTTP/1.1 200 OK\r\nTunnel-Offset: 65536\r\nTunnel-Eof: 1\r\nContent-Length: 0\r\n\r\n"),
		  200, 0, 65536, 1, 0, 0, 1, "200 OK" },
		{ R("HTTP/1.1 503 Busy\r\nConnection: keep-alive,\tClose\r\n\r\n"), 503, -1, -1, 0, 1, 0, 0,
		  "503 Busy" },
		{ R("HTTP/1.1 502 x\r\nTransfer-Encoding: chunked\r\n\r\n"), 502, -1, -1, 0, 0, 1, 0, "502 x" },
		{ R("HTTP/1.1 403 \x01" "Forbid\x7f" "den\r\n\r\n"), 403, -1, -1, 0, 0, 0, 0, "403 Forbidden" },
		{ R("HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\n"), 200, 5, -1,
		  0, 0, 0, 0, "200 OK" },
	};
	static const struct { const char *head; size_t len; } bad[] = {
		{ R("HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n") },
		{ R("HTTP/1.1 200 OK\r\nContent-Length: -5\r\n\r\n") },
		{ R("HTTP/1.1 200 OK\r\nContent-Length: 1234567890123456789\r\n\r\n") },
		{ R("HTTP/1.1 200 OK\r\nTunnel-Offset: x\r\n\r\n") },
		{ R("HTTP/1.1 200 OK\r\nContent-Length : 5\r\n\r\n") },
		{ R("HTTP/1.1 200 OK\r\nX: a\0b\r\n\r\n") },
		{ R("HTTP/1.1 200 OK\r\nno colon\r\n\r\n") },
		{ R("HTTP/1.1 099 x\r\n\r\n") },
		{ R("HTTP/1.1 2000\r\n\r\n") },
		{ R("HTTP/1.1 20\r\n\r\n") },
		{ R("HTTP/2 200\r\n\r\n") },
		{ R("SSH-2.0-OpenSSH_9.2\r\n\r\n") },
		{ R("\r\n\r\nHTTP/1.1 200 OK\r\n\r\n") },
	};
	struct reply h;

	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
		CHECK(http_parse_reply(bad[i].head, bad[i].len, &h) == -1, "bad reply %zu accepted", i);
	for (size_t i = 0; i < sizeof r / sizeof r[0]; i++) {
		int got = http_parse_reply(r[i].head, r[i].len, &h);

		CHECK(got == 0, "reply %zu: got %d", i, got);
		CHECK(h.status == r[i].status && h.clen == r[i].clen && h.offset == r[i].offset &&
		      h.eof == r[i].eof && h.close == r[i].close && h.chunked == r[i].chunked &&
		      h.tunnel == r[i].tunnel && !strcmp(h.line, r[i].line),
		      "reply %zu: %d %lld %lld %d%d%d%d '%s'", i, h.status, h.clen, h.offset, h.eof,
		      h.close, h.chunked, h.tunnel, h.line);
		for (size_t cut = 0; cut <= r[i].len; cut++)
			CHECK(!http_not_reply(r[i].head, cut), "reply %zu prefix %zu refused", i, cut);
	}
	CHECK(http_not_reply(R("SSH-")) && http_not_reply(R("\r\nX")) && http_not_reply(R("HTTP/2")),
	      "not replies");
	CHECK(http_decimal(R("0"), 1) == 0 && http_decimal(R("007"), 3) == 7 && http_decimal(R("12"), 1) == -1 &&
	      http_decimal(R(""), 5) == -1 && http_decimal(R("1 "), 5) == -1 &&
	      http_decimal(R("999999999999999999"), 18) == 999999999999999999LL, "decimal");
	CHECK(http_has_token(R("a, close ,b"), "close") && http_has_token(R("CLOSE"), "close") &&
	      !http_has_token(R("closed"), "close") && !http_has_token(R("x close"), "close") &&
	      !http_has_token(R(""), "close"), "token lists");
	CHECK(http_is_name(R("example.com")) && http_is_name(R("example.com.")) &&
	      http_is_name(R("1.2.3.example")) && http_is_name(R("a.0x")) && http_is_name(R("0xg.example")) &&
	      http_is_name(R("x.0x1g")) && !http_is_name(R("example.123")) &&
	      !http_is_name(R("example.0x1f")) && !http_is_name(R("0x7f000001")) &&
	      !http_is_name(R("2130706433")) && !http_is_name(R("0177.0.0.1")) &&
	      !http_is_name(R("127.1.")) && !http_is_name(R("-a.example")), "host names");
	CHECK(http_port(R("1")) == 1 && http_port(R("65535")) == 65535 && http_port(R("0")) < 0 &&
	      http_port(R("65536")) < 0 && http_port(R("080")) < 0 && http_port(R("")) < 0, "ports");
#define HEX48 "0123456789abcdef0123456789abcdef0123456789abcdef"
	CHECK(http_session_token(R(HEX48)) == 0 &&
	      http_session_token(R("0123456789abcdef0123456789abcdef0123456789abcde")) < 0 &&
	      http_session_token(R(HEX48 "0")) < 0 &&
	      http_session_token(R("0123456789ABCDEF0123456789abcdef0123456789abcdef")) < 0 &&
	      http_session_token(R("0123456789abcdef0123456789abcdef0123456789abcdeg")) < 0,
	      "session tokens");
	CHECK(http_session_token(R("a." HEX48)) == 2 && http_session_token(R("node-2." HEX48)) == 7 &&
	      http_session_token(R("0123456789abcdef0123456789abcdef." HEX48)) == 33 &&
	      http_session_token(R("0123456789abcdef0123456789abcdef0." HEX48)) < 0 &&
	      http_session_token(R("." HEX48)) < 0 && http_session_token(R("a" HEX48)) < 0 &&
	      http_session_token(R("A." HEX48)) < 0 && http_session_token(R("a_b." HEX48)) < 0 &&
	      http_session_token(R("a.b." HEX48)) < 0 && http_session_token(R("a. " HEX48)) < 0 &&
	      http_session_token(R("a." HEX48 ".")) < 0 && http_session_token(R("a.")) < 0,
	      "session tokens with a node name");
	CHECK(http_is_node_name(R("a")) && http_is_node_name(R("eu-west-3")) &&
	      http_is_node_name(R("0123456789abcdef0123456789abcdef")) &&
	      !http_is_node_name(R("0123456789abcdef0123456789abcdef0")) && !http_is_node_name(R("")) &&
	      !http_is_node_name(R("Node")) && !http_is_node_name(R("a.b")) && !http_is_node_name(R("a b")),
	      "node names");
#undef HEX48
}

int main(void)
{
	test_tunnel_rows();
	test_max_rows();
	test_rows();
	test_limits();
	test_literal_and_auth();
	test_head_end();
	test_not_request();
	test_replies();
	CHECK(!strcmp(http_reason(431), "Request Header Fields Too Large"), "reason 431");
	return tally("test_http");
}
