/* The syscall sandbox, two ways. The filters as built run through a small
 * classic-BPF interpreter here on made-up calls: that works on every CPU,
 * under qemu-user too (make check-cross), and checks the numbers, the
 * architecture word and where a 32-bit argument sits in seccomp_data on a
 * big-endian CPU. Then, where the kernel filters (not under qemu-user:
 * --no-kernel), each case forks, installs stages, makes one system call and
 * tells whether the process lived through it or was killed. */
#include <fcntl.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "check.h"
#include "../../sandbox.c"   /* its build() and prog[], run below */

/* struct seccomp_data as the kernel fills it: native words. */
struct data {
	int32_t nr;
	uint32_t arch;
	uint64_t ip;
	uint64_t args[6];
};

static int steps;  /* instructions the last verdict ran */

/* The verdict of stage st's filter on a call, built over stage below (-1:
 * alone): ALLOW, DENY, or 1 for a program this interpreter does not know
 * (a bug either way). */
static uint32_t verdict_over(enum sandbox_stage st, int below, uint32_t arch, int nr, uint64_t a0,
			     uint64_t a1, uint64_t a2)
{
	struct data d = { nr, arch, 0, { a0, a1, a2, 0, 0, 0 } };
	uint32_t a = 0;

	if (build(st, below) < 0)
		return 1;
	steps = 0;
	for (int pc = 0; pc < plen; pc++, steps++) {
		const struct insn *i = &prog[pc];

		switch (i->code) {
		case LD_ABS:
			if (i->k > sizeof d - 4)
				return 1;
			memcpy(&a, (const char *)&d + i->k, 4);
			break;
		case AND: a &= i->k; break;
		case JEQ: pc += a == i->k ? i->jt : i->jf; break;
		case JGE: pc += a >= i->k ? i->jt : i->jf; break;
		case JSET: pc += a & i->k ? i->jt : i->jf; break;
		case RET: return i->k;
		default: return 1;
		}
	}
	return 1;  /* ran off the end */
}

static uint32_t verdict(enum sandbox_stage st, uint32_t arch, int nr, uint64_t a0, uint64_t a1,
			uint64_t a2)
{
	return verdict_over(st, -1, arch, nr, a0, a1, a2);
}

static const struct {
	const char *what;
	enum sandbox_stage st;
	int nr;
	uint64_t a0, a1, a2;
	uint32_t expect;
} calls[] = {
	{ "read", SANDBOX_RELAY, SYS_read, 0, 0, 0, ALLOW },
	{ "exit_group", SANDBOX_RELAY, SYS_exit_group, 0, 0, 0, ALLOW },
	{ "execve", SANDBOX_REQUEST, SYS_execve, 0, 0, 0, DENY },
	{ "execve", SANDBOX_SPAWNER, SYS_execve, 0, 0, 0, DENY },
	{ "ptrace", SANDBOX_REQUEST, SYS_ptrace, 0, 0, 0, DENY },
	{ "TCP socket", SANDBOX_REQUEST, SYS_socket, AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, ALLOW },
	{ "TCP socket", SANDBOX_SESSION, SYS_socket, AF_INET, SOCK_STREAM, 0, DENY },
	{ "TCP socket", SANDBOX_RELAY, SYS_socket, AF_INET, SOCK_STREAM, 0, DENY },
	{ "raw socket", SANDBOX_REQUEST, SYS_socket, AF_INET, SOCK_RAW, 0, DENY },
	{ "log socket", SANDBOX_RELAY, SYS_socket, AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0, ALLOW },
	{ "unix stream", SANDBOX_RELAY, SYS_socket, AF_UNIX, SOCK_STREAM, 0, DENY },
	{ "seqpacket", SANDBOX_SESSION, SYS_socket, AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, ALLOW },
	{ "open read-only", SANDBOX_REQUEST, SYS_openat, AT_FDCWD, 0, O_RDONLY | O_CLOEXEC, ALLOW },
	{ "open to write", SANDBOX_REQUEST, SYS_openat, AT_FDCWD, 0, O_WRONLY, DENY },
	{ "open to create", SANDBOX_REQUEST, SYS_openat, AT_FDCWD, 0, O_RDONLY | O_CREAT, DENY },
	{ "open", SANDBOX_RELAY, SYS_openat, AT_FDCWD, 0, O_RDONLY, DENY },
	{ "map code", SANDBOX_RELAY, SYS_mprotect, 0, 4096, PROT_READ | PROT_EXEC, DENY },
	{ "map code", SANDBOX_REQUEST, SYS_mprotect, 0, 4096, PROT_READ | PROT_EXEC, DENY },
	{ "map code", SANDBOX_SPAWNER, SYS_mprotect, 0, 4096, PROT_READ | PROT_EXEC, DENY },
	{ "map data", SANDBOX_REQUEST, SYS_mprotect, 0, 4096, PROT_READ | PROT_WRITE, ALLOW },
	{ "memory size", SANDBOX_REQUEST, SYS_sysinfo, 0, 0, 0, DENY },
	{ "map data", SANDBOX_RELAY, SYS_mprotect, 0, 4096, PROT_READ | PROT_WRITE, ALLOW },
	{ "fork", SANDBOX_SPAWNER, SYS_clone, SIGCHLD, 0, 0, ALLOW },
	{ "thread", SANDBOX_SPAWNER, SYS_clone, CLONE_VM | CLONE_THREAD | CLONE_SIGHAND | SIGCHLD, 0, 0, DENY },
	{ "fork", SANDBOX_REQUEST, SYS_clone, SIGCHLD, 0, 0, DENY },
	{ "ioctl FIONREAD", SANDBOX_REQUEST, SYS_ioctl, 3, FIONREAD, 0, ALLOW },
	{ "ioctl TIOCSTI", SANDBOX_REQUEST, SYS_ioctl, 0, TIOCSTI, 0, DENY },
	{ "next stage", SANDBOX_REQUEST, SYS_prctl, PR_SET_SECCOMP, 2, 0, ALLOW },
	{ "prctl other", SANDBOX_REQUEST, SYS_prctl, PR_SET_DUMPABLE, 1, 0, DENY },
	{ "futex wake", SANDBOX_RELAY, SYS_futex, 0, 129, 1, ALLOW },
	{ "futex requeue", SANDBOX_RELAY, SYS_futex, 0, 3, 1, DENY },
};

