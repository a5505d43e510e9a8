/* tunneld's stub resolver: /etc/hosts, then A and AAAA questions to the
 * nameservers of /etc/resolv.conf over UDP (over TCP when an answer comes
 * truncated), every wait bounded by the caller's deadline. It replaces the
 * C library's getaddrinfo(): a fifth of a small static build, and no
 * deadline of its own. Limits: no search list (resolv.conf's search and
 * domain lines are ignored: a name is asked as given), no EDNS, an answer
 * of at most MSG_MAX bytes, nameservers by numeric address without a
 * %scope. */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <string.h>
#include <strings.h>
#include <sys/random.h>
#include <unistd.h>

#include "config.h"
#include "dns.h"

#define MSG_MAX 4096     /* an answer, over UDP or TCP */
#define NAME_LEN 256     /* a name in dotted form, with its NUL */
#define PTR_MAX 16       /* compression pointers in one name */
#define CNAME_MAX 8      /* CNAMEs followed in one answer */
#define NS_MAX 3         /* nameservers, as glibc and musl read */
#define LINE_MAX_ 512    /* a line of hosts or resolv.conf; longer ones are skipped */
#define READS_MAX 1024   /* reads of one file: its first 512 KiB */

static unsigned get16(const unsigned char *p)
{
	return (unsigned)p[0] << 8 | p[1];
}

/* The name at off, in dotted form and lower case ("" for the root), into
 * out. Pointers lead only backwards, at most PTR_MAX of them: no loop.
 * Returns the offset past the name where it began, or 0 if malformed. */
static size_t get_name(const unsigned char *m, size_t len, size_t off, char out[NAME_LEN])
{
	size_t end = 0, o = 0;
	int jumps = 0;

	for (int i = 0; i < 128 + PTR_MAX; i++) {
		unsigned c;

		if (off >= len)
			return 0;
		c = m[off];
		if ((c & 0xc0) == 0xc0) {
			size_t to;

			if (off + 1 >= len || ++jumps > PTR_MAX)
				return 0;
			to = (c & 0x3f) << 8 | m[off + 1];
			if (to >= off)
				return 0;
			if (!end)
				end = off + 2;
			off = to;
			continue;
		}
		if (c & 0xc0)
			return 0;
		if (!c) {
			out[o ? o - 1 : 0] = 0;
			return end ? end : off + 1;
		}
		if (off + 1 + c > len || o + c + 1 >= NAME_LEN)
			return 0;
		for (unsigned k = 1; k <= c; k++) {
			unsigned char ch = m[off + k];

			if (ch == '.' || !ch)
				return 0;
			out[o++] = (char)(ch >= 'A' && ch <= 'Z' ? ch + 32 : ch);
		}
		out[o++] = '.';
		off += 1 + c;
	}
	return 0;
}

static void add_addr(struct endpoint *ep, int max, int *n, const unsigned char *a, size_t alen)
{
	struct sockaddr_storage ss = { 0 };
	struct sockaddr_in *s4 = (void *)&ss;
	struct sockaddr_in6 *s6 = (void *)&ss;

	if (*n >= max)
		return;
	if (alen == 4) {
		s4->sin_family = AF_INET;
		memcpy(&s4->sin_addr, a, 4);
	} else {
		s6->sin6_family = AF_INET6;
		memcpy(&s6->sin6_addr, a, 16);
	}
	ep_from_sockaddr(&ep[(*n)++], (struct sockaddr *)&ss);
}

size_t dns_query(unsigned char *m, size_t cap, unsigned id, const char *name, unsigned qtype)
{
	size_t o = 12, nl = strlen(name);

	if (!nl || nl > 253 || cap < 12 + nl + 2 + 4)
		return 0;
	memset(m, 0, 12);
	m[0] = (unsigned char)(id >> 8);
	m[1] = (unsigned char)id;
	m[2] = 1;   /* RD */
	m[5] = 1;   /* one question */
	for (const char *p = name; *p;) {
		const char *dot = strchr(p, '.');
		size_t l = dot ? (size_t)(dot - p) : strlen(p);

		if (!l || l > 63 || (dot && !dot[1]))
			return 0;
		m[o++] = (unsigned char)l;
		memcpy(m + o, p, l);
		o += l;
		p += l + (dot != NULL);
	}
	m[o++] = 0;
	m[o++] = (unsigned char)(qtype >> 8);
	m[o++] = (unsigned char)qtype;
	m[o++] = 0;
	m[o++] = 1;   /* IN */
	return o;
}

/* One pass over the n answer records from off: the addresses of cur, or
 * in next the name its CNAME leads to. 0, or -1 if malformed. */
