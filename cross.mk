# cross.mk: static tunneld and tunnel for routers' CPUs, and their tests
# under qemu-user (DESIGN §10). Included by the Makefile, after its sources.
#
#   make deps-cross   the cross compilers and qemu-user-static (apt), when missing
#   make cross        build/cross/{tunneld,tunnel}-ARCH and -ARCH-notls, static,
#                     stripped, with the default features whatever .config says
#                     (TLS, auth, IPv6, splice, http-tunnel; -notls: TLS off),
#                     and tunneld-ARCH-min (every feature off, as tunneld-min);
#                     then the size table (also alone: make cross-sizes)
#   make check-cross  the end-to-end tests against each ARCH's binaries under
#                     qemu-user (check-cross-ARCH for one); not part of `make check`
#
# ARCH        CPU                          C library
# armhf       ARMv7-A, VFPv3-D16, Thumb-2  musl, built here
# mipsel      MIPS32r2, little-endian      musl, built here
# mips        MIPS32r2, big-endian         glibc (Debian's libc6-dev-mips-cross):
#                                          Debian has no musl for big-endian mips
# x86_64      the host                     musl (musl-tools), as `make static`;
#                                          for the size table, never under qemu
#
# musl for the foreign CPUs is built from Debian's musl source package, the
# tree the x86 static build takes its crypt files from (build/musl-src), into
# build/cross/musl-ARCH: Debian 12's musl-dev:armhf and :mipsel would need
# `dpkg --add-architecture`, which changes what every `apt-get update` of the
# machine fetches. crypt(3) is musl's own bcrypt and SHA crypt files on every
# ARCH (AUTH_OWN_CRYPT), as in `make static`: glibc 2.36 of Debian has no
# libcrypt (that is libxcrypt, with no -cross package). mbedTLS is the one
# tree of build/mbedtls-src, compiled per ARCH by mbedtls.mk in build/mbedtls-ARCH.
# No binfmt_misc is needed: each binary has a wrapper, build/cross/run-NAME,
# that execs qemu-user on it (exec: the pid the tests watch is tunneld's).

CROSS_ARCHES = armhf mipsel mips
CROSS_DIR = build/cross

CROSS_TRIPLET_armhf = arm-linux-gnueabihf
CROSS_TRIPLET_mipsel = mipsel-linux-gnu
CROSS_TRIPLET_mips = mips-linux-gnu
CROSS_QEMU_armhf = qemu-arm-static
CROSS_QEMU_mipsel = qemu-mipsel-static
CROSS_QEMU_mips = qemu-mips-static
CROSS_LIBC_armhf = musl
CROSS_LIBC_mipsel = musl
CROSS_LIBC_mips = glibc
CROSS_LIBC_x86_64 = musl

# The compiler per ARCH, and what must exist before it compiles anything.
cross_musl_specs = $(CURDIR)/$(CROSS_DIR)/musl-$(1)/lib/musl-gcc.specs
CROSS_CC_armhf = arm-linux-gnueabihf-gcc -specs $(call cross_musl_specs,armhf)
CROSS_CC_mipsel = mipsel-linux-gnu-gcc -specs $(call cross_musl_specs,mipsel)
CROSS_CC_mips = mips-linux-gnu-gcc
CROSS_CC_x86_64 = $(MUSL_CC)
CROSS_PRE_armhf = $(CROSS_DIR)/musl-armhf/lib/libc.a
CROSS_PRE_mipsel = $(CROSS_DIR)/musl-mipsel/lib/libc.a
CROSS_PRE_mips =
CROSS_PRE_x86_64 = deps-static $(MUSL_SPECS)
CROSS_MBEDTLS_x86_64 = $(MBEDTLS_MUSL_LIBS)

# The default features, by the -D hooks of config.h; sources named, not
# taken from .config.
CROSS_DEFS = -DCONFIG_AUTH=1 -DCONFIG_IPV6=1 -DCONFIG_SPLICE=1 -DCONFIG_HTTP_TUNNEL=1 -DCONFIG_SANDBOX=1 \
	-DAUTH_OWN_CRYPT=1
