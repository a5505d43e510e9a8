/* The PROXY protocol header, versions 1 and 2: the parser and a reader
 * that takes the header off a socket and not a byte more. Who may send
 * one (--proxy-protocol) is tunneld.c's to decide. */
#include <arpa/inet.h>
#include <errno.h>
#include <poll.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "proxyproto.h"

static const unsigned char v2sig[12] = "\r\n\r\n\0\r\nQUIT\n";

int proxy_looks(const unsigned char *buf, size_t len)
{
	size_t n = len < 6 ? len : 6;

	if (len >= 1 && buf[0] == 'P')
		return !memcmp(buf, "PROXY ", n);
	n = len < 12 ? len : 12;
	return len >= 1 && !memcmp(buf, v2sig, n);
}

/* A port as v1 writes it: 0..65535 in decimal, no leading zero. */
static int v1_port(const char *s, size_t n, unsigned *port)
{
	unsigned v = 0;

	if (!n || n > 5 || (s[0] == '0' && n > 1))
		return -1;
	for (size_t i = 0; i < n; i++) {
		if (s[i] < '0' || s[i] > '9')
			return -1;
		v = v * 10 + (unsigned)(s[i] - '0');
	}
	if (v > 65535)
		return -1;
	*port = v;
	return 0;
}

static int v1_addr(const char *s, size_t n, int family, struct endpoint *ep)
{
	char a[INET6_ADDRSTRLEN];
	struct sockaddr_in6 s6 = { .sin6_family = AF_INET6 };
	struct sockaddr_in s4 = { .sin_family = AF_INET };

	if (!n || n >= sizeof a)
		return -1;
	memcpy(a, s, n);
	a[n] = 0;
	if (family == AF_INET ? inet_pton(AF_INET, a, &s4.sin_addr) != 1 :
				inet_pton(AF_INET6, a, &s6.sin6_addr) != 1)
		return -1;
	ep_from_sockaddr(ep, family == AF_INET ? (struct sockaddr *)&s4 : (struct sockaddr *)&s6);
	return 0;
}

/* "PROXY TCP4|TCP6 SRC DST SPORT DPORT\r\n" or "PROXY UNKNOWN...\r\n". */
static int parse_v1(const char *p, size_t len, struct proxy_hdr *h)
{
	const char *end = memchr(p, '\n', len < PROXY_V1_MAX ? len : PROXY_V1_MAX);
	const char *f[4];
	size_t fl[4], n;
	int family, k = 0;

	if (!end)
		return len < PROXY_V1_MAX ? 0 : -1;
	n = (size_t)(end - p) + 1;
	if (n < 8 || end[-1] != '\r')
		return -1;
	h->version = 1;
	if (n >= 15 && !memcmp(p + 6, "UNKNOWN", 7) && (p[13] == '\r' || p[13] == ' ')) {
		/* Whatever else the line says is to be ignored, but it is a line. */
		for (size_t i = 13; i < n - 2; i++)
			if (p[i] == '\r' || p[i] == '\0')
				return -1;
		h->local = 1;
		return (int)n;
	}
	if (n < 12 || (memcmp(p + 6, "TCP4 ", 5) && memcmp(p + 6, "TCP6 ", 5)))
		return -1;
	family = p[9] == '4' ? AF_INET : AF_INET6;
	/* Four fields, each after exactly one space, the last up to the CR. */
	for (const char *q = p + 11, *stop = end - 1; k < 4; k++) {
		const char *sp = k < 3 ? memchr(q, ' ', (size_t)(stop - q)) : stop;

		if (!sp || q > stop)
			return -1;
		f[k] = q;
		fl[k] = (size_t)(sp - q);
		q = sp + 1;
	}
	if (memchr(f[3], ' ', fl[3]) || v1_addr(f[0], fl[0], family, &h->src) ||
	    v1_addr(f[1], fl[1], family, &h->dst) || v1_port(f[2], fl[2], &h->src.port) ||
	    v1_port(f[3], fl[3], &h->dst.port))
		return -1;
	return (int)n;
}

/* The binary header: signature, version and command, family and
 * transport, length, then the addresses and TLVs. */
