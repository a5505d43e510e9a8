"""The OpenWrt packages in openwrt/ (tunneld and tunnel): the procd init
script, the shipped UCI config, the package Makefile, and `make dist`, the
release tarball the package builds from.

The init script is sourced by sh (dash) after a prelude of stand-ins for
OpenWrt's UCI and procd shell functions (tests/openwrt/prelude.sh), fed
the UCI files in tests/openwrt/; the Makefile is run by GNU make against
stand-ins for rules.mk and package.mk (tests/openwrt/stub/), which check
PKG_HASH and unpack PKG_SOURCE as OpenWrt does. No network, no ports: the
real builds are without TLS, in temporary copies of the repository's
tracked files (one a git repository of its own, for `make dist`).
"""

import hashlib
import io
import os
import re
import shlex
import shutil
import stat
import subprocess
import tarfile
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
    """procd calls -> [(instance name, command list, other params)]. The
    params hold procd_add_jail's arguments as "jail" and its mounts as
    "jail_mount"; a param appended to is the list of its values."""
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
            assert cur is not None and args[0] not in cur["params"], c
            cur["params"][args[0]] = args[1:]
        elif name == "procd_append_param":
            assert cur is not None
            cur["params"].setdefault(args[0], []).extend(args[1:])
        elif name == "procd_add_jail":
            assert cur is not None and "jail" not in cur["params"]
            cur["params"]["jail"] = args
        elif name == "procd_add_jail_mount":
            assert cur is not None
            cur["params"].setdefault("jail_mount", []).extend(args)
        elif name == "procd_close_instance":
            assert cur is not None
            found.append((cur["name"], cur["command"], cur["params"]))
            cur = None
        else:
            raise AssertionError(f"unexpected call {c}")
    assert cur is None, "instance left open"
    return found


# What the name lookups read (musl: no nsswitch.conf).
RESOLVER_FILES = ["/etc/hosts", "/etc/resolv.conf"]


def params(*files):
    """The instance's procd params when tunneld reads FILES (its own, from
    UCI) and the resolver's: each mounted read-only into the jail and
    watched by procd (`reload` restarts it after an edit)."""
    every = [*files, *RESOLVER_FILES]
    return {"jail": ["tunneld", "log", "ronly"], "jail_mount": every, "file": every,
            "user": ["tunneld"], "group": ["tunneld"], "no_new_privs": ["1"],
            "respawn": [], "stderr": ["1"]}


PARAMS = params()


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


FULL_COMMAND = [
    PROG,
    "--listen", "192.168.1.1:3128", "--listen", "[fd00::1]:3129",
    "--users", "/etc/tunneld/users",
    "--realm", "home router",
    "--acl", "/etc/tunneld/rules",
    "--cert", "/etc/tunneld/cert.pem",
    "--key", "/etc/tunneld/key.pem",
    "--ticket-key", "/etc/tunneld/tickets",
    "--ticket-lifetime", "43200",
    "--http-tunnel=/tunnel",
    "--session-timeout", "90",
    "--max-sessions", "16",
    "--max-client-sessions", "4",
    "--node", "router-1",
    "--upstream", "https://proxy.example.com:3128",
    "--upstream-auth", "/etc/tunneld/upstream-auth",
    "--upstream-cacert", "/etc/tunneld/upstream-ca.pem",
    "--connect-timeout", "5",
    "--header-timeout", "7",
    "--idle-timeout", "300",
    "--max-conns", "32",
    "--spares", "2",
    "--proxy-protocol", "192.168.1.2,10.0.0.0/8",
    "--verbose",
    "--log", "stderr",
]


def test_every_option():
    calls, _ = run_init(fixture("full.uci"))
    assert instances(calls) == [(["main"], FULL_COMMAND, params(
        "/etc/tunneld/users", "/etc/tunneld/rules", "/etc/tunneld/cert.pem",
        "/etc/tunneld/key.pem", "/etc/tunneld/tickets", "/etc/tunneld/upstream-auth",
        "/etc/tunneld/upstream-ca.pem"))]


# tunneld's options the init script does not map, and why.
NOT_MAPPED = {
    "--user": "procd starts tunneld as the user tunneld (procd_set_param user)",
    "--hash-password": "a command that prints a hash, not a way to serve",
    "--version": "a command, not a way to serve",
    "--help": "a command, not a way to serve",
}


