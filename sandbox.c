/* The syscall sandbox: seccomp-bpf allow-lists, one per stage of a
 * connection's process (sandbox.h), built at run time from the C library's
 * syscall numbers for the CPU it was compiled for.
 *
 * The kernel ABI's few constants are spelt here rather than taken from
 * <linux/seccomp.h>, <linux/filter.h> and <linux/audit.h>: musl toolchains
 * (Debian's musl-gcc, ours for routers) have no kernel headers, and these
 * numbers never change. */
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "log.h"
#include "sandbox.h"

#if CONFIG_SANDBOX

/* The architecture a filter checks first: another ABI of the same CPU
 * (i386 on x86_64, say) numbers its system calls differently. */
#if defined(__x86_64__) && !defined(__ILP32__)
#define ARCH 0xc000003eu        /* AUDIT_ARCH_X86_64 */
#elif defined(__aarch64__) && !defined(__AARCH64EB__)
#define ARCH 0xc00000b7u        /* AUDIT_ARCH_AARCH64 */
#elif defined(__arm__) && defined(__ARM_EABI__) && !defined(__ARMEB__)
#define ARCH 0x40000028u        /* AUDIT_ARCH_ARM */
#elif defined(__mips__) && defined(_ABIO32) && _MIPS_SIM == _ABIO32
#ifdef __MIPSEL__
#define ARCH 0x40000008u        /* AUDIT_ARCH_MIPSEL */
#else
#define ARCH 0x00000008u        /* AUDIT_ARCH_MIPS */
#endif
#elif defined(__i386__)
#define ARCH 0x40000003u        /* AUDIT_ARCH_I386 */
#elif defined(__riscv) && __riscv_xlen == 64
#define ARCH 0xc00000f3u        /* AUDIT_ARCH_RISCV64 */
#endif

#ifndef ARCH
int sandbox_enter(enum sandbox_stage st)
{
	(void)st;
	return -1;  /* a CPU whose numbers are not checked here */
}
#else

/* struct sock_filter, and the classic BPF instructions a filter needs. */
struct insn {
	uint16_t code;
	uint8_t jt, jf;
	uint32_t k;
};
struct prog {
	unsigned short len;
	struct insn *insns;
};
#define LD_ABS  0x20            /* BPF_LD | BPF_W | BPF_ABS */
#define JEQ     0x15            /* BPF_JMP | BPF_JEQ | BPF_K */
#define JGE     0x35            /* BPF_JMP | BPF_JGE | BPF_K */
#define JSET    0x45            /* BPF_JMP | BPF_JSET | BPF_K */
#define AND     0x54            /* BPF_ALU | BPF_AND | BPF_K */
#define RET     0x06            /* BPF_RET | BPF_K */
#define ALLOW   0x7fff0000u     /* SECCOMP_RET_ALLOW */
#ifdef SANDBOX_DEBUG
#define DENY    0x00030000u     /* SECCOMP_RET_TRAP: SIGSYS, logged below */
#else
#define DENY    0x80000000u     /* SECCOMP_RET_KILL_PROCESS */
#endif
#define MODE_FILTER 2           /* SECCOMP_MODE_FILTER */
/* struct seccomp_data: nr, arch, then 64-bit arguments from offset 16,
 * whose low half comes last on a big-endian CPU. */
#define OFF_NR   0
#define OFF_ARCH 4
#if __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
#define OFF_ARG(i) (16 + 8 * (i) + 4)
#else
#define OFF_ARG(i) (16 + 8 * (i))
#endif
#define X32_BIT 0x40000000u

/* Calls some CPUs do not have (the 32-bit ones have the time64 and mmap2
 * variants; aarch64 and riscv64 have no open(2) nor fork(2)): -1, which
 * add() leaves out. */
#ifndef SYS_futex
#define SYS_futex -1
#endif
#ifndef SYS_futex_time64
#define SYS_futex_time64 -1
#endif
#ifndef SYS_open
#define SYS_open -1
#endif
#ifndef SYS_mmap
#define SYS_mmap -1
#endif
#ifndef SYS_mmap2
#define SYS_mmap2 -1
#endif
#ifndef SYS_fork
#define SYS_fork -1
#endif

/* Socket kinds per stage: a family, and the types it may have (bit T for
 * type T, SOCK_NONBLOCK and SOCK_CLOEXEC aside). */
struct kind {
	int family;
	unsigned types;
};
#define T(t) (1u << (t))

