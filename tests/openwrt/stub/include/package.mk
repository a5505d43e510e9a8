# Stand-in for OpenWrt's package.mk (and the parts of download.mk and
# unpack.mk it uses): one target per build step, each running the
# package Makefile's own recipe text.
#   download   $(DL_DIR)/$(PKG_SOURCE) must be there (the stand-in never
#              fetches) and its sha256 must be PKG_HASH, as download.pl
#              checks a file it fetched; an empty PKG_SOURCE_URL fails as
#              download.mk's "missing the URL field" does
#   prepare    download, then unpack into $(BUILD_DIR), as the default
#              Build/Prepare does: the tarball's top directory must be
#              PKG_BUILD_DIR, $(BUILD_DIR)/$(PKG_NAME)-$(PKG_VERSION)
#   configure, compile   Build/Configure, Build/Compile
#   info       the source's fields; info/NAME a package's, one a line
#   install/NAME         Package/NAME/install into $(DEST)
PKG_BUILD_DIR ?= $(BUILD_DIR)/$(PKG_NAME)-$(PKG_VERSION)

download:
	@[ -n "$(PKG_SOURCE_URL)" ] || { echo "Download/default is missing the URL field." >&2; exit 1; }
	@[ -f "$(DL_DIR)/$(PKG_SOURCE)" ] || { echo "no $(DL_DIR)/$(PKG_SOURCE)" >&2; exit 1; }
	@h=$$(sha256sum "$(DL_DIR)/$(PKG_SOURCE)" | cut -d' ' -f1); \
	[ "$$h" = "$(PKG_HASH)" ] || { \
		echo "Hash mismatch for file $(PKG_SOURCE): expected $(PKG_HASH), got $$h" >&2; exit 1; }

prepare: download
	rm -rf "$(PKG_BUILD_DIR)"
	mkdir -p "$(BUILD_DIR)"
	gzip -dc "$(DL_DIR)/$(PKG_SOURCE)" | tar -C "$(BUILD_DIR)" -xf -
	test -d "$(PKG_BUILD_DIR)"

configure:
	$(Build/Configure)
compile:
	$(Build/Compile)

info:
	@echo 'PKG_SOURCE=$(PKG_SOURCE)'
	@echo 'PKG_HASH=$(PKG_HASH)'
	@echo 'PKG_SOURCE_PROTO=$(PKG_SOURCE_PROTO)'
	@echo 'PKG_SOURCE_URL=$(PKG_SOURCE_URL)'
	@echo 'PKG_VERSION=$(PKG_VERSION)'
	@echo 'PKG_LICENSE=$(PKG_LICENSE)'
	@echo 'PKG_LICENSE_FILES=$(PKG_LICENSE_FILES)'
	@echo 'PKG_CPE_ID=$(PKG_CPE_ID)'
	@echo 'PKG_BUILD_FLAGS=$(PKG_BUILD_FLAGS)'

# A package's fields, read when BuildPackage is called (each package's
# define sets the same variables), the ones it leaves out empty.
PACKAGE_FIELDS = SECTION CATEGORY SUBMENU TITLE URL DEPENDS MENU USERID
define BuildPackage
$(foreach f,$(PACKAGE_FIELDS),$(eval $(f):=))
$(eval $(Package/$(1)))
info/$(1):
	@printf '%s\n' $(foreach f,$(PACKAGE_FIELDS),'$(f)=$($(f))') \
		'CONFFILES=$(strip $(Package/$(1)/conffiles))' \
		'CONFIG=$(strip $(Package/$(1)/config))'
install/$(1):
	$$(call Package/$(1)/install,$$(DEST))
endef