def long_options(words):
    return {re.match(r"--[a-z][a-z-]*", w).group(0) for w in words if w.startswith("--")}


def unmapped(help_text):
    """(--help's options the init script does not map, those it passes
    that --help does not have). The init script's are those of its command
    line for full.uci."""
    offered = set(re.findall(r"^ +(?:-\w, )?(--[a-z][a-z-]*)", help_text, re.M))
    assert len(offered) >= 20, offered
    calls, _ = run_init(fixture("full.uci"))
    [(_, command, _)] = instances(calls)
    mapped = long_options(command)
    assert mapped.isdisjoint(NOT_MAPPED), mapped & set(NOT_MAPPED)
    return offered - set(NOT_MAPPED) - mapped, mapped - offered


def test_every_help_option_is_mapped(help_text):
    """A new tunneld option fails here until the init script maps it (and
    full.uci sets it) or NOT_MAPPED says why not."""
    assert unmapped(help_text) == (set(), set())
    more = help_text.replace("  -v, --verbose", "      --new-thing N  \n  -v, --verbose")
    assert unmapped(more) == ({"--new-thing"}, set())


def test_option_user_warned_and_left_out():
    calls, err = run_init(fixture("user_option.uci"))
    assert instances(calls) == [
        (["main"], [PROG, "--listen", "127.0.0.1:3128", "--log", "syslog"], PARAMS)]
    assert "option user is not used" in err


def test_jail_mounts_exactly_the_files_read():
    """Every file option's value is on the command line, mounted and
    watched; nothing else is mounted but the resolver's files."""
    calls, _ = run_init(fixture("full.uci"))
    [(_, command, got)] = instances(calls)
    file_flags = {"--users", "--acl", "--cert", "--key", "--ticket-key", "--upstream-auth",
                  "--upstream-cacert"}
    named = [command[i + 1] for i, w in enumerate(command) if w in file_flags]
    assert sorted(got["jail_mount"]) == sorted(got["file"]) == sorted(named + RESOLVER_FILES)


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
                   "--key", "/etc/tunneld/key.pem", "--log", "syslog"],
         params("/etc/tunneld/cert.pem", "/etc/tunneld/key.pem")),
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


def uci_names(text):
    """The option and list names a UCI file names, set or commented out."""
    return set(re.findall(r"^\s*#?\s*(?:option|list) (\w+) ", text, re.M))


def test_shipped_config_names_every_mapped_option():
    """The shipped file's comments show every option the init script
    maps (full.uci sets each), and none it does not."""
    assert uci_names(UCI_DEFAULT.read_text()) == uci_names(fixture("full.uci"))
    assert "user" not in uci_names(UCI_DEFAULT.read_text())


def test_menu_names_the_tunnel_options():
    text = (PKG / "Config.in").read_text()
    block = text[text.index("config TUNNELD_HTTP_TUNNEL"):].split("\nconfig ", 1)[0]
    for name in ("http_tunnel", "session_timeout", "max_sessions", "max_client_sessions", "node"):
        assert name in block, name


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

def pkg_make(*args, env=None, check=True, cwd=PKG):
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
                       cwd=cwd, env=e, capture_output=True, text=True, timeout=600)
    if check:
        assert r.returncode == 0, r.stdout + r.stderr
    return r


def make_fields(*args, **kw):
    out = pkg_make("-s", *args, **kw).stdout.splitlines()
    return dict(line.split("=", 1) for line in out)


def test_source_fields():
    fields = make_fields("info")
    assert re.fullmatch(r"[0-9a-f]{64}", fields.pop("PKG_HASH"))
    assert fields == {
        "PKG_SOURCE": "tunneld-0.1.0.tar.gz", "PKG_SOURCE_PROTO": "", "PKG_SOURCE_URL": "",
        "PKG_VERSION": "0.1.0", "PKG_LICENSE": "ISC", "PKG_LICENSE_FILES": "LICENSE",
        "PKG_CPE_ID": "", "PKG_BUILD_FLAGS": "lto",
    }
    assert (REPO / "LICENSE").read_text().startswith("ISC License\n\nCopyright (c) 2026 the tunneld authors\n")
    assert "\n## Licence\n\nISC (`LICENSE`)" in (REPO / "README.md").read_text()
    text = (PKG / "Makefile").read_text()
    # Only the download address and the maintainer are the packager's.
    assert re.findall(r"^(\w+):=$", text, re.M) == ["PKG_SOURCE_URL", "PKG_MAINTAINER"]
    assert "No PKG_CPE_ID" in text


