/* Addresses, outgoing connects with a deadline (Happy Eyeballs for a name's
 * addresses), listening sockets. */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <net/if.h>
#include <poll.h>
#include <stdint.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include "config.h"
#include "fmt.h"
#include "http.h"
#include "net.h"

static const unsigned char v4mapped[12] = { 0,0,0,0, 0,0,0,0, 0,0,0xff,0xff };

long long now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int net_wait(int fd, short events, long long deadline)
{
	struct pollfd p = { fd, events, 0 };

	for (;;) {
		long long left = deadline < 0 ? -1 : deadline - now_ms();
		int r = poll(&p, 1, deadline < 0 ? -1 : left <= 0 ? 0 : left > INT_MAX ? INT_MAX : (int)left);

		if (r > 0)
			return 0;
		if (r < 0 && errno != EINTR)
			return -1;
		if (deadline >= 0 && now_ms() >= deadline) {
			errno = ETIMEDOUT;
			return -1;
		}
	}
}

/* write(2) that never blocks on a socket, nor raises SIGPIPE. */
static ssize_t plain_write(int fd, const void *buf, size_t len)
{
	ssize_t n = send(fd, buf, len, MSG_DONTWAIT | MSG_NOSIGNAL);

	return n < 0 && errno == ENOTSOCK ? write(fd, buf, len) : n;
}

int net_write_all(int fd, const void *buf, size_t len,
		  ssize_t (*wr)(int, const void *, size_t), long long deadline)
{
	const char *p = buf;

	while (len) {
		ssize_t n = (wr ? wr : plain_write)(fd, p, len);

		if (n > 0) {
			p += n;
			len -= (size_t)n;
		} else if (n < 0 && errno != EAGAIN && errno != EINTR) {
			return -1;
		} else if (!(n < 0 && errno == EINTR) && net_wait(fd, POLLOUT, deadline) < 0) {
			return -1;
		}
	}
	return 0;
}

int net_literal(const char *host, struct endpoint *ep)
{
	struct sockaddr_in6 s6 = { .sin6_family = AF_INET6 };

	memset(ep, 0, sizeof *ep);
	if (inet_pton(AF_INET, host, ep->ip.a) == 1) {
		ep->ip.family = AF_INET;
		return 0;
	}
	if (!CONFIG_IPV6 || inet_pton(AF_INET6, host, &s6.sin6_addr) != 1)
		return -1;
	ep_from_sockaddr(ep, (struct sockaddr *)&s6);  /* IPv4-mapped: as IPv4 */
	return 0;
}

void ep_from_sockaddr(struct endpoint *ep, const struct sockaddr *sa)
{
	memset(ep, 0, sizeof *ep);
	if (sa->sa_family == AF_INET) {
		const struct sockaddr_in *s4 = (const void *)sa;

		ep->ip.family = AF_INET;
		memcpy(ep->ip.a, &s4->sin_addr, 4);
		ep->port = ntohs(s4->sin_port);
	} else if (sa->sa_family == AF_INET6) {
		const struct sockaddr_in6 *s6 = (const void *)sa;
		const unsigned char *b = s6->sin6_addr.s6_addr;

		if (!memcmp(b, v4mapped, 12)) {
			ep->ip.family = AF_INET;
			memcpy(ep->ip.a, b + 12, 4);
		} else {
			ep->ip.family = AF_INET6;
			memcpy(ep->ip.a, b, 16);
		}
		ep->port = ntohs(s6->sin6_port);
	}
}

socklen_t ep_to_sockaddr(const struct endpoint *ep, struct sockaddr_storage *ss)
{
	memset(ss, 0, sizeof *ss);
	if (ep->ip.family == AF_INET) {
		struct sockaddr_in *s4 = (void *)ss;

		s4->sin_family = AF_INET;
		memcpy(&s4->sin_addr, ep->ip.a, 4);
		s4->sin_port = htons((unsigned short)ep->port);
		return sizeof *s4;
	}
	struct sockaddr_in6 *s6 = (void *)ss;

	s6->sin6_family = AF_INET6;
	memcpy(&s6->sin6_addr, ep->ip.a, 16);
	s6->sin6_port = htons((unsigned short)ep->port);
	return sizeof *s6;
}