CROSS_TUNNELD_SRCS = $(CORE_SRCS) $(TUNNEL_SERVER_SRCS) auth.c
CROSS_TUNNEL_SRCS = $(filter-out tls.c,$(TUNNEL_SRCS))
CROSS_CRYPT_NAMES = crypt_blowfish.o crypt_sha256.o crypt_sha512.o
MUSL_SRC ?= build/musl-src

# The static link: a static PIE (HARDEN_STATIC) where the C library has one.
# Debian's glibc for mips ships no rcrt1.o, the start file of a static PIE
# ("ld: cannot find rcrt1.o"): that build is static, not PIE (with RELRO,
# BIND_NOW, canaries and fortify still).
CROSS_STATIC_FLAGS_armhf = $(STATIC_FLAGS)
CROSS_STATIC_FLAGS_mipsel = $(STATIC_FLAGS)
CROSS_STATIC_FLAGS_mips = $(subst -static-pie,-static,$(STATIC_FLAGS))
CROSS_STATIC_FLAGS_x86_64 = $(STATIC_FLAGS)
# Linked unstripped into build/cross/debug, then stripped (as `make static`).
CROSS_STRIP_armhf = $(CROSS_TRIPLET_armhf)-strip
CROSS_STRIP_mipsel = $(CROSS_TRIPLET_mipsel)-strip
CROSS_STRIP_mips = $(CROSS_TRIPLET_mips)-strip
CROSS_STRIP_x86_64 = strip

cross_size = ls -l $(1) | awk '{ print "$(1): " $$5 " bytes" }'

# mbedTLS per foreign ARCH (x86_64 takes build/mbedtls-musl).
$(foreach a,$(CROSS_ARCHES),$(eval MBEDTLS_CC_$(a) = $$(CROSS_CC_$(a))))
$(foreach a,$(CROSS_ARCHES),$(eval MBEDTLS_AR_$(a) = $(CROSS_TRIPLET_$(a))-ar))
$(foreach a,$(CROSS_ARCHES),$(eval $(call mbedtls_add_flavour,$(a))))
$(foreach a,$(CROSS_ARCHES),$(eval CROSS_MBEDTLS_$(a) = $$(MBEDTLS_$(a)_LIBS)))
# Their objects need the C library's headers first.
$(foreach a,$(CROSS_ARCHES),$(eval $(MBEDTLS_$(a)_LIBS) build/mbedtls-$(a)/cflags: | deps-cross $(CROSS_PRE_$(a))))

# musl for ARCH: configured out of the source tree, installed (headers,
# libc.a, crt files and a specs file for the cross gcc) in build/cross/musl-ARCH.
# Position-independent, for a static PIE, and with HARDEN's stack
# protector (musl leaves it out where its start-up code cannot have it).
CROSS_MUSL_CFLAGS = -Os $(filter -f%,$(HARDEN))
$(MUSL_SRC)/configure:
	sh scripts/debian-src.sh musl $(MUSL_SRC)
.PRECIOUS: $(MUSL_SRC)/configure
$(CROSS_DIR)/musl-%/lib/libc.a: $(MUSL_SRC)/configure | deps-cross
	rm -rf $(CROSS_DIR)/musl-$* $(CROSS_DIR)/musl-$*-obj
	mkdir -p $(CROSS_DIR)/musl-$*-obj
	@echo "  MUSL    $(CROSS_DIR)/musl-$* (log: $(CROSS_DIR)/musl-$*-obj/build.log)"
	@cd $(CROSS_DIR)/musl-$*-obj && { $(CURDIR)/$(MUSL_SRC)/configure \
		--target=$(CROSS_TRIPLET_$*) CC=$(CROSS_TRIPLET_$*)-gcc CFLAGS='$(CROSS_MUSL_CFLAGS)' \
		--prefix=$(CURDIR)/$(CROSS_DIR)/musl-$* --disable-shared --enable-wrapper=gcc && \
		$(MAKE) CC=$(CROSS_TRIPLET_$*)-gcc CFLAGS='$(CROSS_MUSL_CFLAGS)' install; } > build.log 2>&1 || \
		{ tail -30 build.log; exit 1; }
	@test -f $(call cross_musl_specs,$*)