def test_version_is_version_h():
    version = re.search(r'#define VERSION "(.*)"', (REPO / "version.h").read_text()).group(1)
    assert make_fields("info")["PKG_VERSION"] == version


def test_package_fields():
    common = {"SECTION": "net", "CATEGORY": "Network", "SUBMENU": "Web Servers/Proxies",
              "URL": "", "DEPENDS": "+TUNNELD_TLS:libmbedtls"}
    tunneld = make_fields("info/tunneld")
    assert tunneld.pop("TITLE").startswith("Small HTTP CONNECT proxy")
    assert tunneld == dict(common, MENU="1", USERID="tunneld=3128:tunneld=3128",
                           CONFFILES="/etc/config/tunneld /etc/tunneld/",
                           CONFIG='source "/Config.in"')
    tunnel = make_fields("info/tunnel")
    assert tunnel.pop("TITLE").startswith("Client of tunneld")
    assert tunnel == dict(common, MENU="", USERID="", CONFFILES="", CONFIG="")


def test_init_runs_as_the_package_user():
    user = make_fields("info/tunneld")["USERID"].split(":")[0].split("=")[0]
    group = make_fields("info/tunneld")["USERID"].split(":")[1].split("=")[0]
    assert (PARAMS["user"], PARAMS["group"]) == ([user], [group])
    calls, _ = run_init(fixture("one_listen.uci"))
    [(_, _, got)] = instances(calls)
    assert (got["user"], got["group"]) == ([user], [group])


def config_in_symbols():
    text = (PKG / "Config.in").read_text()
    assert "\nif PACKAGE_tunneld || PACKAGE_tunnel\n" in text and text.rstrip().endswith("endif")
    return re.findall(r"^config (TUNNELD_\w+)\n\tbool .*\n(?:\tdepends on PACKAGE_tunneld\n)?"
                      r"\tdefault y\n", text, re.M)


def test_config_in_symbols_are_kconfig_symbols():
    syms = config_in_symbols()
    assert syms == ["TUNNELD_TLS", "TUNNELD_TLS_TICKETS", "TUNNELD_AUTH", "TUNNELD_IPV6",
                    "TUNNELD_SPLICE", "TUNNELD_SANDBOX", "TUNNELD_HTTP_TUNNEL",
                    "TUNNELD_PROXY_PROTOCOL"]
    kconfig = re.findall(r"^config (\w+)", (REPO / "Kconfig").read_text(), re.M)
    assert {s.removeprefix("TUNNELD_") for s in syms} <= set(kconfig)


@pytest.mark.parametrize("chosen", [(), ("TLS",), ("AUTH", "SPLICE"), ("HTTP_TUNNEL",),
                                    ("TLS", "AUTH", "IPV6", "SPLICE", "HTTP_TUNNEL")])
@pytest.mark.parametrize("client", [False, True])
def test_configure_writes_dot_config(tmp_path, chosen, client):
    syms = [s.removeprefix("TUNNELD_") for s in config_in_symbols()]
    pkg_make("-s", "configure", f"PKG_BUILD_DIR={tmp_path}",
             *[f"CONFIG_TUNNELD_{s}=y" for s in chosen],
             *(["CONFIG_PACKAGE_tunnel=y"] if client else []))
    lines = (tmp_path / ".config").read_text().splitlines()
    # The client (Kconfig CLIENT) is built for its own package only; the
    # GET/POST tunnel's answers are sized for a router.
    assert sorted(lines) == sorted([f"CONFIG_{s}={'y' if s in chosen else 'n'}" for s in syms]
                                   + [f"CONFIG_CLIENT={'y' if client else 'n'}",
                                      "CONFIG_HTTP_ANSWER_MAX=131072"])


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
    assert v.strip() == "tunneld 0.1.0 (+auth -tls -tls-tickets +ipv6 -splice -http-tunnel -sandbox -proxy-protocol +upstream)"


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
    (build / "tunnel").write_text("client\n")
    dest = tmp_path / "root"
    pkg_make("-s", "install/tunneld", f"PKG_BUILD_DIR={build}", f"DEST={dest}")
    got = {str(p.relative_to(dest)): stat.S_IMODE(p.stat().st_mode) for p in dest.rglob("*")}
    assert got == {"usr": 0o755, "usr/sbin": 0o755, "usr/sbin/tunneld": 0o755,
                   "etc": 0o755, "etc/init.d": 0o755, "etc/init.d/tunneld": 0o755,
                   "etc/config": 0o755, "etc/config/tunneld": 0o600, "etc/tunneld": 0o755}
    assert (dest / "etc/init.d/tunneld").read_bytes() == INIT.read_bytes()
    assert (dest / "etc/config/tunneld").read_bytes() == UCI_DEFAULT.read_bytes()
    client = tmp_path / "client"
    pkg_make("-s", "install/tunnel", f"PKG_BUILD_DIR={build}", f"DEST={client}")
    got = {str(p.relative_to(client)): stat.S_IMODE(p.stat().st_mode)
           for p in client.rglob("*") if p.is_file()}
    assert got == {"usr/bin/tunnel": 0o755}


