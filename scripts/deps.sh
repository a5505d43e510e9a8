#!/bin/sh
# deps.sh: install the Debian packages a make target uses, when missing.
# The one place the build installs anything; `check`, `bench`, `cross`,
# `fuzz`, `static`, the kconfig front ends and check-openwrt call it.
#
#   scripts/deps.sh [--no-recommends] ITEM...
#     ITEM is CMD:PACKAGE (install PACKAGE when CMD is not in PATH or
#     /usr/sbin), PACKAGE alone (CMD and PACKAGE share the name), or
#     py:MODULE:PACKAGE (when $PYTHON, default /usr/bin/python3, cannot
#     import MODULE).
#   scripts/deps.sh xinetd DIR
#     xinetd unpacked into DIR from its .deb, with the libraries it links
#     installed: the package conflicts with openbsd-inetd (both are the
#     inet-superserver), and the tests run both.
#
# Nothing missing: nothing run, not even apt-get update. A policy-rc.d
# (when the machine has none, for the install only) keeps server packages
# (squid, sshd, inetd, haproxy) from starting system services: the tests
# start their own, on loopback. apt waits up to 5 minutes for another's lock.
set -eu

apt() { DEBIAN_FRONTEND=noninteractive apt-get -q -o DPkg::Lock::Timeout=300 "$@"; }

have() { PATH=$PATH:/usr/sbin command -v "$1" >/dev/null 2>&1; }

install_pkgs() {
	[ -n "$*" ] || return 0
	echo "installing: $*"
	if [ ! -e /usr/sbin/policy-rc.d ]; then
		printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d
		chmod 755 /usr/sbin/policy-rc.d
		trap 'rm -f /usr/sbin/policy-rc.d' EXIT
	fi
	apt update -qq
	apt install -y -qq $recommends "$@"
}

if [ "${1-}" = xinetd ]; then
	dir=$2
	have xinetd || [ -x "$dir/usr/sbin/xinetd" ] && exit 0
	echo "unpacking xinetd into $dir"
	deb=$dir-deb
	rm -rf "$deb" && mkdir -p "$deb"
	(cd "$deb" && apt-get download -qq -o APT::Sandbox::User=root xinetd)
	libs=
	for p in $(dpkg-deb -f "$deb"/xinetd_*.deb Depends | tr ',' '\n' |
		   sed -n 's/^ *\(lib[^ ]*\).*/\1/p'); do
		[ "$(dpkg-query -W -f='${db:Status-Status}' "$p" 2>/dev/null)" = installed ] ||
			libs="$libs $p"
	done
	recommends=
	# shellcheck disable=SC2086  # a list of package names
	install_pkgs $libs
	dpkg -x "$deb"/xinetd_*.deb "$dir"
	exit 0
fi

recommends=
if [ "${1-}" = --no-recommends ]; then
	recommends=--no-install-recommends
	shift
fi
missing=
for item; do
	case $item in
	py:*:*)
		mod=${item#py:}; pkg=${mod#*:}; mod=${mod%%:*}
		"${PYTHON:-/usr/bin/python3}" -c "import $mod" 2>/dev/null || missing="$missing $pkg" ;;
	*:*)
		have "${item%%:*}" || missing="$missing ${item#*:}" ;;
	*)
		have "$item" || missing="$missing $item" ;;
	esac
done
# shellcheck disable=SC2086  # a list of package names
install_pkgs $missing
