#!/bin/sh
# Put an unpacked source tree of PACKAGE at DESTDIR, taken from Debian's
# source packages of the trixie suite:
#   mbedtls  3.6 LTS, what OpenWrt ships too (Debian 12 has only 2.28);
#   musl     for its crypt(3) files: Debian's musl-dev leaves crypt out,
#            so the static build compiles the three hash kinds tunneld
#            accepts (bcrypt, SHA-256 and SHA-512 crypt) from musl itself;
#   busybox  for the tests: its inetd and syslogd run contrib/inetd.conf
#            (busybox.mk builds them; Debian's binary package has no inetd).
#
# Usage: scripts/debian-src.sh mbedtls|musl|busybox DESTDIR
#        scripts/debian-src.sh --mirror   (the mirror it would use)
#
# Idempotent: a DESTDIR that already holds the wanted tree is left alone. Runs
# without a terminal (CI). Root (or sudo) is needed only for what changes
# the machine, below; the download itself runs as the caller.
# What it may change on the machine, once:
#   - /etc/apt/sources.list.d/tunneld-trixie-src.sources, a deb-src entry
#     for the mirror the machine's apt sources already use (below), only:
#     apt gets trixie's Sources index, never its Packages, so
#     `apt-get install` still picks bookworm's binaries;
#   - `apt-get update`;
#   - dpkg-dev, installed when dpkg-source is missing.
set -eu

usage() { echo "usage: $0 mbedtls|musl|busybox DESTDIR" >&2; exit 2; }
die() { echo "debian-src: error: $*" >&2; exit 1; }
say() { echo "debian-src: $*" >&2; }