# --- make dist, and the packages built from its tarball ----------------

VERSION = re.search(r'#define VERSION "(.*)"', (REPO / "version.h").read_text()).group(1)
DIST = f"tunneld-{VERSION}.tar.gz"


def git(tree, *args):
    # A fixed author and time: the same files make the same commit.
    env = dict(os.environ, GIT_AUTHOR_NAME="t", GIT_AUTHOR_EMAIL="t@example.invalid",
               GIT_COMMITTER_NAME="t", GIT_COMMITTER_EMAIL="t@example.invalid",
               GIT_AUTHOR_DATE="2026-01-01T00:00:00Z", GIT_COMMITTER_DATE="2026-01-01T00:00:00Z",
               GIT_CONFIG_GLOBAL="/dev/null", GIT_CONFIG_NOSYSTEM="1")
    return subprocess.run(["git", "-C", str(tree), *args], env=env, capture_output=True,
                          check=True, timeout=60).stdout


def make_dist(tree):
    r = subprocess.run(["make", "--no-print-directory", "-C", str(tree), "dist"],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr
    return (tree / DIST).read_bytes(), r


@pytest.fixture
def release(source_tree):
    """source_tree as a git repository of its own, committed."""
    git(source_tree, "init", "-q")
    git(source_tree, "add", "-A")
    git(source_tree, "commit", "-q", "-m", "release")
    return source_tree


def test_dist_reproducible_and_hash_written(release, tmp_path):
    first, r = make_dist(release)
    assert "warning" not in r.stderr, r.stderr
    makefile = (release / "openwrt/Makefile").read_text()
    digest = hashlib.sha256(first).hexdigest()
    assert f"\nPKG_HASH:={digest}\n" in makefile and f"\nPKG_VERSION:={VERSION}\n" in makefile
    # Again, with openwrt/Makefile now changed and every file's time
    # moved: the tarball is the commit's, byte for byte.
    for p in release.rglob("*"):
        os.utime(p, (1e9, 1e9), follow_symlinks=False)
    again, r = make_dist(release)
    assert again == first
    assert "uncommitted" not in r.stderr
    # An uncommitted change is not in it, and the warning says so.
    (release / "README.md").write_text("changed\n")
    again, r = make_dist(release)
    assert again == first and "uncommitted changes are not in the tarball" in r.stderr
    # Another checkout of the same commit: the same bytes.
    other = tmp_path / "other"
    subprocess.run(["git", "clone", "-q", str(release), str(other)], check=True, timeout=60)
    assert make_dist(other)[0] == first


def test_dist_holds_every_tracked_file_and_nothing_else(release):
    data, _ = make_dist(release)
    # "MODE OBJECT STAGE\tPATH" for each tracked file.
    staged = [line.split("\t", 1) for line in git(release, "ls-files", "-s", "-z").decode().split("\0")
              if line]
    modes = {path: int(info.split()[0][-3:], 8) for info, path in staged}
    tracked = set(modes)
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        members = tar.getmembers()
        prefix = f"tunneld-{VERSION}/"
        assert all(m.name.startswith(prefix) or m.name + "/" == prefix for m in members)
        files = {m.name.removeprefix(prefix): m for m in members if not m.isdir()}
        dirs = {(m.name.rstrip("/") + "/").removeprefix(prefix).rstrip("/")
                for m in members if m.isdir()}
        assert set(files) == tracked
        # The directories are the files' and nothing else.
        assert dirs == {str(d) for f in tracked for d in Path(f).parents} - {"."} | {""}
        head = git(release, "rev-parse", "HEAD").decode().strip()
        assert tar.pax_headers.get("comment") == head
        for name, m in files.items():
            assert m.isfile() and m.uid == 0 and m.gid == 0, name
            committed = git(release, "show", f"HEAD:{name}")
            assert tar.extractfile(m).read() == committed, name
            assert m.mode == (0o755 if modes[name] & 0o100 else 0o644), name
    assert data[3] & 0x08 == 0 and data[4:8] == b"\0\0\0\0", "gzip keeps a name or a time"


def test_packages_build_from_the_dist(release, tmp_path):
    """As a feed builds: PKG_SOURCE from DL_DIR, checked against PKG_HASH,
    unpacked into BUILD_DIR, configured, compiled, installed."""
    data, _ = make_dist(release)
    dl = tmp_path / "dl"
    dl.mkdir()
    (dl / DIST).write_bytes(data)
    feed = release / "openwrt"
    where = [f"DL_DIR={dl}", f"BUILD_DIR={tmp_path / 'build'}",
             "PKG_SOURCE_URL=https://example.invalid/tunneld/"]
    chosen = ["CONFIG_PACKAGE_tunneld=y", "CONFIG_PACKAGE_tunnel=y", "CONFIG_TUNNELD_AUTH=y",
              "CONFIG_TUNNELD_IPV6=y", "CONFIG_TUNNELD_HTTP_TUNNEL=y"]
    for step in ("prepare", "configure", "compile"):
        pkg_make("-s", step, *where, *chosen, cwd=feed)
    built = tmp_path / "build" / f"tunneld-{VERSION}"
    v = subprocess.run([str(built / "tunneld"), "--version"], capture_output=True, text=True,
                       check=True, timeout=10).stdout
    assert v.strip() == f"tunneld {VERSION} (+auth -tls -tls-tickets +ipv6 -splice +http-tunnel -sandbox -proxy-protocol +upstream)"
    v = subprocess.run([str(built / "tunnel"), "--version"], capture_output=True, text=True,
                       check=True, timeout=10).stdout
    assert v.strip() == f"tunnel {VERSION} (-tls +ipv6)"
    for pkg, prog in (("tunneld", "usr/sbin/tunneld"), ("tunnel", "usr/bin/tunnel")):
        dest = tmp_path / "root" / pkg
        pkg_make("-s", f"install/{pkg}", *where, f"DEST={dest}", cwd=feed)
        assert (dest / prog).read_bytes() == (built / Path(prog).name).read_bytes()
    assert not (built / "build").exists(), "fetched or built a library"


def test_package_refuses_a_tarball_not_its_hash(release, tmp_path):
    data, _ = make_dist(release)
    dl = tmp_path / "dl"
    dl.mkdir()
    where = [f"DL_DIR={dl}", f"BUILD_DIR={tmp_path / 'build'}"]
    url = "PKG_SOURCE_URL=https://example.invalid/tunneld/"
    (dl / DIST).write_bytes(data[:-1] + bytes([data[-1] ^ 1]))
    r = pkg_make("-s", "prepare", *where, url, cwd=release / "openwrt", check=False)
    assert r.returncode != 0 and "Hash mismatch" in r.stderr
    assert not (tmp_path / "build").exists()
    # The address is the packager's to give: without it, no download.
    (dl / DIST).write_bytes(data)
    r = pkg_make("-s", "prepare", *where, cwd=release / "openwrt", check=False)
    assert r.returncode != 0 and "missing the URL field" in r.stderr


def test_no_machine_paths():
    owned = [PKG / "Makefile", PKG / "Config.in", INIT, UCI_DEFAULT, Path(__file__),
             REPO / "dist.mk", REPO / "LICENSE"]
    owned += [p for p in FIXTURES.rglob("*") if p.is_file()]
    for p in owned:
        text = p.read_text()
        assert str(REPO) not in text, p
