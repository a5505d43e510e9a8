/* libFuzzer: the ClientHello/SNI reader. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "sni.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	unsigned char *p = malloc(size ? size : 1);
	char sni[256];
	int r;

	memcpy(p, data, size);
	memset(sni, 'x', sizeof sni);
	r = tls_hello_sni(p, size, sni, sizeof sni);
	if (r < -1 || r > 1 || !memchr(sni, 0, sizeof sni))
		abort();
	free(p);
	return 0;
}