/* Every stage: moving bytes on the descriptors it has, time, memory,
 * signals, the end; and a datagram socket to /dev/log should the syslog
 * daemon have restarted (log.c). Names differ between CPUs: the 32-bit
 * ones have 64-bit variants (and musl calls the time64 ones), aarch64 has
 * no poll(2) nor fstat(2). */
static const int common_any[] = {
	SYS_read, SYS_write, SYS_readv, SYS_writev, SYS_close, SYS_sendto, SYS_recvfrom,
	SYS_shutdown, SYS_setsockopt, SYS_getsockopt, SYS_getsockname, SYS_getpeername,
	SYS_connect, SYS_getrandom, SYS_getpid, SYS_gettid, SYS_getuid, SYS_geteuid,
	SYS_getgid, SYS_getegid, SYS_exit, SYS_exit_group,
	SYS_rt_sigreturn, SYS_rt_sigaction, SYS_rt_sigprocmask, SYS_brk, SYS_munmap,
	SYS_mremap, SYS_madvise, SYS_fcntl, SYS_ppoll, SYS_restart_syscall,
	SYS_statx,
#ifdef SYS_fstat
	SYS_fstat,
#endif
#ifdef SYS_newfstatat
	SYS_newfstatat,
#endif
#ifdef SYS_fstat64
	SYS_fstat64, SYS_fstatat64,
#endif
#ifdef SYS_fcntl64
	SYS_fcntl64,
#endif
#ifdef SYS_poll
	SYS_poll,
#endif
#ifdef SYS_ppoll_time64
	SYS_ppoll_time64,
#endif
#ifdef SYS_clock_gettime
	SYS_clock_gettime,
#endif
#ifdef SYS_clock_gettime32  /* musl's name for it on 32-bit CPUs */
	SYS_clock_gettime32,
#endif
#ifdef SYS_clock_gettime64
	SYS_clock_gettime64,
#endif
#ifdef SYS_gettimeofday
	SYS_gettimeofday,
#endif
#ifdef SYS_sigreturn
	SYS_sigreturn,
#endif
#if defined(SYS_send) && defined(SYS_recv)
	SYS_send, SYS_recv,
#endif
};

/* The relay: splice(2) through a pipe (relay.c). */
static const int relay_any[] = { SYS_pipe2, SYS_splice };
static const struct kind relay_kinds[] = { { AF_UNIX, T(SOCK_DGRAM) } };

/* A session holder: its clients come and go over unix sockets (handed
 * over, handed on, sent for a fresh process). */
static const int session_any[] = { SYS_accept4, SYS_sendmsg, SYS_recvmsg };
static const struct kind session_kinds[] = {
	{ AF_UNIX, T(SOCK_DGRAM) | T(SOCK_SEQPACKET) },
};

/* A request: the files are read, and names are looked up by dns.c, which
 * reads resolv.conf and hosts and asks over UDP or TCP: no stage maps code.
 * Sockets to connect out, to look up names, to read this host's addresses
 * (netlink), to reach and name sessions. */
static const int request_any[] = {
	SYS_lseek, SYS_bind, SYS_listen, SYS_accept4, SYS_socketpair, SYS_sendmsg,
	SYS_recvmsg, SYS_sendmmsg, SYS_dup3, SYS_uname, SYS_pipe2, SYS_splice,
	SYS_epoll_pwait,  /* a spare's wait (spare.c), on what it set up before */
#ifdef SYS_epoll_wait
	SYS_epoll_wait,
#endif
#ifdef SYS__llseek
	SYS__llseek,
#endif
#ifdef SYS_dup2
	SYS_dup2,
#endif
};
static const struct kind request_kinds[] = {
	{ AF_UNIX, T(SOCK_STREAM) | T(SOCK_DGRAM) | T(SOCK_SEQPACKET) },
	{ AF_INET, T(SOCK_STREAM) | T(SOCK_DGRAM) },
	{ AF_INET6, T(SOCK_STREAM) | T(SOCK_DGRAM) },
	{ AF_NETLINK, T(SOCK_RAW) | T(SOCK_DGRAM) },
};

/* What a stage allows beyond common_any, and with which arguments. */
enum {
	S_FILES = 1,    /* open/openat with no write access, no creation;
			   ioctl(FIONREAD) */
	S_FORK = 2,     /* fork, clone as a plain fork, wait4 */
	S_STAGE = 4,    /* prctl: only what installs a further stage */
};
static const struct stage {
	const int *any;
	int nany;
	const struct kind *kinds;
	int nkinds;
	int flags;
} stages[] = {
#define STAGE(a, k, f) { a, sizeof a / sizeof *a, k, sizeof k / sizeof *k, f }
	[SANDBOX_REQUEST] = STAGE(request_any, request_kinds, S_FILES | S_STAGE),
	/* inetd mode's spawner (tunneld.c): a request's calls, and fork */
	[SANDBOX_SPAWNER] = STAGE(request_any, request_kinds, S_FILES | S_STAGE | S_FORK),
	[SANDBOX_SESSION] = STAGE(session_any, session_kinds, 0),
	[SANDBOX_RELAY] = STAGE(relay_any, relay_kinds, 0),
};