# The mirror is the one this machine already takes its own release from:
# the first enabled `deb` entry, one-line or deb822, whose suite is the
# release's codename and whose components hold main. Nothing else is guessed.
apt_dir=${DEBIAN_SRC_APT_DIR:-/etc/apt}
codename=$(sed -n 's/^VERSION_CODENAME=//p' "${DEBIAN_SRC_OS_RELEASE:-/etc/os-release}" | tr -d '"')
machine_mirror() {
	for f in "$apt_dir/sources.list" "$apt_dir"/sources.list.d/*.list; do
		[ -f "$f" ] || continue
		awk -v s="$codename" '$1 == "deb" {
			sub(/\[[^]]*\]/, ""); $0 = $0
			if ($3 != s) next
			for (j = 4; j <= NF; j++) if ($j == "main") { print $2; exit }
		}' "$f"
	done
	for f in "$apt_dir"/sources.list.d/*.sources; do
		[ -f "$f" ] || continue
		awk -v s="$codename" 'function flush() {
			if (deb && suite && main && on && uri != "") print uri
			deb = suite = main = 0; on = 1; uri = ""
		}
		BEGIN { on = 1 }
		/^[ \t]*#/ { next }
		/^[ \t]*$/ { flush(); next }
		{ k = tolower($1); sub(/:$/, "", k) }
		k == "types" { for (j = 2; j <= NF; j++) if ($j == "deb") deb = 1 }
		k == "uris" { uri = $2 }
		k == "suites" { for (j = 2; j <= NF; j++) if ($j == s) suite = 1 }
		k == "components" { for (j = 2; j <= NF; j++) if ($j == "main") main = 1 }
		k == "enabled" && tolower($2) == "no" { on = 0 }
		END { flush() }' "$f"
	done
}
first_mirror() {
	[ -n "$codename" ] || die "/etc/os-release names no VERSION_CODENAME"
	m=$(machine_mirror | sed -n 1p)
	[ -n "$m" ] || die "no enabled apt source serves $codename main; add the" \
		"machine's Debian mirror to its apt sources"
	echo "$m"
}

# --mirror: print that mirror and stop (what the tests check).
if [ "${1:-}" = --mirror ]; then
	first_mirror
	exit 0
fi

if [ $# -ne 2 ] || [ -z "$2" ]; then
	usage
fi
pkg=$1
dest=${2%/}
case $pkg in
mbedtls|musl|busybox) ;;
*) usage ;;
esac

want_major=3
want_minor=6
suite=trixie
list=/etc/apt/sources.list.d/tunneld-trixie-src.sources
keyring=/usr/share/keyrings/debian-archive-keyring.gpg

# The version a tree declares, as "MAJOR.MINOR.PATCH", or nothing.
tree_version() {
	h=$1/include/mbedtls/build_info.h
	[ -f "$h" ] || return 0
	awk '$1 == "#define" && $2 == "MBEDTLS_VERSION_STRING" {
		gsub(/"/, "", $3); print $3; exit }' "$h"
}

is_wanted() {
	if [ "$pkg" = musl ]; then
		[ -f "$1/src/crypt/crypt_sha512.c" ]
		return
	fi
	if [ "$pkg" = busybox ]; then
		[ -f "$1/networking/inetd.c" ] && [ -f "$1/sysklogd/syslogd.c" ]
		return
	fi
	case $(tree_version "$1") in
	"$want_major.$want_minor".*) [ -d "$1/library" ] ;;
	*) return 1 ;;
	esac
}

if is_wanted "$dest"; then
	exit 0
fi
if [ -e "$dest" ] && [ -n "$(ls -A "$dest" 2>/dev/null)" ]; then
	die "$dest exists but is not the $pkg source tree wanted; remove it and run again"
fi

export DEBIAN_FRONTEND=noninteractive
exec </dev/null

# Runs a command as root: directly, or through sudo without a password.
root() {
	if [ "$(id -u)" = 0 ]; then
		"$@"
	elif command -v sudo >/dev/null; then
		sudo -n "$@"
	else
		die "needs root (or sudo) for: $*"
	fi
}
# apt-get as root; waits up to 5 minutes for another apt/dpkg's lock.
apt_root() { root apt-get -q -o DPkg::Lock::Timeout=300 "$@"; }

# Trixie's InRelease is signed with trixie's archive keys, which bookworm's
# current debian-archive-keyring (2023.3+deb12u2) carries; an older one is
# updated from bookworm(-updates). Nothing is ever marked trusted. apt then
# checks the downloaded .dsc and tarballs against the signed index.
# The package ships each release's keys alone too, next to the combined
# keyring: their presence tells the combined one has them.
has_trixie_keys() {
	[ -s /usr/share/keyrings/debian-archive-trixie-automatic.gpg ] &&
		[ -s /usr/share/keyrings/debian-archive-trixie-stable.gpg ] &&
		[ -s "$keyring" ]
}

if ! has_trixie_keys; then
	say "the archive keyring lacks trixie's keys; updating debian-archive-keyring"
	apt_root update
	apt_root install -y debian-archive-keyring
	has_trixie_keys || die "$keyring still has no trixie keys: install a" \
		"newer debian-archive-keyring (bookworm-updates or bookworm-backports)"
fi

mirror=$(first_mirror)

entry="# Written by tunneld's scripts/debian-src.sh: trixie's source packages,
# for mbedTLS 3.6, musl's crypt and busybox (tests), from the mirror the
# machine's own apt sources name. Source only (deb-src): no binary package
# comes from here.
Types: deb-src
URIs: $mirror
Suites: $suite
Components: main
Signed-By: $keyring"

if [ "$(cat "$list" 2>/dev/null)" != "$entry" ]; then
	say "adding $list"
	printf '%s\n' "$entry" | root tee "$list.new" >/dev/null
	root mv "$list.new" "$list"
fi

# apt-get update only when apt does not yet know trixie's source package.
# --only-source: PACKAGE names a source package, never a binary one (for
# busybox, bookworm's binary package of that name would be looked up first).
knows_source() {
	apt-get source -qq --only-source --print-uris "$pkg/$suite" >/dev/null 2>&1
}
if ! knows_source; then
	say "apt-get update"
	apt_root update || die "apt-get update failed (is trixie's Release signed by a key in $keyring?)"
	knows_source || die "apt knows no $pkg source package in $suite"
fi

if ! command -v dpkg-source >/dev/null; then
	say "installing dpkg-dev (dpkg-source)"
	apt_root install -y --no-install-recommends dpkg-dev
fi

# Unpack beside DESTDIR, so the final move is a rename: DESTDIR is either
# absent or complete, never half there.
parent=$(dirname "$dest")
mkdir -p "$parent"
tmp=$(mktemp -d "$parent/.$pkg-src.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
trap 'exit 1' INT TERM
# Root's apt downloads as the unprivileged _apt user, where that can write.
if [ "$(id -u)" = 0 ] && id _apt >/dev/null 2>&1; then
	chown _apt "$tmp"
fi

# No root needed for this one: the tree belongs to whoever runs the build.
say "apt-get source $pkg/$suite"
(cd "$tmp" && apt-get -q source --only-source "$pkg/$suite") ||
	die "apt-get source $pkg/$suite failed"

tree=
for d in "$tmp"/"$pkg"-*/; do
	[ -d "$d" ] && tree=${d%/}
done
[ -n "$tree" ] || die "apt-get source unpacked no $pkg-* directory"
is_wanted "$tree" ||
	die "$suite's $pkg is not what is wanted (mbedtls: $want_major.$want_minor.x;" \
		"found '$(tree_version "$tree")')"

if is_wanted "$dest"; then
	say "$dest was filled meanwhile (another run); keeping it"
	exit 0
fi
if [ -d "$dest" ]; then
	rmdir "$dest" || die "$dest is not empty"
fi
mv "$tree" "$dest"
say "$(basename "$tree") in $dest"
