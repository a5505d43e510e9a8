/* Basic authentication (RFC 7617) against a flat file of crypt(3) hashes. */
#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <string.h>
#include <sys/random.h>
#include <termios.h>
#include <unistd.h>
#if __has_include(<crypt.h>)
#include <crypt.h>
#endif

#include "auth.h"
#include "file.h"
#include "config.h"
#include "fmt.h"

#if AUTH_OWN_CRYPT
/* musl's own hash functions, compiled in by the static build because the
 * C library it links has no crypt(3); only the kinds auth.c accepts. */
char *__crypt_blowfish(const char *key, const char *setting, char *out);
char *__crypt_sha256(const char *key, const char *setting, char *out);
char *__crypt_sha512(const char *key, const char *setting, char *out);

static char *hash_with(const char *key, const char *setting)
{
	static char out[128];

	if (!strncmp(setting, "$2", 2))
		return __crypt_blowfish(key, setting, out);
	if (!strncmp(setting, "$5$", 3))
		return __crypt_sha256(key, setting, out);
	if (!strncmp(setting, "$6$", 3))
		return __crypt_sha512(key, setting, out);
	return NULL;
}

/* Those files write their "$5$rounds=N$salt$" prefix with sprintf(), the
 * one call that would bring the C library's printf into a build that has
 * none: this sprintf takes its place, on the bounded formatter, for the
 * conversions they use (%s, %.*s, %u). What they print is at most 38 bytes
 * (a 16-byte salt, rounds below 10^9) into buffers of 20 and 128 bytes; 64
 * bounds it all the same. */
int sprintf(char *restrict buf, const char *restrict f, ...)
{
	va_list ap;
	int n;

	va_start(ap, f);
	n = vstrfmt(buf, 64, f, ap);
	va_end(ap);
	return n < 64 ? n : 63;
}

/* And their one strtoul(): the N of "rounds=N$", after they checked that
 * a digit comes first. Decimal, as they ask for it; saturating, as
 * strtoul() does on overflow (they refuse anything over 999999999).
 * musl's would bring its whole number scanner, 1.5 KiB. */
unsigned long strtoul(const char *restrict s, char **restrict end, int base)
{
	unsigned long v = 0;

	(void)base;
	for (; *s >= '0' && *s <= '9'; s++)
		v = v > (ULONG_MAX - 9) / 10 ? ULONG_MAX : v * 10 + (unsigned long)(*s - '0');
	if (end)
		*end = (char *)s;
	return v;
}
#else
#define hash_with crypt
#endif

/* Default cost of --hash-password: see the README's measurements. */
#define HASH_PREFIX "$5$rounds=5000$"

static int fail(char *err, size_t errlen, const char *name, int line, const char *why)
{
	strfmt(err, errlen, "%s:%d: %s", name, line, why);
	return -1;
}

/* Which hashes are accepted: bcrypt, SHA-256 and SHA-512 crypt. DES cuts
 * passwords at 8 bytes and MD5 crypt is fast to brute-force: refused. */
static const char *hash_problem(const char *h)
{
	if (!strncmp(h, "$2b$", 4) || !strncmp(h, "$2y$", 4) ||
	    !strncmp(h, "$5$", 3) || !strncmp(h, "$6$", 3))
		return strlen(h) < 20 ? "hash too short" : NULL;
	if (!strncmp(h, "$1$", 3) || !strncmp(h, "$apr1$", 6))
		return "MD5 crypt hashes are refused (weak): make a new one with --hash-password";
	if (h[0] != '$')
		return "DES crypt or clear-text passwords are refused: make a hash with --hash-password";
	return "unknown hash kind: use $2b$/$2y$ (bcrypt), $5$ or $6$ (SHA crypt)";
}

int auth_load(struct auth *a, const char *name, const char *text, size_t len,
	      char *err, size_t errlen)
{
	char *s, *rest = a->text;
	int line = 0;

	if (file_text(a->text, sizeof a->text, name, text, len, err, errlen) < 0)
		return -1;
	a->nusers = 0;
	while ((s = text_line(&rest))) {
		char *colon, *end;
		const char *why;

		line++;
		end = s + strlen(s);
		if (end > s && end[-1] == '\r')
			*--end = 0;
		if (!s[strspn(s, " \t")] || s[strspn(s, " \t")] == '#')
			continue;  /* blank, or a comment */
		if (!(colon = strchr(s, ':')))
			return fail(err, errlen, name, line, "not 'user:hash'");
		*colon = 0;
		if (colon == s || colon - s > AUTH_USER_MAX)
			return fail(err, errlen, name, line, "user name empty or longer than 64 bytes");
		for (const char *c = s; *c; c++)
			if ((unsigned char)*c < 0x20 || *c == 0x7f)
				return fail(err, errlen, name, line, "control character in user name");
		/* htpasswd may append fields after the hash: the hash ends at ':'. */
		colon[1 + strcspn(colon + 1, ": \t")] = 0;
		if ((why = hash_problem(colon + 1)))
			return fail(err, errlen, name, line, why);
		for (int i = 0; i < a->nusers; i++)
			if (!strcmp(a->users[i].user, s))
				return fail(err, errlen, name, line, "user listed twice");
		if (a->nusers == AUTH_USERS_MAX)
			return fail(err, errlen, name, line, "too many users");
		a->users[a->nusers].user = s;
		a->users[a->nusers++].hash = colon + 1;
	}
	return 0;
}

