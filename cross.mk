# cross.mk: tunneld and tunnel for routers' CPUs, static and dynamic, on
# musl, and their tests under qemu-user (DESIGN §10). Included by the
# Makefile, after its sources.
#
#   make deps-cross   the cross compilers and qemu-user-static (apt), when missing
#   make cross        build/cross/{tunneld,tunnel}-ARCH and -ARCH-notls, static,
#                     stripped, with the default features whatever .config says
#                     (TLS, auth, IPv6, splice, http-tunnel; -notls: TLS off),
#                     and tunneld-ARCH-min (every feature off, as tunneld-min);
#                     the same five dynamic, NAME-dyn; then the size tables
#                     (also alone: make cross-sizes)
#   make check-cross  the end-to-end tests against each ARCH's static binaries,
#                     under qemu-user but for x86_64 (check-cross-ARCH for one),
#                     then tests/test_hardening.py on all; not part of `make check`
#
# ARCH     CPU                               C library, static    dynamic
# aarch64  ARMv8-A (Filogic, IPQ807x)        musl, built here     musl, built here
# armhf    ARMv7-A, VFPv3-D16, Thumb-2       musl, built here     musl, built here
# mipsel   MIPS 24Kc, little-endian (ramips) musl, built here     musl, built here
# mips     MIPS 24Kc, big-endian (ath79)     musl, built here     musl, built here
# x86_64   the host                          musl (musl-tools),   musl, built here
#                                            as `make static`
#
# musl is built from Debian's musl source package, the tree the x86 static
# build takes its crypt files from (build/musl-src), into
# build/cross/musl-ARCH, static and shared: Debian 12 has no musl for
# big-endian mips nor aarch64, and musl-dev:armhf and :mipsel would need
# `dpkg --add-architecture`, which changes what every `apt-get update` of
# the machine fetches. Both MIPS are O32 with hard float, as Debian's
# libgcc is (OpenWrt's MIPS targets are soft-float: README). crypt(3) in
# the static builds is musl's own bcrypt and SHA crypt files
# (AUTH_OWN_CRYPT), as in `make static`; the dynamic ones take it from
# libc.so, as on OpenWrt. mbedTLS is the one tree of build/mbedtls-src,
# compiled per ARCH by mbedtls.mk: in build/mbedtls-ARCH for the static
# builds, position-independent in build/mbedtls-ARCH-pic for the shared
# libmbedtls, libmbedx509 and libmbedcrypto (build/cross/lib-ARCH) that the
# dynamic builds link, as OpenWrt's libmbedtls package has them.
#
# The dynamic builds (NAME-dyn: tunneld-armhf-dyn, tunnel-mips-notls-dyn,
# ...) are PIEs whose interpreter is /lib/ld-musl-ARCH.so.1, as on a
# router; the size table counts their file only, not the shared libraries.
# No binfmt_misc is needed: each foreign binary has a wrapper,
# build/cross/run-NAME, that execs qemu-user on it (exec: the pid the tests
# watch is tunneld's); x86_64's run natively.

CROSS_ARCHES = aarch64 armhf mipsel mips
CROSS_ALL = $(CROSS_ARCHES) x86_64
CROSS_DIR = build/cross

CROSS_TRIPLET_aarch64 = aarch64-linux-gnu
CROSS_TRIPLET_armhf = arm-linux-gnueabihf
CROSS_TRIPLET_mipsel = mipsel-linux-gnu
CROSS_TRIPLET_mips = mips-linux-gnu
CROSS_TRIPLET_x86_64 = x86_64-linux-gnu
CROSS_QEMU_aarch64 = qemu-aarch64-static
CROSS_QEMU_armhf = qemu-arm-static
CROSS_QEMU_mipsel = qemu-mipsel-static
CROSS_QEMU_mips = qemu-mips-static
# The CPU, where the compiler's default is not a router's: OpenWrt's
# ath79 and ramips (mt7620, mt76x8) are 24Kc. musl is built for it too.
CROSS_CPU_mipsel = -march=24kc
CROSS_CPU_mips = -march=24kc
CROSS_NAME_aarch64 = aarch64 (ARMv8-A)
CROSS_NAME_armhf = armhf (ARMv7-A, Thumb-2)
CROSS_NAME_mipsel = mipsel (24Kc)
CROSS_NAME_mips = mips (24Kc, big-endian)
CROSS_NAME_x86_64 = x86_64

