/* The load generator and target server of `make bench`, in C so that the
 * client is not what limits a tunnel on loopback. Every byte is checked:
 * the stream is a fixed pseudo-random pattern whose byte at offset o is
 * pat[o % PERIOD], with PERIOD no multiple of any buffer or page size, so a
 * lost, doubled or reordered chunk shows.
 *
 *   blast serve                  target on 127.0.0.1, an OS-chosen port
 *                                (printed); ends when stdin ends. The first
 *                                byte of a connection picks: 'U' + 8-byte
 *                                length: receive, check, answer "OK" (else
 *                                "BAD"); 'D' + length: send that many; any
 *                                other byte: echo everything.
 *   blast up|down PORT TARGET BYTES
 *                                one tunnel through 127.0.0.1:PORT, BYTES one
 *                                way; prints MiB/s from the request to the
 *                                last byte checked.
 *   blast lat PORT TARGET COUNT PAR
 *                                COUNT connections, PAR at a time: connect,
 *                                [CONNECT -> 200], send a byte, read it back,
 *                                close; prints "p50_us p99_us conns_per_s".
 *
 * TARGET is host:port for a CONNECT request, or "-" to talk straight to the
 * port (the reference relay, direct). Exit 0, or 1 with a message.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define PERIOD ((1 << 20) + 4093)
#define IOSIZE (256 << 10)
#define TIMEOUT_S 30

static unsigned char *pat;  /* 2 * PERIOD: any window of IOSIZE is contiguous */

static void die(const char *what)
{
	fprintf(stderr, "blast: %s: %s\n", what, errno ? strerror(errno) : "failed");
	exit(1);
}

static void make_pattern(void)
{
	uint64_t x = 0x9E3779B97F4A7C15ull;

	pat = malloc(2 * (size_t)PERIOD);
	if (!pat)
		die("malloc");
	for (size_t i = 0; i < PERIOD; i++) {
		x ^= x << 13, x ^= x >> 7, x ^= x << 17;
		pat[i] = (unsigned char)(x >> 32);
	}
	memcpy(pat + PERIOD, pat, PERIOD);
}

static double now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void timeouts(int fd)
{
	struct timeval tv = { TIMEOUT_S, 0 };

	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
	setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
}

/* Move exactly len bytes to (out) or from fd: 0, or -1 on an error or
 * the peer's end. */
static int move_all(int fd, void *buf, size_t len, int out)
{
	char *p = buf;

	while (len) {
		ssize_t n = out ? send(fd, p, len, MSG_NOSIGNAL) : recv(fd, p, len, 0);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return -1;
		p += n;
		len -= (size_t)n;
	}
	return 0;
}
#define write_all(fd, buf, len) move_all(fd, (void *)(buf), len, 1)
#define read_all(fd, buf, len) move_all(fd, buf, len, 0)

/* Send n bytes of the pattern; 0 or -1. */
static int send_pattern(int fd, uint64_t n)
{
	for (uint64_t off = 0; off < n;) {
		size_t len = n - off < IOSIZE ? (size_t)(n - off) : IOSIZE;
		ssize_t w = send(fd, pat + off % PERIOD, len, MSG_NOSIGNAL);
		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0)
			return -1;
		off += (uint64_t)w;
	}
	return 0;
}

/* Receive exactly n bytes and check each; 0, -1 (short), -2 (wrong bytes). */
static int recv_pattern(int fd, uint64_t n, unsigned char *buf)
{
	for (uint64_t off = 0; off < n;) {
		size_t len = n - off < IOSIZE ? (size_t)(n - off) : IOSIZE;
		ssize_t r = recv(fd, buf, len, 0);
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			return -1;
		if (memcmp(buf, pat + off % PERIOD, (size_t)r))
			return -2;
		off += (uint64_t)r;
	}
	return 0;
}

/* ---- the server ---- */