# musl's crypt files come with the same source tree.
$(addprefix $(MUSL_SRC)/src/crypt/,$(CROSS_CRYPT_NAMES:.o=.c)): | $(MUSL_SRC)/configure

# Per ARCH: musl's crypt files and the five binaries.
define cross_arch
$(CROSS_DIR)/crypt-$(1)/%.o: $$(MUSL_SRC)/src/crypt/%.c Makefile | deps-cross $$(CROSS_PRE_$(1))
	@mkdir -p $$(@D)
	$$(CROSS_CC_$(1)) -Os -w -ffunction-sections -fdata-sections $$(HARDEN_CC) -c -o $$@ $$<
CROSS_CRYPT_$(1) = $$(addprefix $(CROSS_DIR)/crypt-$(1)/,$$(CROSS_CRYPT_NAMES))
$(CROSS_DIR)/tunneld-$(1): $$(CROSS_TUNNELD_SRCS) tls.c $$(HDRS) $$(CROSS_CRYPT_$(1)) \
		$$(CROSS_MBEDTLS_$(1)) | deps-cross $$(CROSS_PRE_$(1))
	@mkdir -p $(CROSS_DIR)/debug
	$$(CROSS_CC_$(1)) $$(CROSS_STATIC_FLAGS_$(1)) $$(CROSS_DEFS) -DCONFIG_TLS=1 $$(MBEDTLS_CFLAGS) -o $(CROSS_DIR)/debug/$$(@F) \
		$$(CROSS_TUNNELD_SRCS) tls.c $$(CROSS_CRYPT_$(1)) $$(CROSS_MBEDTLS_$(1))
	$$(CROSS_STRIP_$(1)) -o $$@ $(CROSS_DIR)/debug/$$(@F)
	@$$(call cross_size,$$@)
$(CROSS_DIR)/tunneld-$(1)-notls: $$(CROSS_TUNNELD_SRCS) $$(HDRS) $$(CROSS_CRYPT_$(1)) \
		| deps-cross $$(CROSS_PRE_$(1))
	@mkdir -p $(CROSS_DIR)/debug
	$$(CROSS_CC_$(1)) $$(CROSS_STATIC_FLAGS_$(1)) $$(CROSS_DEFS) -DCONFIG_TLS=0 -o $(CROSS_DIR)/debug/$$(@F) \
		$$(CROSS_TUNNELD_SRCS) $$(CROSS_CRYPT_$(1))
	$$(CROSS_STRIP_$(1)) -o $$@ $(CROSS_DIR)/debug/$$(@F)
	@$$(call cross_size,$$@)
$(CROSS_DIR)/tunnel-$(1): $$(CROSS_TUNNEL_SRCS) tls.c $$(HDRS) $$(CROSS_MBEDTLS_$(1)) \
		| deps-cross $$(CROSS_PRE_$(1))
	@mkdir -p $(CROSS_DIR)/debug
	$$(CROSS_CC_$(1)) $$(CROSS_STATIC_FLAGS_$(1)) $$(CROSS_DEFS) -DCONFIG_TLS=1 $$(MBEDTLS_CFLAGS) -o $(CROSS_DIR)/debug/$$(@F) \
		$$(CROSS_TUNNEL_SRCS) tls.c $$(CROSS_MBEDTLS_$(1))
	$$(CROSS_STRIP_$(1)) -o $$@ $(CROSS_DIR)/debug/$$(@F)
	@$$(call cross_size,$$@)
$(CROSS_DIR)/tunnel-$(1)-notls: $$(CROSS_TUNNEL_SRCS) $$(HDRS) | deps-cross $$(CROSS_PRE_$(1))
	@mkdir -p $(CROSS_DIR)/debug
	$$(CROSS_CC_$(1)) $$(CROSS_STATIC_FLAGS_$(1)) $$(CROSS_DEFS) -DCONFIG_TLS=0 -o $(CROSS_DIR)/debug/$$(@F) $$(CROSS_TUNNEL_SRCS)
	$$(CROSS_STRIP_$(1)) -o $$@ $(CROSS_DIR)/debug/$$(@F)
	@$$(call cross_size,$$@)
