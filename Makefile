# tunneld: `make` builds with the defaults (or .config), `make run` serves
# on 127.0.0.1:3128, `make check` installs what the tests need and runs them.

PREFIX ?= /usr/local
DESTDIR ?=
CC ?= cc
CFLAGS ?= -Os -g
WERROR ?= $(if $(CI),-Werror)
XCFLAGS = -std=c11 -D_GNU_SOURCE -Wall -Wextra -Wshadow -Wno-unused-parameter $(WERROR)
# Hardening, on every build of tunneld and tunnel (host, static, cross) and
# on the libraries linked into them: stack canaries, glibc's checked string
# and memory calls (musl has no _FORTIFY_SOURCE: there it does nothing),
# a read-only GOT after start-up, and a position-independent executable,
# -static-pie for the static builds. HARDEN= builds as before (no PIE when
# -fPIE is not in it). Fortify needs -O1 or more: a CFLAGS of -O0 wants HARDEN=.
HARDEN ?= -fstack-protector-strong -U_FORTIFY_SOURCE -D_FORTIFY_SOURCE=2 -fPIE \
	-Wl,-z,relro,-z,now
HARDEN_CC = $(filter-out -Wl%,$(HARDEN))
HARDEN_PIE = $(if $(filter -fPIE,$(HARDEN)),-pie)
HARDEN_STATIC = $(if $(filter -fPIE,$(HARDEN)),-static-pie,-static)
HOST_FLAGS = $(CFLAGS) $(XCFLAGS) $(HARDEN) $(HARDEN_PIE)
PYTHON ?= /usr/bin/python3

all: tunneld

# Kconfig's defaults, overridden by .config when there is one and then by
# CONFIG_*= on make's command line, become config.h for the C code and
# config.mk for this file. Both are made on every run and rewritten only
# when their text changes: adding, changing or removing .config, or a
# CONFIG_*= given or no longer given, rebuilds what depends on them, and
# nothing else. config.mk's values override the command line's, so that
# CONFIG_TLS=n and CONFIG_TLS=0 mean what config.h says.
CONFIG_SET := $(foreach v,$(filter CONFIG_%,$(.VARIABLES)),$(if $(filter command line,$(origin $(v))),$(v)=$($(v))))
config_make = t=$@.$$$$.tmp; awk -v fmt=$(1) -v set='$(CONFIG_SET)' -f scripts/config.awk Kconfig \
	$(wildcard .config) > $$t || { rm -f $$t; exit 1; }; cmp -s $$t $@ && rm $$t || mv $$t $@
config.h: Kconfig scripts/config.awk config-force
	@$(call config_make,h)
config.mk: Kconfig scripts/config.awk config-force
	@$(call config_make,mk)
.PHONY: config-force
include config.mk
include mbedtls.mk
include musl.mk
include busybox.mk
include dist.mk
include openwrt.mk

CORE_SRCS = tunneld.c dns.c http.c acl.c net.c relay.c sni.c log.c file.c fmt.c user.c opt.c sandbox.c spare.c
TUNNEL_SERVER_SRCS = session.c spawn.c
SRCS = $(CORE_SRCS)
ifeq ($(CONFIG_HTTP_TUNNEL),1)
SRCS += $(TUNNEL_SERVER_SRCS)
endif
HDRS = $(wildcard *.h) config.h $(HARDEN_STAMP)
# The hardening flags last used, rewritten when they change, so that a
# different HARDEN rebuilds every binary (and nothing else does).
HARDEN_STAMP = .harden.flags
$(HARDEN_STAMP): harden-force
	@mkdir -p $(@D)
	@echo '$(HARDEN)' | cmp -s - $@ || echo '$(HARDEN)' > $@
ifeq ($(CONFIG_PROXY_PROTOCOL),1)
SRCS += proxyproto.c
endif
ifeq ($(CONFIG_UPSTREAM),1)
SRCS += upstream.c
endif
ifeq ($(CONFIG_AUTH),1)
SRCS += auth.c
HOST_LIBS += -lcrypt
MUSL_LIBS += $(MUSL_CRYPT)
MUSL_DEFS = -DAUTH_OWN_CRYPT=1
endif
# SYSTEM_MBEDTLS=1 links the system's mbedTLS (OpenWrt's libmbedtls), 3.6.6
# or newer (tls.c stops the build on an older one), instead of building one
# with the project's config.
ifeq ($(SYSTEM_MBEDTLS),1)
MBEDTLS_HOST_LIBS = -lmbedtls -lmbedx509 -lmbedcrypto
MBEDTLS_CFLAGS = -DTUNNELD_SYSTEM_MBEDTLS
endif
# Without tickets mbedTLS is built without its resumption code as well
# (mbedtls_config.h), and tls.c compiled against that same configuration.
ifeq ($(CONFIG_TLS_TICKETS)$(SYSTEM_MBEDTLS),0)
MBEDTLS_CFLAGS += -DTUNNELD_TLS_TICKETS=0
endif
ifeq ($(CONFIG_TLS),1)
SRCS += tls.c
TLS_CFLAGS = $(MBEDTLS_CFLAGS)
HOST_LIBS += $(MBEDTLS_HOST_LIBS)
MUSL_LIBS += $(MBEDTLS_MUSL_LIBS)
endif