# The compiler per ARCH, and what must exist before it compiles anything:
# the static builds' (x86_64: `make static`'s musl-gcc), and the dynamic
# builds' (the musl built here, for x86_64 too).
cross_musl_specs = $(CURDIR)/$(CROSS_DIR)/musl-$(1)/lib/musl-gcc.specs
$(foreach a,$(CROSS_ALL),$(eval CROSS_DYN_CC_$(a) = \
	$(CROSS_TRIPLET_$(a))-gcc $(CROSS_CPU_$(a)) -specs $(call cross_musl_specs,$(a))))
$(foreach a,$(CROSS_ALL),$(eval CROSS_DYN_PRE_$(a) = $(CROSS_DIR)/musl-$(a)/lib/libc.a))
$(foreach a,$(CROSS_ARCHES),$(eval CROSS_CC_$(a) = $$(CROSS_DYN_CC_$(a))))
$(foreach a,$(CROSS_ARCHES),$(eval CROSS_PRE_$(a) = $(CROSS_DYN_PRE_$(a))))
CROSS_CC_x86_64 = $(MUSL_CC)
CROSS_PRE_x86_64 = deps-static $(MUSL_SPECS)
CROSS_MBEDTLS_x86_64 = $(MBEDTLS_MUSL_LIBS)

# The default features, by the -D hooks of config.h; sources named, not
# taken from .config.
CROSS_DEFS = -DCONFIG_AUTH=1 -DCONFIG_IPV6=1 -DCONFIG_SPLICE=1 -DCONFIG_HTTP_TUNNEL=1 -DCONFIG_SANDBOX=1 \
	-DCONFIG_UPSTREAM=1
CROSS_TUNNELD_SRCS = $(CORE_SRCS) $(TUNNEL_SERVER_SRCS) proxyproto.c upstream.c auth.c
CROSS_TUNNEL_SRCS = $(filter-out tls.c,$(TUNNEL_SRCS))
CROSS_CRYPT_NAMES = crypt_blowfish.o crypt_sha256.o crypt_sha512.o
MUSL_SRC ?= build/musl-src

# The static link: a static PIE (HARDEN_STATIC), as `make static`. The
# dynamic one: a PIE, through musl's specs, which give ld no -pie of their own.
cross_comma := ,
CROSS_DYN_FLAGS = $(patsubst $(HARDEN_STATIC),$(HARDEN_PIE) $(if $(HARDEN_PIE),-Wl$(cross_comma)-pie),$(STATIC_FLAGS))
# Linked unstripped into build/cross/debug, then stripped (as `make static`).
$(foreach a,$(CROSS_ALL),$(eval CROSS_STRIP_$(a) = $(CROSS_TRIPLET_$(a))-strip))

# The five binaries per ARCH and link: their files (@ for the ARCH), sources,
# -D flags, and which link mbedTLS (TLS) or crypt(3) (auth).
CROSS_KINDS = tunneld tunneld-notls tunneld-min tunnel tunnel-notls
CROSS_FILE_tunneld = tunneld-@
CROSS_FILE_tunneld-notls = tunneld-@-notls
CROSS_FILE_tunneld-min = tunneld-@-min
CROSS_FILE_tunnel = tunnel-@
CROSS_FILE_tunnel-notls = tunnel-@-notls
CROSS_SRCS_tunneld = $(CROSS_TUNNELD_SRCS) tls.c
CROSS_SRCS_tunneld-notls = $(CROSS_TUNNELD_SRCS)
CROSS_SRCS_tunneld-min = $(CORE_SRCS)
CROSS_SRCS_tunnel = $(CROSS_TUNNEL_SRCS) tls.c
CROSS_SRCS_tunnel-notls = $(CROSS_TUNNEL_SRCS)
CROSS_DEFS_tunneld = $(CROSS_DEFS) -DCONFIG_TLS=1 $(MBEDTLS_CFLAGS)
CROSS_DEFS_tunneld-notls = $(CROSS_DEFS) -DCONFIG_TLS=0
CROSS_DEFS_tunneld-min = $(MIN_DEFS)
CROSS_DEFS_tunnel = $(CROSS_DEFS_tunneld)
CROSS_DEFS_tunnel-notls = $(CROSS_DEFS_tunneld-notls)
CROSS_TLS_KINDS = tunneld tunnel
CROSS_AUTH_KINDS = tunneld tunneld-notls
# cross_file,KIND,ARCH: the file's name; cross_files,ARCH,SUFFIX: the five.
cross_file = $(subst @,$(2),$(CROSS_FILE_$(1)))
cross_files = $(foreach k,$(CROSS_KINDS),$(CROSS_DIR)/$(call cross_file,$(k),$(1))$(2))
cross_size = ls -l $(1) | awk '{ print "$(1): " $$5 " bytes" }'

