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

/* The listener's side of spares (tunneld --listen): from file_keep on,
 * every file read is kept, its path, stat and text, in a memory file; its
 * descriptor (-1: none, or keeping failed), also from file_kept, until
 * file_keep_end closes it. */
int file_keep(void);
int file_kept(void);
void file_keep_end(void);
/* What file_read keeps from hold on is held back, and kept at release
 * only if ok: a file that turns out bad (ticket keys read again) is none
 * for spares. Release before the text read changes. */
void file_keep_hold(void);
void file_keep_release(int ok);

/* A spare's side: the records on fd (which is closed) stand for the files
 * they name, to file_read and file_stat, until file_snapshot_end. 0 or -1. */
int file_snapshot(int fd);
void file_snapshot_end(void);

/* stat(2), or a snapshot's record of path. */
struct stat;
int file_stat(const char *path, struct stat *st);

/* The next line of the NUL-terminated text at *rest, its '\n' cut off and
 * *rest moved past it; NULL after the last. */
char *text_line(char **rest);

#endif