#define PROG_MAX 256           /* the longest stage, the spawner's, is 237 on x86_64 */
static struct insn prog[PROG_MAX];
static int plen;

static void emit(uint16_t code, uint32_t k, uint8_t jt, uint8_t jf)
{
	if (plen < PROG_MAX)
		prog[plen++] = (struct insn){ code, jt, jf, k };
	else
		plen++;  /* counted: too long, and never installed */
}

/* Allow if the argument, under mask, is one of vals; else deny. */
static void emit_arg_in(int arg, uint32_t mask, const uint32_t *vals, int n)
{
	emit(LD_ABS, OFF_ARG(arg), 0, 0);
	if (mask != ~0u)
		emit(AND, mask, 0, 0);
	for (int i = 0; i < n; i++) {
		emit(JEQ, vals[i], 0, 1);
		emit(RET, ALLOW, 0, 0);
	}
	emit(RET, DENY, 0, 0);
}

/* Allow if the argument has none of bits; else deny. */
static void emit_arg_none(int arg, uint32_t bits)
{
	emit(LD_ABS, OFF_ARG(arg), 0, 0);
	emit(JSET, bits, 0, 1);
	emit(RET, DENY, 0, 0);
	emit(RET, ALLOW, 0, 0);
}

/* socket(family, type, protocol): a kind of the stage's. */
static void emit_socket(const struct kind *k, int n)
{
	for (int i = 0; i < n; i++) {
		uint32_t types[8];
		int nt = 0;

		for (int t = 0; t < 8; t++)
			if (k[i].types & T(t))
				types[nt++] = (uint32_t)t;
		emit(LD_ABS, OFF_ARG(0), 0, 0);
		emit(JEQ, (uint32_t)k[i].family, 0, (uint8_t)(3 + 2 * nt));
		emit_arg_in(1, 0xf, types, nt);
	}
	emit(RET, DENY, 0, 0);
}

/* The calls a stage allows: a bit each, by number from the CPU's first
 * (MIPS o32 counts from 4000), with what checks its arguments (CHECK_NONE:
 * none); in order of number for the search build() emits. */
#if defined(__mips__)
#define NR_BASE 4000
#else
#define NR_BASE 0
#endif
#define NR_SPAN 512
#define CALLS_MAX 96
struct calls {
	uint64_t set[NR_SPAN / 64];
	unsigned char check[NR_SPAN];
	int nr[CALLS_MAX], n;
};

static void add(struct calls *l, int nr, int check)
{
	unsigned k = (unsigned)(nr - NR_BASE);

	if (nr < 0)
		return;  /* a call this CPU does not have */
	if (k >= NR_SPAN) {
		plen = PROG_MAX + 1;  /* never installed */
		return;
	}
	/* One number, two names: a check of its arguments wins. */
	if (!(l->set[k / 64] & 1ull << k % 64) || check)
		l->check[k] = (unsigned char)check;
	l->set[k / 64] |= 1ull << k % 64;
}

/* The numbers, ascending, into l->nr. */
static void order(struct calls *l)
{
	l->n = 0;
	for (unsigned w = 0; w < NR_SPAN / 64; w++)
		for (uint64_t b = l->set[w]; b; b &= b - 1) {
			if (l->n == CALLS_MAX) {
				plen = PROG_MAX + 1;  /* never installed */
				return;
			}
			l->nr[l->n++] = NR_BASE + (int)(w * 64 + (unsigned)__builtin_ctzll(b));
		}
}