# mbedTLS per foreign ARCH for the static builds (x86_64 takes
# build/mbedtls-musl), and per ARCH position-independent (ARCH-pic) for
# the shared libraries.
$(foreach a,$(CROSS_ARCHES),$(eval MBEDTLS_CC_$(a) = $$(CROSS_CC_$(a))))
$(foreach a,$(CROSS_ALL),$(eval MBEDTLS_CC_$(a)-pic = $$(CROSS_DYN_CC_$(a))))
$(foreach a,$(CROSS_ALL),$(eval MBEDTLS_AR_$(a) = $(CROSS_TRIPLET_$(a))-ar))
$(foreach a,$(CROSS_ALL),$(eval MBEDTLS_AR_$(a)-pic = $(CROSS_TRIPLET_$(a))-ar))
$(foreach a,$(CROSS_ARCHES),$(eval $(call mbedtls_add_flavour,$(a))))
$(foreach a,$(CROSS_ALL),$(eval $(call mbedtls_add_flavour,$(a)-pic)))
$(foreach a,$(CROSS_ARCHES),$(eval CROSS_MBEDTLS_$(a) = $$(MBEDTLS_$(a)_LIBS)))
# -fPIC after HARDEN's -fPIE (the last one counts).
$(foreach a,$(CROSS_ALL),$(eval build/mbedtls-$(a)-pic/%: MBEDTLS_OPT += -fPIC))
# Their objects need the C library's headers first.
$(foreach a,$(CROSS_ARCHES),$(eval $(MBEDTLS_$(a)_LIBS) build/mbedtls-$(a)/cflags: | deps-cross $(CROSS_PRE_$(a))))
$(foreach a,$(CROSS_ALL),$(eval $(MBEDTLS_$(a)-pic_LIBS) build/mbedtls-$(a)-pic/cflags: \
	| deps-cross $(CROSS_DYN_PRE_$(a))))

# musl for ARCH: configured out of the source tree, installed (headers,
# libc.a, libc.so, crt files and a specs file for the cross gcc) in
# build/cross/musl-ARCH. Position-independent, for a static PIE, and with
# HARDEN's stack protector (musl leaves it out where its start-up code
# cannot have it). The specs name /lib/ld-musl-ARCH.so.1, the router's
# loader; the install puts that link beside libc.so instead, never in /lib.
CROSS_MUSL_CFLAGS = -Os $(filter -f%,$(HARDEN))
$(MUSL_SRC)/configure:
	sh scripts/debian-src.sh musl $(MUSL_SRC)
.PRECIOUS: $(MUSL_SRC)/configure
$(CROSS_DIR)/musl-%/lib/libc.a: $(MUSL_SRC)/configure | deps-cross
	rm -rf $(CROSS_DIR)/musl-$* $(CROSS_DIR)/musl-$*-obj
	mkdir -p $(CROSS_DIR)/musl-$*-obj
	@echo "  MUSL    $(CROSS_DIR)/musl-$* (log: $(CROSS_DIR)/musl-$*-obj/build.log)"
	@cd $(CROSS_DIR)/musl-$*-obj && { $(CURDIR)/$(MUSL_SRC)/configure \
		--target=$(CROSS_TRIPLET_$*) CC=$(CROSS_TRIPLET_$*)-gcc \
		CFLAGS='$(CROSS_MUSL_CFLAGS) $(CROSS_CPU_$*)' \
		--prefix=$(CURDIR)/$(CROSS_DIR)/musl-$* --enable-wrapper=gcc && \
		$(MAKE) && $(MAKE) install-headers install-tools install-libs \
			LDSO_PATHNAME=$(CURDIR)/$(CROSS_DIR)/musl-$*/lib/ld-musl.so.1; } > build.log 2>&1 || \
		{ tail -30 build.log; exit 1; }
	@grep -q -- '-dynamic-linker /lib/ld-musl-' $(call cross_musl_specs,$*) || \
		{ echo "$@: no /lib/ld-musl-* loader in $(call cross_musl_specs,$*)" >&2; exit 1; }

