/* Small configuration files, read whole into a caller's fixed buffer. */
#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "file.h"
#include "fmt.h"

static int text_fits(const char *text, size_t len, size_t cap, const char *name,
		     char *err, size_t errlen)
{
	if (len >= cap) {
		strfmt(err, errlen, "%s: larger than %zu bytes", name, cap - 1);
		return -1;
	}
	if (memchr(text, 0, len)) {
		strfmt(err, errlen, "%s: contains a NUL byte", name);
		return -1;
	}
	return 0;
}


ssize_t file_read(const char *path, int pipe_ok, char *buf, size_t cap, char *err,
		  size_t errlen)
{
	size_t len = 0;
	ssize_t n = 0;
	/* openat: musl's open() follows O_CLOEXEC with an fcntl(F_SETFD) for
	 * kernels before 2.6.23, a system call per file; openat() does not.
	 * O_NONBLOCK: a FIFO in a file's place is refused, never waited on in
	 * open() for a writer (a regular file reads as without). */
	int fd = openat(AT_FDCWD, path, O_RDONLY | O_CLOEXEC | O_NONBLOCK);
	struct stat st;

	if (fd < 0) {
		strfmt(err, errlen, "%s: %s", path, strerror(errno));
		return -1;
	}
	if (fstat(fd, &st) < 0 || !(S_ISREG(st.st_mode) || (pipe_ok && S_ISFIFO(st.st_mode)))) {
		strfmt(err, errlen, "%s: not a regular file", path);
		close(fd);
		return -1;
	}
	/* A pipe: what its writer sends, to the end (none: at once empty). */
	if (S_ISFIFO(st.st_mode))
		fcntl(fd, F_SETFL, 0);
	/* Up to cap bytes: a file that fills buf is one byte too large. */
	while (len < cap && (n = read(fd, buf + len, cap - len)) != 0) {
		if (n < 0 && errno != EINTR)
			break;
		if (n > 0)
			len += (size_t)n;
	}
	if (n < 0)
		strfmt(err, errlen, "%s: %s", path, strerror(errno));
	close(fd);
	if (n < 0 || text_fits(buf, len, cap, path, err, errlen) < 0)
		return -1;
	buf[len] = 0;
	return (ssize_t)len;
}

int file_text(char *buf, size_t cap, const char *name, const char *text, size_t len,
	      char *err, size_t errlen)
{
	if (!text)
		return file_read(name, 0, buf, cap, err, errlen) < 0 ? -1 : 0;
	if (text_fits(text, len, cap, name, err, errlen) < 0)
		return -1;
	memcpy(buf, text, len);
	buf[len] = 0;
	return 0;
}

char *text_line(char **rest)
{
	char *s = *rest, *nl;

	if (!s)
		return NULL;
	if ((nl = strchr(s, '\n')))
		*nl++ = 0;
	*rest = nl;
	return s;
}