/* Every number of a stage's plain lists is allowed, whatever the arguments;
 * every number below 1024 beyond them is refused; and each verdict is a
 * search, a few instructions, not a walk down the whole list (what the
 * kernel pays for every number when it installs a filter). */
static int listed(const int *l, size_t n, int nr)
{
	for (size_t i = 0; i < n; i++)
		if (l[i] == nr)
			return 1;
	return 0;
}

static void every_number(void)
{
	static const int checked[] = { SYS_socket, SYS_futex, SYS_futex_time64, SYS_ioctl, SYS_openat,
				       SYS_open, SYS_mprotect, SYS_mmap, SYS_mmap2, SYS_prctl,
				       SYS_clone, SYS_set_robust_list, SYS_wait4, SYS_fork };
	static const enum sandbox_stage sts[] = { SANDBOX_REQUEST, SANDBOX_SPAWNER, SANDBOX_SESSION,
						  SANDBOX_RELAY };
	int base = ARCH == 0x40000008u || ARCH == 0x00000008u ? 4000 : 0;  /* MIPS o32 */

	for (size_t k = 0; k < sizeof sts / sizeof *sts; k++) {
		const struct stage *s = &stages[sts[k]];
		int most = 0, bad = 0;

		for (int nr = base; nr < base + 1024; nr++) {
			uint32_t want = DENY, got;

			if (listed(common_any, sizeof common_any / sizeof *common_any, nr) ||
			    listed(s->any, (size_t)s->nany, nr))
				want = ALLOW;
			else if (listed(checked, sizeof checked / sizeof *checked, nr))
				continue;  /* the cases above */
			got = verdict(sts[k], ARCH, nr, 0, 0, 0);
			bad += got != want;
			if (got == want && steps > most)
				most = steps;
		}
		CHECK(!bad, "stage %d: %d numbers with the wrong verdict", (int)sts[k], bad);
		CHECK(most <= 16, "stage %d: a number takes %d instructions to its verdict",
		      (int)sts[k], most);
	}
}

/* A stage installed over another is built as what it takes away from the
 * one below (sandbox.c, taken_away()): stacked, the two must decide every
 * call as the two whole filters do, and the one on top be the shorter for
 * it. Every number, with the arguments of every case above. */
