#ifndef FILE_H
#define FILE_H
#include <stddef.h>
#include <sys/types.h>

/* Whether len bytes of text fit a buffer of cap bytes with its NUL and hold
 * no NUL of their own: 0, or -1 with "name: why" in err. */
int text_fits(const char *text, size_t len, size_t cap, const char *name,
	      char *err, size_t errlen);

/* Copy text into buf under the same rules, NUL-terminated. 0 or -1. */
int text_copy(char *buf, size_t cap, const char *text, size_t len, const char *name,
	      char *err, size_t errlen);

/* Read the file at path into buf (cap bytes), NUL-terminated, under the
 * same rules. Its length, or -1 with "path: why" in err. */
ssize_t file_read(const char *path, char *buf, size_t cap, char *err, size_t errlen);

#endif
