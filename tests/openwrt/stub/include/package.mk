# Stand-in for OpenWrt's package.mk: BuildPackage makes one target per
# build step (after setting the package's fields, as the real one
# does), each running the package's own recipe text, and `info`
# prints the package's metadata one field a line.
define BuildPackage
$(eval $(Package/$(1)))
configure:
	$$(Build/Configure)
compile:
	$$(Build/Compile)
install:
	$$(call Package/$(1)/install,$$(DEST))
info:
	@echo 'SECTION=$$(SECTION)'
	@echo 'CATEGORY=$$(CATEGORY)'
	@echo 'SUBMENU=$$(SUBMENU)'
	@echo 'DEPENDS=$$(DEPENDS)'
	@echo 'MENU=$$(MENU)'
	@echo 'PKG_BUILD_FLAGS=$$(PKG_BUILD_FLAGS)'
	@echo 'PKG_SOURCE_PROTO=$$(PKG_SOURCE_PROTO)'
	@echo 'PKG_VERSION=$$(PKG_VERSION)'
	@echo 'CONFFILES=$$(strip $$(Package/$(1)/conffiles))'
	@echo 'CONFIG=$$(strip $$(Package/$(1)/config))'
endef