static void rdonly_1(const void *a) { (void)a; emit_arg_none(1, O_WRONLY | O_RDWR | O_CREAT | O_TRUNC | O_APPEND); }
static void rdonly_2(const void *a) { (void)a; emit_arg_none(2, O_WRONLY | O_RDWR | O_CREAT | O_TRUNC | O_APPEND); }
static void noexec(const void *a) { (void)a; emit_arg_none(2, PROT_EXEC); }
static void forks(const void *a)
{
	(void)a;
	emit_arg_none(0, CLONE_VM | CLONE_THREAD | CLONE_FS | CLONE_FILES | CLONE_SIGHAND |
			 CLONE_NEWNS | CLONE_NEWUSER | CLONE_NEWNET | CLONE_NEWPID);
}
static void stage_prctl(const void *a)
{
	static const uint32_t ops[] = { PR_SET_NO_NEW_PRIVS, PR_SET_SECCOMP };

	(void)a;
	emit_arg_in(0, ~0u, ops, 2);
}
/* glibc's pthread_once and locks, single-threaded: wait and wake only. */
static void futex_ops(const void *a)
{
	static const uint32_t ops[] = { 0, 1 };  /* FUTEX_WAIT, FUTEX_WAKE */

	(void)a;
	emit_arg_in(1, 0x7f, ops, 2);  /* FUTEX_PRIVATE_FLAG aside */
}
/* glibc's resolver asks how long an answer is, and nothing else. */
static void fionread(const void *a)
{
	static const uint32_t ops[] = { FIONREAD };

	(void)a;
	emit_arg_in(1, ~0u, ops, 1);
}
static void sockets(const void *a)
{
	const struct stage *s = a;

	emit_socket(s->kinds, s->nkinds);
}

enum { CHECK_NONE, CHECK_SOCKET, CHECK_FUTEX, CHECK_IOCTL, CHECK_OPENAT, CHECK_OPEN, CHECK_MAP,
       CHECK_PRCTL, CHECK_CLONE };
static void (*const checks[])(const void *) = {
	[CHECK_SOCKET] = sockets, [CHECK_FUTEX] = futex_ops, [CHECK_IOCTL] = fionread,
	[CHECK_OPENAT] = rdonly_2, [CHECK_OPEN] = rdonly_1, [CHECK_MAP] = noexec,
	[CHECK_PRCTL] = stage_prctl, [CHECK_CLONE] = forks,
};

/* A forward jump from at to to, in the 8 bits cBPF has for it. */
static uint8_t span(int at, int to)
{
	if (to - at - 1 > 255)
		plen = PROG_MAX + 1;
	return (uint8_t)(to - at - 1);
}

/* l->nr[lo..hi), the number in A: a binary search, each leaf a RET. The
 * kernel runs a filter once for every system call number when it installs
 * it (to learn which ones it may then let through unfiltered): with a
 * search that is a few instructions a number, with one compare after the
 * other it was the whole list, hundreds of microseconds for every process.
 * A number listed without a check gets hit, one not listed miss. */
static void emit_search(const struct calls *l, int lo, int hi, const struct stage *s,
			uint32_t hit, uint32_t miss)
{
	int at = plen;

	if (hi - lo > 3) {
		int mid = lo + (hi - lo) / 2;

		emit(JGE, (uint32_t)l->nr[mid], 0, 0);
		emit_search(l, lo, mid, s, hit, miss);
		if (at < PROG_MAX)
			prog[at].jt = span(at, plen);
		emit_search(l, mid, hi, s, hit, miss);
		return;
	}
	/* A few compares, the miss, the hit they share, then the checks of
	 * those whose arguments count. */
	for (int i = lo; i < hi; i++)
		emit(JEQ, (uint32_t)l->nr[i], 0, 0);
	emit(RET, miss, 0, 0);
	emit(RET, hit, 0, 0);
	for (int i = lo, shared = plen - 1; i < hi; i++) {
		int j = at + (i - lo), to = shared, check = l->check[l->nr[i] - NR_BASE];

		if (check) {
			to = plen;
			checks[check](s);
		}
		if (j < PROG_MAX)
			prog[j].jt = span(j, to);
	}
}

/* What stage st allows: its numbers, and the checks of their arguments. */
static void allowed(enum sandbox_stage st, struct calls *l)
{
	const struct stage *s = &stages[st];

	memset(l->set, 0, sizeof l->set);
	for (size_t i = 0; i < sizeof common_any / sizeof *common_any; i++)
		add(l, common_any[i], CHECK_NONE);
	for (int i = 0; i < s->nany; i++)
		add(l, s->any[i], CHECK_NONE);
	add(l, SYS_socket, CHECK_SOCKET);
	add(l, SYS_futex, CHECK_FUTEX);
	add(l, SYS_futex_time64, CHECK_FUTEX);
	if (s->flags & S_FILES) {
		add(l, SYS_ioctl, CHECK_IOCTL);
		add(l, SYS_openat, CHECK_OPENAT);
		add(l, SYS_open, CHECK_OPEN);
	}
	add(l, SYS_mprotect, CHECK_MAP);
	add(l, SYS_mmap, CHECK_MAP);
	add(l, SYS_mmap2, CHECK_MAP);
	if (s->flags & S_STAGE)
		add(l, SYS_prctl, CHECK_PRCTL);
	if (s->flags & S_FORK) {
		add(l, SYS_clone, CHECK_CLONE);
		add(l, SYS_set_robust_list, CHECK_NONE);  /* glibc's child, first */
		add(l, SYS_wait4, CHECK_NONE);
		add(l, SYS_fork, CHECK_NONE);
	}
}