static int answer_pass(const unsigned char *m, size_t len, size_t off, unsigned an,
		       const char *cur, unsigned qtype, struct endpoint *ep, int max, int *n,
		       char next[NAME_LEN])
{
	char own[NAME_LEN];

	for (unsigned i = 0; i < an; i++) {
		unsigned type, rdlen;

		off = get_name(m, len, off, own);
		if (!off || off + 10 > len)
			return -1;
		type = get16(m + off);
		rdlen = get16(m + off + 8);
		off += 10;
		if (off + rdlen > len)
			return -1;
		if (get16(m + off - 8) != 1 || strcmp(own, cur)) {
			off += rdlen;
			continue;
		}
		if (type == 5 && !get_name(m, off + rdlen, off, next))
			return -1;
		if (type == qtype && rdlen == (qtype == 1 ? 4u : 16u))
			add_addr(ep, max, n, m + off, rdlen);
		off += rdlen;
	}
	return 0;
}

int dns_answer(const unsigned char *m, size_t len, unsigned id, const char *name,
	       unsigned qtype, struct endpoint *ep, int max, int *n)
{
	char cur[NAME_LEN], next[NAME_LEN];
	size_t off;

	*n = 0;
	/* an answer (QR), a standard query's, to one question: ours */
	if (len < 12 || get16(m) != id || !(m[2] & 0x80) || (m[2] & 0x78) || get16(m + 4) != 1)
		return DNS_ANS_BAD;
	off = get_name(m, len, 12, cur);
	if (!off || off + 4 > len || strcasecmp(cur, name) || get16(m + off) != qtype ||
	    get16(m + off + 2) != 1)
		return DNS_ANS_BAD;
	if (m[2] & 0x02)
		return DNS_ANS_TC;
	if ((m[3] & 0x0f) == 3)
		return DNS_ANS_NX;
	if (m[3] & 0x0f)
		return DNS_ANS_FAIL;
	for (int hop = 0; hop <= CNAME_MAX; hop++) {
		next[0] = 0;
		if (answer_pass(m, len, off + 4, get16(m + 6), cur, qtype, ep, max, n, next) < 0) {
			*n = 0;
			return DNS_ANS_BAD;
		}
		if (*n || !next[0])
			return DNS_ANS_OK;
		memcpy(cur, next, sizeof cur);
	}
	return DNS_ANS_FAIL;  /* a longer chain than we follow */
}

/* The next word of a line at *p, NUL-terminated in place, or NULL. */
static char *word(char **p)
{
	char *w = *p + strspn(*p, " \t\r"), *e;

	if (!*w)
		return NULL;
	e = w + strcspn(w, " \t\r");
	*p = *e ? e + 1 : e;
	*e = 0;
	return w;
}

/* fn(arg, line) for each line of path, its comment cut off, NUL-terminated
 * and writable. Bounded: READS_MAX reads, lines up to LINE_MAX_ bytes. */
static void each_line(const char *path, void (*fn)(void *, char *), void *arg)
{
	char buf[LINE_MAX_ + 1];
	size_t have = 0;
	int skip = 0, fd = openat(AT_FDCWD, path, O_RDONLY | O_CLOEXEC);  /* file.c says why */

	for (int i = 0; fd >= 0 && i < READS_MAX; i++) {
		ssize_t r = read(fd, buf + have, LINE_MAX_ - have);
		char *s = buf, *nl;

		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			break;
		have += (size_t)r;
		while ((nl = memchr(s, '\n', have - (size_t)(s - buf)))) {
			*nl = 0;
			if (!skip)
				fn(arg, s);
			skip = 0;
			s = nl + 1;
		}
		have -= (size_t)(s - buf);
		memmove(buf, s, have);
		if (have == LINE_MAX_) {
			skip = 1;
			have = 0;
		}
	}
	buf[have] = 0;
	if (have && !skip)
		fn(arg, buf);
	if (fd >= 0)
		close(fd);
}

static void uncomment(char *line)
{
	line[strcspn(line, "#;")] = 0;
}

struct hosts {
	const char *name;
	struct endpoint *ep;
	int max, n;
};

/* "ADDRESS NAME ALIAS...": the address, if one of the names is ours. */
static void hosts_line(void *arg, char *line)
{
	struct hosts *h = arg;
	unsigned char a[16];
	char *w, *addr;
	size_t alen = 4;

	uncomment(line);
	addr = word(&line);
	if (!addr)
		return;
	if (inet_pton(AF_INET, addr, a) != 1) {
		if (!CONFIG_IPV6 || inet_pton(AF_INET6, addr, a) != 1)
			return;
		alen = 16;
	}
	for (int i = 0; i < 64 && (w = word(&line)); i++) {
		size_t wl = strlen(w);

		if (wl && w[wl - 1] == '.')
			w[--wl] = 0;
		if (!strcasecmp(w, h->name)) {
			add_addr(h->ep, h->max, &h->n, a, alen);
			return;
		}
	}
}