static int parse_v2(const unsigned char *p, size_t len, struct proxy_hdr *h)
{
	struct sockaddr_in6 s6 = { .sin6_family = AF_INET6 };
	struct sockaddr_in s4 = { .sin_family = AF_INET };
	size_t blk, alen, i;

	if (len > 12 && (p[12] >> 4 != 2 || (p[12] & 15) > 1))
		return -1;
	if (len < 16)
		return 0;
	blk = (size_t)p[14] << 8 | p[15];
	if (blk > PROXY_V2_LEN_MAX)
		return -1;
	if (len < 16 + blk)
		return 0;
	h->version = 2;
	if ((p[12] & 15) == 0) {  /* LOCAL: the sender's own connection */
		h->local = 1;
		return (int)(16 + blk);
	}
	switch (p[13]) {
	case 0x00: alen = 0; break;     /* UNSPEC */
	case 0x11: alen = 12; break;    /* TCP over IPv4 */
	case 0x21: alen = 36; break;    /* TCP over IPv6 */
	case 0x31: alen = 216; break;   /* a unix stream socket */
	default: return -1;             /* datagrams, or no such family */
	}
	if (blk < alen)
		return -1;
	/* The TLVs must fill the rest exactly; none of them is needed. */
	for (i = 16 + alen; i < 16 + blk; i += 3 + ((size_t)p[i + 1] << 8 | p[i + 2]))
		if (16 + blk - i < 3 || 16 + blk - i - 3 < ((size_t)p[i + 1] << 8 | p[i + 2]))
			return -1;
	if (p[13] == 0x11) {
		memcpy(&s4.sin_addr, p + 16, 4);
		ep_from_sockaddr(&h->src, (struct sockaddr *)&s4);
		memcpy(&s4.sin_addr, p + 20, 4);
		ep_from_sockaddr(&h->dst, (struct sockaddr *)&s4);
	} else if (p[13] == 0x21) {
		memcpy(&s6.sin6_addr, p + 16, 16);
		ep_from_sockaddr(&h->src, (struct sockaddr *)&s6);
		memcpy(&s6.sin6_addr, p + 32, 16);
		ep_from_sockaddr(&h->dst, (struct sockaddr *)&s6);
	} else {
		h->local = 1;   /* no IP address to go by */
		return (int)(16 + blk);
	}
	h->src.port = (unsigned)p[16 + alen - 4] << 8 | p[16 + alen - 3];
	h->dst.port = (unsigned)p[16 + alen - 2] << 8 | p[16 + alen - 1];
	return (int)(16 + blk);
}

int proxy_parse(const unsigned char *buf, size_t len, struct proxy_hdr *h)
{
	memset(h, 0, sizeof *h);
	if (!len)
		return 0;
	if (!proxy_looks(buf, len))
		return -1;
	return buf[0] == 'P' ? parse_v1((const char *)buf, len, h) : parse_v2(buf, len, h);
}

/* Each round peeks at what has come, and takes off the socket only bytes
 * the parser says are the header's: all of them while it wants more, up
 * to its end once it is whole. */
int proxy_read(int fd, unsigned char *buf, size_t cap, long long deadline, struct proxy_hdr *h)
{
	size_t got = 0;

	for (int rounds = 0; rounds < PROXY_HEADER_MAX; rounds++) {
		ssize_t n;
		int r;

		if (net_wait(fd, POLLIN, deadline) < 0)
			return errno == ETIMEDOUT ? -2 : -1;
		n = recv(fd, buf + got, cap - got, MSG_PEEK | MSG_DONTWAIT);
		if (n < 0 && (errno == EINTR || errno == EAGAIN))
			continue;
		if (n <= 0)
			return -1;
		r = proxy_parse(buf, got + (size_t)n, h);
		if (r < 0)
			return got || proxy_looks(buf, (size_t)n) ? -1 : -3;
		/* What the peek showed is queued: these reads take it whole. */
		for (size_t want = r ? (size_t)r - got : (size_t)n; want; ) {
			ssize_t m = recv(fd, buf + got, want, MSG_DONTWAIT);

			if (m <= 0)
				return -1;
			got += (size_t)m;
			want -= (size_t)m;
		}
		if (r)
			return 0;
		if (got == cap)
			return -1;
	}
	return -1;
}