$(CROSS_DIR)/tunneld-$(1)-min: $$(CORE_SRCS) $$(HDRS) | deps-cross $$(CROSS_PRE_$(1))
	@mkdir -p $(CROSS_DIR)/debug
	$$(CROSS_CC_$(1)) $$(CROSS_STATIC_FLAGS_$(1)) $$(MIN_DEFS) -o $(CROSS_DIR)/debug/$$(@F) $$(CORE_SRCS)
	$$(CROSS_STRIP_$(1)) -o $$@ $(CROSS_DIR)/debug/$$(@F)
	@$$(call cross_size,$$@)
# The sandbox's filters, run through the unit test's interpreter: the CPU's
# numbers, architecture word and argument layout (qemu-user cannot filter).
$(CROSS_DIR)/test_sandbox-$(1): tests/unit/test_sandbox.c sandbox.c log.c $$(HDRS) \
		| deps-cross $$(CROSS_PRE_$(1))
	$$(CROSS_CC_$(1)) $$(CROSS_STATIC_FLAGS_$(1)) $$(CROSS_DEFS) -I. -o $$@ tests/unit/test_sandbox.c log.c
CROSS_BINS_$(1) = $$(addprefix $(CROSS_DIR)/,tunneld-$(1) tunneld-$(1)-notls tunneld-$(1)-min \
	tunnel-$(1) tunnel-$(1)-notls)
cross-$(1): $$(CROSS_BINS_$(1))
.PHONY: cross-$(1)
endef
$(foreach a,$(CROSS_ARCHES) x86_64,$(eval $(call cross_arch,$(a))))

# The wrapper that runs NAME (tunneld-armhf, tunnel-mips-notls, ...) under
# its ARCH's qemu-user; exec, so that the pid stays the one started.
cross_arch_of = $(word 2,$(subst -, ,$(1)))
$(CROSS_DIR)/run-%: cross.mk | deps-cross
	@mkdir -p $(@D)
	@printf '#!/bin/sh\n# %s under qemu-user (cross.mk)\nexec %s %s "$$@"\n' '$*' \
		"$$(command -v $(CROSS_QEMU_$(call cross_arch_of,$*)))" '$(CURDIR)/$(CROSS_DIR)/$*' > $@.tmp
	@chmod 755 $@.tmp && mv $@.tmp $@

cross: $(addprefix cross-,$(CROSS_ARCHES) x86_64)
	@$(MAKE) --no-print-directory cross-sizes

# The size table (README): stripped static binaries, in bytes.
cross-sizes:
	@echo "| arch | C library | tunneld | tunneld, TLS off | tunneld, all off | tunnel | tunnel, TLS off |"
	@echo "|---|---|---:|---:|---:|---:|---:|"
	@for a in $(CROSS_ARCHES) x86_64; do \
		case $$a in armhf) l=$(CROSS_LIBC_armhf);; mipsel) l=$(CROSS_LIBC_mipsel);; \
			mips) l=$(CROSS_LIBC_mips);; *) l=$(CROSS_LIBC_x86_64);; esac; \
		row="| $$a | $$l"; \
		for b in tunneld-$$a tunneld-$$a-notls tunneld-$$a-min tunnel-$$a tunnel-$$a-notls; do \
			f=$(CROSS_DIR)/$$b; \
			if [ -f $$f ]; then row="$$row | $$(stat -c %s $$f | sed ':a;s/\B[0-9]\{3\}\>/,&/;ta')"; \
			else row="$$row | -"; fi; \
		done; echo "$$row |"; \
	done

