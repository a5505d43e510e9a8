"""Kconfig is read by the real kconfig front end, and scripts/config.awk turns
its .config into the same config.h, refusing values out of range."""

import os
import shutil
import subprocess

from conftest import REPO

AWK = ["awk", "-f", str(REPO / "scripts/config.awk"), str(REPO / "Kconfig")]


def kconfig(tmp_path, *args):
    env = dict(os.environ, KCONFIG_CONFIG=str(tmp_path / ".config"))
    r = subprocess.run(["kconfig-conf", *args, str(REPO / "Kconfig")], cwd=tmp_path, env=env,
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 0, r.stdout + r.stderr
    return (tmp_path / ".config").read_text()


def config_h(dotconfig=None):
    r = subprocess.run(AWK + ([str(dotconfig)] if dotconfig else []), capture_output=True,
                       text=True, timeout=10)
    return r


def test_defconfig_is_the_builtin_defaults(tmp_path):
    text = kconfig(tmp_path, "--alldefconfig")
    assert "CONFIG_TLS=y" in text and "CONFIG_HEADER_MAX=8192" in text
    assert config_h(tmp_path / ".config").stdout == config_h().stdout


def test_a_feature_turned_off_reaches_config_h(tmp_path):
    kconfig(tmp_path, "--alldefconfig")
    dot = tmp_path / ".config"
    dot.write_text(dot.read_text().replace("CONFIG_TLS=y", "# CONFIG_TLS is not set")
                   .replace("CONFIG_RELAY_BUF=16384", "CONFIG_RELAY_BUF=4096"))
    kconfig(tmp_path, "--olddefconfig")
    out = config_h(dot).stdout
    assert "#define CONFIG_TLS 0\n" in out and "#define CONFIG_RELAY_BUF 4096\n" in out
    assert "#define CONFIG_AUTH 1\n" in out


def test_out_of_range_values_are_refused(tmp_path):
    for line, symbol in [("CONFIG_RELAY_BUF=999999", "RELAY_BUF"),
                         ("CONFIG_HEADER_MAX=abc", "HEADER_MAX"),
                         ("CONFIG_HEADER_COUNT=7", "HEADER_COUNT"),
                         ("CONFIG_HTTP_ANSWER_MAX=65535", "HTTP_ANSWER_MAX")]:
        dot = tmp_path / ".config"
        dot.write_text(line + "\n")
        r = config_h(dot)
        assert r.returncode != 0, line
        assert f"CONFIG_{symbol}=" in r.stderr and "is not a number from" in r.stderr, r.stderr


FEATURES = {"AUTH": "auth", "TLS": "tls", "TLS_TICKETS": "tls-tickets", "IPV6": "ipv6",
            "SPLICE": "splice",
            "HTTP_TUNNEL": "http-tunnel", "SANDBOX": "sandbox", "PROXY_PROTOCOL": "proxy-protocol",
            "UPSTREAM": "upstream"}

# A feature that "depends on" another is off with it.
DEPENDS = {"TLS_TICKETS": "TLS"}


def test_a_feature_off_turns_off_what_depends_on_it(tmp_path):
    """config.awk follows "depends on" as kconfig does: without TLS no
    TLS_TICKETS, whatever the default or the .config says."""
    dot = tmp_path / ".config"
    for text in ("# CONFIG_TLS is not set\n", "# CONFIG_TLS is not set\nCONFIG_TLS_TICKETS=y\n"):
        dot.write_text(text)
        out = config_h(dot).stdout
        assert "#define CONFIG_TLS 0\n" in out and "#define CONFIG_TLS_TICKETS 0\n" in out, out
    dot.write_text("# CONFIG_TLS_TICKETS is not set\n")
    out = config_h(dot).stdout
    assert "#define CONFIG_TLS 1\n" in out and "#define CONFIG_TLS_TICKETS 0\n" in out
    assert "#define CONFIG_TLS_TICKETS 1\n" in config_h().stdout


def test_every_build_follows_its_configuration(tmp_path):
    """config.h and config.mk follow .config and CONFIG_*= on the command
    line both ways: each feature turned off and on again rebuilds tunneld
    with it off and on (--version), a .config added, changed and removed
    does the same, and a make with nothing changed rebuilds nothing. The
    build runs in a copy of the tree, sharing its build/ (mbedTLS)."""
    tree = tmp_path / "tree"
    files = subprocess.run(["git", "ls-files", "-z"], cwd=REPO, capture_output=True,
                           check=True, timeout=30).stdout.split(b"\0")
    for f in filter(None, files):
        dest = tree / f.decode()
        dest.parent.mkdir(parents=True, exist_ok=True)
        if not (REPO / f.decode()).is_symlink() and (REPO / f.decode()).is_file():
            shutil.copy2(REPO / f.decode(), dest)   # with its time: nothing newer
    (tree / "build").symlink_to(REPO / "build")
    # The shared build/ is never written (other builds may be using it):
    # its mbedTLS libraries count as made, whatever their inputs' times.
    keep = [f"-obuild/mbedtls-host/{lib}"
            for lib in ("libmbedtls.a", "libmbedx509.a", "libmbedcrypto.a")]
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("CONFIG_") and k not in ("MAKEFLAGS", "MFLAGS", "MAKELEVEL")}

    def make(*args):
        r = subprocess.run(["make", "--no-print-directory", *keep, "tunneld", *args], cwd=tree,
                           env=env, capture_output=True, text=True, timeout=300)
        assert r.returncode == 0, r.stdout + r.stderr
        return r.stdout

    def features():
        out = subprocess.run([str(tree / "tunneld"), "--version"], capture_output=True,
                             text=True, timeout=10).stdout
        words = out.replace("(", " ").replace(")", " ").split()
        assert all(f"+{f}" in words or f"-{f}" in words for f in FEATURES.values()), out
        return {name: f"+{flag}" in words for name, flag in FEATURES.items()}

    make()
    assert all(features().values()), features()
    assert "tunneld.new" not in make(), "a make with nothing changed rebuilt tunneld"
    # Each feature off in turn (as n or as 0); the one before it, no longer
    # on the command line, is back on.
    for i, name in enumerate(FEATURES):
        make(f"CONFIG_{name}={'n0'[i % 2]}")
        got = features()
        assert not got[name] and all(v for k, v in got.items()
                                     if k != name and DEPENDS.get(k) != name), (name, got)
        assert not any(got[k] for k, d in DEPENDS.items() if d == name), (name, got)
    make()
    assert all(features().values()), features()
    dot = tree / ".config"
    dot.write_text("# CONFIG_TLS is not set\n")
    make()
    assert not features()["TLS"]
    dot.write_text("CONFIG_TLS=y\n# CONFIG_SPLICE is not set\n")
    make()
    assert features()["TLS"] and not features()["SPLICE"]
    dot.unlink()
    make()
    assert all(features().values()), features()
    assert "tunneld.new" not in make(), "a make with nothing changed rebuilt tunneld"


