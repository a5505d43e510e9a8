#ifndef SPARE_H
#define SPARE_H
#include <stddef.h>
#include <sys/socket.h>
#include <sys/types.h>

/* Spares (tunneld --listen and LISTEN_FDS): workers started ahead, each by
 * vfork() and exec of tunneld itself, so each has its own address space,
 * stack canary and random state. A spare reads its files from the
 * listener's snapshot (file.h), waits for a client on the listening
 * sockets, tells the listener when a client came, and serves that one
 * connection; the listener starts another. */

#define SPARES_MAX 64

struct handover;

/* The listener's side. Set up for count spares running argv (its own
 * command line) on the listening sockets fds, with chan the GET/POST
 * tunnel's channel (or -1) and scope the listener's: 0, or -1 with the
 * reason in err (then the listener forks per connection). */
int spares_start(const int *fds, int n, int chan, const char *scope, int count, char **argv,
		 char *err, size_t errlen);

/* The socket the spares report on, for poll(); -1 without spares. */
int spares_fd(void);

/* In a fork of the listener: its descriptors of the spares closed. */
void spares_close(void);

/* Start one spare if fewer than count wait: 1 started, 0 none needed, -1
 * with errno when it could not be. */
int spares_top_up(void);

/* Spares waiting now. */
int spares_idle(void);

/* Read the reports of spares that took a connection: how many. */
int spares_reports(void);

/* A child ended: 1 if it was a spare that never took a connection. */
int spares_ended(pid_t pid);

/* Pass connection fd, handed over with ho, on to a waiting spare: 0 (the
 * caller closes its fd), or -1 when none is free. */
int spares_pass(int fd, const struct handover *ho);

/* No more spares: the waiting ones end (one that took a connection serves
 * it), each reaped within a second; how many children that reaped. */
int spares_stop(void);

/* A spare's side. From the environment, the listener's description: the
 * listening sockets into fds (*n of them), the channel, snapshot and
 * scope; 1 if this process is a spare (named after argv0), 0 if none,
 * -1 if its listener is not its parent (it ended first). */
int spare_env(const char *argv0, int *fds, int *n, int *chan, int *snap, char *scope,
	      size_t scopelen);

/* Ready to wait on the listening sockets fds (n of them): before the
 * sandbox, which has no call to set that up. 0, or -1 with errno. */
int spare_wait_init(const int *fds, int n);

/* Wait for a client on the listening sockets or a connection the listener
 * passes on (*passed 1, with ho): its socket, a client's address in *peer.
 * When the listener ends or stops first, exit. */
int spare_wait(const int *fds, int n, struct sockaddr_storage *peer, socklen_t *plen,
	       struct handover *ho, int *passed);

#endif
