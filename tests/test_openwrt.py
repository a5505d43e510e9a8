"""The OpenWrt package in openwrt/: the procd init script, the shipped UCI
config and the package Makefile.

The init script is sourced by sh (dash) after a prelude of stand-ins for
OpenWrt's UCI and procd shell functions (tests/openwrt/prelude.sh), fed
the UCI files in tests/openwrt/; the Makefile is run by GNU make against
stand-ins for rules.mk and package.mk (tests/openwrt/stub/). No network,
no ports: the one real build is tunneld without TLS, in a temporary copy
of the repository's tracked files.
"""

import os
import re
import shlex
import shutil
import stat
import subprocess
from pathlib import Path

import pytest

TESTS = Path(__file__).resolve().parent
REPO = TESTS.parent
PKG = REPO / "openwrt"
INIT = PKG / "files" / "tunneld.init"
UCI_DEFAULT = PKG / "files" / "tunneld.config"
FIXTURES = TESTS / "openwrt"
STUB = FIXTURES / "stub"
PROG = "/usr/sbin/tunneld"
SH = shutil.which("dash") or "/bin/sh"
SEP = "\x1f"


# --- the init script under stand-ins ------------------------------------

def parse_uci(text):
    """UCI file text -> [(type, name, {option: value}, {list: [values]})]."""
    sections = []
    for n, line in enumerate(text.splitlines(), 1):
        words = shlex.split(line, comments=True)
        if not words:
            continue
        if words[0] == "config":
            assert len(words) == 3, f"line {n}: {line!r}"
            sections.append((words[1], words[2], {}, {}))
        elif words[0] in ("option", "list"):
            assert len(words) == 3 and sections, f"line {n}: {line!r}"
            _, _, options, lists = sections[-1]
            if words[0] == "option":
                options[words[1]] = words[2]
            else:
                lists.setdefault(words[1], []).append(words[2])
        else:
            raise AssertionError(f"line {n}: not UCI: {line!r}")
    return sections


def uci_to_shell(sections):
    """The variables OpenWrt's config_load would leave, as assignments."""
    out = ["CONFIG_SECTIONS=" + shlex.quote(" ".join(s[1] for s in sections))]
    for typ, name, options, lists in sections:
        out.append(f"CONFIG_{name}_TYPE={shlex.quote(typ)}")
        for k, v in options.items():
            out.append(f"CONFIG_{name}_{k}={shlex.quote(v)}")
        for k, values in lists.items():
            out.append(f"CONFIG_{name}_{k}_LENGTH={len(values)}")
            for i, v in enumerate(values, 1):
                out.append(f"CONFIG_{name}_{k}_ITEM{i}={shlex.quote(v)}")
    return "\n".join(out) + "\n"


def run_init(uci_text, call="start_service"):
    """Source the init script as rc.common would and call one function.
    Returns (calls, stderr): calls are the stand-ins' argument lists."""
    script = (uci_to_shell(parse_uci(uci_text))
              + f". {shlex.quote(str(FIXTURES / 'prelude.sh'))}\n"
              + f". {shlex.quote(str(INIT))}\n"
              + f"{call}\n")
    r = subprocess.run([SH, "-c", script], capture_output=True, text=True, timeout=30)
    assert r.returncode == 0, r.stderr
    calls = [line.split(SEP) for line in r.stdout.splitlines()]
    return calls, r.stderr


def instances(calls):
    """procd calls -> [(instance name, command list, other params)]."""
    assert calls[0] == ["config_load", "tunneld"], calls
    found, cur = [], None
    for c in calls[1:]:
        name, args = c[0], c[1:]
        if name == "procd_open_instance":
            assert cur is None, "instance opened inside an instance"
            cur = {"name": args, "command": None, "params": {}}
        elif name == "procd_set_param" and args[0] == "command":
            assert cur is not None and cur["command"] is None
            cur["command"] = args[1:]
        elif name == "procd_append_param" and args[0] == "command":
            assert cur is not None and cur["command"] is not None
            cur["command"] += args[1:]
        elif name == "procd_set_param":
            assert cur is not None
            cur["params"][args[0]] = args[1:]
        elif name == "procd_close_instance":
            assert cur is not None
            found.append((cur["name"], cur["command"], cur["params"]))
            cur = None
        else:
            raise AssertionError(f"unexpected call {c}")
    assert cur is None, "instance left open"
    return found


PARAMS = {"respawn": [], "stderr": ["1"]}


def fixture(name):
    return (FIXTURES / name).read_text()


@pytest.mark.parametrize("name", ["disabled.uci", "no_listen.uci"])
def test_not_started(name):
    calls, err = run_init(fixture(name))
    assert instances(calls) == []
    if name == "no_listen.uci":
        assert "no 'list listen'" in err


def test_one_listen():
    calls, _ = run_init(fixture("one_listen.uci"))
    assert instances(calls) == [
        (["main"], [PROG, "--listen", "127.0.0.1:3128", "--log", "syslog"], PARAMS)]


