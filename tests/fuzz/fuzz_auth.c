/* libFuzzer: the credential file parser, and the Basic token's decoding
 * (strict base64, UTF-8 check, log escaping). auth.c is included whole to
 * reach its static decoder without the crypt(3) work auth_check does for
 * every token. */
#include "../../auth.c"

#include <stdint.h>
#include <stdlib.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static struct auth a;
	unsigned char dec[400];
	char err[256], name[AUTH_LOGNAME_MAX];
	char *p = malloc(size ? size : 1);
	int n;

	memcpy(p, data, size);
	if (auth_load(&a, "fuzz", p, size, err, sizeof err) == 0) {
		for (int i = 0; i < a.nusers; i++)
			if (!a.users[i].user[0] || hash_problem(a.users[i].hash))
				abort();
	}
	n = b64decode(p, size, dec, sizeof dec);
	if (n > (int)sizeof dec)
		abort();
	if (n >= 0) {
		valid_text(dec, (size_t)n);
		log_name(name, sizeof name, dec, (size_t)n);
		if (strlen(name) >= sizeof name)
			abort();
	}
	free(p);
	return 0;
}