# musl's crypt files come with the same source tree.
$(addprefix $(MUSL_SRC)/src/crypt/,$(CROSS_CRYPT_NAMES:.o=.c)): | $(MUSL_SRC)/configure

# One binary: ARCH, KIND, and DYN_ for the dynamic link (else static).
# Static: mbedTLS's archives, musl's crypt files. Dynamic: the shared
# mbedTLS, crypt(3) of libc.so.
define cross_bin
CROSS_OUT_$(1)_$(2)_$(3) = $(CROSS_DIR)/$(call cross_file,$(2),$(1))$(if $(3),-dyn)
CROSS_LIBS_$(1)_$(2)_$(3) = $$(if $$(filter $(2),$$(CROSS_TLS_KINDS)),$$(CROSS_$(3)MBEDTLS_$(1))) \
	$$(if $(3),,$$(if $$(filter $(2),$$(CROSS_AUTH_KINDS)),$$(CROSS_CRYPT_$(1))))
CROSS_OWN_CRYPT_$(1)_$(2)_$(3) = $$(if $(3),,$$(if $$(filter $(2),$$(CROSS_AUTH_KINDS)),-DAUTH_OWN_CRYPT=1))
$$(CROSS_OUT_$(1)_$(2)_$(3)): $$(CROSS_SRCS_$(2)) $$(HDRS) $$(CROSS_LIBS_$(1)_$(2)_$(3)) \
		| deps-cross $$(CROSS_$(3)PRE_$(1))
	@mkdir -p $(CROSS_DIR)/debug
	$$(CROSS_$(3)CC_$(1)) $$(if $(3),$$(CROSS_DYN_FLAGS),$$(STATIC_FLAGS)) $$(CROSS_DEFS_$(2)) \
		$$(CROSS_OWN_CRYPT_$(1)_$(2)_$(3)) -o $(CROSS_DIR)/debug/$$(@F) \
		$$(CROSS_SRCS_$(2)) $$(CROSS_LIBS_$(1)_$(2)_$(3))
	$$(CROSS_STRIP_$(1)) -o $$@ $(CROSS_DIR)/debug/$$(@F)
	@$$(call cross_size,$$@)
endef

# Per ARCH: musl's crypt files, the shared mbedTLS, the sandbox's unit test.
define cross_arch
$(CROSS_DIR)/crypt-$(1)/%.o: $$(MUSL_SRC)/src/crypt/%.c Makefile | deps-cross $$(CROSS_PRE_$(1))
	@mkdir -p $$(@D)
	$$(CROSS_CC_$(1)) -Os -w -ffunction-sections -fdata-sections $$(HARDEN_CC) -c -o $$@ $$<
CROSS_CRYPT_$(1) = $$(addprefix $(CROSS_DIR)/crypt-$(1)/,$$(CROSS_CRYPT_NAMES))
# Each library whole, as libmbedtls's package ships it; x509 and tls
# linked to those they call.
CROSS_DYN_MBEDTLS_$(1) = $$(addprefix $(CROSS_DIR)/lib-$(1)/,libmbedtls.so libmbedx509.so libmbedcrypto.so)
$(CROSS_DIR)/lib-$(1)/%.so: build/mbedtls-$(1)-pic/%.a | deps-cross $$(CROSS_DYN_PRE_$(1))
	@mkdir -p $$(@D)
	$$(CROSS_DYN_CC_$(1)) -shared $$(filter -Wl%,$$(HARDEN)) -Wl,-soname,$$(@F) -o $$@ \
		-Wl,--whole-archive $$< -Wl,--no-whole-archive $$(filter %.so,$$^)
