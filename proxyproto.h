#ifndef PROXYPROTO_H
#define PROXYPROTO_H
#include <stddef.h>

#include "net.h"

/* The PROXY protocol header (HAProxy's proxy-protocol.txt) that a load
 * balancer sends before anything of its client's: version 1, one text line
 * of at most PROXY_V1_MAX bytes with its CRLF, or version 2, a 16-byte
 * binary head and up to PROXY_V2_LEN_MAX bytes of addresses and TLVs. */
#define PROXY_V1_MAX 107
#define PROXY_V2_LEN_MAX 1008
#define PROXY_HEADER_MAX (16 + PROXY_V2_LEN_MAX)

struct proxy_hdr {
	int version;           /* 1 or 2 */
	int local;             /* v2 LOCAL, v1 UNKNOWN, or no IP addresses:
				  the socket's own addresses hold */
	struct endpoint src;   /* the client, unless local */
	struct endpoint dst;   /* the address the client reached, unless local */
};

/* buf[0..len) against a header. Returns its length once whole and valid
 * (bytes after it are the client's, untouched); 0 when buf is a proper
 * prefix of a header that may still be valid (every byte of buf is then
 * the header's); -1 when it cannot be one: wrong signature, a malformed
 * line or block, a v1 line over PROXY_V1_MAX, a v2 length over
 * PROXY_V2_LEN_MAX, a TLV that overruns the block. */
int proxy_parse(const unsigned char *buf, size_t len, struct proxy_hdr *h);

/* Whether the len >= 1 bytes of buf begin like a header of either
 * version (as far as they go). */
int proxy_looks(const unsigned char *buf, size_t len);

/* Read one header from socket fd before deadline (now_ms()), into buf of
 * cap >= PROXY_HEADER_MAX bytes, never a byte past its end: what follows
 * (a request head, a TLS ClientHello) is still unread on fd. 0; -1 not a
 * header (or the connection's end or error before it was whole), -2 the
 * deadline passed, -3 the first bytes are no header at all. */
int proxy_read(int fd, unsigned char *buf, size_t cap, long long deadline, struct proxy_hdr *h);

#endif