/* An IPv6 address as RFC 5952 writes it: lower-case hex groups without
 * leading zeros, the first longest run of two or more zero groups as "::",
 * and ::ffff:a.b.c.d for a mapped IPv4 address. (The C library's
 * inet_ntop() would bring its snprintf, a tenth of a small static build.) */
static void ip6_str(const unsigned char *a, char out[INET6_ADDRSTRLEN])
{
	static const unsigned char mapped[12] = { 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff };
	int groups = memcmp(a, mapped, 12) ? 8 : 6, best = -1, bestlen = 1, len = 0;
	size_t n = 0;

	for (int g = 0; g < groups; g++) {
		len = a[2 * g] || a[2 * g + 1] ? 0 : len + 1;
		if (len > bestlen) {
			best = g - len + 1;
			bestlen = len;
		}
	}
	for (int g = 0; g < groups; g++) {
		if (g == best) {
			n += (size_t)strfmt(out + n, INET6_ADDRSTRLEN - n, "::");
			g += bestlen - 1;
			continue;
		}
		n += (size_t)strfmt(out + n, INET6_ADDRSTRLEN - n, "%s%x",
				    n && out[n - 1] != ':' ? ":" : "", a[2 * g] << 8 | a[2 * g + 1]);
	}
	if (groups == 6)
		strfmt(out + n, INET6_ADDRSTRLEN - n, "%s%u.%u.%u.%u", out[n - 1] != ':' ? ":" : "",
		       a[12], a[13], a[14], a[15]);
}

const char *ep_str(const struct endpoint *ep, char buf[ADDRSTR_MAX])
{
	const unsigned char *a = ep->ip.a;
	char a6[INET6_ADDRSTRLEN];

	if (ep->ip.family == AF_INET)
		strfmt(buf, ADDRSTR_MAX, "%u.%u.%u.%u:%u", a[0], a[1], a[2], a[3], ep->port);
	else if (ep->ip.family == AF_INET6) {
		ip6_str(a, a6);
		strfmt(buf, ADDRSTR_MAX, "[%s]:%u", a6, ep->port);
	} else
		return "-";
	return buf;
}

/* Loopback interfaces net_self() tells apart: a host has one (lo), a
 * test namespace a few; one more counts as not loopback. */
#define SELF_LOOPBACKS 8
/* Netlink messages per dump, at most: far beyond a router's addresses. */
#define SELF_MSGS 65536

/* The kernel's netlink ABI (linux/netlink.h and rtnetlink.h, unchanged
 * since Linux 2.2), written out: musl's headers have no linux/ ones. */
struct nl_hdr {
	uint32_t len;
	uint16_t type, flags;
	uint32_t seq, pid;
};
struct nl_link {     /* struct ifinfomsg */
	unsigned char family, pad;
	unsigned short type;
	int index;
	unsigned flags, change;
};
struct nl_addr {     /* struct ifaddrmsg */
	uint8_t family, prefixlen, flags, scope;
	uint32_t index;
};
struct nl_attr {     /* struct rtattr */
	unsigned short len, type;
};
enum {
	NL_ROUTE = 0, NL_ERROR = 2, NL_DONE = 3, NL_NEWLINK = 16, NL_GETLINK = 18,
	NL_NEWADDR = 20, NL_GETADDR = 22, NL_REQUEST = 1, NL_DUMP = 0x300,
	NL_IFA_ADDRESS = 1, NL_IFA_LOCAL = 2,
};
#define NL_ALIGN(n) (((size_t)(n) + 3) & ~(size_t)3)

