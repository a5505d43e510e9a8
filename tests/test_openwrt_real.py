"""The OpenWrt package's procd service under OpenWrt's own procd, ubusd,
ujail, uci, jshn and shell libraries (`make check-openwrt OPENWRT_STAGE=DIR`).

DIR is a staging tree of those pieces, built beforehand by whoever runs
this (README, "OpenWrt"), laid out as on a router: STAGE_FILES below, and
the libraries in DIR/lib. Each test builds a root in a temporary directory
from DIR, this machine's busybox (the shell and tools; OpenWrt's is
busybox too), the libraries the programs link, and the package's own
files: openwrt/files/tunneld.init as /etc/init.d/tunneld, a UCI config in
/etc/config/tunneld and the tunneld binary under test as /usr/sbin/tunneld.
procd runs as pid 1 of private mount and PID namespaces, chrooted there
(with container=1, as OpenWrt runs in a container: it leaves /dev alone);
it starts ubusd itself and runs /etc/rc.d at boot. Commands run inside
with nsenter, as a router's shell would; /dev/log inside is a socket of
the test, which reads everything procd, ujail and tunneld log. The
machine's /etc is never touched; the network namespace is the machine's,
and everything listens on 127.0.0.1 only. Ending the namespace's pid 1
ends every process in it.

Without OPENWRT_STAGE (or with pieces missing) every test is skipped;
`python3 tests/test_openwrt_real.py --missing DIR` prints what DIR lacks.
"""

import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

TESTS = Path(__file__).resolve().parent
REPO = TESTS.parent

# The stage: OpenWrt's pieces at the paths a router has them. The
# libraries (libubox, libblobmsg_json, libjson_script, libubus, libuci,
# libudebug, procd's libsetlbf) go in lib/, found there by each program.
STAGE_FILES = [
    "sbin/procd", "sbin/ubusd", "sbin/ujail", "sbin/uci", "bin/ubus", "usr/bin/jshn",
    "usr/share/libubox/jshn.sh", "etc/rc.common", "lib/functions.sh",
    "lib/functions/procd.sh", "lib/functions/service.sh", "lib/config/uci.sh",
]


def stage_missing(stage):
    """What the staging tree lacks, as one line ("" if nothing)."""
    if not stage:
        return "no OPENWRT_STAGE=DIR given"
    if not Path(stage).is_dir():
        return f"{stage} is not a directory"
    missing = [f for f in STAGE_FILES if not (Path(stage) / f).is_file()]
    return f"{stage} lacks {' '.join(missing)}" if missing else ""


if __name__ == "__main__":
    # openwrt.mk asks this before it runs the tests.
    assert sys.argv[1:2] == ["--missing"] and len(sys.argv) == 3, sys.argv
    why = stage_missing(sys.argv[2])
    print(why)
    sys.exit(1 if why else 0)

import pytest  # noqa: E402

from conftest import (LOOPBACK_ACL, binary, clean_env, descendants, free_port,  # noqa: E402
                      kill_pid, listening, parse_logfmt, wait_until)
from test_launchers import HTTP_BODY, http_handler  # noqa: E402

STAGE = os.environ.get("OPENWRT_STAGE", "")
pytestmark = pytest.mark.skipif(bool(stage_missing(STAGE)),
                                reason=f"OpenWrt stage: {stage_missing(STAGE)}")

PKG = REPO / "openwrt"
INIT = PKG / "files" / "tunneld.init"
PATH = "/usr/sbin:/usr/bin:/sbin:/bin"
# OpenWrt's inittab (base-files) at boot: rcS runs /etc/rc.d/S* boot.
INITTAB = "::sysinit:/etc/init.d/rcS S boot\n::shutdown:/etc/init.d/rcS K shutdown\n"


def package_user():
    """(user, uid, group, gid) of the package's USERID:=user=uid:group=gid."""
    m = re.search(r"^\s*USERID:=(\w+)=(\d+):(\w+)=(\d+)$", (PKG / "Makefile").read_text(), re.M)
    assert m, "no USERID in openwrt/Makefile"
    return m.group(1), int(m.group(2)), m.group(3), int(m.group(4))