$(CROSS_DIR)/lib-$(1)/libmbedx509.so: $(CROSS_DIR)/lib-$(1)/libmbedcrypto.so
$(CROSS_DIR)/lib-$(1)/libmbedtls.so: $(CROSS_DIR)/lib-$(1)/libmbedx509.so $(CROSS_DIR)/lib-$(1)/libmbedcrypto.so
# The sandbox's filters, run through the unit test's interpreter: the CPU's
# numbers, architecture word and argument layout (qemu-user cannot filter).
$(CROSS_DIR)/test_sandbox-$(1): tests/unit/test_sandbox.c sandbox.c log.c fmt.c $$(HDRS) \
		| deps-cross $$(CROSS_PRE_$(1))
	$$(CROSS_CC_$(1)) $$(STATIC_FLAGS) $$(CROSS_DEFS) -I. -o $$@ tests/unit/test_sandbox.c log.c fmt.c
CROSS_BINS_$(1) = $$(call cross_files,$(1),)
CROSS_DYN_BINS_$(1) = $$(call cross_files,$(1),-dyn)
cross-$(1): $$(CROSS_BINS_$(1)) $$(CROSS_DYN_BINS_$(1))
.PHONY: cross-$(1)
endef
$(foreach a,$(CROSS_ALL),$(eval $(call cross_arch,$(a))))
$(foreach a,$(CROSS_ALL),$(foreach k,$(CROSS_KINDS),$(eval $(call cross_bin,$(a),$(k),)) \
	$(eval $(call cross_bin,$(a),$(k),DYN_))))

# The wrapper that runs NAME (tunneld-armhf, tunnel-mips-notls, ...) under
# its ARCH's qemu-user; exec, so that the pid stays the one started.
cross_arch_of = $(word 2,$(subst -, ,$(1)))
$(CROSS_DIR)/run-%: cross.mk | deps-cross
	@mkdir -p $(@D)
	@printf '#!/bin/sh\n# %s under qemu-user (cross.mk)\nexec %s %s "$$@"\n' '$*' \
		"$$(command -v $(CROSS_QEMU_$(call cross_arch_of,$*)))" '$(CURDIR)/$(CROSS_DIR)/$*' > $@.tmp
	@chmod 755 $@.tmp && mv $@.tmp $@
# What the tests start for NAME of ARCH: the wrapper, or x86_64's binary.
cross_run = $(CROSS_DIR)/$(if $(CROSS_QEMU_$(1)),run-)$(2)

cross: $(addprefix cross-,$(CROSS_ALL))
	@$(MAKE) --no-print-directory cross-sizes

# The size tables (README): stripped binaries, in bytes; a dynamic one's
# file alone (libc.so and the shared mbedTLS are packages of their own).
# First the files, then their code and data (binutils' size: text + data),
# the files without the zeros that align their segments to the largest
# page the CPU may have (64 KiB on aarch64 and MIPS, 4 KiB on x86_64 and
# ARMv7), which a firmware's compressed file system keeps almost nothing of.
# cross_table,COMMAND: COMMAND prints the size of file $$f (binutils: $$t-).
cross_table = echo "| CPU | link | tunneld | tunneld, TLS off | tunneld, all off | tunnel | tunnel, TLS off |"; \
	echo "|---|---|---:|---:|---:|---:|---:|"; \
	$(foreach a,$(CROSS_ALL),$(foreach l,static dynamic,t=$(CROSS_TRIPLET_$(a)); \
		row='| $(CROSS_NAME_$(a)) | $(l)'; \
		for f in $(call cross_files,$(a),$(if $(filter dynamic,$(l)),-dyn)); do \
			if [ -f $$f ]; then n=$$($(1)); else n=-; fi; \
			row="$$row | $$(echo $$n | sed ':a;s/\B[0-9]\{3\}\>/,&/;ta')"; done; echo "$$row |";))
cross-sizes:
	@$(call cross_table,stat -c %s $$f)
	@echo
	@$(call cross_table,$$t-size -B $$f | awk 'NR == 2 { print $$1 + $$2 }')

