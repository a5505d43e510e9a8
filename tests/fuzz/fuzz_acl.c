/* libFuzzer: the rule file parser, and matching with what it built. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "acl.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static struct acl acl;
	struct ip v4 = { AF_INET, { 127, 0, 0, 1 } }, v6 = { AF_INET6, { 0x20, 1, 0xd, 0xb8 } };
	struct acl_query q = { 0 };
	char err[256];
	char *p = malloc(size ? size : 1);
	int line;

	memcpy(p, data, size);
	if (acl_load(&acl, "fuzz", p, size, err, sizeof err) == 0) {
		q.host = "www.example.org";
		q.port = 443;
		q.addr = &v4;
		q.client = &v6;
		q.user = "alice";
		q.tls = -1;
		acl_check(&acl, &q, &line);
		q.tls = 1;
		q.sni_match = 1;
		q.addr = &v6;
		acl_check(&acl, &q, &line);
	} else if (!memchr(err, 0, sizeof err)) {
		abort();
	}
	free(p);
	return 0;
}
