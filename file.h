#ifndef FILE_H
#define FILE_H
#include <stddef.h>
#include <sys/types.h>

/* Read the file at path into buf (cap bytes), NUL-terminated: it must fit
 * with its NUL and hold no NUL of its own. Its length, or -1 with
 * "path: why" in err. Only a regular file, never a wait in open() for a
 * FIFO's writer; with pipe_ok a pipe too (a client's `<(command)`), read
 * to its end. */
ssize_t file_read(const char *path, int pipe_ok, char *buf, size_t cap, char *err,
		  size_t errlen);

/* A configuration's text into buf under the same rules: len bytes of text,
 * or with text NULL the file at name. 0, or -1 with "name: why" in err. */
int file_text(char *buf, size_t cap, const char *name, const char *text, size_t len,
	      char *err, size_t errlen);

/* The next line of the NUL-terminated text at *rest, its '\n' cut off and
 * *rest moved past it; NULL after the last. */
char *text_line(char **rest);

#endif