def test_every_option():
    calls, _ = run_init(fixture("full.uci"))
    assert instances(calls) == [(["main"], [
        PROG,
        "--listen", "192.168.1.1:3128", "--listen", "[fd00::1]:3129",
        "--users", "/etc/tunneld/users",
        "--realm", "home router",
        "--acl", "/etc/tunneld/rules",
        "--cert", "/etc/tunneld/cert.pem",
        "--key", "/etc/tunneld/key.pem",
        "--connect-timeout", "5",
        "--header-timeout", "7",
        "--idle-timeout", "300",
        "--max-conns", "32",
        "--user", "nobody",
        "--log", "syslog",
    ], PARAMS)]


def test_empty_options_left_out():
    calls, _ = run_init(fixture("empty_options.uci"))
    assert instances(calls) == [
        (["main"], [PROG, "--listen", "3128", "--log", "syslog"], PARAMS)]


def test_one_instance_per_enabled_section():
    calls, _ = run_init(fixture("two_sections.uci"))
    assert instances(calls) == [
        (["lan"], [PROG, "--listen", "192.168.1.1:3128", "--max-conns", "16",
                   "--log", "syslog"], PARAMS),
        (["tls"], [PROG, "--listen", "3129", "--cert", "/etc/tunneld/cert.pem",
                   "--key", "/etc/tunneld/key.pem", "--log", "syslog"], PARAMS),
    ]


def test_shipped_config_disabled_and_local():
    text = UCI_DEFAULT.read_text()
    [(typ, name, options, lists)] = parse_uci(text)
    assert (typ, name, options.get("enabled")) == ("tunneld", "main", "0")
    calls, _ = run_init(text)
    assert instances(calls) == []
    enabled = text.replace("option enabled '0'", "option enabled '1'")
    calls, _ = run_init(enabled)
    assert instances(calls) == [(["main"], [
        PROG, "--listen", "127.0.0.1:3128", "--max-conns", "64", "--log", "syslog",
    ], PARAMS)]


def test_service_triggers():
    calls, _ = run_init("", call="service_triggers")
    assert calls == [["procd_add_reload_trigger", "tunneld"]]


def test_init_header():
    lines = INIT.read_text().splitlines()
    assert lines[0] == "#!/bin/sh /etc/rc.common"
    assert "USE_PROCD=1" in lines and "START=95" in lines


def test_shellcheck():
    # START and USE_PROCD are read by /etc/rc.common, which sources the
    # script: to shellcheck they look assigned and never used (SC2034).
    r = subprocess.run(["shellcheck", "-s", "sh", "-e", "SC2034", str(INIT)],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stdout + r.stderr


@pytest.fixture(scope="module")
def help_text():
    binary = REPO / "tunneld"
    if not binary.exists():
        subprocess.run(["make", "-C", str(REPO), "tunneld"], check=True, timeout=600)
    return subprocess.run([str(binary), "--help"], capture_output=True, text=True,
                          check=True, timeout=10).stdout


def test_init_options_exist(help_text):
    flags = set(re.findall(r"(?<![\w-])--[a-z][a-z-]*", INIT.read_text()))
    assert len(flags) >= 12, flags
    accepted = set(re.findall(r"(?<![\w-])--[a-z][a-z-]*", help_text))
    assert flags <= accepted, flags - accepted


# --- the package Makefile under stand-ins for OpenWrt's make files -------

def pkg_make(*args, env=None, check=True):
    e = dict(os.environ, **(env or {}))
    # Stand-ins for rules.mk's target variables, from the environment so
    # the package Makefile's += still appends (a command-line value wins).
    e.setdefault("TARGET_CC", "cc")
    e.setdefault("TARGET_CFLAGS", "-Os")
    e.setdefault("TARGET_CPPFLAGS", "")
    e.setdefault("TARGET_LDFLAGS", "")
    for k in list(e):
        if k.startswith(("CONFIG_", "MAKEFLAGS", "MFLAGS")):
            del e[k]
    r = subprocess.run(["make", "--no-print-directory", "-f", "Makefile",
                        f"TOPDIR={STUB}", *args],
                       cwd=PKG, env=e, capture_output=True, text=True, timeout=600)
    if check:
        assert r.returncode == 0, r.stdout + r.stderr
    return r


def test_package_fields():
    out = pkg_make("-s", "info").stdout.splitlines()
    fields = dict(line.split("=", 1) for line in out)
    assert fields == {
        "SECTION": "net", "CATEGORY": "Network", "SUBMENU": "Web Servers/Proxies",
        "DEPENDS": "+TUNNELD_TLS:libmbedtls", "MENU": "1", "PKG_BUILD_FLAGS": "lto",
        "PKG_SOURCE_PROTO": "git", "PKG_VERSION": "0.1.0",
        "CONFFILES": "/etc/config/tunneld",
        "CONFIG": 'source "/Config.in"',
    }


def config_in_symbols():
    text = (PKG / "Config.in").read_text()
    assert text.lstrip().startswith("if PACKAGE_tunneld") and text.rstrip().endswith("endif")
    return re.findall(r"^config (TUNNELD_\w+)\n\tbool .*\n\tdefault y\n", text, re.M)


def test_config_in_symbols_are_kconfig_symbols():
    syms = config_in_symbols()
    assert syms == ["TUNNELD_TLS", "TUNNELD_AUTH", "TUNNELD_IPV6", "TUNNELD_SPLICE", "TUNNELD_SANDBOX",
                    "TUNNELD_HTTP_TUNNEL"]
    kconfig = re.findall(r"^config (\w+)", (REPO / "Kconfig").read_text(), re.M)
    assert {s.removeprefix("TUNNELD_") for s in syms} <= set(kconfig)


@pytest.mark.parametrize("chosen", [(), ("TLS",), ("AUTH", "SPLICE"), ("HTTP_TUNNEL",),
                                    ("TLS", "AUTH", "IPV6", "SPLICE", "HTTP_TUNNEL")])
def test_configure_writes_dot_config(tmp_path, chosen):
    syms = [s.removeprefix("TUNNELD_") for s in config_in_symbols()]
    pkg_make("-s", "configure", f"PKG_BUILD_DIR={tmp_path}",
             *[f"CONFIG_TUNNELD_{s}=y" for s in chosen])
    lines = (tmp_path / ".config").read_text().splitlines()
    # The router package builds tunneld alone: the tunnel client is for
    # the machines inside a restricted network.
    assert sorted(lines) == sorted([f"CONFIG_{s}={'y' if s in chosen else 'n'}" for s in syms]
                                   + ["CONFIG_CLIENT=n"])


@pytest.fixture
def source_tree(tmp_path):
    """The repository's tracked files, as the package's git checkout has them."""
    files = subprocess.run(["git", "ls-files", "-z"], cwd=REPO, capture_output=True,
                           check=True, timeout=30).stdout.decode().split("\0")
    tree = tmp_path / "src"
    for f in filter(None, files):
        if (REPO / f).is_file():
            (tree / f).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO / f, tree / f)
    return tree