def elf_needs(path, libdirs):
    """Host paths of the libraries (and interpreter) path loads, by ldd,
    the stage's lib/ first. [] for a static program."""
    env = dict(os.environ, LD_LIBRARY_PATH=":".join(map(str, libdirs)))
    r = subprocess.run(["ldd", str(path)], capture_output=True, text=True, env=env, timeout=30)
    if r.returncode != 0:
        return []
    out = []
    for line in r.stdout.splitlines():
        m = re.search(r"(?:=> )?(/\S+) \(0x", line)
        if m:
            out.append(m.group(1))
        assert "not found" not in line, f"{path}: {line.strip()}"
    return out


def is_elf(path):
    with open(path, "rb") as f:
        return f.read(4) == b"\x7fELF"


class Router:
    """A root built from the stage, with procd as pid 1 of its own mount
    and PID namespaces. `sh(cmd)` runs a command inside as root."""

    def __init__(self, uci, netfiles, rules=LOOPBACK_ACL, enabled=False):
        self.dir = Path(tempfile.mkdtemp(prefix="tunneld-owrt-"))
        self.dir.chmod(0o755)
        self.root = self.dir / "root"
        self.syslog = []
        self.log_sock = None
        self.proc = None
        self.build(uci, rules, netfiles, enabled)

    # --- the root --------------------------------------------------------

    def put(self, rel, text, mode=0o644):
        p = self.root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(text)
        p.chmod(mode)
        return p

    def build(self, uci, rules, netfiles, enabled):
        r = self.root
        shutil.copytree(STAGE, r, symlinks=True)
        for d in ("bin", "sbin", "usr/bin", "usr/sbin", "lib", "lib64", "etc/init.d",
                  "etc/rc.d", "etc/config", "etc/tunneld", "dev", "proc", "tmp/run",
                  "tmp/lock", "tmp/state", "root"):
            (r / d).mkdir(parents=True, exist_ok=True)
        (r / "tmp").chmod(0o1777)
        (r / "var").symlink_to("tmp")
        # busybox: the shell and every tool the scripts call, as on OpenWrt.
        busybox = shutil.which("busybox")
        shutil.copy2(busybox, r / "bin/busybox")
        applets = subprocess.run([busybox, "--list"], capture_output=True, text=True,
                                 check=True, timeout=30).stdout.split()
        for a in applets:
            if a not in ("busybox", "init") and not any(
                    (r / d / a).exists() for d in ("bin", "sbin", "usr/bin", "usr/sbin")):
                (r / "bin" / a).symlink_to("busybox")
        # procd.sh takes a lock with flock: OpenWrt's busybox has it,
        # Debian's has not.
        if not (r / "bin/flock").exists():
            shutil.copy2(shutil.which("flock"), r / "usr/bin/flock")
        # The package's files, as its install section puts them.
        shutil.copy2(binary(), r / "usr/sbin/tunneld")
        shutil.copy2(INIT, r / "etc/init.d/tunneld")
        (r / "etc/init.d/tunneld").chmod(0o755)
        self.put("etc/config/tunneld", uci, 0o600)
        self.put("etc/tunneld/rules", rules)
        # rcS runs the scripts of /etc/rc.d; none but tunneld's here.
        self.put("etc/inittab", INITTAB)
        self.add_libraries()
        user, uid, group, gid = package_user()
        self.user, self.uid = user, uid
        self.put("etc/passwd", "root:x:0:0:root:/root:/bin/ash\n"
                 "ubus:x:81:81:ubus:/var/run/ubus:/bin/false\n"
                 f"{user}:x:{uid}:{gid}:{user}:/var/run/{user}:/bin/false\n")
        self.put("etc/group", f"root:x:0:\nubus:x:81:\n{group}:x:{gid}:\n")
        resolv, hosts = netfiles
        self.put("etc/resolv.conf", Path(resolv).read_text())
        self.put("etc/hosts", Path(hosts).read_text())
        # ujail built against glibc (as here) mounts this into every jail.
        self.put("etc/nsswitch.conf", "passwd: files\ngroup: files\nhosts: files dns\n")
        for dev in ("null", "zero", "random", "urandom", "console"):
            self.put(f"dev/{dev}", "", 0o666)
        # Everything logged inside reaches this socket.
        self.log_sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.log_sock.bind(str(r / "dev/log"))
        (r / "dev/log").chmod(0o666)
        self.log_sock.setblocking(False)
        if enabled:
            (r / "etc/rc.d/S95tunneld").symlink_to("../init.d/tunneld")

    def add_libraries(self):
        """Each program's libraries from this machine into /lib, the
        interpreter where the programs name it."""
        r = self.root
        libdirs = [r / "lib"]
        todo = [p for p in r.rglob("*") if p.is_file() and not p.is_symlink() and is_elf(p)]
        seen = set()
        for _ in range(10000):
            if not todo:
                break
            for need in elf_needs(todo.pop(), libdirs):
                if need in seen or Path(need).parent == r / "lib":
                    continue
                seen.add(need)
                dest = r / need.lstrip("/") if "ld-linux" in need else r / "lib" / Path(need).name
                dest.parent.mkdir(parents=True, exist_ok=True)
                if not dest.exists():
                    shutil.copy2(os.path.realpath(need), dest)
                    todo.append(dest)

    # --- procd -----------------------------------------------------------

    def boot(self):
        """procd as pid 1 of new mount and PID namespaces, chrooted into
        the root; returns when its boot is complete and ubus answers."""
        # The root a mount point of its own: ujail's pivot_root needs one.
        script = ('set -e; r="$1"; mount --bind "$r" "$r"; mount -t proc proc "$r/proc"; '
                  'for d in null zero random urandom; do mount --bind /dev/$d "$r/dev/$d"; done; '
                  # procd is this shell's pid (1) in the new namespace: exec all the way.
                  '[ "$$" = 1 ]; '
                  f'exec chroot "$r" /bin/env -i container=1 PATH={PATH} /sbin/procd')
        self.proc = subprocess.Popen(
            ["unshare", "--mount", "--pid", "--fork", "--kill-child", "sh", "-c", script,
             "sh", str(self.root)], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL)
        self.pid1 = wait_until(self.init_pid, 10)
        assert self.pid1, "no procd in the namespace"
        # procd logs "- init complete -" to its console unless an rc.d
        # script ran (it switches to syslog after running them): ubus's
        # service object, procd's, tells it is up.
        r = wait_until(lambda: self.sh("ubus list service", check=False).returncode == 0, 10)
        assert r, self.output()

    def init_pid(self):
        """procd's pid (here): the child of unshare, once it is procd."""
        for entry in os.listdir("/proc"):
            if not entry.isdigit():
                continue
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
                exe = os.readlink(f"/proc/{entry}/exe")
            except OSError:
                continue
            ppid = int(stat.rsplit(")", 1)[1].split()[1])
            if ppid == self.proc.pid and exe == str(self.root / "sbin/procd"):
                return int(entry)
        return None

    def sh(self, cmd, check=True, timeout=30):
        """cmd in busybox sh inside the router, as root with procd's
        namespaces and root."""
        r = subprocess.run(
            ["nsenter", "-t", str(self.pid1), "-m", "-p", "-r", "-w", "/bin/env", "-i",
             f"PATH={PATH}", "/bin/sh", "-c", cmd],
            capture_output=True, text=True, timeout=timeout, env=clean_env())
        if check:
            assert r.returncode == 0, (cmd, r.stdout, r.stderr, self.output())
        return r

    def log(self):
        """Every datagram that reached /dev/log so far, one a line."""
        for _ in range(100000):
            try:
                self.syslog.append(self.log_sock.recv(65536).decode("utf-8", "replace"))
            except BlockingIOError:
                break
        return "\n".join(self.syslog)

    def output(self):
        console = self.root / "dev/console"
        return ("--- syslog\n" + self.log()[-6000:] + "\n--- console\n"
                + (console.read_text(errors="replace")[-3000:] if console.exists() else ""))

    # --- what runs inside ------------------------------------------------

    def tunnelds(self):
        """{pid: (uid, mount namespace)} of the tunneld processes under
        procd (pids as seen here: ujail gives each its own PID namespace)."""
        out = {}
        for pid in descendants(self.pid1):
            try:
                # ujail names itself after the jail ("tunneld") too.
                link = os.readlink(f"/proc/{pid}/exe")
                if os.path.basename(link) != "tunneld" and not link.startswith("/memfd:tunneld "):
                    continue
                status = Path(f"/proc/{pid}/status").read_text()
                uid = int(re.search(r"^Uid:\s+(\d+)", status, re.M).group(1))
                out[pid] = (uid, os.readlink(f"/proc/{pid}/ns/mnt"))
            except OSError:
                continue
        return out

    def close(self):
        if self.proc:
            # Ending the namespace's pid 1 ends everything in it.
            if getattr(self, "pid1", None):
                kill_pid(self.pid1)
            kill_pid(self.proc.pid)
            self.proc.wait(10)
        if self.log_sock:
            self.log_sock.close()
        shutil.rmtree(self.dir, ignore_errors=True)