static void stacked(void)
{
	static const enum sandbox_stage pairs[][2] = {
		{ SANDBOX_REQUEST, SANDBOX_RELAY }, { SANDBOX_REQUEST, SANDBOX_SESSION },
		{ SANDBOX_SPAWNER, SANDBOX_REQUEST }, { SANDBOX_SPAWNER, SANDBOX_RELAY },
	};
	int base = ARCH == 0x40000008u || ARCH == 0x00000008u ? 4000 : 0;

	for (size_t p = 0; p < sizeof pairs / sizeof *pairs; p++) {
		enum sandbox_stage below = pairs[p][0], st = pairs[p][1];
		int bad = 0, whole, over;

		for (int nr = base; nr < base + 1024; nr++)
			for (size_t k = 0; k <= sizeof calls / sizeof *calls; k++) {
				uint64_t a0 = 0, a1 = 0, a2 = 0;

				if (k < sizeof calls / sizeof *calls)
					a0 = calls[k].a0, a1 = calls[k].a1, a2 = calls[k].a2;
				int lower = verdict(below, ARCH, nr, a0, a1, a2) == ALLOW;
				int both = lower && verdict(st, ARCH, nr, a0, a1, a2) == ALLOW;
				int got = lower && verdict_over(st, below, ARCH, nr, a0, a1, a2) == ALLOW;

				bad += got != both;
			}
		CHECK(!bad, "stage %d over %d: %d calls decided otherwise than by the whole filters",
		      (int)st, (int)below, bad);
		build(st, -1);
		whole = plen;
		build(st, (int)below);
		over = plen;
		CHECK(over * 2 <= whole, "stage %d over %d: %d instructions, %d alone", (int)st,
		      (int)below, over, whole);
	}
}

static void interpreted(void)
{
	every_number();
	stacked();
	for (size_t k = 0; k < sizeof calls / sizeof *calls; k++) {
		uint32_t got = verdict(calls[k].st, ARCH, calls[k].nr, calls[k].a0, calls[k].a1,
				       calls[k].a2);

		CHECK(got == calls[k].expect, "stage %d, %s: verdict %#x", (int)calls[k].st,
		      calls[k].what, got);
	}
	/* Another ABI's numbers mean other calls: refused whatever they are. */
	CHECK(verdict(SANDBOX_REQUEST, ARCH ^ 0x80000000u, SYS_read, 0, 0, 0) == DENY,
	      "a foreign architecture's read");
#ifdef __x86_64__
	CHECK(verdict(SANDBOX_REQUEST, ARCH, 0x40000000 | SYS_read, 0, 0, 0) == DENY, "x32 read");
#endif
}

enum { LIVES, KILLED };

static void do_write(void) { (void)!write(1, "", 0); }
static void do_read_file(void) { close(open("/dev/null", O_RDONLY)); }
static void do_write_file(void) { close(open("/dev/null", O_WRONLY)); }
static void do_create(void) { close(open("/tmp/tunneld-sandbox-create", O_RDONLY | O_CREAT, 0600)); }
static void do_tcp(void) { close(socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0)); }
static void do_udp6(void) { close(socket(AF_INET6, SOCK_DGRAM, 0)); }
static void do_raw(void) { close(socket(AF_INET, SOCK_RAW, 1)); }
static void do_packet(void) { close(socket(17 /* AF_PACKET */, SOCK_DGRAM, 0)); }
static void do_netlink(void) { close(socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, 0)); }
static void do_unix_stream(void) { close(socket(AF_UNIX, SOCK_STREAM, 0)); }
static void do_unix_dgram(void) { close(socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0)); }
static void do_unix_seq(void) { close(socket(AF_UNIX, SOCK_SEQPACKET, 0)); }
/* As session.c calls it: musl turns accept4(..., 0) into accept(2). */
static void do_accept(void) { (void)accept4(-1, NULL, NULL, SOCK_CLOEXEC); }
static void do_exec(void)
{
	char *av[] = { "true", NULL };

	execv("/bin/true", av);
}
static void do_fork(void)
{
	if (fork() == 0)
		_exit(0);  /* reaped by init: the spawner never waits either */
}
static void do_map(void)
{
	void *m = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);

	munmap(m, 4096);
}
static void do_map_exec(void)
{
	void *m = mmap(NULL, 4096, PROT_READ | PROT_EXEC, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);

	munmap(m, 4096);
}
static void do_prctl_seccomp(void) { (void)prctl(PR_SET_SECCOMP, 2, NULL, 0, 0); }
static void do_ptrace(void) { (void)syscall(SYS_ptrace, 0, 0, 0, 0); }
static void do_kill(void) { (void)kill(getppid(), 0); }
#ifdef __x86_64__
static void do_x32(void) { (void)syscall(0x40000000 | SYS_getpid); }
#endif