struct self {
	void (*fn)(void *arg, const struct ip *ip, unsigned prefix, int loopback);
	void *arg;
	int lo[SELF_LOOPBACKS], nlo;
};

/* One RTM_NEWLINK: note the index of a loopback interface. */
static void self_link(struct self *sf, const struct nl_hdr *h)
{
	const struct nl_link *ifi = (const void *)((const char *)h + NL_ALIGN(sizeof *h));

	if (h->len >= NL_ALIGN(sizeof *h) + sizeof *ifi && (ifi->flags & IFF_LOOPBACK) &&
	    sf->nlo < SELF_LOOPBACKS)
		sf->lo[sf->nlo++] = ifi->index;
}

/* One RTM_NEWADDR: its IFA_LOCAL, else its IFA_ADDRESS, to sf->fn. */
static void self_addr(struct self *sf, const struct nl_hdr *h)
{
	const struct nl_addr *ifa = (const void *)((const char *)h + NL_ALIGN(sizeof *h));
	const unsigned char *local = NULL, *addr = NULL, *a;
	size_t off = NL_ALIGN(sizeof *h) + NL_ALIGN(sizeof *ifa), alen;
	struct sockaddr_storage ss;
	struct endpoint ep;
	int lo = 0;

	if (h->len < off || (ifa->family != AF_INET && ifa->family != AF_INET6))
		return;
	alen = ifa->family == AF_INET ? 4 : 16;
	/* Each attribute is 4 bytes or more: a bounded walk. */
	while (off + sizeof(struct nl_attr) <= h->len) {
		const struct nl_attr *rta = (const void *)((const char *)h + off);

		if (rta->len < sizeof *rta || rta->len > h->len - off)
			break;
		if (rta->len - sizeof *rta == alen && rta->type == NL_IFA_LOCAL)
			local = (const unsigned char *)(rta + 1);
		if (rta->len - sizeof *rta == alen && rta->type == NL_IFA_ADDRESS)
			addr = (const unsigned char *)(rta + 1);
		off += NL_ALIGN(rta->len);
	}
	if (!(a = local ? local : addr))
		return;
	memset(&ss, 0, sizeof ss);
	ss.ss_family = ifa->family;
	if (ifa->family == AF_INET)
		memcpy(&((struct sockaddr_in *)&ss)->sin_addr, a, 4);
	else
		memcpy(&((struct sockaddr_in6 *)&ss)->sin6_addr, a, 16);
	ep_from_sockaddr(&ep, (struct sockaddr *)&ss);
	for (int k = 0; k < sf->nlo; k++)
		lo |= sf->lo[k] == (int)ifa->index;
	sf->fn(sf->arg, &ep.ip, ifa->prefixlen, lo);
}

/* One dump of type (RTM_GETLINK, RTM_GETADDR) on fd, each answer to
 * self_link() or self_addr(). 8 KiB takes any message a dump sends (the
 * kernel fills at most a page, or the largest buffer read before, to 8
 * KiB). 0 at its end, -1 on an error or a dump too long. */
static int self_dump(int fd, int type, struct self *sf)
{
	struct {
		struct nl_hdr h;
		unsigned char family;  /* struct rtgenmsg */
	} req = {
		.h = { .len = sizeof req, .type = (uint16_t)type, .flags = NL_REQUEST | NL_DUMP,
		       .seq = (uint32_t)type },
		.family = AF_UNSPEC,
	};
	union {
		char b[8192];
		struct nl_hdr h;
	} buf;
	int msgs = 0;

	if (send(fd, &req, sizeof req, 0) < 0)
		return -1;
	while (msgs < SELF_MSGS) {
		ssize_t n = recv(fd, buf.b, sizeof buf.b, 0);
		size_t off = 0;

		if (n <= 0)
			return -1;
		/* Each message is 16 bytes or more: a bounded walk. */
		for (; off + sizeof buf.h <= (size_t)n; msgs++) {
			const struct nl_hdr *h = (const void *)(buf.b + off);

			if (h->len < sizeof *h || h->len > (size_t)n - off)
				break;
			off += NL_ALIGN(h->len);
			if (h->seq != (uint32_t)type)
				continue;
			if (h->type == NL_DONE)
				return 0;
			if (h->type == NL_ERROR)
				return -1;
			if (h->type == NL_NEWLINK)
				self_link(sf, h);
			else if (h->type == NL_NEWADDR)
				self_addr(sf, h);
		}
	}
	return -1;
}