def uci_config(*sections):
    """A UCI file of tunneld sections: (name, enabled, [listen...], {option: value})."""
    out = []
    for name, enabled, listen, options in sections:
        out.append(f"config tunneld '{name}'\n\toption enabled '{1 if enabled else 0}'\n")
        out += [f"\tlist listen '{a}'\n" for a in listen]
        out += [f"\toption {k} '{v}'\n" for k, v in options.items()]
        out.append("\n")
    return "".join(out)


@pytest.fixture
def make_router(netfiles):
    made = []

    def make(uci, **kw):
        r = Router(uci, netfiles=netfiles, **kw)
        made.append(r)
        return r
    yield make
    for r in made:
        r.close()


@pytest.fixture
def http(make_target):
    return make_target(http_handler)


def curl(port, target, timeout=10):
    return subprocess.run(["curl", "-sS", "--max-time", str(timeout), "-p", "-x",
                           f"http://127.0.0.1:{port}", f"http://{target}/"],
                          capture_output=True, timeout=timeout + 10, env=clean_env())


def tunneld_lines(router):
    """logfmt fields of tunneld's connection lines in the router's syslog."""
    return [parse_logfmt(m.group(1))
            for m in re.finditer(r"tunneld\[\d+\]: (client=[^\n]*)", router.log())]


