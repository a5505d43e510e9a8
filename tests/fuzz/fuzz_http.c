/* libFuzzer: request head framing and parsing, CONNECT and tunnel requests. */
#include "head.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct request req;
	size_t end;
	char *p = fuzz_head(data, size, &end);

	if (end) {
		/* The early refusal never refuses a head the parser accepts (once
		 * it refuses a prefix it refuses every longer one). */
		if (http_not_request(p, end) && (http_parse(p, end, NULL, &req) == 0 ||
						 http_parse(p, end, "/t", &req) == 0))
			abort();
		if (http_parse(p, end, NULL, &req) == 0 && (req.method != HTTP_CONNECT ||
		    strlen(req.host) > HOST_MAX + 1 || !req.port || req.port > 65535))
			abort();
		if (http_parse(p, end, "/t", &req) == 0 && req.method != HTTP_CONNECT &&
		    (req.clen > HTTP_BODY_MAX || (req.token && (req.token < p || req.token + req.token_len > p + end))))
			abort();
		/* A token's node prefix: a name and a dot, then exactly the hex. */
		if (http_parse(p, end, "/t", &req) == 0 && req.token) {
			int pre = http_session_token(req.token, req.token_len);

			if (pre >= 0 && (req.token_len - (size_t)pre != SESSION_TOKEN_LEN ||
					 (pre && (req.token[pre - 1] != '.' ||
						  !http_is_node_name(req.token, (size_t)pre - 1)))))
				abort();
		}
	}
	if (http_parse_target(p, size, &req) == 0 && strlen(req.host) > HOST_MAX + 1)
		abort();
	free(p);
	return 0;
}
