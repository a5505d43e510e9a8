#ifndef SANDBOX_H
#define SANDBOX_H

#include "config.h"

/* The seccomp-bpf stages of a connection's process (sandbox.c), each an
 * allow-list stacked on the ones before: what is allowed is what every
 * installed stage allows; anything else kills the process. */
enum sandbox_stage {
	SANDBOX_REQUEST,  /* files read: parse, authenticate, resolve, connect */
	SANDBOX_SPAWNER,  /* inetd mode: a request's, and fork for fresh processes */
	SANDBOX_SESSION,  /* a GET/POST tunnel session's holder, target connected */
	SANDBOX_RELAY,    /* target connected: move bytes, log, exit */
};

#if CONFIG_SANDBOX
/* Install stage st (after PR_SET_NO_NEW_PRIVS), unless it is the one
 * installed last. 0, or -1 when this kernel
 * (or qemu-user, or an architecture sandbox.c does not know) cannot filter
 * system calls: the process then goes on without, as before. */
int sandbox_enter(enum sandbox_stage st);
#else
static inline int sandbox_enter(enum sandbox_stage st) { (void)st; return -1; }
#endif

#endif