def one_section(port, **options):
    return uci_config(("main", True, [f"127.0.0.1:{port}"],
                       dict({"acl": "/etc/tunneld/rules"}, **options)))


def test_enable_start_serves_in_the_jail(make_router, http):
    """The package's own /etc/config/tunneld: nothing runs until its
    section is enabled, which a router owner does with uci."""
    port = free_port()
    router = make_router((PKG / "files" / "tunneld.config").read_text())
    router.boot()
    router.sh("/etc/init.d/tunneld start")
    time.sleep(1)
    assert not router.tunnelds(), "the shipped config started an instance"
    router.sh("uci set tunneld.main.enabled=1 && uci delete tunneld.main.listen && "
              f"uci add_list tunneld.main.listen=127.0.0.1:{port} && "
              "uci set tunneld.main.acl=/etc/tunneld/rules && uci commit tunneld")
    router.sh("/etc/init.d/tunneld enable")
    assert os.readlink(router.root / "etc/rc.d/S95tunneld") == "../init.d/tunneld"
    router.sh("/etc/init.d/tunneld enabled")
    router.sh("/etc/init.d/tunneld start")
    assert wait_until(lambda: listening(port), 10), router.output()
    r = curl(port, f"good.test:{http.port}")
    assert r.returncode == 0 and r.stdout == HTTP_BODY, (r, router.output())
    assert wait_until(lambda: any(x.get("target") == f"good.test:{http.port}"
                                  for x in tunneld_lines(router)), 5), router.output()
    # As the package's user, in a mount namespace of its own (ujail's).
    [(uid, mnt)] = set(router.tunnelds().values())
    assert uid == router.uid
    assert mnt != os.readlink(f"/proc/{router.pid1}/ns/mnt")
    listed = router.sh("ubus call service list '{\"name\":\"tunneld\"}'").stdout
    assert '"main"' in listed and '"running": true' in listed, listed


def serving_pid(router, port):
    """The one tunneld under procd once port listens (None before)."""
    if not listening(port):
        return None
    pids = list(router.tunnelds())
    return pids[0] if len(pids) == 1 else None


def test_boot_starts_the_enabled_service(make_router, http):
    """Enabled before boot: procd's rcS runs /etc/rc.d/S95tunneld boot."""
    port = free_port()
    router = make_router(one_section(port), enabled=True)
    router.boot()
    assert wait_until(lambda: serving_pid(router, port), 10), router.output()
    assert wait_until(lambda: "- init complete -" in router.log(), 10), router.output()
    r = curl(port, f"good.test:{http.port}")
    assert r.returncode == 0 and r.stdout == HTTP_BODY, (r, router.output())