static int b64val(int c)
{
	if (c >= 'A' && c <= 'Z') return c - 'A';
	if (c >= 'a' && c <= 'z') return c - 'a' + 26;
	if (c >= '0' && c <= '9') return c - '0' + 52;
	if (c == '+') return 62;
	if (c == '/') return 63;
	return -1;
}

/* Strict base64: whole quanta, '=' only as the final padding. The decoded
 * length, or -1. */
static int b64decode(const char *s, size_t len, unsigned char *out, size_t max)
{
	size_t o = 0;

	if (len == 0 || len % 4)
		return -1;
	for (size_t i = 0; i < len; i += 4) {
		int v[4], pad = 0;

		for (int k = 0; k < 4; k++) {
			v[k] = b64val(s[i + k]);
			if (s[i + k] == '=' && i + 4 == len && k >= 2 && (k == 3 || s[i + 3] == '=')) {
				v[k] = 0;
				pad++;
			} else if (v[k] < 0) {
				return -1;
			}
		}
		if (o + 3 > max)
			return -1;
		out[o++] = (unsigned char)(v[0] << 2 | v[1] >> 4);
		out[o++] = (unsigned char)(v[1] << 4 | v[2] >> 2);
		out[o++] = (unsigned char)(v[2] << 6 | v[3]);
		o -= (size_t)pad;
		/* Bits the padding hides must be zero: one spelling per value. */
		if ((pad == 1 && (v[2] & 3)) || (pad == 2 && (v[1] & 15)))
			return -1;
	}
	return (int)o;
}

/* Well-formed UTF-8 without control characters (RFC 7617 §2). */
static int valid_text(const unsigned char *s, size_t n)
{
	for (size_t i = 0; i < n;) {
		unsigned c = s[i], need, min, cp;

		if (c < 0x20 || c == 0x7f)
			return 0;
		if (c < 0x80) {
			i++;
			continue;
		}
		if (c >= 0xc2 && c <= 0xdf) { need = 1; min = 0x80; cp = c & 0x1f; }
		else if (c >= 0xe0 && c <= 0xef) { need = 2; min = 0x800; cp = c & 0x0f; }
		else if (c >= 0xf0 && c <= 0xf4) { need = 3; min = 0x10000; cp = c & 0x07; }
		else return 0;
		if (i + need >= n)
			return 0;
		for (unsigned k = 1; k <= need; k++) {
			if ((s[i + k] & 0xc0) != 0x80)
				return 0;
			cp = cp << 6 | (s[i + k] & 0x3f);
		}
		if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
			return 0;
		i += need + 1;
	}
	return 1;
}

static int ct_equal(const char *a, const char *b)
{
	size_t la = strlen(a), lb = strlen(b);
	unsigned char d = la != lb;

	for (size_t i = 0; i < la && i < lb; i++)
		d |= (unsigned char)(a[i] ^ b[i]);
	return d == 0;
}

/* For the log line: bytes outside a plain set become %XX, so a user name
 * can neither break the logfmt line nor forge fields. */
static void log_name(char *out, size_t max, const unsigned char *s, size_t n)
{
	static const char hex[] = "0123456789ABCDEF";
	size_t o = 0;

	for (size_t i = 0; i < n; i++) {
		int plain = (s[i] >= 'a' && s[i] <= 'z') || (s[i] >= 'A' && s[i] <= 'Z') ||
			    (s[i] >= '0' && s[i] <= '9') || (s[i] && strchr("._@-+", s[i]));

		if (o + (plain ? 1 : 3) >= max)
			break;
		if (plain) {
			out[o++] = (char)s[i];
		} else {
			out[o++] = '%';
			out[o++] = hex[s[i] >> 4];
			out[o++] = hex[s[i] & 15];
		}
	}
	out[o] = 0;
}

/* What checking a password against hash costs, roughly in microseconds of
 * one core: bcrypt doubles with each step of its cost, SHA crypt grows with
 * its rounds (5000 unless the hash says). Only the order matters. */
