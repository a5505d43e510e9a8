/* The bounded formatter (fmt.h): one pass over the format, every byte
 * counted, stored only while it fits. */
#include <errno.h>
#include <limits.h>
#include <string.h>
#include <unistd.h>

#include "fmt.h"

struct out {
	char *buf;
	size_t size, len;
};

static void put(struct out *o, const char *s, size_t n)
{
	if (o->len + 1 < o->size) {
		size_t room = o->size - 1 - o->len;

		memcpy(o->buf + o->len, s, n < room ? n : room);
	}
	o->len += n;
}

/* v in base 10 or 16, at least width digits (zeros before), '-' first
 * when neg. 20 digits hold any 64-bit value; width is capped to the buffer. */
static void put_num(struct out *o, unsigned long long v, int neg, unsigned base, int width)
{
	char d[32];
	size_t n = 0;

	do {
		d[sizeof d - 1 - n++] = "0123456789abcdef"[v % base];
		v /= base;
	} while (v);
	while ((int)n < width - neg && n < sizeof d - 1)
		d[sizeof d - 1 - n++] = '0';
	if (neg)
		d[sizeof d - 1 - n++] = '-';
	put(o, d + sizeof d - n, n);
}

/* One integer conversion: its size (0 int, 1 long, 2 long long, 3 size_t)
 * and whether it is signed decide which argument type is read. */
static void put_int(struct out *o, va_list *ap, int size, char conv, int width)
{
	unsigned long long u;
	long long s = 0;

	if (conv == 'd') {
		s = size == 0 ? va_arg(*ap, int) : size == 1 ? va_arg(*ap, long) :
		    size == 2 ? va_arg(*ap, long long) : (long long)va_arg(*ap, size_t);
		u = s < 0 ? 0 - (unsigned long long)s : (unsigned long long)s;
	} else {
		u = size == 0 ? va_arg(*ap, unsigned) : size == 1 ? va_arg(*ap, unsigned long) :
		    size == 2 ? va_arg(*ap, unsigned long long) : va_arg(*ap, size_t);
	}
	put_num(o, u, s < 0, conv == 'x' ? 16 : 10, width);
}

/* %s, or %.*s with prec >= 0: at most prec bytes, which need no NUL. */
static void put_str(struct out *o, const char *s, int prec)
{
	if (!s)
		s = "(null)";
	put(o, s, prec < 0 ? strlen(s) : strnlen(s, (size_t)prec));
}

int vstrfmt(char *buf, size_t size, const char *f, va_list ap)
{
	struct out o = { buf, size, 0 };
	va_list aq;

	va_copy(aq, ap);
	while (*f) {
		const char *pct = strchr(f, '%');
		int width = 0, prec = -1, lsize = 0;
		char c;

		if (!pct) {
			put(&o, f, strlen(f));
			break;
		}
		put(&o, f, (size_t)(pct - f));
		f = pct + 1;
		if (f[0] == '.' && f[1] == '*') {
			prec = va_arg(aq, int);
			f += 2;
		}
		for (; *f >= '0' && *f <= '9' && width < 100; f++)
			width = width * 10 + (*f - '0');
		for (; *f == 'l' && lsize < 2; f++)
			lsize++;
		if (*f == 'z') {
			lsize = 3;
			f++;
		}
		c = *f++;
		if (c == 's')
			put_str(&o, va_arg(aq, const char *), prec);
		else if (c == 'c') {
			char ch = (char)va_arg(aq, int);

			put(&o, &ch, 1);
		} else if (c == 'd' || c == 'u' || c == 'x')
			put_int(&o, &aq, lsize, c, width);
		else if (c == '%')
			put(&o, "%", 1);
		else
			break;  /* not one of ours (or the format's end): stop here */
	}
	va_end(aq);
	if (size)
		buf[o.len < size ? o.len : size - 1] = 0;
	return o.len > INT_MAX ? INT_MAX : (int)o.len;
}

int strfmt(char *buf, size_t size, const char *f, ...)
{
	va_list ap;
	int n;

	va_start(ap, f);
	n = vstrfmt(buf, size, f, ap);
	va_end(ap);
	return n;
}

int fd_puts(int fd, const char *s)
{
	size_t len = strlen(s), done = 0;

	/* Each pass writes at least one byte or fails: at most len passes,
	 * and a bounded number of interruptions. */
	for (int intr = 0; done < len && intr < 100;) {
		ssize_t n = write(fd, s + done, len - done);

		if (n < 0 && errno == EINTR) {
			intr++;
			continue;
		}
		if (n <= 0)
			return -1;
		done += (size_t)n;
	}
	return done < len ? -1 : 0;
}
