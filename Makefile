# tunneld: `make` builds with the defaults (or .config), `make run` serves
# on 127.0.0.1:3128, `make check` installs what the tests need and runs them.

PREFIX ?= /usr/local
DESTDIR ?=
CC ?= cc
CFLAGS ?= -Os -g
WERROR ?= $(if $(CI),-Werror)
XCFLAGS = -std=c11 -D_GNU_SOURCE -Wall -Wextra -Wshadow -Wno-unused-parameter $(WERROR)
PYTHON ?= /usr/bin/python3

SRCS = tunneld.c http.c acl.c net.c relay.c sni.c log.c
HDRS = $(wildcard *.h) config.h

all: tunneld

config.h: Kconfig scripts/config.awk $(wildcard .config)
	awk -f scripts/config.awk Kconfig $(wildcard .config) > $@.tmp && mv $@.tmp $@

# Linked beside and renamed: a running tunneld keeps its old file.
tunneld: $(SRCS) $(HDRS)
	$(CC) $(CFLAGS) $(XCFLAGS) $(LDFLAGS) -o $@.new $(SRCS) && mv $@.new $@

# A static, stripped musl binary: what goes on a router.
static: tunneld-static
tunneld-static: $(SRCS) $(HDRS)
	@command -v musl-gcc >/dev/null || $(MAKE) deps-static
	musl-gcc -Os -static $(XCFLAGS) -ffunction-sections -fdata-sections \
		-Wl,--gc-sections -s -o $@ $(SRCS)
	@ls -l $@ | awk '{ print "tunneld-static: " $$5 " bytes" }'

run: tunneld
	./tunneld --listen 127.0.0.1:3128 --log stderr -v

TEST_BINS = tests/unit/test_http tests/unit/test_acl tests/unit/test_sni
tests/unit/test_http: tests/unit/test_http.c http.c $(HDRS)
	$(CC) $(CFLAGS) $(XCFLAGS) -I. -o $@ tests/unit/test_http.c http.c
tests/unit/test_acl: tests/unit/test_acl.c acl.c net.c $(HDRS)
	$(CC) $(CFLAGS) $(XCFLAGS) -I. -o $@ tests/unit/test_acl.c acl.c net.c
tests/unit/test_sni: tests/unit/test_sni.c sni.c $(HDRS)
	$(CC) $(CFLAGS) $(XCFLAGS) -I. -o $@ tests/unit/test_sni.c sni.c

# What the tests use, installed when missing (Debian).
DEPS = curl ncat nc:netcat-openbsd systemd-socket-activate:systemd \
	unshare:util-linux openssl
deps:
	@missing=""; for d in $(DEPS); do cmd=$${d%%:*}; pkg=$${d#*:}; \
		command -v $$cmd >/dev/null || missing="$$missing $$pkg"; done; \
	$(PYTHON) -c 'import pytest' 2>/dev/null || missing="$$missing python3-pytest"; \
	if [ -n "$$missing" ]; then \
		echo "installing:$$missing"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing; \
	fi
deps-static:
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq musl-tools

check: deps tunneld $(TEST_BINS)
	@for t in $(TEST_BINS); do ./$$t || exit 1; done
	$(PYTHON) -m pytest -q tests

install: tunneld
	install -d $(DESTDIR)$(PREFIX)/sbin
	install -m 755 tunneld $(DESTDIR)$(PREFIX)/sbin/tunneld

clean:
	rm -f tunneld tunneld-static config.h config.h.tmp $(TEST_BINS)

.PHONY: all static run deps deps-static check install clean
