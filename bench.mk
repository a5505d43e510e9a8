# bench.mk: `make bench`, not part of `make check`. tunneld (the static
# build, with --listen and under systemd-socket-activate --inetd) against
# tinyproxy, squid, a reference splice relay and a direct connection, side
# by side on loopback: throughput each way, connection setup, memory per
# idle tunnel, binary size. tests/bench/bench.py says what each number is.
# Included by the top Makefile.

BENCH_BINS = tests/bench/blast tests/bench/refrelay build/bench/tunneld-count
BENCH_DEPS = tinyproxy squid systemd-socket-activate:systemd valgrind strace openssl

# The load generator and target: C, so that the client is not the limit.
tests/bench/blast: tests/bench/blast.c
	$(CC) -O2 $(XCFLAGS) -pthread -o $@ $<
# Static musl as tunneld-static is, so both exec alike under inetd.
tests/bench/refrelay: tests/bench/refrelay.c | deps-static
	musl-gcc -O2 -static $(XCFLAGS) -o $@ $<

# For valgrind's instruction counts only (tests/bench/costs.py):
# tunneld-static's code and flags with prctl() a no-op (noprctl.c says why).
build/bench/tunneld-count: $(SRCS) $(HDRS) $(MUSL_LIBS) $(MUSL_SPECS) tests/bench/noprctl.c | deps-static
	@mkdir -p build/bench
	$(MUSL_CC) $(STATIC_FLAGS) $(TLS_CFLAGS) $(MUSL_DEFS) -o $@ $(SRCS) tests/bench/noprctl.c $(MUSL_LIBS)

# The compared servers, installed when missing (scripts/deps.sh); the
# bench starts its own, on loopback, with its own config files.
deps-bench:
	@sh scripts/deps.sh $(BENCH_DEPS)

bench: deps-bench tunneld-static tunnel-static $(BENCH_BINS)
	$(PYTHON) tests/bench/bench.py

clean: clean-bench
clean-bench:
	rm -f $(BENCH_BINS)

.PHONY: bench deps-bench clean-bench
