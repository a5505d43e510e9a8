/* libFuzzer: the PROXY protocol parser (v1 and v2). */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "proxyproto.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	unsigned char *p = malloc(size ? size : 1);
	struct proxy_hdr h;
	int r;

	memcpy(p, data, size);
	r = proxy_parse(p, size, &h);
	/* A length inside the input, never past a bound; a header is a prefix. */
	if (r < -1 || (r > 0 && ((size_t)r > size || r > PROXY_HEADER_MAX)))
		abort();
	if (r > 0 && proxy_parse(p, (size_t)r, &h) != r)
		abort();
	if (r > 0 && !h.local && (!h.src.ip.family || !h.dst.ip.family))
		abort();
	free(p);
	return 0;
}
