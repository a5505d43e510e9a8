# Stand-in for OpenWrt's rules.mk: only what openwrt/Makefile uses.
# The test sets TARGET_CC, TARGET_CFLAGS, ... and PKG_BUILD_DIR on make's
# command line.
INCLUDE_DIR := $(TOPDIR)/include
INSTALL_DIR := install -d -m0755
INSTALL_BIN := install -m0755
INSTALL_CONF := install -m0600
PKG_JOBS ?=
