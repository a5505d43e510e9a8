/* What the head fuzzers share: the input copied to exactly its size, so
 * that a read past it is caught, and framed as a head. */
#ifndef FUZZ_HEAD_H
#define FUZZ_HEAD_H
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "http.h"

/* The copy (free it), with the head's framed length in *end: 0 while it
 * is not whole. */
static char *fuzz_head(const uint8_t *data, size_t size, size_t *end)
{
	char *p = malloc(size ? size : 1);

	memcpy(p, data, size);
	*end = http_head_end(p, size);
	if (*end > size)
		abort();
	return p;
}
#endif