static void *bulk(void *arg)
{
	int fd = (int)(intptr_t)arg;
	unsigned char hdr[9], *buf = malloc(IOSIZE);
	uint64_t n;

	fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) & ~O_NONBLOCK);
	timeouts(fd);
	if (buf && read_all(fd, hdr, sizeof hdr) == 0) {
		memcpy(&n, hdr + 1, 8);
		if (hdr[0] == 'U') {
			int r = recv_pattern(fd, n, buf);
			(void)write_all(fd, r ? "BAD" : "OK", r ? 3 : 2);
		} else if (send_pattern(fd, n) == 0) {
			shutdown(fd, SHUT_WR);
		}
		/* Until the client closes: no reset of bytes in flight. */
		while (recv(fd, buf, IOSIZE, 0) > 0)
			;
	}
	free(buf);
	close(fd);
	return NULL;
}

/* Echo what came: a few bytes at a time in the bench, so rarely a wait. */
static int echo(int fd, const char *buf, size_t len)
{
	while (len) {
		ssize_t n = send(fd, buf, len, MSG_NOSIGNAL);
		if (n < 0 && errno == EAGAIN) {
			struct pollfd p = { fd, POLLOUT, 0 };
			if (poll(&p, 1, TIMEOUT_S * 1000) <= 0)
				return -1;
			continue;
		}
		if (n <= 0)
			return -1;
		buf += n;
		len -= (size_t)n;
	}
	return 0;
}

static int serve(void)
{
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	socklen_t al = sizeof a;
	struct epoll_event ev = { .events = EPOLLIN }, evs[64];
	int l = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	int ep = epoll_create1(EPOLL_CLOEXEC);
	char buf[65536];

	if (l < 0 || ep < 0 || bind(l, (struct sockaddr *)&a, sizeof a) < 0 || listen(l, 4096) < 0 ||
	    getsockname(l, (struct sockaddr *)&a, &al) < 0)
		die("listen");
	printf("%u\n", ntohs(a.sin_port));
	fflush(stdout);
	ev.data.fd = l;
	epoll_ctl(ep, EPOLL_CTL_ADD, l, &ev);
	ev.data.fd = 0;
	epoll_ctl(ep, EPOLL_CTL_ADD, 0, &ev);  /* our parent's end */
	for (;;) {
		int n = epoll_wait(ep, evs, 64, -1);
		for (int i = 0; i < n; i++) {
			int fd = evs[i].data.fd;
			if (fd == 0) {
				if (read(0, buf, sizeof buf) <= 0)
					return 0;
			} else if (fd == l) {
				int c;
				while ((c = accept4(l, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC)) >= 0) {
					setsockopt(c, IPPROTO_TCP, TCP_NODELAY, &(int){ 1 }, sizeof(int));
					ev.data.fd = c;
					epoll_ctl(ep, EPOLL_CTL_ADD, c, &ev);
				}
			} else {
				unsigned char first;
				ssize_t r = recv(fd, &first, 1, MSG_PEEK);
				if (r == 1 && (first == 'U' || first == 'D')) {
					pthread_t t;
					pthread_attr_t at;
					epoll_ctl(ep, EPOLL_CTL_DEL, fd, NULL);
					pthread_attr_init(&at);
					pthread_attr_setdetachstate(&at, PTHREAD_CREATE_DETACHED);
					if (pthread_create(&t, &at, bulk, (void *)(intptr_t)fd))
						close(fd);
					continue;
				}
				if (r < 0 && errno == EAGAIN)
					continue;
				r = recv(fd, buf, sizeof buf, 0);
				if (r < 0 && errno == EAGAIN)
					continue;
				if (r <= 0 || echo(fd, buf, (size_t)r) < 0)
					close(fd);  /* closing removes it from the epoll set */
			}
		}
		if (n < 0 && errno != EINTR)
			die("epoll_wait");
	}
}

/* ---- the client ---- */

static const char *target;  /* host:port to CONNECT to, or NULL */
static int port;