struct conf {
	struct endpoint ns[NS_MAX];
	int nns, timeout, attempts;  /* seconds per server and try; tries */
};

/* A number from "name:N" options, within [min, max]; else keep. */
static void option(const char *w, const char *name, int min, int max, int *val)
{
	size_t nl = strlen(name);
	int v = 0;

	if (strncmp(w, name, nl) || w[nl] != ':' || !w[nl + 1])
		return;
	for (w += nl + 1; *w; w++) {
		if (*w < '0' || *w > '9')
			return;
		v = v * 10 + (*w - '0');
		if (v > max)
			v = max;
	}
	*val = v < min ? min : v;
}

/* "nameserver ADDRESS" (the first NS_MAX) and "options timeout:N attempts:N". */
static void conf_line(void *arg, char *line)
{
	struct conf *c = arg;
	unsigned char a[16];
	char *key, *w;

	uncomment(line);
	key = word(&line);
	if (key && !strcmp(key, "nameserver") && (w = word(&line)) && c->nns < NS_MAX) {
		int n = c->nns;

		if (inet_pton(AF_INET, w, a) == 1)
			add_addr(c->ns, NS_MAX, &c->nns, a, 4);
		else if (inet_pton(AF_INET6, w, a) == 1)
			add_addr(c->ns, NS_MAX, &c->nns, a, 16);
		if (c->nns > n)
			c->ns[n].port = 53;
	}
	for (int i = 0; key && !strcmp(key, "options") && i < 16 && (w = word(&line)); i++) {
		option(w, "timeout", 1, 30, &c->timeout);
		option(w, "attempts", 1, 5, &c->attempts);
	}
}

/* One question's state over the servers. */
struct q {
	unsigned id, type;
	enum { Q_WAIT, Q_OK, Q_NX } st;
	int here;                /* the server now asked refused it */
	int n;
	struct endpoint ep[RACE_MAX];
};

/* Read len bytes from the stream fd before until. 0 or -1. */
static int read_full(int fd, unsigned char *p, size_t len, long long until)
{
	for (int i = 0; len && i < 1024; i++) {
		ssize_t r;

		if (net_wait(fd, POLLIN, until) < 0)
			return -1;
		r = recv(fd, p, len, MSG_DONTWAIT);
		if (r == 0 || (r < 0 && errno != EAGAIN && errno != EINTR))
			return -1;
		if (r > 0) {
			p += r;
			len -= (size_t)r;
		}
	}
	return len ? -1 : 0;
}

/* What an answer means for q. */
static void settle(struct q *q, int st, int n)
{
	if (st == DNS_ANS_OK || st == DNS_ANS_NX) {
		q->st = st == DNS_ANS_OK ? Q_OK : Q_NX;
		q->n = n;
	} else {
		q->here = 1;
	}
}

/* q asked again over TCP, its answer in m (MSG_MAX + 2 bytes). */
static void ask_tcp(const struct endpoint *ns, struct q *q, const char *name,
		    unsigned char *m, long long until)
{
	long long left = until - now_ms();
	size_t len = dns_query(m + 2, MSG_MAX, q->id, name, q->type);
	int fd = left > 0 ? net_connect(ns, (int)left) : -1, st = DNS_ANS_FAIL, n = 0;

	m[0] = (unsigned char)(len >> 8);
	m[1] = (unsigned char)len;
	if (fd >= 0 && net_write_all(fd, m, len + 2, NULL, until) == 0 &&
	    read_full(fd, m, 2, until) == 0 && (len = get16(m)) <= MSG_MAX &&
	    read_full(fd, m, len, until) == 0)
		st = dns_answer(m, len, q->id, name, q->type, q->ep, RACE_MAX, &n);
	if (fd >= 0)
		close(fd);
	settle(q, st == DNS_ANS_OK || st == DNS_ANS_NX ? st : DNS_ANS_FAIL, n);
}

/* Whether a question is open (here: and not refused by this server). */
static int waiting(const struct q *qs, int nq, int here)
{
	for (int i = 0; i < nq; i++)
		if (qs[i].st == Q_WAIT && !(here && qs[i].here))
			return 1;
	return 0;
}

/* The questions still open, to the server ns, on one connect()ed UDP
 * socket; its answers until each is settled or until. */