static const struct {
	const char *what;
	int stages[3];  /* installed in turn; -1 ends */
	void (*call)(void);
	int expect;
} cases[] = {
#define R SANDBOX_REQUEST
#define S SANDBOX_SESSION
#define L SANDBOX_RELAY
#define P SANDBOX_SPAWNER
	{ "request: write", { R, -1 }, do_write, LIVES },
	{ "request: open read-only", { R, -1 }, do_read_file, LIVES },
	{ "request: open for writing", { R, -1 }, do_write_file, KILLED },
	{ "request: open O_CREAT", { R, -1 }, do_create, KILLED },
	{ "request: TCP socket", { R, -1 }, do_tcp, LIVES },
	{ "request: UDP6 socket", { R, -1 }, do_udp6, LIVES },
	{ "request: netlink socket", { R, -1 }, do_netlink, LIVES },
	{ "request: unix stream", { R, -1 }, do_unix_stream, LIVES },
	{ "request: raw socket", { R, -1 }, do_raw, KILLED },
	{ "request: packet socket", { R, -1 }, do_packet, KILLED },
	{ "request: exec", { R, -1 }, do_exec, KILLED },
	{ "request: fork", { R, -1 }, do_fork, KILLED },
	{ "request: ptrace", { R, -1 }, do_ptrace, KILLED },
	{ "request: kill", { R, -1 }, do_kill, KILLED },
	{ "request: next stage", { R, -1 }, do_prctl_seccomp, LIVES },
	{ "request: map data", { R, -1 }, do_map, LIVES },
	{ "request: map code", { R, -1 }, do_map_exec, KILLED },
#ifdef __x86_64__
	{ "request: x32 ABI", { R, -1 }, do_x32, KILLED },
#endif
	{ "spawner: fork", { P, -1 }, do_fork, LIVES },
	{ "spawner: exec", { P, -1 }, do_exec, KILLED },
	{ "spawner: map code", { P, -1 }, do_map_exec, KILLED },
	{ "spawner, request: fork", { P, R, -1 }, do_fork, KILLED },
	{ "session: unix seqpacket", { R, S, -1 }, do_unix_seq, LIVES },
	{ "session: accept", { R, S, -1 }, do_accept, LIVES },
	{ "session: TCP socket", { R, S, -1 }, do_tcp, KILLED },
	{ "session: open", { R, S, -1 }, do_read_file, KILLED },
	{ "session: map code", { R, S, -1 }, do_map_exec, KILLED },
	{ "relay: write", { R, L, -1 }, do_write, LIVES },
	{ "relay: map data", { R, L, -1 }, do_map, LIVES },
	{ "relay: map code", { R, L, -1 }, do_map_exec, KILLED },
	{ "relay: log socket", { R, L, -1 }, do_unix_dgram, LIVES },
	{ "relay: unix stream", { R, L, -1 }, do_unix_stream, KILLED },
	{ "relay: TCP socket", { R, L, -1 }, do_tcp, KILLED },
	{ "relay: open", { R, L, -1 }, do_read_file, KILLED },
	{ "relay: accept", { R, L, -1 }, do_accept, KILLED },
	{ "relay: next stage", { R, L, -1 }, do_prctl_seccomp, KILLED },
	{ "relay alone: TCP socket", { L, -1 }, do_tcp, KILLED },
};

/* LIVES, KILLED, or -1 when a stage would not install. */
static int outcome(int k)
{
	int status;
	pid_t p = fork();

	if (p == 0) {
		for (int i = 0; i < 3 && cases[k].stages[i] >= 0; i++)
			if (sandbox_enter((enum sandbox_stage)cases[k].stages[i]) < 0)
				_exit(3);
		cases[k].call();
		_exit(0);
	}
	if (p < 0 || waitpid(p, &status, 0) != p)
		return -1;
	if (WIFEXITED(status) && WEXITSTATUS(status) == 0)
		return LIVES;
	/* Killed by the kernel; SANDBOX_DEBUG builds exit 128 + SIGSYS. */
	if ((WIFSIGNALED(status) && WTERMSIG(status) == SIGSYS) ||
	    (WIFEXITED(status) && WEXITSTATUS(status) == 128 + SIGSYS))
		return KILLED;
	return -1;
}

int main(int argc, char **argv)
{
	interpreted();
	if (argc > 1 && !strcmp(argv[1], "--no-kernel"))
		return tally("test_sandbox (interpreted)");
	for (size_t k = 0; k < sizeof cases / sizeof *cases; k++) {
		int got = outcome((int)k);

		CHECK(got == cases[k].expect, "%s: %s, expected %s", cases[k].what,
		      got == LIVES ? "lives" : got == KILLED ? "killed" : "no sandbox",
		      cases[k].expect == LIVES ? "lives" : "killed");
	}
	unlink("/tmp/tunneld-sandbox-create");
	return tally("test_sandbox");
}