int net_self(void (*fn)(void *arg, const struct ip *ip, unsigned prefix, int loopback),
	     void *arg)
{
	struct self sf = { fn, arg, { 0 }, 0 };
	/* The kernel answers at once; a dump it garbled (qemu-user) must not
	 * leave recv() waiting for more. */
	struct timeval tv = { 1, 0 };
	int fd = socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, NL_ROUTE), r;

	if (fd < 0)
		return -1;
	r = setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv) < 0 ||
	    self_dump(fd, NL_GETLINK, &sf) < 0 || self_dump(fd, NL_GETADDR, &sf) < 0 ? -1 : 0;
	close(fd);
	return r;
}

int net_connect(const struct endpoint *ep, int timeout_ms)
{
	struct race r = { .ep = { *ep }, .n = 1 };

	return net_race(&r, now_ms() + timeout_ms, NULL, NULL);
}

/* RFC 8305 §4: A1 B1 A2 B2 ..., A the first address's family, the rest of
 * the longer list last; the order within a family is the resolver's. */
static void interleave(struct endpoint *ep, int n)
{
	struct endpoint a[RACE_MAX], b[RACE_MAX];
	int na = 0, nb = 0, k = 0;

	for (int i = 0; i < n; i++) {
		if (ep[i].ip.family == ep[0].ip.family)
			a[na++] = ep[i];
		else
			b[nb++] = ep[i];
	}
	for (int i = 0; i < na || i < nb; i++) {
		if (i < na)
			ep[k++] = a[i];
		if (i < nb)
			ep[k++] = b[i];
	}
}

/* A non-blocking socket with its connect under way (or done), or -1. */
static int attempt(const struct endpoint *ep)
{
	struct sockaddr_storage ss;
	socklen_t len = ep_to_sockaddr(ep, &ss);
	int fd, err;

	fd = socket(ep->ip.family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0 || connect(fd, (struct sockaddr *)&ss, len) == 0 || errno == EINPROGRESS)
		return fd;
	err = errno;
	close(fd);
	errno = err;
	return -1;
}

/* One poll() set holds every attempt under way: at[k] is the address of
 * p[k]. A finished attempt leaves the set by taking the last one's place. */
int net_race(struct race *r, long long deadline,
	     int (*allow)(void *arg, const struct endpoint *ep), void *arg)
{
	struct pollfd p[RACE_MAX];
	int at[RACE_MAX], np = 0, next = 0, fd = -1, err = EHOSTUNREACH;
	long long now, start_next = 0;  /* when the next attempt may start */

	interleave(r->ep, r->n);
	for (int i = 0; i < r->n; i++)
		r->err[i] = -1;
	r->won = -1;
	while (fd < 0) {
		now = now_ms();
		if (next < r->n && now >= start_next && now < deadline) {
			int i = next++;

			if (allow && !allow(arg, &r->ep[i]))
				continue;
			if ((p[np].fd = attempt(&r->ep[i])) < 0) {
				err = r->err[i] = errno;
				continue;
			}
			p[np].events = POLLOUT;
			at[np++] = i;
			start_next = now_ms() + 250;  /* RFC 8305 §5: Connection Attempt Delay */
			continue;
		}
		if (!np && next == r->n)
			break;
		if (now >= deadline) {
			err = ETIMEDOUT;
			break;
		}
		long long until = next < r->n && start_next < deadline ? start_next : deadline;

		if (poll(p, (nfds_t)np, (int)(until - now)) < 0 && errno != EINTR) {
			err = errno;
			break;
		}
		for (int k = 0; k < np && fd < 0;) {
			int e = 0;
			socklen_t elen = sizeof e;

			if (!p[k].revents) {
				k++;
				continue;
			}
			if (getsockopt(p[k].fd, SOL_SOCKET, SO_ERROR, &e, &elen) < 0)
				e = errno;
			r->err[at[k]] = e;
			if (!e) {
				fd = p[k].fd;
				r->won = at[k];
			} else {
				close(p[k].fd);
				start_next = 0;  /* a failure starts the next at once */
				err = e;
			}
			p[k] = p[--np];
			at[k] = at[np];
		}
	}
	for (int k = 0; k < np; k++) {
		close(p[k].fd);
		r->err[at[k]] = fd < 0 ? ETIMEDOUT : ECANCELED;
	}
	if (fd < 0) {
		errno = err;
		return -1;
	}
	fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) & ~O_NONBLOCK);
	return fd;
}

