# openwrt.mk: `make check-openwrt OPENWRT_STAGE=DIR` runs the OpenWrt
# package's procd service (openwrt/files/) under OpenWrt's own procd,
# ubusd, ujail, uci, jshn and shell libraries: tests/test_openwrt_real.py.
# DIR is a staging tree of those pieces, built beforehand by whoever runs
# this, each with its own build system; nothing here fetches or builds
# them. README ("OpenWrt", "Tested with OpenWrt's own pieces") says where
# their sources are and the layout DIR must have. Without DIR, or with a
# piece missing, the target says so in one line and succeeds. Not part of
# `make check`: there the test is skipped and the stand-in tests
# (tests/test_openwrt.py) run. Included by the top Makefile.

OPENWRT_STAGE ?=
# The root the test builds takes its shell and tools from this machine's
# busybox (OpenWrt's /bin/sh is busybox ash too) and flock from util-linux
# (Debian's busybox has no flock; procd.sh takes its lock with it).
OPENWRT_DEPS = busybox:busybox-static nsenter:util-linux flock:util-linux curl
deps-openwrt:
	@sh scripts/deps.sh --no-recommends $(OPENWRT_DEPS)

check-openwrt:
	@why=$$($(PYTHON) tests/test_openwrt_real.py --missing '$(OPENWRT_STAGE)') || { \
		echo "check-openwrt: skipped: $$why (README: OpenWrt)"; exit 0; }; \
	$(MAKE) --no-print-directory deps-openwrt tunneld && \
	OPENWRT_STAGE='$(abspath $(OPENWRT_STAGE))' $(PYTHON) -m pytest -q tests/test_openwrt_real.py

.PHONY: deps-openwrt check-openwrt
