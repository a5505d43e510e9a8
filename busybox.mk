# busybox.mk: a busybox with only inetd and syslogd, built from Debian's
# source package, for tests/test_busybox_inetd.py: busybox inetd runs
# contrib/inetd.conf as a router with busybox inetd would. None of
# Debian's busybox builds has inetd, and stock OpenWrt's has none either.
# Included by the top Makefile (`include busybox.mk`), which makes `check`
# build it; the test runs `make -s build/busybox/busybox` itself too.
#
# Provides
#   BUSYBOX_SRC   the unpacked source tree (default build/busybox-src),
#                 fetched by scripts/debian-src.sh when missing
#   BUSYBOX       build/busybox/busybox, linked against the system's libc
#                 (dynamic: getpwnam for inetd.conf's user field goes
#                 through NSS, as everywhere on the machine)
#   busybox, busybox-clean (phony)
# Out of tree (O=build/busybox): the source tree stays as unpacked. The
# .config is allnoconfig plus BUSYBOX_CONFIG; it, and so the binary, is
# remade when this file changes. About 20 s from nothing on 2 cores.

BUSYBOX_SRC ?= build/busybox-src
BUSYBOX_DIR = build/busybox
BUSYBOX = $(BUSYBOX_DIR)/busybox
BUSYBOX_STAMP = $(BUSYBOX_SRC)/networking/inetd.c

# What allnoconfig leaves off and the test needs: the multi-call applet
# (`busybox inetd`), inetd (which selects FEATURE_SYSLOG), syslogd, and the
# size of syslogd's read buffer (allnoconfig writes 0, outside its range,
# which oldconfig would ask about; 256, busybox's default, where Debian's
# builds have 1024: a longer message is cut, which the test would see).
# And no shell: allnoconfig's choice of sh is ash. Every other symbol stays
# off, the suboptions of these two included: inetd with none of its
# built-in services, syslogd writing only its -O file.
BUSYBOX_CONFIG = CONFIG_BUSYBOX=y CONFIG_SH_IS_ASH=n CONFIG_SH_IS_NONE=y CONFIG_SHELL_ASH=n \
	CONFIG_INETD=y CONFIG_SYSLOGD=y CONFIG_FEATURE_SYSLOGD_READ_BUFFER_SIZE=256

# busybox's own kbuild, with none of this make's flags or variables (a
# CC=, V= or CI= given here means something else there). Not $(MAKE): make
# -n would run a line naming it, and leave a .config of allnoconfig alone.
BUSYBOX_KBUILD = make
BUSYBOX_MAKE = env -u MAKEFLAGS -u MFLAGS -u MAKELEVEL $(BUSYBOX_KBUILD) -C $(BUSYBOX_SRC) \
	O=$(CURDIR)/$(BUSYBOX_DIR)

busybox: $(BUSYBOX)
# make check runs tests/test_busybox_inetd.py; built here first, the test
# finds it up to date (run alone, the test makes it itself).
check: $(BUSYBOX)

$(BUSYBOX_STAMP):
	sh scripts/debian-src.sh busybox $(BUSYBOX_SRC)
	@test -f $@ || { echo "busybox.mk: $@ missing after the fetch" >&2; exit 1; }
# A fetched source, not an intermediate: make must not delete it.
.PRECIOUS: $(BUSYBOX_STAMP)

# allnoconfig, each BUSYBOX_CONFIG entry in place of its line, then
# oldconfig, which fails rather than ask (stdin is /dev/null), and a check
# that every entry held (none undone by a dependency). config.done is touched last: a recipe that
# stopped halfway is run again, whatever .config it left.
BUSYBOX_CONFIG_DONE = $(BUSYBOX_DIR)/config.done
$(BUSYBOX_CONFIG_DONE): busybox.mk $(BUSYBOX_STAMP)
	@echo "  CONFIG  $(BUSYBOX_DIR)/.config"
	@rm -f $@ && mkdir -p $(@D)
	@$(BUSYBOX_MAKE) -s allnoconfig >$(@D)/config.out 2>&1 || { cat $(@D)/config.out >&2; exit 1; }
	@for kv in $(BUSYBOX_CONFIG); do k=$${kv%%=*}; v=$${kv#*=}; \
		sed -i -e "/^$$k=/d" -e "/^# $$k is not set/d" $(@D)/.config && \
		if [ "$$v" = n ]; then echo "# $$k is not set"; else echo "$$kv"; fi >> $(@D)/.config || \
		exit 1; done
	@$(BUSYBOX_MAKE) -s oldconfig </dev/null >$(@D)/config.out 2>&1 || \
		{ tail -c 600 $(@D)/config.out >&2; echo; exit 1; }
	@for kv in $(BUSYBOX_CONFIG); do k=$${kv%%=*}; v=$${kv#*=}; \
		if [ "$$v" = n ]; then grep -qx "# $$k is not set" $(@D)/.config; \
		else grep -qx "$$kv" $(@D)/.config; fi || \
		{ echo "busybox.mk: $$kv did not hold in $(@D)/.config" >&2; exit 1; }; done
	@touch $@

# Its output in build/busybox/build.out, shown when it fails. The touch:
# kbuild may leave an up-to-date binary's time alone after a .config change.
$(BUSYBOX): $(BUSYBOX_CONFIG_DONE)
	@echo "  BUSYBOX $@"
	@$(BUSYBOX_MAKE) -s -j$$(nproc) busybox >$(@D)/build.out 2>&1 || \
		{ tail -40 $(@D)/build.out >&2; exit 1; }
	@touch $@
	@[ "$$($@ --list | sort | tr '\n' ' ')" = "inetd syslogd " ] || { echo "busybox.mk: $@" \
		"has the applets $$($@ --list | tr '\n' ' '), not inetd and syslogd" >&2; exit 1; }

busybox-clean:
	rm -rf $(BUSYBOX_DIR)

.PHONY: busybox busybox-clean
