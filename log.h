#ifndef LOG_H
#define LOG_H
#include <syslog.h>

/* One funnel for every message. The sink is chosen once at start: syslog
 * (the default: in inetd mode stderr is the client's socket) or stderr. */
enum log_sink { LOG_TO_SYSLOG, LOG_TO_STDERR };

void log_open(enum log_sink sink, int verbose);
void logmsg(int prio, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#endif
