/* --user's lookup in the passwd file (user.h). */
#include <fcntl.h>
#include <string.h>
#include <unistd.h>

#include "user.h"

/* A decimal id below 2^32 - 1 ending at a ':': its value, p moved past
 * the ':'; or -1. */
static long long id_field(const char **p, const char *end)
{
	const char *d = *p;
	unsigned long long v = 0;

	while (d < end && *d >= '0' && *d <= '9' && v <= 0xffffffffULL)
		v = v * 10 + (unsigned)(*d++ - '0');
	if (d == *p || d == end || *d != ':' || v >= 0xffffffffULL)
		return -1;
	*p = d + 1;
	return (long long)v;
}

/* One line (no newline): 1 when it is name's, with its ids. */
static int user_line(const char *l, size_t len, const char *name, uid_t *uid, gid_t *gid)
{
	size_t nl = strlen(name);
	const char *end = l + len, *p;
	long long u, g;

	if (len <= nl || memcmp(l, name, nl) || l[nl] != ':')
		return 0;
	p = memchr(l + nl + 1, ':', len - nl - 1);  /* past the password field */
	if (!p)
		return 0;
	p++;
	if ((u = id_field(&p, end)) < 0 || (g = id_field(&p, end)) < 0)
		return 0;
	*uid = (uid_t)u;
	*gid = (gid_t)g;
	return 1;
}

int user_lookup(const char *path, const char *name, uid_t *uid, gid_t *gid)
{
	char buf[USER_LINE_MAX];
	size_t have = 0, total = 0;
	int found = 0, skipping = 0, fd;

	if (!name[0] || strchr(name, ':') || (fd = openat(AT_FDCWD, path, O_RDONLY | O_CLOEXEC)) < 0)
		return -1;
	/* Each pass reads at least one byte or ends: at most USER_FILE_MAX. */
	while (!found && total < USER_FILE_MAX) {
		ssize_t n = read(fd, buf + have, sizeof buf - have);
		char *line = buf, *nl;

		if (n <= 0)
			break;
		total += (size_t)n;
		have += (size_t)n;
		while (!found && (nl = memchr(line, '\n', have - (size_t)(line - buf)))) {
			found = !skipping && user_line(line, (size_t)(nl - line), name, uid, gid);
			skipping = 0;
			line = nl + 1;
		}
		have -= (size_t)(line - buf);
		memmove(buf, line, have);
		/* A line that fills the buffer: not one of ours; drop to its end. */
		if (have == sizeof buf) {
			skipping = 1;
			have = 0;
		}
	}
	if (!found && !skipping && have && total < USER_FILE_MAX)
		found = user_line(buf, have, name, uid, gid);  /* the last line, with no newline */
	close(fd);
	return found ? 0 : -1;
}
