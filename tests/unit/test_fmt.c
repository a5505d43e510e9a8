/* The bounded formatter against the C library's snprintf: every conversion
 * tunneld uses, at their limits, and each output cut at every buffer size;
 * and the addresses net.c prints with it against the C library's inet_ntop. */
#include <arpa/inet.h>
#include <limits.h>
#include <stdint.h>
#include <string.h>

#include "check.h"
#include "fmt.h"
#include "net.h"

/* Both formatters into buffers of every size from 0 to 63 (and one that
 * fits): the same return value and the same bytes, NUL included. */
#define SAME(...) do { \
	char want[256], got[256]; \
	int wn = snprintf(want, sizeof want, __VA_ARGS__); \
	for (size_t sz = 0; sz < 64 || sz == 255; sz = sz == 63 ? 255 : sz + 1) { \
		int gn; \
		memset(got, 'X', sizeof got); \
		snprintf(want, sz, __VA_ARGS__); \
		gn = strfmt(got, sz, __VA_ARGS__); \
		CHECK(gn == wn, "%s: size %zu: returned %d, not %d", #__VA_ARGS__, sz, gn, wn); \
		CHECK(sz == 0 ? got[0] == 'X' : !memcmp(got, want, strlen(want) + 1), \
		      "%s: size %zu: '%s', not '%s'", #__VA_ARGS__, sz, got, want); \
		CHECK(got[sz < 255 ? sz : 255] == 'X' || sz == 255, \
		      "%s: size %zu: wrote past the end", #__VA_ARGS__, sz); \
	} \
} while (0)

/* ep_str() of an IPv6 address against inet_ntop(): "[ADDR]:PORT". */
static void same_ip6(const unsigned char a[16])
{
	struct endpoint ep = { .ip = { .family = AF_INET6 }, .port = 8080 };
	char want[INET6_ADDRSTRLEN], exp[ADDRSTR_MAX + 8], got[ADDRSTR_MAX];

	memcpy(ep.ip.a, a, 16);
	inet_ntop(AF_INET6, a, want, sizeof want);
	snprintf(exp, sizeof exp, "[%s]:8080", want);
	ep_str(&ep, got);
	CHECK(!strcmp(got, exp), "ep_str: '%s', not '%s'", got, exp);
}

/* Every address whose eight groups are each 0, 1 or 0xabcd (6561 of
 * them: every pattern of zero runs), less the "IPv4-compatible" ones
 * (::a.b.c.d, six zero groups first), which glibc prints dotted and RFC
 * 5952 does not; then mapped IPv4 and the other family. */
static void addresses(void)
{
	static const unsigned vals[3] = { 0, 1, 0xabcd };
	unsigned char a[16];
	struct endpoint ep = { .ip = { .family = AF_INET, .a = { 192, 0, 2, 255 } }, .port = 0 };
	char got[ADDRSTR_MAX];

	for (int k = 0; k < 6561; k++) {
		int zeros = 0;

		for (int g = 0, v = k; g < 8; g++, v /= 3) {
			a[2 * g] = (unsigned char)(vals[v % 3] >> 8);
			a[2 * g + 1] = (unsigned char)vals[v % 3];
			zeros += g < 6 && v % 3 == 0;
		}
		if (zeros == 6 && (a[12] | a[13]))
			continue;
		same_ip6(a);
	}
	memcpy(a, "\0\0\0\0\0\0\0\0\0\0\xff\xff\x7f\0\0\x01", 16);
	same_ip6(a);
	CHECK(!strcmp(ep_str(&ep, got), "192.0.2.255:0"), "ep_str: '%s'", got);
	ep.ip.family = 0;
	CHECK(!strcmp(ep_str(&ep, got), "-"), "ep_str: '%s'", got);
}

int main(int argc, char **argv)
{
	char buf[64];
	const char *null = argc > 99 ? argv[0] : NULL, *odd = "a%qb", *tail = "tail %";

	SAME("plain text, no conversion");
	SAME("%s", "");
	SAME("%s:%d: %s", "/etc/tunneld/rules", 12, "no such rule");
	SAME("%.*s|", 3, "abcdef");
	SAME("%.*s|", 0, "abc");
	SAME("%.*s|", 10, "abc");
	SAME("%c%c%c", 'a', '+', '-');
	SAME("%d %d %d %d", 0, -1, INT_MAX, INT_MIN);
	SAME("%u %u", 0u, UINT_MAX);
	SAME("%ld %ld %ld", 0L, LONG_MAX, LONG_MIN);
	SAME("%lld %lld", LLONG_MAX, LLONG_MIN);
	SAME("%llu %llu", 0ULL, ULLONG_MAX);
	SAME("%zu %zu", (size_t)0, SIZE_MAX);
	SAME("%08x %08x %08x", 0u, 0xabcu, UINT_MAX);
	SAME("%016llx %016llx", 0ULL, ULLONG_MAX);
	SAME("%x %lx", 255u, 0xdeadbeefUL);
	SAME("%05d %05d", 42, -42);
	SAME("100%% and %s%%", "more");
	SAME("<%d>tunneld[%ld]: %s", 3 | 24, 12345L, "CONNECT example.org:443 200");
	SAME("%s: '%%s' is not a number from %ld to %ld", "--max-conns", 1L, 65535L);
	/* glibc and musl both print a null %s as "(null)". */
	CHECK(strfmt(buf, sizeof buf, "[%s]", null) == 8 && !strcmp(buf, "[(null)]"), "%s", buf);
	/* A conversion it does not know ends the output there. */
	CHECK(strfmt(buf, sizeof buf, odd) == 1 && !strcmp(buf, "a"), "%s", buf);
	CHECK(strfmt(buf, sizeof buf, tail) == 5 && !strcmp(buf, "tail "), "%s", buf);
	addresses();
	return tally("test_fmt");
}
