/* The log funnel. syslog lines go straight to /dev/log as "<PRI>tunneld[PID]:
 * msg": the C library's syslog() would read the time zone in every
 * connection's process only to stamp a time the syslog daemon stamps too. */
#include <stdarg.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "fmt.h"
#include "log.h"

static enum log_sink sink = LOG_TO_STDERR;
static int verbose;
static int logfd = -1;

static void connect_log(void)
{
	struct sockaddr_un sun = { .sun_family = AF_UNIX, .sun_path = "/dev/log" };

	if (logfd < 0)
		logfd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	if (logfd >= 0 && connect(logfd, (struct sockaddr *)&sun, sizeof sun) < 0) {
		close(logfd);
		logfd = -1;
	}
}

void log_open(enum log_sink s, int v)
{
	sink = s;
	verbose = v;
	if (sink == LOG_TO_SYSLOG)
		connect_log();
}

void logmsg(int prio, const char *fmt, ...)
{
	char line[1100];
	va_list ap;
	int n, head;

	if (prio == LOG_DEBUG && !verbose)
		return;
	if (sink == LOG_TO_SYSLOG)
		head = strfmt(line, sizeof line, "<%d>tunneld[%ld]: ", LOG_DAEMON | prio, (long)getpid());
	else
		head = strfmt(line, sizeof line, "tunneld[%ld]: ", (long)getpid());
	va_start(ap, fmt);
	n = vstrfmt(line + head, sizeof line - (size_t)head - 1, fmt, ap);
	va_end(ap);
	if (n < 0)
		return;
	n = head + (n < (int)(sizeof line - (size_t)head - 1) ? n : (int)(sizeof line - (size_t)head - 2));
	if (sink == LOG_TO_STDERR) {
		line[n++] = '\n';  /* one write per line: children's lines do not mix */
		(void)!write(2, line, (size_t)n);
		return;
	}
	/* The daemon may have restarted since: reconnect once. */
	if (logfd < 0 || send(logfd, line, (size_t)n, MSG_NOSIGNAL) < 0) {
		connect_log();
		if (logfd >= 0)
			(void)!send(logfd, line, (size_t)n, MSG_NOSIGNAL);
	}
}
