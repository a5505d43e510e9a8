#ifndef NET_H
#define NET_H
#include <netinet/in.h>
#include <sys/types.h>
#include <sys/socket.h>

/* An address as the rules see it: IPv4-mapped IPv6 is stored as IPv4. */
struct ip {
	int family;               /* AF_INET or AF_INET6, 0 = unknown */
	unsigned char a[16];      /* AF_INET uses a[0..3] */
};

/* Both an address and a port, with room for either family. */
struct endpoint {
	struct ip ip;
	unsigned port;
};

#define ADDRSTR_MAX (INET6_ADDRSTRLEN + 8)

void ep_from_sockaddr(struct endpoint *ep, const struct sockaddr *sa);
/* An address literal, dotted quad or IPv6 without [] (IPv4 only without
 * CONFIG_IPV6), into ep with port 0. 0, or -1. */
int net_literal(const char *host, struct endpoint *ep);
socklen_t ep_to_sockaddr(const struct endpoint *ep, struct sockaddr_storage *ss);
/* "1.2.3.4:80", "[::1]:80" or "-" for an unknown address. */
const char *ep_str(const struct endpoint *ep, char buf[ADDRSTR_MAX]);

/* Non-blocking connect to ep within timeout_ms. Returns the connected
 * socket, or -1 with errno (ETIMEDOUT when the time ran out). */
int net_connect(const struct endpoint *ep, int timeout_ms);

/* Addresses one race holds: sockets open at once at most. */
#define RACE_MAX 16

/* The addresses of one name, raced as RFC 8305 says (net_race()), and
 * after the race what became of each: -1 never tried, 0 connected, else
 * the errno (ETIMEDOUT: still pending at the deadline, ECANCELED: another
 * won first). */
struct race {
	struct endpoint ep[RACE_MAX];
	int err[RACE_MAX];
	int n, won;
};

/* Connect to the first of r->ep[0..n) to answer, before deadline (now_ms()).
 * The list is reordered with families alternating, the first address's
 * family first; attempts start 250 ms apart, or at once when the last one
 * failed, each only if allow(arg, ep) says so (NULL: every address). The
 * others are closed. Returns the blocking socket, r->won its index; or -1
 * with errno ETIMEDOUT when the deadline came first, else the last
 * attempt's error (EHOSTUNREACH: none was allowed). */
int net_race(struct race *r, long long deadline,
	     int (*allow)(void *arg, const struct endpoint *ep), void *arg);

/* Whether ep is an address of this host (bind test). */
int net_is_local(const struct endpoint *ep);

/* This host's addresses, as getifaddrs() reads them but without its
 * malloc: one netlink dump of the links (which are loopback ones) and one
 * of the addresses. fn(arg, ip, prefix, loopback) for each IPv4 and IPv6
 * address (the local one of a point-to-point link), its prefix length and
 * whether its interface is a loopback one. 0, or -1 when the kernel did
 * not answer. */
int net_self(void (*fn)(void *arg, const struct ip *ip, unsigned prefix, int loopback),
	     void *arg);

/* Parse "[ADDR:]PORT" ("3128", "127.0.0.1:3128", "[::1]:3128") and return a
 * bound socket, for the caller to listen(2) on once ready, or -1 with a
 * message in err. */
int net_listen(const char *spec, char *err, size_t errlen);

/* Milliseconds on a monotonic clock: the clock of every deadline. */
long long now_ms(void);

/* Wait until fd is ready for events, or the deadline passes (-1: none;
 * one look even when it has passed). 0, or -1 with errno (ETIMEDOUT when
 * the time ran out). */
int net_wait(int fd, short events, long long deadline);

/* Write all of buf to fd before the deadline (-1: none), with wr
 * (write(2)-shaped, for TLS) or, for NULL, write(2) that never blocks on
 * a socket and raises no SIGPIPE. 0, or -1 with errno. */
int net_write_all(int fd, const void *buf, size_t len,
		  ssize_t (*wr)(int, const void *, size_t), long long deadline);

#endif
