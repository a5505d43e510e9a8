/* Addresses, outgoing connects with a deadline, listening sockets. */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "config.h"
#include "net.h"

static const unsigned char v4mapped[12] = { 0,0,0,0, 0,0,0,0, 0,0,0xff,0xff };

long long now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
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

const char *ep_str(const struct endpoint *ep, char buf[ADDRSTR_MAX])
{
	char a[INET6_ADDRSTRLEN];

	if (!ep->ip.family || !inet_ntop(ep->ip.family, ep->ip.a, a, sizeof a))
		return "-";
	snprintf(buf, ADDRSTR_MAX, ep->ip.family == AF_INET6 ? "[%s]:%u" : "%s:%u",
		 a, ep->port);
	return buf;
}

int net_connect(const struct endpoint *ep, int timeout_ms)
{
	struct sockaddr_storage ss;
	socklen_t len = ep_to_sockaddr(ep, &ss);
	struct pollfd pfd;
	int fd, err = 0, r;
	socklen_t elen = sizeof err;

	fd = socket(ep->ip.family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -1;
	if (connect(fd, (struct sockaddr *)&ss, len) == 0)
		goto done;
	if (errno != EINPROGRESS)
		goto fail;
	pfd.fd = fd;
	pfd.events = POLLOUT;
	do
		r = poll(&pfd, 1, timeout_ms);
	while (r < 0 && errno == EINTR);
	if (r == 0)
		errno = ETIMEDOUT;
	if (r <= 0)
		goto fail;
	if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &elen) < 0)
		goto fail;
	if (err) {
		errno = err;
		goto fail;
	}
done:
	fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) & ~O_NONBLOCK);
	return fd;
fail:
	err = errno;
	close(fd);
	errno = err;
	return -1;
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
	unsigned long p = 0;
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
	if (!*port || strlen(port) > 5 || strspn(port, "0123456789") != strlen(port))
		goto bad;
	for (const char *c = port; *c; c++)
		p = p * 10 + (unsigned long)(*c - '0');
	if (p < 1 || p > 65535)
		goto bad;
	ep.port = (unsigned)p;

	fd = socket(ep.ip.family, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0 && !host[0] && ep.ip.family == AF_INET6) {
		ep.ip.family = AF_INET;  /* no IPv6 in this kernel */
		fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	}
	if (fd < 0) {
		snprintf(err, errlen, "%s: socket: %s", spec, strerror(errno));
		return -1;
	}
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
	if (ep.ip.family == AF_INET6)
		setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, host[0] ? &one : &zero, sizeof one);
	len = ep_to_sockaddr(&ep, &ss);
	if (bind(fd, (struct sockaddr *)&ss, len) < 0 || listen(fd, 128) < 0) {
		snprintf(err, errlen, "%s: %s", spec, strerror(errno));
		close(fd);
		return -1;
	}
	return fd;
bad:
	snprintf(err, errlen, "%s: not [ADDR:]PORT", spec);
	return -1;
}