int net_is_local(const struct endpoint *ep)
{
	struct endpoint probe = *ep;
	struct sockaddr_storage ss;
	socklen_t len;
	int fd, r;

	probe.port = 0;
	len = ep_to_sockaddr(&probe, &ss);
	fd = socket(probe.ip.family, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return 0;
	/* The unspecified address binds too, and connecting to it reaches
	 * this host: counting it as local is what the loop check wants. */
	r = bind(fd, (struct sockaddr *)&ss, len);
	close(fd);
	return r == 0;
}

int net_listen(const char *spec, char *err, size_t errlen)
{
	char host[INET6_ADDRSTRLEN] = "";
	const char *port = spec, *colon;
	struct endpoint ep = { 0 };
	struct sockaddr_storage ss;
	int p;
	socklen_t len;
	int fd, one = 1, zero = 0;

	if (spec[0] == '[') {
		const char *rb = strchr(spec, ']');

		if (!CONFIG_IPV6 || !rb || rb[1] != ':' || (size_t)(rb - spec - 1) >= sizeof host)
			goto bad;
		memcpy(host, spec + 1, (size_t)(rb - spec - 1));
		host[rb - spec - 1] = 0;
		port = rb + 2;
		if (inet_pton(AF_INET6, host, ep.ip.a) != 1)
			goto bad;
		ep.ip.family = AF_INET6;
	} else if ((colon = strrchr(spec, ':'))) {
		if ((size_t)(colon - spec) >= sizeof host)
			goto bad;
		memcpy(host, spec, (size_t)(colon - spec));
		host[colon - spec] = 0;
		port = colon + 1;
		if (inet_pton(AF_INET, host, ep.ip.a) != 1)
			goto bad;
		ep.ip.family = AF_INET;
	} else {
		/* A bare port: every address, IPv6 and IPv4 on one socket. */
		ep.ip.family = CONFIG_IPV6 ? AF_INET6 : AF_INET;
	}
	p = http_port(port, strlen(port));
	if (p < 0)
		goto bad;
	ep.port = (unsigned)p;

	fd = socket(ep.ip.family, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0 && !host[0] && ep.ip.family == AF_INET6) {
		ep.ip.family = AF_INET;  /* no IPv6 in this kernel */
		fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	}
	if (fd < 0) {
		strfmt(err, errlen, "%s: socket: %s", spec, strerror(errno));
		return -1;
	}
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
	if (ep.ip.family == AF_INET6)
		setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, host[0] ? &one : &zero, sizeof one);
	len = ep_to_sockaddr(&ep, &ss);
	if (bind(fd, (struct sockaddr *)&ss, len) < 0) {
		strfmt(err, errlen, "%s: %s", spec, strerror(errno));
		close(fd);
		return -1;
	}
	return fd;
bad:
	strfmt(err, errlen, "%s: not [ADDR:]PORT", spec);
	return -1;
}
