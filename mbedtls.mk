# mbedtls.mk: mbedTLS 3.6 as three static libraries, built with tunneld's
# own mbedtls_config.h, for the host compiler and for musl-gcc.
# Included by the top Makefile (`include mbedtls.mk`); also works alone:
# `make -f mbedtls.mk mbedtls-host`.
#
# Provides
#   MBEDTLS_SRC        the unpacked source tree (default build/mbedtls-src),
#                      fetched by scripts/debian-src.sh when missing
#   MBEDTLS_STAMP      a file of that tree: depend on it (or on the libs)
#                      before compiling anything that includes mbedtls/*.h
#   MBEDTLS_CFLAGS     include dirs and the config define, for every file
#                      that includes mbedTLS headers
#   MBEDTLS_HOST_LIBS  build/mbedtls-host/lib{mbedtls,mbedx509,mbedcrypto}.a
#                      compiled with $(CC)
#   MBEDTLS_MUSL_LIBS  the same in build/mbedtls-musl/, with musl-gcc
#   mbedtls-host, mbedtls-musl, mbedtls-clean (phony)
#   mbedtls_add_flavour more flavours, for cross compilers (cross.mk): after
#                        MBEDTLS_CC_NAME = the compile command
#                        MBEDTLS_AR_NAME = its ar (default $(MBEDTLS_AR))
#                        $(eval $(call mbedtls_add_flavour,NAME))
#                      MBEDTLS_NAME_LIBS are the three in build/mbedtls-NAME/
#                      and mbedtls-NAME (phony) builds them
# Objects are rebuilt when a source, a header, mbedtls_config.h or the
# compile command changes, and only then.

# Read before the includer's first rule, this file leaves its default goal
# alone (restored at the end).
mbedtls_default_goal := $(.DEFAULT_GOAL)

MBEDTLS_MK := $(lastword $(MAKEFILE_LIST))
MBEDTLS_TOP := $(patsubst %/,%,$(dir $(MBEDTLS_MK)))

MBEDTLS_SRC ?= build/mbedtls-src
MBEDTLS_MUSL_CC ?= musl-gcc
# The includer's HARDEN compile flags (stack protector, fortify, -fPIE: a
# static PIE links only position-independent objects); none when alone.
MBEDTLS_OPT ?= -Os -ffunction-sections -fdata-sections $(filter-out -Wl%,$(HARDEN))
MBEDTLS_AR ?= ar
MBEDTLS_HOST_DIR = build/mbedtls-host
MBEDTLS_MUSL_DIR = build/mbedtls-musl

MBEDTLS_STAMP = $(MBEDTLS_SRC)/include/mbedtls/build_info.h
# Angle brackets: a quoted name would find the library's own default config
# next to build_info.h first (see mbedtls_config.h).
MBEDTLS_CFLAGS = -I$(MBEDTLS_TOP) -I$(MBEDTLS_SRC)/include \
	-DMBEDTLS_CONFIG_FILE='<mbedtls_config.h>'

MBEDTLS_LIBNAMES = libmbedtls.a libmbedx509.a libmbedcrypto.a
MBEDTLS_HOST_LIBS = $(addprefix $(MBEDTLS_HOST_DIR)/,$(MBEDTLS_LIBNAMES))
MBEDTLS_MUSL_LIBS = $(addprefix $(MBEDTLS_MUSL_DIR)/,$(MBEDTLS_LIBNAMES))