static unsigned long long hash_cost(const char *hash)
{
	unsigned long long rounds = 5000;

	if (hash[1] == '2') {  /* "$2b$NN$"; anything else fails at once */
		int c = hash[4] >= '0' && hash[4] <= '3' && hash[5] >= '0' && hash[5] <= '9' ?
			(hash[4] - '0') * 10 + (hash[5] - '0') : 0;

		return c >= 4 && c <= 31 ? (1ULL << c) * 60 : 0;
	}
	if (!strncmp(hash + 3, "rounds=", 7)) {
		rounds = 0;
		for (const char *d = hash + 10; *d >= '0' && *d <= '9' && rounds < 1000000000; d++)
			rounds = rounds * 10 + (unsigned long long)(*d - '0');
	}
	return rounds * (hash[1] == '6' ? 10 : 6) / 10;
}

/* The hash an unknown user is checked against: the costliest in the file,
 * so that no user's name answers faster than any other's. */
static const char *costliest(const struct auth *a)
{
	const char *worst = "$5$x$";

	for (int k = 0; k < a->nusers; k++)
		if (hash_cost(a->users[k].hash) > hash_cost(worst))
			worst = a->users[k].hash;
	return worst;
}

const char *auth_check(const struct auth *a, const char *value, size_t len,
		       char logname[AUTH_LOGNAME_MAX])
{
	unsigned char dec[3 * 128 + 3];
	const char *hash = NULL, *user = NULL, *r;
	size_t i = 0;
	int n, ok;
	unsigned char *colon;

	strcpy(logname, "-");
	/* The scheme is a case-insensitive token, then one or more spaces. */
	if (!value || len < 6 || strncasecmp(value, "Basic", 5) || value[5] != ' ')
		return NULL;
	for (i = 5; i < len && value[i] == ' '; i++)
		;
	n = b64decode(value + i, len - i, dec, sizeof dec - 1);
	if (n < 0 || !(colon = memchr(dec, ':', (size_t)n)) || !valid_text(dec, (size_t)n) ||
	    colon == dec || colon - dec > AUTH_USER_MAX) {
		explicit_bzero(dec, sizeof dec);
		return NULL;
	}
	*colon = 0;
	dec[n] = 0;
	log_name(logname, AUTH_LOGNAME_MAX, dec, (size_t)(colon - dec));
	for (int k = 0; k < a->nusers; k++)
		if (!strcmp(a->users[k].user, (char *)dec)) {
			user = a->users[k].user;
			hash = a->users[k].hash;
		}
	/* An unknown user is checked against a real hash all the same, the
	 * costliest, so the time taken does not tell which user names exist. */
	r = hash_with((char *)colon + 1, hash ? hash : costliest(a));
	ok = hash && r && r[0] == '$' && ct_equal(r, hash);
	explicit_bzero(dec, sizeof dec);
	return ok ? user : NULL;
}

int auth_hash_password(void)
{
	static const char salt_chars[] =
		"./0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
	unsigned char rnd[16];
	char pw[256], setting[64], msg[96];
	struct termios t, quiet;
	int tty = tcgetattr(0, &t) == 0;
	ssize_t n;
	size_t len = 0;
	const char *h;

	if (tty) {
		quiet = t;
		quiet.c_lflag &= ~(tcflag_t)ECHO;
		tcsetattr(0, TCSAFLUSH, &quiet);
		(void)fd_puts(2, "Password: ");
	}
	while (len < sizeof pw - 1 && (n = read(0, pw + len, sizeof pw - 1 - len)) > 0) {
		len += (size_t)n;
		if (memchr(pw, '\n', len))
			break;
	}
	if (tty) {
		tcsetattr(0, TCSAFLUSH, &t);
		(void)fd_puts(2, "\n");
	}
	pw[len] = 0;
	if (!memchr(pw, '\n', len) && len == sizeof pw - 1) {
		explicit_bzero(pw, sizeof pw);
		strfmt(msg, sizeof msg, "tunneld: the password is longer than %zu bytes\n", sizeof pw - 2);
		(void)fd_puts(2, msg);
		return 64;
	}
	pw[strcspn(pw, "\r\n")] = 0;
	if (!pw[0] || !valid_text((unsigned char *)pw, strlen(pw))) {
		explicit_bzero(pw, sizeof pw);
		(void)fd_puts(2, "tunneld: the password must be non-empty UTF-8 text on one line\n");
		return 64;
	}
	if (getrandom(rnd, sizeof rnd, 0) != sizeof rnd) {
		explicit_bzero(pw, sizeof pw);
		strfmt(msg, sizeof msg, "tunneld: getrandom: %s\n", strerror(errno));
		(void)fd_puts(2, msg);
		return 1;
	}
	n = strfmt(setting, sizeof setting, "%s", HASH_PREFIX);
	for (size_t k = 0; k < sizeof rnd; k++)
		setting[n++] = salt_chars[rnd[k] & 63];
	setting[n] = 0;
	h = hash_with(pw, setting);
	explicit_bzero(pw, sizeof pw);
	if (!h || h[0] != '$') {
		(void)fd_puts(2, "tunneld: crypt failed\n");
		return 1;
	}
	(void)fd_puts(1, h);
	(void)fd_puts(1, "\n");
	return 0;
}