static void ask(const struct endpoint *ns, struct q *qs, int nq, const char *name,
		long long until)
{
	unsigned char m[MSG_MAX + 2];
	struct sockaddr_storage ss;
	socklen_t sl = ep_to_sockaddr(ns, &ss);
	int fd = socket(ns->ip.family, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);

	for (int i = 0; i < nq; i++)
		qs[i].here = 0;
	if (fd < 0 || connect(fd, (struct sockaddr *)&ss, sl) < 0)
		goto out;
	for (int i = 0; i < nq; i++) {
		size_t len = dns_query(m, sizeof m, qs[i].id, name, qs[i].type);

		if (qs[i].st == Q_WAIT && send(fd, m, len, MSG_NOSIGNAL) < 0)
			goto out;
	}
	for (int k = 0; k < 64 && waiting(qs, nq, 1); k++) {
		ssize_t r;

		if (net_wait(fd, POLLIN, until) < 0)
			break;
		r = recv(fd, m, MSG_MAX, MSG_TRUNC);
		if (r < 0 && (errno == EAGAIN || errno == EINTR))
			continue;
		if (r < 0)
			break;  /* ECONNREFUSED: nothing listens there */
		for (int i = 0; i < nq; i++) {
			int n, st;

			if (qs[i].st != Q_WAIT || qs[i].here)
				continue;
			st = dns_answer(m, r > MSG_MAX ? MSG_MAX : (size_t)r, qs[i].id, name,
					qs[i].type, qs[i].ep, RACE_MAX, &n);
			/* cut to fit our buffer is truncated too, if it is ours */
			if (st == DNS_ANS_BAD)
				continue;
			if (st == DNS_ANS_TC || r > MSG_MAX)
				ask_tcp(ns, &qs[i], name, m, until);
			else
				settle(&qs[i], st, n);
			break;  /* one datagram answers one question (and m may be TCP's now) */
		}
	}
out:
	if (fd >= 0)
		close(fd);
}

/* The answers gathered, AAAA first, into ep; or why there are none. */
static int result(const struct q *qs, int nq, struct endpoint *ep, int max, long long deadline)
{
	int n = 0, nx = 0, ok = 0;

	for (int i = nq - 1; i >= 0; i--) {
		for (int k = 0; k < qs[i].n && n < max; k++)
			ep[n++] = qs[i].ep[k];
		nx += qs[i].st == Q_NX;
		ok += qs[i].st == Q_OK;
	}
	if (n)
		return n;
	if (nx)
		return DNS_NXDOMAIN;
	if (ok == nq)
		return DNS_NODATA;
	return now_ms() >= deadline ? DNS_TIMEOUT : DNS_FAIL;
}

int dns_resolve(const char *name, struct endpoint *ep, int max, long long deadline)
{
	char nm[NAME_LEN];
	unsigned char probe[NAME_LEN + 18];
	size_t nl = strlen(name);
	struct hosts h = { nm, ep, max, 0 };
	struct conf c = { .nns = 0, .timeout = 5, .attempts = 2 };  /* glibc's and musl's */
	struct q qs[2] = { { .type = 1 }, { .type = 28 } };
	unsigned short ids[2];
	int nq = CONFIG_IPV6 ? 2 : 1;

	if (nl && name[nl - 1] == '.')
		nl--;
	if (!nl || nl >= sizeof nm)
		return DNS_NXDOMAIN;
	memcpy(nm, name, nl);
	nm[nl] = 0;
	if (!dns_query(probe, sizeof probe, 0, nm, 1))
		return DNS_NXDOMAIN;  /* no name a server could hold */
	each_line("/etc/hosts", hosts_line, &h);
	if (h.n)
		return h.n;
	each_line("/etc/resolv.conf", conf_line, &c);
	if (!c.nns) {  /* none named: the local one, as the C libraries do */
		static const unsigned char lo[4] = { 127, 0, 0, 1 };

		add_addr(c.ns, NS_MAX, &c.nns, lo, 4);
		c.ns[0].port = 53;
	}
	/* Unpredictable ids, as the source ports the kernel picks. */
	if (getrandom(ids, sizeof ids, 0) != sizeof ids)
		return DNS_FAIL;
	qs[0].id = ids[0];
	qs[1].id = ids[1];
	for (int a = 0; a < c.attempts; a++) {
		for (int s = 0; s < c.nns && waiting(qs, nq, 0); s++) {
			long long until = now_ms() + c.timeout * 1000LL;

			ask(&c.ns[s], qs, nq, nm, until < deadline ? until : deadline);
			if (now_ms() >= deadline)
				return result(qs, nq, ep, max, deadline);
		}
	}
	return result(qs, nq, ep, max, deadline);
}