# The library's files, split as its own library/Makefile does.
MBEDTLS_LIB_C := $(notdir $(wildcard $(MBEDTLS_SRC)/library/*.c))
MBEDTLS_TLS_C = $(filter ssl_%.c mps_%.c debug.c net_sockets.c,$(MBEDTLS_LIB_C))
MBEDTLS_X509_C = $(filter x509%.c pkcs7.c,$(MBEDTLS_LIB_C))
MBEDTLS_CRYPTO_C = $(filter-out $(MBEDTLS_TLS_C) $(MBEDTLS_X509_C),$(MBEDTLS_LIB_C))
# The getrandom entropy source, compiled from mbedtls_config.h itself.
MBEDTLS_ENTROPY_O = tunneld_entropy.o

mbedtls-host: $(MBEDTLS_HOST_LIBS)
mbedtls-musl: $(MBEDTLS_MUSL_LIBS)

$(MBEDTLS_STAMP):
	sh $(MBEDTLS_TOP)/scripts/debian-src.sh mbedtls $(MBEDTLS_SRC)
	@test -f $@ || { echo "mbedtls.mk: $@ missing after the fetch" >&2; exit 1; }

# Compile command per flavour; DIR/cflags keeps the last one used.
# Each object is announced in one line; V=1 shows the commands.
MBEDTLS_CC_host = $(CC)
MBEDTLS_CC_musl = $(MBEDTLS_MUSL_CC)
mbedtls_flavour = $(patsubst build/mbedtls-%/,%,$(dir $@))
mbedtls_cmd = $(MBEDTLS_CC_$(mbedtls_flavour)) $(MBEDTLS_OPT) $(MBEDTLS_CFLAGS)
mbedtls_cmd_q = $(subst ','\'',$(mbedtls_cmd))

ifeq ($(MBEDTLS_LIB_C),)

# The tree was not there when make read this file. Fetch it, then build each
# flavour in a make that reads it (one per flavour: the three libraries are
# made by the first one's recipe).
$(MBEDTLS_HOST_DIR)/libmbedcrypto.a $(MBEDTLS_MUSL_DIR)/libmbedcrypto.a: $(MBEDTLS_STAMP)
ifeq ($(MBEDTLS_SUBMAKE),)
	+$(MAKE) --no-print-directory -f $(MBEDTLS_MK) MBEDTLS_SUBMAKE=1 \
		CC='$(CC)' MBEDTLS_SRC='$(MBEDTLS_SRC)' MBEDTLS_MUSL_CC='$(MBEDTLS_MUSL_CC)' \
		MBEDTLS_OPT='$(MBEDTLS_OPT)' MBEDTLS_AR='$(MBEDTLS_AR)' \
		$(addprefix $(dir $@),$(MBEDTLS_LIBNAMES))
else
	@echo "mbedtls.mk: no $(MBEDTLS_SRC)/library/*.c (the fetch failed, or make -n fetched nothing)" >&2; exit 1
endif
$(MBEDTLS_HOST_DIR)/libmbedx509.a: $(MBEDTLS_HOST_DIR)/libmbedcrypto.a
	@:
$(MBEDTLS_HOST_DIR)/libmbedtls.a: $(MBEDTLS_HOST_DIR)/libmbedx509.a
	@:
$(MBEDTLS_MUSL_DIR)/libmbedx509.a: $(MBEDTLS_MUSL_DIR)/libmbedcrypto.a
	@:
$(MBEDTLS_MUSL_DIR)/libmbedtls.a: $(MBEDTLS_MUSL_DIR)/libmbedx509.a
	@:

else

mbedtls_objs = $(addprefix $(1)/,$(2:.c=.o))

$(MBEDTLS_HOST_DIR)/libmbedcrypto.a: $(call mbedtls_objs,$(MBEDTLS_HOST_DIR),$(MBEDTLS_CRYPTO_C)) $(MBEDTLS_HOST_DIR)/$(MBEDTLS_ENTROPY_O)
$(MBEDTLS_HOST_DIR)/libmbedx509.a: $(call mbedtls_objs,$(MBEDTLS_HOST_DIR),$(MBEDTLS_X509_C))
$(MBEDTLS_HOST_DIR)/libmbedtls.a: $(call mbedtls_objs,$(MBEDTLS_HOST_DIR),$(MBEDTLS_TLS_C))
$(MBEDTLS_MUSL_DIR)/libmbedcrypto.a: $(call mbedtls_objs,$(MBEDTLS_MUSL_DIR),$(MBEDTLS_CRYPTO_C)) $(MBEDTLS_MUSL_DIR)/$(MBEDTLS_ENTROPY_O)
$(MBEDTLS_MUSL_DIR)/libmbedx509.a: $(call mbedtls_objs,$(MBEDTLS_MUSL_DIR),$(MBEDTLS_X509_C))
$(MBEDTLS_MUSL_DIR)/libmbedtls.a: $(call mbedtls_objs,$(MBEDTLS_MUSL_DIR),$(MBEDTLS_TLS_C))

$(MBEDTLS_HOST_LIBS) $(MBEDTLS_MUSL_LIBS):
	$(if $(V),,@echo "  AR      $@"; )rm -f $@.tmp && $(MBEDTLS_AR) rcs $@.tmp $(filter %.o,$^) && mv $@.tmp $@

# One pattern rule per flavour (a rule with two target patterns would be
# one recipe making both). An object also waits for the compile command
# (DIR/cflags, which makes DIR).
MBEDTLS_COMPILE = $(if $(V),,@echo "  CC      $@"; )$(mbedtls_cmd) -MMD -MP -c -o $@
$(MBEDTLS_HOST_DIR)/%.o: $(MBEDTLS_SRC)/library/%.c $(MBEDTLS_HOST_DIR)/cflags
	$(MBEDTLS_COMPILE) $<
$(MBEDTLS_MUSL_DIR)/%.o: $(MBEDTLS_SRC)/library/%.c $(MBEDTLS_MUSL_DIR)/cflags
	$(MBEDTLS_COMPILE) $<

# The entropy source: the C part at the end of mbedtls_config.h.
$(MBEDTLS_HOST_DIR)/$(MBEDTLS_ENTROPY_O): $(MBEDTLS_TOP)/mbedtls_config.h $(MBEDTLS_HOST_DIR)/cflags
	$(MBEDTLS_COMPILE) -x c -DTUNNELD_MBEDTLS_ENTROPY_IMPL $<
$(MBEDTLS_MUSL_DIR)/$(MBEDTLS_ENTROPY_O): $(MBEDTLS_TOP)/mbedtls_config.h $(MBEDTLS_MUSL_DIR)/cflags
	$(MBEDTLS_COMPILE) -x c -DTUNNELD_MBEDTLS_ENTROPY_IMPL $<

endif

# Rewritten only when the compile command changes, so a changed flag or
# compiler rebuilds everything and nothing else does.
$(MBEDTLS_HOST_DIR)/cflags $(MBEDTLS_MUSL_DIR)/cflags: mbedtls-force
	@mkdir -p $(@D)
	@command -v $(firstword $(mbedtls_cmd)) >/dev/null || { \
		echo "mbedtls.mk: no $(firstword $(mbedtls_cmd))$(if $(findstring musl,$@), (Debian: apt-get install musl-tools))" >&2; \
		exit 1; }
	@echo '$(mbedtls_cmd_q)' | cmp -s - $@ || echo '$(mbedtls_cmd_q)' > $@

-include $(wildcard $(MBEDTLS_HOST_DIR)/*.d $(MBEDTLS_MUSL_DIR)/*.d)

# The further flavours: the same tree, config and rules as the two above,
# in build/mbedtls-NAME/ with MBEDTLS_CC_NAME. The fetch-first submake gets
# the flavour by name (MBEDTLS_SUB_FLAVOUR) and its commands.
MBEDTLS_FLAVOURS =
define mbedtls_add_flavour
MBEDTLS_FLAVOURS += $(1)
MBEDTLS_$(1)_LIBS = $$(addprefix build/mbedtls-$(1)/,$$(MBEDTLS_LIBNAMES))
mbedtls-$(1): $$(MBEDTLS_$(1)_LIBS)
.PHONY: mbedtls-$(1)
ifeq ($$(MBEDTLS_LIB_C),)
build/mbedtls-$(1)/libmbedcrypto.a: $$(MBEDTLS_STAMP)
ifeq ($$(MBEDTLS_SUBMAKE),)
	+$$(MAKE) --no-print-directory -f $$(MBEDTLS_MK) MBEDTLS_SUBMAKE=1 \
		MBEDTLS_SRC='$$(MBEDTLS_SRC)' MBEDTLS_OPT='$$(MBEDTLS_OPT)' MBEDTLS_AR='$$(MBEDTLS_AR)' \
		MBEDTLS_SUB_FLAVOUR=$(1) MBEDTLS_CC_$(1)='$$(MBEDTLS_CC_$(1))' \
		MBEDTLS_AR_$(1)='$$(MBEDTLS_AR_$(1))' $$(MBEDTLS_$(1)_LIBS)
else
	@echo "mbedtls.mk: no $$(MBEDTLS_SRC)/library/*.c (the fetch failed, or make -n fetched nothing)" >&2; exit 1
endif
build/mbedtls-$(1)/libmbedx509.a: build/mbedtls-$(1)/libmbedcrypto.a
	@:
build/mbedtls-$(1)/libmbedtls.a: build/mbedtls-$(1)/libmbedx509.a
	@:
else
build/mbedtls-$(1)/libmbedcrypto.a: $$(call mbedtls_objs,build/mbedtls-$(1),$$(MBEDTLS_CRYPTO_C)) build/mbedtls-$(1)/$$(MBEDTLS_ENTROPY_O)
build/mbedtls-$(1)/libmbedx509.a: $$(call mbedtls_objs,build/mbedtls-$(1),$$(MBEDTLS_X509_C))
build/mbedtls-$(1)/libmbedtls.a: $$(call mbedtls_objs,build/mbedtls-$(1),$$(MBEDTLS_TLS_C))
$$(MBEDTLS_$(1)_LIBS):
	$$(if $$(V),,@echo "  AR      $$@"; )rm -f $$@.tmp && $$(or $$(MBEDTLS_AR_$(1)),$$(MBEDTLS_AR)) rcs $$@.tmp $$(filter %.o,$$^) && mv $$@.tmp $$@
build/mbedtls-$(1)/%.o: $$(MBEDTLS_SRC)/library/%.c build/mbedtls-$(1)/cflags
	$$(MBEDTLS_COMPILE) $$<
build/mbedtls-$(1)/$$(MBEDTLS_ENTROPY_O): $$(MBEDTLS_TOP)/mbedtls_config.h build/mbedtls-$(1)/cflags
	$$(MBEDTLS_COMPILE) -x c -DTUNNELD_MBEDTLS_ENTROPY_IMPL $$<
endif
build/mbedtls-$(1)/cflags: mbedtls-force
	@mkdir -p $$(@D)
	@command -v $$(firstword $$(mbedtls_cmd)) >/dev/null || { \
		echo "mbedtls.mk: no $$(firstword $$(mbedtls_cmd)) (a cross compiler: make deps-cross)" >&2; \
		exit 1; }
	@echo '$$(mbedtls_cmd_q)' | cmp -s - $$@ || echo '$$(mbedtls_cmd_q)' > $$@
-include $$(wildcard build/mbedtls-$(1)/*.d)
endef
ifneq ($(MBEDTLS_SUB_FLAVOUR),)
$(eval $(call mbedtls_add_flavour,$(MBEDTLS_SUB_FLAVOUR)))
endif

mbedtls-clean:
	rm -rf $(MBEDTLS_HOST_DIR) $(MBEDTLS_MUSL_DIR) $(addprefix build/mbedtls-,$(MBEDTLS_FLAVOURS))

.PHONY: mbedtls-host mbedtls-musl mbedtls-clean mbedtls-force

.DEFAULT_GOAL := $(mbedtls_default_goal)