def test_every_build_depends_on_its_sources():
    """A binary is made again when a source, a header or a library it is
    built from changed: make's own list of each rule's prerequisites (an
    included makefile read before SRCS, HDRS and MUSL_LIBS were set left
    make bench's counting build and the fuzzers with none of them)."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("CONFIG_") and k not in ("MAKEFLAGS", "MFLAGS", "MAKELEVEL")}
    r = subprocess.run(["make", "-pnq", "--no-print-directory", "tunneld"], cwd=REPO, env=env,
                       capture_output=True, text=True, timeout=60)
    rules = {}
    for line in r.stdout.splitlines():
        target, colon, prereqs = line.partition(": ")
        if colon and " " not in target and target not in rules:
            rules[target] = prereqs.split()
    want = {
        "tunneld-static": ["sandbox.c", "config.h", "build/mbedtls-musl/libmbedcrypto.a"],
        "build/bench/tunneld-count": ["sandbox.c", "tls.c", "config.h",
                                      "build/mbedtls-musl/libmbedcrypto.a"],
        "build/fuzz/fuzz_http": ["http.c", "config.h"],
        "build/fuzz/fuzz_acl": ["acl.c", "config.h"],
    }
    for target, needs in want.items():
        assert target in rules, f"make knows no rule for {target}"
        missing = [f for f in needs if f not in rules[target]]
        assert not missing, f"{target} is not made again when {missing} change"
