#include <stdarg.h>
#include <stdio.h>
#include <unistd.h>

#include "log.h"

static enum log_sink sink = LOG_TO_SYSLOG;
static int verbose;

void log_open(enum log_sink s, int v)
{
	sink = s;
	verbose = v;
	if (sink == LOG_TO_SYSLOG)
		openlog("tunneld", LOG_PID | LOG_NDELAY, LOG_DAEMON);
}

void logmsg(int prio, const char *fmt, ...)
{
	char line[1024];
	va_list ap;
	int n;

	if (prio == LOG_DEBUG && !verbose)
		return;
	va_start(ap, fmt);
	n = vsnprintf(line, sizeof line, fmt, ap);
	va_end(ap);
	if (n < 0)
		return;
	if (sink == LOG_TO_SYSLOG) {
		syslog(prio, "%s", line);
		return;
	}
	/* One write per line so lines from concurrent children do not mix. */
	char out[1100];
	n = snprintf(out, sizeof out, "tunneld[%ld]: %s\n", (long)getpid(), line);
	if (n > 0)
		(void)!write(2, out, (size_t)n < sizeof out ? (size_t)n : sizeof out - 1);
}