# The cross packages and qemu; the tests' own tools come from `make deps`.
# Nothing here needs a foreign dpkg architecture.
CROSS_DEPS = arm-linux-gnueabihf-gcc:gcc-arm-linux-gnueabihf \
	mipsel-linux-gnu-gcc:gcc-mipsel-linux-gnu mips-linux-gnu-gcc:gcc-mips-linux-gnu \
	/usr/mips-linux-gnu/lib/libc.a:libc6-dev-mips-cross \
	qemu-arm-static:qemu-user-static qemu-mipsel-static:qemu-user-static \
	qemu-mips-static:qemu-user-static dpkg-source:dpkg-dev
deps-cross:
	@missing=""; for d in $(CROSS_DEPS); do f=$${d%%:*}; p=$${d#*:}; \
		case $$f in /*) test -e $$f;; *) command -v $$f >/dev/null;; esac || \
		case " $$missing " in *" $$p "*) ;; *) missing="$$missing $$p";; esac; done; \
	if [ -n "$$missing" ]; then \
		echo "deps-cross: installing$$missing"; \
		apt-get -o DPkg::Lock::Timeout=300 update -qq && DEBIAN_FRONTEND=noninteractive \
			apt-get -o DPkg::Lock::Timeout=300 install -y -qq --no-install-recommends $$missing; \
	fi

# The end-to-end tests that start tunneld by itself (no inetd, tcpserver or
# OpenWrt launcher), against each ARCH under qemu-user; then the TLS-less
# build through the tests of what it refuses and the client. Not here:
# test_faults.py (its descriptor and process limits leave qemu-user itself
# no room: the wrapper's shell and qemu need descriptors, qemu a thread),
# test_load.py (its timings are not an emulator's), test_sandbox.py
# (qemu-user installs no seccomp filter), the launcher tests
# (inetd, tcpserver, OpenWrt's procd) and test_docs.py, test_kconfig.py,
# test_openwrt.py (they build, or read files). Each ARCH has its own test
# DNS address, so that `make -j3 check-cross` runs them at once.
CROSS_TESTS = tests/test_cli.py tests/test_clients.py tests/test_relay.py tests/test_errors.py \
	tests/test_rules.py tests/test_auth.py tests/test_tls_proxy.py tests/test_http_tunnel.py \
	tests/test_tunnel_client.py tests/test_ipv6.py tests/test_resources.py
CROSS_NOTLS_TESTS = tests/test_cli.py tests/test_tls_proxy.py tests/test_tunnel_client.py
CROSS_TEST_DNS_armhf ?= 127.0.0.91
CROSS_TEST_DNS_mipsel ?= 127.0.0.92
CROSS_TEST_DNS_mips ?= 127.0.0.93
define cross_check
check-cross-$(1): deps $$(CROSS_BINS_$(1)) $$(patsubst $(CROSS_DIR)/%,$(CROSS_DIR)/run-%,$$(CROSS_BINS_$(1))) \
		$(CROSS_DIR)/test_sandbox-$(1)
	@rc=0; $(CROSS_QEMU_$(1)) $(CROSS_DIR)/test_sandbox-$(1) --no-kernel || rc=1; \
	for v in "" -notls; do \
		tests='$$(CROSS_TESTS)'; [ -z "$$$$v" ] || tests='$$(CROSS_NOTLS_TESTS)'; \
		echo "check-cross: $(1)$$$$v (qemu: $(CROSS_QEMU_$(1)))"; \
		TUNNELD_TEST_DNS=$$(CROSS_TEST_DNS_$(1)) TUNNELD=$(CROSS_DIR)/run-tunneld-$(1)$$$$v \
			TUNNEL=$(CROSS_DIR)/run-tunnel-$(1)$$$$v TUNNELD_MIN=$(CROSS_DIR)/run-tunneld-$(1)-min \
			$$(PYTHON) -m pytest -q $$$$tests || rc=1; \
	done; exit $$$$rc
.PHONY: check-cross-$(1)
endef
$(foreach a,$(CROSS_ARCHES),$(eval $(call cross_check,$(a))))
check-cross: $(addprefix check-cross-,$(CROSS_ARCHES))

cross-clean:
	rm -rf $(CROSS_DIR) $(addprefix build/mbedtls-,$(CROSS_ARCHES))

.PHONY: cross cross-sizes deps-cross check-cross cross-clean