# The cross packages and qemu; the tests' own tools come from `make deps`.
# Nothing here needs a foreign dpkg architecture, nor a C library for the
# foreign CPUs (musl is built here).
CROSS_DEPS = aarch64-linux-gnu-gcc:gcc-aarch64-linux-gnu arm-linux-gnueabihf-gcc:gcc-arm-linux-gnueabihf \
	mipsel-linux-gnu-gcc:gcc-mipsel-linux-gnu mips-linux-gnu-gcc:gcc-mips-linux-gnu \
	qemu-aarch64-static:qemu-user-static qemu-arm-static:qemu-user-static \
	qemu-mipsel-static:qemu-user-static qemu-mips-static:qemu-user-static dpkg-source:dpkg-dev
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
# OpenWrt launcher), against each ARCH's static binaries, under qemu-user
# but for x86_64; then the TLS-less build through the tests of what it
# refuses and the client. Not here: test_faults.py (its descriptor and
# process limits leave qemu-user itself no room: the wrapper's shell and
# qemu need descriptors, qemu a thread), test_load.py (its timings are not
# an emulator's), test_sandbox.py under qemu (qemu-user installs no seccomp
# filter: x86_64's run it, and the unit test's filter interpreter runs on
# every ARCH), the launcher tests (inetd, tcpserver, OpenWrt's procd) and
# test_docs.py, test_kconfig.py, test_openwrt.py (they build, or read
# files). Each ARCH has its own test DNS address, so that `make -j2
# check-cross` runs two at once. Then tests/test_hardening.py on every
# cross binary, whose dynamic builds run there (--version, through the
# musl built here, under qemu-user).
CROSS_TESTS = tests/test_cli.py tests/test_clients.py tests/test_relay.py tests/test_errors.py \
	tests/test_rules.py tests/test_auth.py tests/test_tls_proxy.py tests/test_http_tunnel.py \
	tests/test_tunnel_client.py tests/test_ipv6.py tests/test_resources.py
CROSS_TESTS_x86_64 = tests/test_sandbox.py
CROSS_NOTLS_TESTS = tests/test_cli.py tests/test_tls_proxy.py tests/test_tunnel_client.py
CROSS_TEST_DNS_aarch64 ?= 127.0.0.90
CROSS_TEST_DNS_armhf ?= 127.0.0.91
CROSS_TEST_DNS_mipsel ?= 127.0.0.92
CROSS_TEST_DNS_mips ?= 127.0.0.93
CROSS_TEST_DNS_x86_64 ?= 127.0.0.94
define cross_check
check-cross-$(1): deps $$(CROSS_BINS_$(1)) $(CROSS_DIR)/test_sandbox-$(1) \
		$$(if $(CROSS_QEMU_$(1)),$$(patsubst $(CROSS_DIR)/%,$(CROSS_DIR)/run-%,$$(CROSS_BINS_$(1))))
	@rc=0; $(CROSS_QEMU_$(1)) $(CROSS_DIR)/test_sandbox-$(1) $(if $(CROSS_QEMU_$(1)),--no-kernel) || rc=1; \
	for v in "" -notls; do \
		tests='$$(CROSS_TESTS) $$(CROSS_TESTS_$(1))'; [ -z "$$$$v" ] || tests='$$(CROSS_NOTLS_TESTS)'; \
		echo "check-cross: $(1)$$$$v ($(or $(CROSS_QEMU_$(1)),native))"; \
		TUNNELD_TEST_DNS=$$(CROSS_TEST_DNS_$(1)) TUNNELD=$(call cross_run,$(1),tunneld-$(1))$$$$v \
			TUNNEL=$(call cross_run,$(1),tunnel-$(1))$$$$v \
			TUNNELD_MIN=$(call cross_run,$(1),tunneld-$(1)-min) \
			$$(PYTHON) -m pytest -q $$$$tests || rc=1; \
	done; exit $$$$rc
.PHONY: check-cross-$(1)
endef
$(foreach a,$(CROSS_ALL),$(eval $(call cross_check,$(a))))
# (The suite's session wants a tunneld to start: x86_64's.)
check-cross-hardening: $(addprefix cross-,$(CROSS_ALL))
	TUNNELD=$(CROSS_DIR)/tunneld-x86_64 TUNNEL=$(CROSS_DIR)/tunnel-x86_64 \
		$(PYTHON) -m pytest -q tests/test_hardening.py -k cross
check-cross: $(addprefix check-cross-,$(CROSS_ALL)) check-cross-hardening

cross-clean:
	rm -rf $(CROSS_DIR) $(addprefix build/mbedtls-,$(CROSS_ARCHES) $(addsuffix -pic,$(CROSS_ALL)))

.PHONY: cross cross-sizes deps-cross check-cross check-cross-hardening cross-clean
