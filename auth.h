#ifndef AUTH_H
#define AUTH_H
#include <stddef.h>

/* Bounds on a credential file. */
#define AUTH_TEXT_MAX  32768
#define AUTH_USERS_MAX 512
#define AUTH_USER_MAX  64     /* bytes in a user name */
#define AUTH_LOGNAME_MAX (3 * AUTH_USER_MAX + 1)

struct auth {  /* the count first, the text last: see struct acl */
	int nusers;
	struct { const char *user, *hash; } users[AUTH_USERS_MAX];
	char text[AUTH_TEXT_MAX];
};

/* Read "user:hash" lines: len bytes of text, or with text NULL the file at
 * name. name labels errors "name:line: why". DES and MD5 crypt hashes are
 * refused. 0 or -1. */
int auth_load(struct auth *a, const char *name, const char *text, size_t len,
	      char *err, size_t errlen);

/* Check a Proxy-Authorization value (RFC 7617 Basic). Returns the user's
 * name as the file has it, or NULL: no header, another scheme, a garbled
 * token, an unknown user or a wrong password (the last two cost the same
 * hash work). logname gets the name sent, escaped for a log line, or "-". */
const char *auth_check(const struct auth *a, const char *value, size_t len,
		       char logname[AUTH_LOGNAME_MAX]);

/* Read a password (no echo on a terminal) and print its crypt hash line.
 * Returns an exit status. */
int auth_hash_password(void);

#endif
