#ifndef FMT_H
#define FMT_H
#include <stdarg.h>
#include <stddef.h>

/* snprintf's contract for tunneld's own messages, without the C library's
 * printf (a tenth of a static build): the output always ends in a NUL when
 * size > 0, and the return value is the length the whole text would have,
 * so that `n >= size` means truncated. Only the conversions the code uses:
 * %s (NULL as "(null)"), %.*s, %c, %d, %u, %x with the sizes l, ll and z,
 * a zero-padded width for numbers (%08x) and %%. Anything else ends the
 * output there (the compiler's format check keeps the code from it). */
int strfmt(char *buf, size_t size, const char *f, ...) __attribute__((format(printf, 3, 4)));
int vstrfmt(char *buf, size_t size, const char *f, va_list ap)
	__attribute__((format(printf, 3, 0)));

/* Write the whole string to fd, as fputs() to an unbuffered stream would,
 * retrying on EINTR and short writes. 0, or -1 with errno. */
int fd_puts(int fd, const char *s);

#endif
