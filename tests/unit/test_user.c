/* --user's passwd reader on crafted files: the name matched whole, ids
 * range-checked, overlong and malformed lines skipped, a file longer than
 * the reader's buffer, a last line with no newline. */
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "check.h"
#include "user.h"

static char path[] = "/tmp/test_user.XXXXXX";

/* The file holds text; name's ids, or -1 -1 when not found. */
static void expect(const char *text, const char *name, long long uid, long long gid)
{
	FILE *f = fopen(path, "w");
	uid_t u = 12345;
	gid_t g = 12345;
	int r;

	fputs(text, f);
	fclose(f);
	r = user_lookup(path, name, &u, &g);
	if (uid < 0)
		CHECK(r == -1, "%s: found %u:%u, expected none", name, (unsigned)u, (unsigned)g);
	else
		CHECK(r == 0 && u == (uid_t)uid && g == (gid_t)gid, "%s: r=%d %u:%u, expected %lld:%lld",
		      name, r, (unsigned)u, (unsigned)g, uid, gid);
}

int main(void)
{
	static char big[3 * USER_LINE_MAX + 200000];
	size_t n = 0;
	int fd = mkstemp(path);

	if (fd < 0)
		return 1;
	close(fd);
	const char *sys = "root:x:0:0:root:/root:/bin/sh\n"
			  "daemon:*:1:1::/:/bin/false\n"
			  "nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n";
	expect(sys, "root", 0, 0);
	expect(sys, "daemon", 1, 1);
	expect(sys, "nobody", 65534, 65534);
	expect(sys, "nobod", -1, -1);      /* a prefix is not the name */
	expect(sys, "nobodyx", -1, -1);
	expect(sys, "", -1, -1);
	expect(sys, "x", -1, -1);          /* a field, not a name */
	expect(sys, "root:x", -1, -1);
	expect("tunneld:x:900:901:", "tunneld", 900, 901);  /* no newline at the end */
	expect("a:x:1:2\n", "a", -1, -1);                   /* no ':' after the gid */
	expect("a:x:1\n", "a", -1, -1);
	expect("a:x::2:\n", "a", -1, -1);                   /* empty uid */
	expect("a:x:+1:2:\n", "a", -1, -1);
	expect("a:x:1 :2:\n", "a", -1, -1);
	expect("a:x:4294967294:4294967294:\n", "a", 4294967294LL, 4294967294LL);
	expect("a:x:4294967295:1:\n", "a", -1, -1);         /* (uid_t)-1: no change */
	expect("a:x:1:4294967295:\n", "a", -1, -1);
	expect("a:x:99999999999999999999:1:\n", "a", -1, -1);
	expect("a:x:1:2:\na:x:3:4:\n", "a", 1, 2);          /* the first line counts */
	expect("b:x:5:5:\n\n#c\na:x:7:8:\n", "a", 7, 8);
	/* An overlong line that would match is skipped; the next one counts. */
	memset(big, 'g', USER_LINE_MAX + 10);
	memcpy(big, "a:x:1:1:", 8);
	strcpy(big + USER_LINE_MAX + 10, "\na:x:2:3:\n");
	expect(big, "a", 2, 3);
	/* The name at the end of a file many buffers long, lines across reads. */
	while (n < sizeof big - 100) {
		memcpy(big + n, "someone:x:10:10:Some One:/home:/bin/sh\n", 39);
		n += 39;
	}
	strcpy(big + n, "last:x:42:43::/:\n");
	expect(big, "last", 42, 43);
	expect(big, "someone", 10, 10);
	CHECK(user_lookup("/nonexistent/passwd", "root", &(uid_t){0}, &(gid_t){0}) == -1, "no file");
	unlink(path);
	return tally("test_user");
}