def test_reload_applies_the_edited_rules(make_router, http):
    port = free_port()
    router = make_router(one_section(port))
    router.boot()
    router.sh("/etc/init.d/tunneld start")
    first = wait_until(lambda: serving_pid(router, port), 10)
    assert first, router.output()
    assert curl(port, f"good.test:{http.port}").stdout == HTTP_BODY
    # Nothing changed: procd keeps the instance.
    router.sh("/etc/init.d/tunneld reload")
    time.sleep(1)
    assert serving_pid(router, port) == first
    # The rules edited in place, as vi or echo do: reload restarts it
    # (procd compares the watched files), and the new rules apply.
    router.sh("echo deny > /etc/tunneld/rules && /etc/init.d/tunneld reload")
    second = wait_until(lambda: (serving_pid(router, port) or first) != first
                        and serving_pid(router, port), 10)
    assert second, router.output()
    r = curl(port, f"good.test:{http.port}")
    assert r.returncode != 0 and b"403" in r.stderr, (r, router.output())
    assert wait_until(lambda: any(x.get("status") == "403" for x in tunneld_lines(router)), 5)


def two_sections(a, b):
    return uci_config(("lan", True, [f"127.0.0.1:{a}"], {"acl": "/etc/tunneld/rules"}),
                      ("guest", True, [f"127.0.0.1:{b}"], {"acl": "/etc/tunneld/rules"}))


def test_disabled_section_stops_on_config_change(make_router, http):
    """`uci set ... enabled=0; uci commit`, then the config.change event
    that reload_config (or LuCI) sends: procd's trigger runs reload, and
    the section's instance ends; the other keeps running."""
    a, b = free_port(), free_port()
    router = make_router(two_sections(a, b))
    router.boot()
    router.sh("/etc/init.d/tunneld start")
    assert wait_until(lambda: listening(a) and listening(b) and len(router.tunnelds()) == 2,
                      10), router.output()
    lan = [p for p, _ in router.tunnelds().items()]
    router.sh("uci set tunneld.guest.enabled=0 && uci commit tunneld")
    assert "enabled='0'" in router.sh("uci show tunneld.guest").stdout
    router.sh("""ubus call service event '{"type":"config.change","data":{"package":"tunneld"}}'""")
    assert wait_until(lambda: not listening(b), 10), router.output()
    assert listening(a) and len(router.tunnelds()) == 1 and set(router.tunnelds()) < set(lan)
    listed = router.sh("""ubus call service list '{"name":"tunneld"}'""").stdout
    assert '"lan"' in listed and '"guest"' not in listed, listed
    assert curl(a, f"good.test:{http.port}").stdout == HTTP_BODY


def test_broken_rules_respawn_and_log(make_router, http):
    """A rules file tunneld refuses: each start exits 78 with the reason in
    the log, and procd starts it again (respawn) until the file is fixed."""
    port = free_port()
    router = make_router(one_section(port), rules="bogus rule\n")
    router.boot()
    router.sh("/etc/init.d/tunneld start")
    why = "/etc/tunneld/rules:1: a rule starts with 'allow' or 'deny', not 'bogus'"
    # procd waits respawn_timeout (5 s) between starts.
    assert wait_until(lambda: router.log().count(why) >= 2, 20), router.output()
    assert not listening(port)
    listed = router.sh("""ubus call service list '{"name":"tunneld"}'""").stdout
    assert '"exit_code": 78' in listed, listed
    router.put("etc/tunneld/rules", LOOPBACK_ACL)
    assert wait_until(lambda: serving_pid(router, port), 15), router.output()
    assert curl(port, f"good.test:{http.port}").stdout == HTTP_BODY


def test_stop_ends_every_instance(make_router):
    a, b = free_port(), free_port()
    router = make_router(two_sections(a, b))
    router.boot()
    router.sh("/etc/init.d/tunneld start")
    assert wait_until(lambda: len(router.tunnelds()) == 2, 10), router.output()
    jailed = [p for p in descendants(router.pid1) if p not in router.tunnelds()]
    router.sh("/etc/init.d/tunneld stop")
    assert wait_until(lambda: not router.tunnelds(), 10), router.output()
    assert not listening(a) and not listening(b)
    # ujail ends with its tunneld: only ubusd is left under procd.
    left = [Path(f"/proc/{p}/comm").read_text().strip() for p in descendants(router.pid1)]
    assert left == ["ubusd"], (left, jailed)
    listed = router.sh("""ubus call service list '{"name":"tunneld"}'""").stdout
    assert "tunneld" not in listed, listed
