/* libFuzzer: the resolver's answer parser. The input is an answer to the
 * A question for good.test with id 0x1234, then the same bytes taken as
 * one to the AAAA question. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "dns.h"

static void one(const unsigned char *p, size_t size, unsigned qtype)
{
	struct endpoint ep[4];
	int n = -1, r = dns_answer(p, size, 0x1234, "good.test", qtype, ep, 4, &n);

	if (r < DNS_ANS_OK || r > DNS_ANS_BAD || n < 0 || n > 4 || (r != DNS_ANS_OK && n))
		abort();
	for (int i = 0; i < n; i++)
		if (ep[i].ip.family != AF_INET && ep[i].ip.family != AF_INET6)
			abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	unsigned char *p = malloc(size ? size : 1);

	memcpy(p, data, size);
	one(p, size, 1);
	one(p, size, 28);
	free(p);
	return 0;
}
