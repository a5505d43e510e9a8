#ifndef USER_H
#define USER_H
#include <sys/types.h>

/* The passwd file --user reads; a -D hook for a packager's other path. */
#ifndef USER_PASSWD
#define USER_PASSWD "/etc/passwd"
#endif

/* The uid and gid of the user called name in the passwd file at path,
 * read here rather than by getpwnam(), whose nscd client, stdio and malloc
 * cost a small static build some 8 KiB. The first line "name:pw:uid:gid:"
 * counts; lines longer than USER_LINE_MAX bytes are skipped and the file
 * is read up to USER_FILE_MAX bytes. A uid or gid of 4294967295, (uid_t)-1
 * ("no change" to setuid), is no user. 0 found, -1 not (or unreadable). */
#define USER_LINE_MAX 1024
#define USER_FILE_MAX (4 << 20)
int user_lookup(const char *path, const char *name, uid_t *uid, gid_t *gid);

#endif