# Linked beside and renamed: a running tunneld keeps its old file.
tunneld: $(SRCS) $(HDRS) $(filter %.a,$(HOST_LIBS))
	$(CC) $(HOST_FLAGS) $(TLS_CFLAGS) $(LDFLAGS) -o $@.new $(SRCS) $(HOST_LIBS) && mv $@.new $@

# A static, stripped musl binary: what goes on a router (musl.mk).
static: tunneld-static
tunneld-static: $(SRCS) $(HDRS) $(MUSL_LIBS) $(MUSL_SPECS) | deps-static
	@mkdir -p $(DEBUG_DIR)
	$(MUSL_CC) $(STATIC_FLAGS) $(TLS_CFLAGS) $(MUSL_DEFS) -o $(DEBUG_DIR)/$@ $(SRCS) $(MUSL_LIBS)
	$(static_strip)
	@ls -l $@ | awk '{ print "tunneld-static: " $$5 " bytes" }'
$(filter %.a,$(MUSL_LIBS)): | deps-static

# tunnel, the client (Kconfig CLIENT): the parts of tunneld it shares, and
# mbedTLS as tunneld links it.
TUNNEL_SRCS = tunnel.c tunnel_connect.c tunnel_http.c http.c net.c relay.c file.c fmt.c
ifeq ($(CONFIG_TLS),1)
TUNNEL_SRCS += tls.c
TUNNEL_HOST_LIBS = $(MBEDTLS_HOST_LIBS)
TUNNEL_MUSL_LIBS = $(MBEDTLS_MUSL_LIBS)
endif
ifeq ($(CONFIG_CLIENT),1)
all: tunnel
static: tunnel-static
install: install-tunnel
endif
tunnel: $(TUNNEL_SRCS) $(HDRS) $(filter %.a,$(TUNNEL_HOST_LIBS))
	$(CC) $(HOST_FLAGS) $(TLS_CFLAGS) $(LDFLAGS) -o $@.new $(TUNNEL_SRCS) $(TUNNEL_HOST_LIBS) && mv $@.new $@
tunnel-static: $(TUNNEL_SRCS) $(HDRS) $(TUNNEL_MUSL_LIBS) $(MUSL_SPECS) | deps-static
	@mkdir -p $(DEBUG_DIR)
	$(MUSL_CC) $(STATIC_FLAGS) $(TLS_CFLAGS) -o $(DEBUG_DIR)/$@ $(TUNNEL_SRCS) $(TUNNEL_MUSL_LIBS)
	$(static_strip)
	@ls -l $@ | awk '{ print "tunnel-static: " $$5 " bytes" }'

# Every feature off: the smallest router build, and proof that each
# feature compiles out (the -D hooks of config.h override its defaults).
MIN_DEFS = -DCONFIG_AUTH=0 -DCONFIG_TLS=0 -DCONFIG_TLS_TICKETS=0 -DCONFIG_SPLICE=0 -DCONFIG_IPV6=0 -DCONFIG_HTTP_TUNNEL=0 \
	-DCONFIG_SANDBOX=0 -DCONFIG_PROXY_PROTOCOL=0 -DCONFIG_UPSTREAM=0
tunneld-min: $(CORE_SRCS) $(HDRS)
	$(CC) $(HOST_FLAGS) $(MIN_DEFS) -o $@ $(CORE_SRCS)
# One feature off at a time, for the checks of each alone.
tunneld-noauth: $(CORE_SRCS) $(TUNNEL_SERVER_SRCS) proxyproto.c upstream.c tls.c $(HDRS) $(MBEDTLS_HOST_LIBS)
	$(CC) $(HOST_FLAGS) $(MBEDTLS_CFLAGS) -DCONFIG_AUTH=0 -DCONFIG_TLS=1 \
		-DCONFIG_HTTP_TUNNEL=1 -o $@ $(CORE_SRCS) $(TUNNEL_SERVER_SRCS) proxyproto.c upstream.c tls.c $(MBEDTLS_HOST_LIBS)
