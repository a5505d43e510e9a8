# libFuzzer targets for every parser, built with clang, ASan and UBSan.
# `make fuzz` runs each for FUZZ_TIME seconds (default 300); `make check`
# runs each for 15. New inputs go to build/fuzz/corpus/NAME; the committed
# seeds in tests/fuzz/seeds/NAME are read, never written. A crash stops the
# run and leaves crash-* beside the Makefile.
FUZZ_TIME ?= 300
FUZZERS = http reply acl auth sni dns proxyproto
FUZZ_BINS = $(addprefix build/fuzz/fuzz_,$(FUZZERS))
FUZZ_CFLAGS = -g -O1 -std=c11 -D_GNU_SOURCE -I. -fsanitize=fuzzer,address,undefined \
	-fno-sanitize-recover=undefined

build/fuzz/fuzz_http: tests/fuzz/fuzz_http.c tests/fuzz/head.h http.c fmt.c $(HDRS) | deps-fuzz
	@mkdir -p $(@D)
	clang $(FUZZ_CFLAGS) -o $@ tests/fuzz/fuzz_http.c http.c fmt.c
build/fuzz/fuzz_reply: tests/fuzz/fuzz_reply.c tests/fuzz/head.h http.c fmt.c $(HDRS) | deps-fuzz
	@mkdir -p $(@D)
	clang $(FUZZ_CFLAGS) -o $@ tests/fuzz/fuzz_reply.c http.c fmt.c
build/fuzz/fuzz_acl: tests/fuzz/fuzz_acl.c acl.c net.c file.c http.c fmt.c $(HDRS) | deps-fuzz
	@mkdir -p $(@D)
	clang $(FUZZ_CFLAGS) -o $@ tests/fuzz/fuzz_acl.c acl.c net.c file.c http.c fmt.c
build/fuzz/fuzz_auth: tests/fuzz/fuzz_auth.c auth.c file.c fmt.c $(HDRS) | deps-fuzz
	@mkdir -p $(@D)
	clang $(FUZZ_CFLAGS) -o $@ tests/fuzz/fuzz_auth.c file.c fmt.c -lcrypt
build/fuzz/fuzz_sni: tests/fuzz/fuzz_sni.c sni.c $(HDRS) | deps-fuzz
	@mkdir -p $(@D)
	clang $(FUZZ_CFLAGS) -o $@ tests/fuzz/fuzz_sni.c sni.c
build/fuzz/fuzz_dns: tests/fuzz/fuzz_dns.c dns.c net.c fmt.c http.c $(HDRS) | deps-fuzz
	@mkdir -p $(@D)
	clang $(FUZZ_CFLAGS) -o $@ tests/fuzz/fuzz_dns.c dns.c net.c fmt.c http.c
build/fuzz/fuzz_proxyproto: tests/fuzz/fuzz_proxyproto.c proxyproto.c net.c http.c fmt.c $(HDRS) | deps-fuzz
	@mkdir -p $(@D)
	clang $(FUZZ_CFLAGS) -o $@ tests/fuzz/fuzz_proxyproto.c proxyproto.c net.c http.c fmt.c

deps-fuzz:
	@sh scripts/deps.sh clang

fuzz: $(FUZZ_BINS)
	@for f in $(FUZZERS); do mkdir -p build/fuzz/corpus/$$f; \
		build/fuzz/fuzz_$$f -max_total_time=$(FUZZ_TIME) -print_final_stats=1 \
			build/fuzz/corpus/$$f tests/fuzz/seeds/$$f > build/fuzz/$$f.log 2>&1; st=$$?; \
		echo "fuzz_$$f: $(FUZZ_TIME) s, exit $$st," \
			$$(grep -E '^stat::(number_of_executed_units|new_units_added)' build/fuzz/$$f.log | tr '\n' ' '); \
		test $$st -eq 0 || { grep -A30 -E '==ERROR|runtime error|deadly signal' build/fuzz/$$f.log | head -60; exit 1; }; \
	done

fuzz-smoke:
	$(MAKE) fuzz FUZZ_TIME=20

.PHONY: fuzz fuzz-smoke deps-fuzz
