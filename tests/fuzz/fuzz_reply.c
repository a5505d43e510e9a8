/* libFuzzer: answer heads as the tunnel client reads them (framing, the
 * early "not HTTP" check, the head's fields). */
#include "head.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct reply r;
	size_t end;
	char *p = fuzz_head(data, size, &end);

	if (end && http_parse_reply(p, end, &r) == 0) {
		/* Accepted: what the client acts on is in range, the line for its
		 * messages printable and terminated, and no early check refused
		 * the head it came from. */
		if (r.status < 100 || r.status > 999 || r.clen < -1 || r.offset < -1 ||
		    !memchr(r.line, 0, sizeof r.line) || http_not_reply(p, end))
			abort();
		for (const char *c = r.line; *c; c++)
			if (*c < 0x20 || *c == 0x7f)
				abort();
	}
	free(p);
	return 0;
}