/* A connected socket, through the proxy's 200 if there is a proxy; -1. */
static int tunnel(void)
{
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons((uint16_t)port),
				 .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	char req[300], resp[1024];
	size_t len = 0;

	if (fd < 0)
		return -1;
	timeouts(fd);
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &(int){ 1 }, sizeof(int));
	if (connect(fd, (struct sockaddr *)&a, sizeof a) < 0)
		goto fail;
	if (!target)
		return fd;
	int n = snprintf(req, sizeof req, "CONNECT %s HTTP/1.1\r\n\r\n", target);
	if (write_all(fd, req, (size_t)n) < 0)
		goto fail;
	/* No byte follows the answer: the tunnel is quiet until we speak. */
	while (len < sizeof resp - 1) {
		ssize_t r = recv(fd, resp + len, sizeof resp - 1 - len, 0);
		if (r <= 0)
			goto fail;
		len += (size_t)r;
		resp[len] = 0;
		char *end = strstr(resp, "\r\n\r\n");
		if (end) {
			if (strncmp(resp, "HTTP/1.", 7) || strncmp(resp + 8, " 200", 4) ||
			    end + 4 != resp + len) {
				fprintf(stderr, "blast: proxy answered: %.80s\n", resp);
				goto fail;
			}
			return fd;
		}
	}
fail:
	close(fd);
	return -1;
}

static int bulk_client(int up, uint64_t n)
{
	unsigned char hdr[9] = { up ? 'U' : 'D' }, *buf = malloc(IOSIZE), ok[4] = { 0 };
	int fd = tunnel(), r;
	double t;

	if (fd < 0 || !buf)
		die("tunnel");
	memcpy(hdr + 1, &n, 8);
	t = now();
	if (write_all(fd, hdr, sizeof hdr) < 0)
		die("request");
	if (up) {
		if (send_pattern(fd, n) < 0 || read_all(fd, ok, 2) < 0)
			die("upload");
		if (memcmp(ok, "OK", 2)) {
			errno = 0;
			die("upload: the target saw wrong bytes");
		}
	} else if ((r = recv_pattern(fd, n, buf)) < 0) {
		errno = 0;
		die(r == -2 ? "download: wrong bytes" : "download: short");
	}
	t = now() - t;
	close(fd);
	printf("%.1f\n", (double)n / t / (1 << 20));
	return 0;
}

static int count_per, failed;
static double *lat;  /* seconds, per connection */

static void *lat_worker(void *arg)
{
	double *out = arg;

	for (int i = 0; i < count_per; i++) {
		unsigned char b = (unsigned char)('a' + i % 26), back = 0;
		double t = now();
		int fd = tunnel();

		if (fd < 0 || write_all(fd, &b, 1) < 0 || read_all(fd, &back, 1) < 0 || back != b) {
			__atomic_add_fetch(&failed, 1, __ATOMIC_RELAXED);
			if (fd >= 0)
				close(fd);
			out[i] = 1e9;
			continue;
		}
		out[i] = now() - t;
		close(fd);
	}
	return NULL;
}

static int cmp(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return (x > y) - (x < y);
}

static int lat_client(int count, int par)
{
	pthread_t th[256];
	double t;

	if (par < 1 || par > 256)
		return 64;
	count_per = count / par;
	count = count_per * par;
	lat = calloc((size_t)count, sizeof *lat);
	t = now();
	for (int i = 0; i < par; i++)
		if (pthread_create(&th[i], NULL, lat_worker, lat + (size_t)i * count_per))
			die("pthread_create");
	for (int i = 0; i < par; i++)
		pthread_join(th[i], NULL);
	t = now() - t;
	if (failed) {
		fprintf(stderr, "blast: %d of %d connections failed\n", failed, count);
		return 1;
	}
	qsort(lat, (size_t)count, sizeof *lat, cmp);
	printf("%.1f %.1f %.1f\n", lat[count / 2] * 1e6, lat[(size_t)count * 99 / 100] * 1e6, count / t);
	return 0;
}

int main(int argc, char **argv)
{
	make_pattern();
	if (argc == 2 && !strcmp(argv[1], "serve"))
		return serve();
	if (argc < 5)
		return 64;
	port = atoi(argv[2]);
	target = strcmp(argv[3], "-") ? argv[3] : NULL;
	if (!strcmp(argv[1], "up") || !strcmp(argv[1], "down"))
		return bulk_client(!strcmp(argv[1], "up"), strtoull(argv[4], NULL, 10));
	if (!strcmp(argv[1], "lat") && argc == 6)
		return lat_client(atoi(argv[4]), atoi(argv[5]));
	return 64;
}