def test_compile_without_tls(source_tree):
    pkg_make("-s", "configure", f"PKG_BUILD_DIR={source_tree}",
             "CONFIG_TUNNELD_AUTH=y", "CONFIG_TUNNELD_IPV6=y")
    r = pkg_make("compile", f"PKG_BUILD_DIR={source_tree}")
    assert "--gc-sections" in r.stdout
    assert not (source_tree / "build").exists(), "fetched or built a library"
    v = subprocess.run([str(source_tree / "tunneld"), "--version"], capture_output=True,
                       text=True, check=True, timeout=10).stdout
    assert v.strip() == "tunneld 0.1.0 (+auth -tls +ipv6 -splice -http-tunnel -sandbox)"


def test_compile_with_tls_links_system_mbedtls(source_tree):
    pkg_make("-s", "configure", f"PKG_BUILD_DIR={source_tree}", "CONFIG_TUNNELD_TLS=y")
    # The project's make with -n: this machine need not have the feed's
    # mbedTLS 3.6 to link with (config.h and config.mk are still made).
    out = pkg_make("compile", f"PKG_BUILD_DIR={source_tree}", "MAKE=make -n").stdout
    [cc] = [line for line in out.splitlines() if " -o tunneld.new " in line]
    words = shlex.split(cc)
    assert words[0] == "cc" and "tls.c" in words and "auth.c" not in words
    link = words[:words.index("&&")]
    assert link[-3:] == ["-lmbedtls", "-lmbedx509", "-lmbedcrypto"]
    assert "-DTUNNELD_SYSTEM_MBEDTLS" in words
    assert "build/" not in out and "debian-src" not in out
    assert not (source_tree / "build").exists()


def test_install(tmp_path):
    build = tmp_path / "build"
    build.mkdir()
    (build / "tunneld").write_text("binary\n")
    dest = tmp_path / "root"
    pkg_make("-s", "install", f"PKG_BUILD_DIR={build}", f"DEST={dest}")
    got = {str(p.relative_to(dest)): stat.S_IMODE(p.stat().st_mode)
           for p in dest.rglob("*") if p.is_file()}
    assert got == {"usr/sbin/tunneld": 0o755, "etc/init.d/tunneld": 0o755,
                   "etc/config/tunneld": 0o600}
    assert (dest / "etc/init.d/tunneld").read_bytes() == INIT.read_bytes()
    assert (dest / "etc/config/tunneld").read_bytes() == UCI_DEFAULT.read_bytes()


def test_no_machine_paths():
    owned = [PKG / "Makefile", PKG / "Config.in", INIT, UCI_DEFAULT, Path(__file__)]
    owned += [p for p in FIXTURES.rglob("*") if p.is_file()]
    for p in owned:
        text = p.read_text()
        assert str(REPO) not in text, p