tunneld-notls: $(CORE_SRCS) $(TUNNEL_SERVER_SRCS) proxyproto.c upstream.c auth.c $(HDRS)
	$(CC) $(HOST_FLAGS) -DCONFIG_AUTH=1 -DCONFIG_TLS=0 -DCONFIG_HTTP_TUNNEL=1 -o $@ \
		$(CORE_SRCS) $(TUNNEL_SERVER_SRCS) proxyproto.c upstream.c auth.c -lcrypt
tunneld-min-static: $(CORE_SRCS) $(HDRS) $(MUSL_SPECS) | deps-static
	@mkdir -p $(DEBUG_DIR)
	$(MUSL_CC) $(STATIC_FLAGS) $(MIN_DEFS) -o $(DEBUG_DIR)/$@ $(CORE_SRCS)
	$(static_strip)
	@ls -l $@ | awk '{ print "tunneld-min-static: " $$5 " bytes" }'

# The fuzzers and make bench build from SRCS, HDRS and MUSL_LIBS, which a
# rule's prerequisites take as they stand where it is read: here, not above.
include fuzz.mk
include bench.mk

# Cross builds for aarch64, armhf, mipsel, mips and x86_64, static and dynamic, on musl,
# tested under qemu-user (make cross, check-cross).
include cross.mk

# Kconfig's front ends (kconfig-frontends), installed when missing; they
# read Kconfig and write .config, from which make regenerates config.h.
KCONFIG_CONF = kconfig-conf
deps-kconfig:
	@sh scripts/deps.sh kconfig-mconf:kconfig-frontends-nox
menuconfig: deps-kconfig
	kconfig-mconf Kconfig
defconfig: deps-kconfig
	$(KCONFIG_CONF) --alldefconfig Kconfig
oldconfig: deps-kconfig
	$(KCONFIG_CONF) --oldconfig Kconfig

run: tunneld
	./tunneld --listen 127.0.0.1:3128 --log stderr -v

# The sanitizer builds: AddressSanitizer and UBSan, every report fatal and
# logged under build/asan, where check-asan looks for them after the
# end-to-end tests. No leak check: a one-connection process ends with exit().
# No HARDEN here, nor in fuzz.mk: ASan's redzones check the stack and every
# buffer better than canaries and fortify, whose checked calls would hide
# the copies from ASan's interceptors; these builds are PIE by the compiler's
# default.
SAN_FLAGS = -g -O1 -fno-omit-frame-pointer -fsanitize=address,undefined -fno-sanitize-recover=all
SAN_ENV = ASAN_OPTIONS=log_path=$(CURDIR)/build/asan/asan:detect_leaks=0 \
	UBSAN_OPTIONS=log_path=$(CURDIR)/build/asan/ubsan:print_stacktrace=1
SAN_TESTS = tests/test_clients.py tests/test_relay.py tests/test_http_tunnel.py \
	tests/test_faults.py tests/test_nodes.py
# No sandbox either: ASan opens its report files, and its runtime makes
# calls no stage allows, which would kill the very process it reports on.
tunneld-asan: $(SRCS) $(HDRS) $(filter %.a,$(HOST_LIBS))
	$(CC) $(SAN_FLAGS) $(XCFLAGS) $(TLS_CFLAGS) -DCONFIG_SANDBOX=0 -o $@ $(SRCS) $(HOST_LIBS)
tunnel-asan: $(TUNNEL_SRCS) $(HDRS) $(filter %.a,$(TUNNEL_HOST_LIBS))
	$(CC) $(SAN_FLAGS) $(XCFLAGS) $(TLS_CFLAGS) -o $@ $(TUNNEL_SRCS) $(TUNNEL_HOST_LIBS)
