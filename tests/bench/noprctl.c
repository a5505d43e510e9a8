/* Linked into make bench's build/bench/tunneld-count only: prctl() does
 * nothing, so tunneld builds its seccomp filters (their instructions are
 * counted) but never installs them. valgrind's own system calls (its log,
 * its signal handling) are outside tunneld's allow-lists and would be
 * killed. Never in a tunneld that serves anyone. */
int prctl(int op, ...);

int prctl(int op, ...)
{
	(void)op;
	return 0;
}