/* Stage st on top of stage below, already installed: the kernel lets a call
 * through only if every filter does, so st's filter need only take away
 * what below allows and st does not, and check the arguments st checks
 * otherwise than below (its socket kinds). Listed: those numbers, each
 * refused (the hit) or checked; any other number passes this filter, and
 * below's decides. A fraction of st's own list: less for the kernel to
 * translate, compile and run through every number as it installs it. */
static void taken_away(enum sandbox_stage st, enum sandbox_stage below, struct calls *l)
{
	struct calls u;

	allowed(st, l);
	allowed(below, &u);
	for (unsigned k = 0; k < NR_SPAN; k++) {
		uint64_t bit = 1ull << k % 64;
		int in = (l->set[k / 64] & bit) != 0;

		if (!(u.set[k / 64] & bit))
			l->set[k / 64] &= ~bit;       /* below refuses it */
		else if (!in) {
			l->set[k / 64] |= bit;        /* refused */
			l->check[k] = CHECK_NONE;
		} else if (l->check[k] == u.check[k] &&
			 (l->check[k] != CHECK_SOCKET || stages[st].kinds == stages[below].kinds))
			l->set[k / 64] &= ~bit;       /* below's check is st's */
	}
}

/* The filter of stage st: the right ABI, then each system call the stage
 * allows; or, over the stage installed below it (-1: none), what st takes
 * away from below's. */
static int build(enum sandbox_stage st, int below)
{
	struct calls l;

	plen = 0;
	emit(LD_ABS, OFF_ARCH, 0, 0);
	emit(JEQ, ARCH, 1, 0);
	emit(RET, DENY, 0, 0);
	emit(LD_ABS, OFF_NR, 0, 0);
	if (ARCH == 0xc000003eu) {  /* x86_64: the x32 ABI, same arch, other numbers */
		emit(JSET, X32_BIT, 0, 1);
		emit(RET, DENY, 0, 0);
	}
	if (below < 0)
		allowed(st, &l);
	else
		taken_away(st, (enum sandbox_stage)below, &l);
	order(&l);
	if (below < 0)
		emit_search(&l, 0, l.n, &stages[st], ALLOW, DENY);
	else
		emit_search(&l, 0, l.n, &stages[st], DENY, ALLOW);
	return plen <= PROG_MAX ? 0 : -1;
}

#ifdef SANDBOX_DEBUG
/* A development aid (make CFLAGS+='-DSANDBOX_DEBUG="FILE"'): the refused
 * call's number appended to FILE before dying, instead of only in the
 * kernel's audit log. */
static int debug_fd = -1;

static void on_sigsys(int sig, siginfo_t *si, void *uc)
{
	char line[64];
	int n = snprintf(line, sizeof line, "%ld: system call %d refused\n", (long)getpid(),
			 si->si_syscall);

	(void)uc;
	(void)!write(debug_fd, line, (size_t)n);
	_exit(128 + sig);
}
#endif

int sandbox_enter(enum sandbox_stage st)
{
	static int no_new_privs;  /* set for good, and kept across fork */
	static int top = -1;      /* the stage installed last: again adds nothing */
	struct prog p = { 0, prog };

	if ((int)st == top)
		return 0;

	if (build(st, top) < 0) {
		logmsg(LOG_ERR, "sandbox: filter too long");
		return -1;
	}
	p.len = (unsigned short)plen;
#ifdef SANDBOX_DEBUG
	struct sigaction sa = { .sa_sigaction = on_sigsys, .sa_flags = SA_SIGINFO };
	sigaction(SIGSYS, &sa, NULL);
	if (debug_fd < 0)
		debug_fd = open(SANDBOX_DEBUG, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
#endif
	if (!no_new_privs && prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) == 0)
		no_new_privs = 1;
	if (!no_new_privs || prctl(PR_SET_SECCOMP, MODE_FILTER, &p, 0, 0) < 0) {
		logmsg(LOG_DEBUG, "sandbox: not installed: %s", strerror(errno));
		return -1;
	}
	top = (int)st;
	return 0;
}
#endif
#endif  /* CONFIG_SANDBOX */