check-asan: tunneld-asan tunnel-asan
	rm -rf build/asan && mkdir -p build/asan && chmod 1777 build/asan
	$(SAN_ENV) TUNNELD_TEST_DNS=127.0.0.81 TUNNELD=./tunneld-asan TUNNEL=./tunnel-asan \
		$(PYTEST) $(SAN_TESTS)
	@if [ -n "$$(ls build/asan)" ]; then head -50 build/asan/*; exit 1; fi; \
		echo "check-asan: no sanitizer report"

# valgrind's memcheck over a smaller end-to-end set (it runs each process
# some 30 times slower): every log must stay empty.
VALGRIND_TESTS = tests/test_clients.py tests/test_http_tunnel.py
check-valgrind: tunneld
	@sh scripts/deps.sh valgrind
	rm -rf build/valgrind && mkdir -p build/valgrind && chmod 1777 build/valgrind
	VALGRIND_LOG=$(CURDIR)/build/valgrind TUNNELD=tests/valgrind-tunneld \
		$(PYTHON) -m pytest -q $(VALGRIND_TESTS)
	@if [ -n "$$(find build/valgrind -type f -size +0)" ]; then \
		head -40 $$(find build/valgrind -type f -size +0); exit 1; fi; \
		echo "check-valgrind: $$(ls build/valgrind | wc -l) processes, no error"

TEST_BINS = tests/unit/test_http tests/unit/test_acl tests/unit/test_sni tests/unit/test_sandbox \
	tests/unit/test_fmt tests/unit/test_user tests/unit/test_opt tests/unit/test_dns \
	tests/unit/test_proxyproto
tests/unit/test_sandbox: tests/unit/test_sandbox.c sandbox.c log.c fmt.c $(HDRS)
	$(CC) $(HOST_FLAGS) -I. -o $@ tests/unit/test_sandbox.c log.c fmt.c
tests/unit/test_http: tests/unit/test_http.c http.c fmt.c $(HDRS)
	$(CC) $(HOST_FLAGS) -I. -o $@ tests/unit/test_http.c http.c fmt.c
tests/unit/test_acl: tests/unit/test_acl.c acl.c net.c file.c http.c fmt.c $(HDRS)
	$(CC) $(HOST_FLAGS) -I. -o $@ tests/unit/test_acl.c acl.c net.c file.c http.c fmt.c
tests/unit/test_proxyproto: tests/unit/test_proxyproto.c proxyproto.c net.c http.c fmt.c $(HDRS)
	$(CC) $(HOST_FLAGS) -I. -o $@ tests/unit/test_proxyproto.c proxyproto.c net.c http.c fmt.c
tests/unit/test_sni: tests/unit/test_sni.c sni.c $(HDRS)
	$(CC) $(HOST_FLAGS) -I. -o $@ tests/unit/test_sni.c sni.c
tests/unit/test_opt: tests/unit/test_opt.c opt.c $(HDRS)
	$(CC) $(HOST_FLAGS) -I. -o $@ tests/unit/test_opt.c opt.c
tests/unit/test_user: tests/unit/test_user.c user.c $(HDRS)
	$(CC) $(HOST_FLAGS) -I. -o $@ tests/unit/test_user.c user.c
tests/unit/test_dns: tests/unit/test_dns.c dns.c net.c fmt.c http.c $(HDRS)
	$(CC) $(HOST_FLAGS) -I. -o $@ tests/unit/test_dns.c dns.c net.c fmt.c http.c
tests/unit/test_fmt: tests/unit/test_fmt.c fmt.c net.c http.c $(HDRS)
	$(CC) $(HOST_FLAGS) -I. -o $@ tests/unit/test_fmt.c fmt.c net.c http.c

# What the tests use, installed when missing by scripts/deps.sh (Debian),
# which keeps the servers among them from starting system services.
DEPS = curl ncat nc:netcat-openbsd systemd-socket-activate:systemd \
	unshare:util-linux openssl htpasswd:apache2-utils musl-gcc:musl-tools chromium \
	kconfig-conf:kconfig-frontends-nox squid sshd:openssh-server ssh:openssh-client \
	inetd:openbsd-inetd tcpserver:ucspi-tcp shellcheck prlimit:util-linux haproxy \
	setpriv:util-linux stress-ng corkscrew proxytunnel connect-proxy proxychains4 elinks
# xinetd conflicts with openbsd-inetd: the tests run it from build/xinetd.
XINETD_DIR = build/xinetd
deps:
	@sh scripts/deps.sh $(DEPS) py:pytest:python3-pytest py:xdist:python3-pytest-xdist
	@sh scripts/deps.sh xinetd $(XINETD_DIR)

# make check: every build, then its lanes at once, each with its own test
# DNS address (tests/dnsserver.py) and its log (build/check/LANE.log,
# printed whole when the lane ends): the unit tests and 15 s of each
# fuzzer; the whole suite against the default build; the build with every
# feature off through the whole suite; the builds without auth and without
# TLS through the tests that apply to them; the static musl build (what
# routers run); the sanitizer build. Every lane runs to its end; the last
# lines are a line per lane and the total, "N passed, N failed"
# (scripts/check-summary.sh). Each pytest runs TEST_JOBS workers
# (pytest-xdist), each worker with its own DNS address too.
TEST_JOBS ?= 4
PYTEST = $(PYTHON) -m pytest -q -n $(TEST_JOBS)
CHECK_LANES = check-full check-min check-unit check-variants check-static check-asan
check: deps all static tunneld-min tunneld-noauth tunneld-notls $(TEST_BINS) $(FUZZ_BINS) \
		tunneld-asan tunnel-asan
	@rm -rf build/check && mkdir -p build/check
	@$(MAKE) --no-print-directory -k -O -j$(words $(CHECK_LANES)) \
		$(addprefix logged-,$(CHECK_LANES)); rc=$$?; sh scripts/check-summary.sh build/check; exit $$rc
logged-%:
	@$(MAKE) --no-print-directory $* > build/check/$*.log 2>&1; rc=$$?; \
		cat build/check/$*.log; exit $$rc
check-full: all
	$(PYTEST) tests
check-unit: $(TEST_BINS) $(FUZZ_BINS)
	@for t in $(TEST_BINS); do ./$$t || exit 1; done
	$(MAKE) --no-print-directory fuzz FUZZ_TIME=15
check-min: tunneld-min
	TUNNELD_TEST_DNS=127.0.0.78 TUNNELD=./tunneld-min $(PYTEST) tests --ignore=tests/test_load.py
check-variants: tunneld-noauth tunneld-notls
	for b in noauth notls; do TUNNELD_TEST_DNS=127.0.0.79 TUNNELD=./tunneld-$$b $(PYTEST) \
		tests/test_cli.py $(wildcard tests/test_auth.py) tests/test_tls_proxy.py || exit 1; done
check-static: static
	TUNNELD_TEST_DNS=127.0.0.80 TUNNELD=./tunneld-static TUNNEL=./tunnel-static $(PYTEST) \
		tests/test_clients.py tests/test_relay.py $(wildcard tests/test_auth.py) \
		tests/test_tls_proxy.py tests/test_http_tunnel.py tests/test_tunnel_client.py \
		tests/test_session_attacks.py

# The launcher files of contrib/ go with the documentation, naming the
# installed binary ($(PREFIX)/sbin/tunneld).
DOCDIR = $(PREFIX)/share/doc/tunneld
EXAMPLES = inetd.conf xinetd.d/tunneld tcpserver.run tunneld.socket tunneld@.service \
	tunneld-accept-no.socket tunneld-accept-no.service rules.example \
	clients/ssh_config clients/apt.conf clients/gitconfig clients/curlrc clients/proxy.pac \
	clients/proxychains4.conf clients/elinks.conf haproxy.cfg
install: tunneld
	install -d $(DESTDIR)$(PREFIX)/sbin $(DESTDIR)$(PREFIX)/share/man/man8
	install -m 755 tunneld $(DESTDIR)$(PREFIX)/sbin/tunneld
	install -m 644 tunneld.8 $(DESTDIR)$(PREFIX)/share/man/man8/tunneld.8
	for f in $(EXAMPLES); do d=$(DESTDIR)$(DOCDIR)/examples/$$f; \
		install -d $${d%/*} && sed 's|/usr/local/sbin/tunneld|$(PREFIX)/sbin/tunneld|g' \
			contrib/$$f > $$d && if [ -x contrib/$$f ]; then chmod 755 $$d; \
			else chmod 644 $$d; fi || exit 1; done
install-tunnel: tunnel
	install -d $(DESTDIR)$(PREFIX)/bin $(DESTDIR)$(PREFIX)/share/man/man1
	install -m 755 tunnel $(DESTDIR)$(PREFIX)/bin/tunnel
	install -m 644 tunnel.1 $(DESTDIR)$(PREFIX)/share/man/man1/tunnel.1

clean:
	rm -f tunneld tunneld.new tunneld-static tunneld-min tunneld-min-static \
		tunneld-noauth tunneld-notls tunnel tunnel.new tunnel-static tunneld-asan tunnel-asan \
		config.h config.mk $(TEST_BINS)
	rm -rf $(DEBUG_DIR) $(MUSL_SPECS) $(HARDEN_STAMP)

harden-force:
.PHONY: harden-force all static run deps deps-static deps-kconfig menuconfig defconfig oldconfig \
	check $(CHECK_LANES) check-valgrind install install-tunnel clean
