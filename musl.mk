# musl.mk: what the static musl builds (`make static`, tunneld-min-static;
# cross.mk's too) are made with: the static flags, a copy of musl-gcc's
# specs that can link a static PIE (build/musl-gcc.specs), musl's own
# crypt(3) files (build/musl-crypt, from Debian's musl source package), and
# deps-static (musl-tools). Included by the top Makefile, before the
# targets that use it.

# No unwind tables: nothing in C unwinds (no C++, no backtrace()), and a
# crash is read from build/debug's symbols; 3 KiB of .eh_frame less.
STATIC_FLAGS = -Os $(HARDEN_STATIC) $(XCFLAGS) $(HARDEN) -ffunction-sections -fdata-sections \
	-fno-asynchronous-unwind-tables -fno-unwind-tables -Wl,--gc-sections
# Linked unstripped into build/debug (symbols for a router's crash, and
# for tests/test_hardening.py), then stripped beside the Makefile.
DEBUG_DIR = build/debug
static_strip = strip -o $@ $(DEBUG_DIR)/$@
# The static link goes through a copy of musl-gcc's specs that knows
# -static-pie: Debian's (musl 1.2.3) always starts a program with Scrt1.o,
# where a static PIE needs rcrt1.o (which musl-dev ships), and passes ld no
# -pie. musl 1.2.5's own specs do both, as this copy then does.
MUSL_GCC ?= gcc
MUSL_SPECS = build/musl-gcc.specs
MUSL_CC = $(MUSL_GCC) -specs $(CURDIR)/$(MUSL_SPECS)
$(MUSL_SPECS): | deps-static
	@mkdir -p $(@D)
	@spec=$$(sed -n 's/.*-specs "\([^"]*\)".*/\1/p' "$$(command -v musl-gcc)"); \
	if grep -q static-pie "$$spec"; then cp "$$spec" $@.tmp; else sed \
		-e 's|%{!shared: *\([^ }]*\)/Scrt1\.o}|%{shared:;static-pie:\1/rcrt1.o;:\1/Scrt1.o}|' \
		-e 's|%{static:-static}|& %{static-pie:-static -pie --no-dynamic-linker -z text}|' \
		"$$spec" > $@.tmp; fi; \
	grep -q 'static-pie:[^ ]*rcrt1\.o' $@.tmp || { rm -f $@.tmp; \
		echo "$@: no static-pie start file in $$spec: build with HARDEN=" >&2; exit 1; }; \
	mv $@.tmp $@

# Debian's musl leaves crypt(3) out: a static build with auth compiles
# musl's own bcrypt and SHA crypt files, fetched from Debian's source
# package (the Makefile adds them to MUSL_LIBS).
MUSL_SRC ?= build/musl-src
MUSL_CRYPT = $(addprefix build/musl-crypt/,crypt_blowfish.o crypt_sha256.o crypt_sha512.o)
$(MUSL_SRC)/src/crypt/%.c:
	sh scripts/debian-src.sh musl $(MUSL_SRC)
# Fetched sources, not intermediates: make must not delete them.
.PRECIOUS: $(MUSL_SRC)/src/crypt/%.c
# Their code, their warnings: compiled as musl compiles it, not with ours.
build/musl-crypt/%.o: $(MUSL_SRC)/src/crypt/%.c musl.mk | deps-static
	@mkdir -p $(@D)
	musl-gcc -Os -w -ffunction-sections -fdata-sections $(HARDEN_CC) -c -o $@ $<

deps-static:
	@sh scripts/deps.sh musl-gcc:musl-tools
