# make dist: tunneld-VERSION.tar.gz, the release tarball a packages feed
# downloads (openwrt/Makefile's PKG_SOURCE), with VERSION from version.h.
#
# It is the tree as committed (HEAD), every tracked file and nothing else,
# under tunneld-VERSION/, made by git archive: entries sorted, each with
# the commit's time, owner 0, modes 0644/0755 (tar.umask is fixed here,
# whatever the user's git config says), the commit id in the pax header
# (`git get-tar-commit-id` reads it back); gzip -n leaves out a name and a
# time. The same commit gives the same bytes.
#
# It then writes the tarball's sha256 and the version into openwrt/Makefile
# (PKG_HASH, PKG_VERSION), in the work tree. The copy of openwrt/Makefile
# inside the tarball cannot carry its own tarball's hash: it keeps the one
# of the dist before. The feed uses the copy written here; commit it after
# the release commit, and `git checkout RELEASE && make dist` gives the
# published bytes again. Uncommitted changes are not in the tarball: a
# warning says so.

dist:
	@git rev-parse -q --verify HEAD >/dev/null 2>&1 || { \
		echo "dist: not a git checkout with a commit: the tarball is the committed tree" >&2; \
		exit 1; }
	@v=$$(git show HEAD:version.h | sed -n 's/^#define VERSION "\([0-9A-Za-z.+~-]*\)"$$/\1/p'); \
	[ -n "$$v" ] || { echo "dist: no VERSION in the committed version.h" >&2; exit 1; }; \
	out=tunneld-$$v.tar.gz; rm -f $$out tunneld-$$v.tar; \
	git -c tar.umask=0022 archive --format=tar --prefix=tunneld-$$v/ -o tunneld-$$v.tar HEAD && \
	gzip -9n tunneld-$$v.tar && \
	h=$$(sha256sum $$out | cut -d' ' -f1) && \
	sed -i -e "s/^PKG_VERSION:=.*/PKG_VERSION:=$$v/" -e "s/^PKG_HASH:=.*/PKG_HASH:=$$h/" \
		openwrt/Makefile && \
	grep -qx "PKG_HASH:=$$h" openwrt/Makefile || { \
		echo "dist: openwrt/Makefile has no PKG_HASH line to write" >&2; exit 1; }; \
	echo "dist: $$out $$(wc -c < $$out) bytes, sha256 $$h (PKG_HASH in openwrt/Makefile)"
	@git diff --quiet HEAD -- . ':(exclude)openwrt/Makefile' || \
		echo "dist: warning: uncommitted changes are not in the tarball" >&2

clean: clean-dist
clean-dist:
	rm -f tunneld-*.tar.gz tunneld-*.tar

.PHONY: dist clean-dist
