/* Small configuration files, read whole into a caller's fixed buffer. */
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/uio.h>
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


/* Spares (tunneld --listen) start by exec and open no file: the listener
 * keeps what it read in a memory file of records, a header, the path with
 * its NUL, then the text; a spare reads its files from there, the last
 * record of a path winning. */
struct rec {
	uint32_t plen, len;
	struct stat st;
};

static int keep_fd = -1;                /* the listener's records */
static const unsigned char *snap;       /* a spare's, mapped */
static size_t snap_len;

/* The last record of path in the snapshot into *out, its text at *text:
 * 1, or 0 for none. */
static int find(const char *path, struct rec *out, const char **text)
{
	size_t at = 0, plen = strlen(path) + 1;
	int found = 0;
	struct rec r;

	while (snap && snap_len - at >= sizeof r) {
		memcpy(&r, snap + at, sizeof r);
		if (r.plen > snap_len - at - sizeof r || r.len > snap_len - at - sizeof r - r.plen)
			break;
		if (r.plen == plen && !memcmp(snap + at + sizeof r, path, plen)) {
			found = 1;
			*out = r;
			*text = (const char *)snap + at + sizeof r + plen;
		}
		at += sizeof r + r.plen + r.len;
	}
	return found;
}

int file_keep(void)
{
	/* Only ever written through this descriptor, never opened again. */
	keep_fd = memfd_create("tunneld-files", MFD_CLOEXEC);
	if (keep_fd >= 0)
		(void)!fchmod(keep_fd, 0400);
	return keep_fd;
}

/* A record held back (file_keep_hold), pointing into its reader's buffer. */
static struct {
	int on, have;
	const char *path, *text;
	struct stat st;
	size_t len;
} held;

/* A record of path onto the memory file, or held. The file only grows (a
 * spare may have it mapped): after a record that could not be written
 * whole, which ends what spares read, no more. */
static void keep(const char *path, const struct stat *st, const char *text, size_t len)
{
	static int broken;
	struct rec r = { (uint32_t)strlen(path) + 1, (uint32_t)len, *st };
	struct iovec v[3] = { { &r, sizeof r }, { (void *)path, r.plen }, { (void *)text, len } };

	if (held.on) {
		held.have = 1;
		held.path = path;
		held.st = *st;
		held.text = text;
		held.len = len;
		return;
	}
	if (keep_fd >= 0 && !broken && writev(keep_fd, v, 3) != (ssize_t)(sizeof r + r.plen + len))
		broken = 1;
}

void file_keep_hold(void)
{
	held.on = 1;
	held.have = 0;
}

void file_keep_release(int ok)
{
	held.on = 0;
	if (ok && held.have)
		keep(held.path, &held.st, held.text, held.len);
	held.have = 0;
}

int file_kept(void)
{
	return keep_fd;
}

void file_keep_end(void)
{
	if (keep_fd >= 0)
		close(keep_fd);
	keep_fd = -1;
}

int file_snapshot(int fd)
{
	struct stat st;
	void *m;

	if (fstat(fd, &st) < 0)
		return -1;
	if (st.st_size) {
		m = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
		if (m == MAP_FAILED)
			return -1;
		snap = m;
		snap_len = (size_t)st.st_size;
	}
	close(fd);
	return 0;
}

void file_snapshot_end(void)
{
	if (snap)
		munmap((void *)snap, snap_len);
	snap = NULL;
}

int file_stat(const char *path, struct stat *st)
{
	const char *text;
	struct rec r;

	if (!find(path, &r, &text))
		return stat(path, st);
	*st = r.st;
	return 0;
}

ssize_t file_read(const char *path, int pipe_ok, char *buf, size_t cap, char *err,
		  size_t errlen)
{
	const char *text;
	struct rec r;
	size_t len = 0;
	ssize_t n = 0;
	int fd;
	struct stat st;

	if (find(path, &r, &text))
		return file_text(buf, cap, path, text, r.len, err, errlen) < 0 ? -1 : (ssize_t)r.len;
	/* openat: musl's open() follows O_CLOEXEC with an fcntl(F_SETFD) for
	 * kernels before 2.6.23, a system call per file; openat() does not.
	 * O_NONBLOCK: a FIFO in a file's place is refused, never waited on in
	 * open() for a writer (a regular file reads as without). */
	fd = openat(AT_FDCWD, path, O_RDONLY | O_CLOEXEC | O_NONBLOCK);
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
	keep(path, &st, buf, len);
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
