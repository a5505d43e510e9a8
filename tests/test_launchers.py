"""The launchers of DESIGN §1 and §11, each started for real from the file in
contrib/ that a user copies, read as shipped (not a copy kept here):

  openbsd-inetd           contrib/inetd.conf                  inetd -d CONF
  xinetd                  contrib/xinetd.d/tunneld            xinetd -dontfork -f CONF
  tcpserver (ucspi-tcp)   contrib/tcpserver.run               sh RUNSCRIPT
  systemd, Accept=yes     contrib/tunneld.socket and tunneld@.service
  systemd, Accept=no      contrib/tunneld-accept-no.socket and .service
                          (both through systemd-socket-activate, its options
                          taken from the unit files)

The tests change only what must differ here, and each change must apply
exactly once (so an edit of a contrib file that moves what they replace
fails here rather than testing something else):

  /usr/local/sbin/tunneld    -> the binary under test ($TUNNELD or ./tunneld;
                                copied first if user nobody could not run it)
  /etc/tunneld/rules         -> a rules file allowing loopback (LOOPBACK_ACL)
  port 3128, every address   -> a free port on 127.0.0.1:
      inetd.conf   first field "3128"   -> "127.0.0.1:PORT"
      xinetd       "port = 3128"        -> "port = PORT", then "bind = 127.0.0.1"
      tcpserver    "0 3128"             -> "127.0.0.1 PORT"
      systemd      "ListenStream=3128"  -> -l 127.0.0.1:PORT
The user stays: nobody under inetd, xinetd and tcpserver; systemd's
DynamicUser=yes (and NoNewPrivileges=yes) becomes setpriv to nobody, which
systemd-socket-activate cannot do itself.

Each launcher runs in the foreground in a private mount namespace with the
tests' resolv.conf and hosts, a private /run (openbsd-inetd writes
/run/inetd.pid even with -d) and a private /dev whose /dev/log is a socket of
the test: under inetd and xinetd stderr is the client's socket, so tunneld
logs to syslog, and these tests read those lines. Through each launcher two
connections: curl -p to an HTTP target by name, then a raw socket to an echo
target by address. Each must be served by a new tunneld process running as
the configured user, log its line, send the client nothing but the relayed
bytes, and end.

The systemd units' sandbox, which systemd-socket-activate cannot apply, is
scored by `systemd-analyze security --offline=true` (test_systemd_security)
and applied by a real systemd (test_systemd_booted*): pid 1 of new pid,
cgroup, mount, UTS and IPC namespaces, in a cgroup of its own under this
process's, with a fresh /run, a private /dev, /tmp and journal, and a unit
directory holding only the two contrib units (binary, rules and port
substituted), journald's units and empty targets. The machine's network is
shared, as in every test here. Its journal is read through nsenter.
"""

import contextlib
import os
import pwd
import re
import shlex
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

from conftest import (LOOPBACK_ACL, OK_REPLY, REPO, Client, binary, children, clean_env,
                      connect_head, descendants, echo_handler, ended_after, free_port, idle_spares,
                      kill_pid, runs_tunneld,
                      listening, ok_answer, parse_logfmt, read_head, wait_until)

CONTRIB = REPO / "contrib"
DEFAULT_BIN = "/usr/local/sbin/tunneld"
DEFAULT_RULES = "/etc/tunneld/rules"
HTTP_BODY = b"hello through the launcher\n"
ECHO_BYTES = 200_000
NOBODY = pwd.getpwnam("nobody")


# --------------------------------------------------------------------------
# the contrib files and their substitutions

def replace_once(text, old, new, what):
    assert text.count(old) == 1, f"{what}: expected {old!r} exactly once in:\n{text}"
    return text.replace(old, new)


def sub_once(pattern, repl, text, what):
    out, n = re.subn(pattern, repl, text, flags=re.M)
    assert n == 1, f"{what}: pattern {pattern!r} matched {n} times in:\n{text}"
    return out


def common_subst(text, share, what):
    """The binary and rules paths, each exactly once."""
    text = replace_once(text, DEFAULT_BIN, share.binary, what)
    return replace_once(text, DEFAULT_RULES, str(share.rules), what)


def world_usable(path):
    """True if user nobody can reach and execute path (every parent searchable)."""
    p = Path(path)
    if not os.stat(p).st_mode & 0o001:
        return False
    return all(os.stat(d).st_mode & 0o001 for d in p.parents)


def unit_file(name):
    """A systemd unit file as {section: [(key, value), ...]}."""
    out, section = {}, None
    for raw in (CONTRIB / name).read_text().splitlines():
        line = raw.strip()
        if not line or line[0] in "#;":
            continue
        assert not line.endswith("\\"), f"{name}: continuation lines are not handled: {raw}"
        if line.startswith("["):
            section = line.strip("[]")
            out.setdefault(section, [])
            continue
        key, _, value = line.partition("=")
        out[section].append((key.strip(), value.strip()))
    return out


def unit_get(entries, key, default=None):
    values = [v for k, v in entries if k == key]
    assert len(values) <= 1, f"{key} given {len(values)} times"
    return values[0] if values else default


# What systemd-socket-activate cannot do, and why leaving it out here is fine.
UNIT_IGNORED = {
    "MaxConnections": "systemd-socket-activate has no limit (tunneld --listen has --max-conns)",
    "StandardError": "journal: a socket, so tunneld logs to syslog; here stderr is a file",
    "RuntimeMaxSec": "a connection's limit of a day",
    "LimitCORE": "no core dump of a process holding secrets",
}
# The sandbox of the services: systemd-socket-activate applies none of it
# (but NoNewPrivileges, through setpriv). test_systemd_security scores it
# and test_systemd_booted runs the units under a real systemd.
SANDBOX_KEYS = {
    "CapabilityBoundingSet", "ProtectSystem", "ProtectHome", "PrivateTmp", "PrivateDevices",
    "DevicePolicy", "PrivateUsers", "PrivateMounts", "ProtectKernelTunables",
    "ProtectKernelModules", "ProtectKernelLogs", "ProtectControlGroups", "ProtectClock",
    "ProtectHostname", "ProtectProc", "ProcSubset", "RestrictAddressFamilies",
    "RestrictNamespaces", "RestrictRealtime", "RestrictSUIDSGID", "LockPersonality",
    "MemoryDenyWriteExecute", "RemoveIPC", "SystemCallArchitectures", "SystemCallFilter",
    "UMask",
}
SOCKET_KEYS = {"ListenStream", "Accept", "Service", "MaxConnections"}
SERVICE_KEYS = {"ExecStart", "StandardInput", "StandardOutput", "DynamicUser",
                "NoNewPrivileges"} | set(UNIT_IGNORED) | SANDBOX_KEYS


def service_of(socket_unit):
    """The service unit socket_unit starts, and whether it is Accept=yes."""
    sock = unit_file(socket_unit)["Socket"]
    accept = unit_get(sock, "Accept", "no") == "yes"
    stem = socket_unit.rsplit(".", 1)[0]
    return unit_get(sock, "Service") or f"{stem}{'@' if accept else ''}.service", accept


def systemd_command(socket_unit, share, port):
    """systemd-socket-activate's command line for socket_unit and the
    service it starts, as systemd would run them (see UNIT_IGNORED)."""
    sock = unit_file(socket_unit)["Socket"]
    unknown = {k for k, _ in sock} - SOCKET_KEYS
    assert not unknown, f"{socket_unit}: options this test does not map: {unknown}"
    service_unit, accept = service_of(socket_unit)
    svc = unit_file(service_unit)["Service"]
    unknown = {k for k, _ in svc} - SERVICE_KEYS
    assert not unknown, f"{service_unit}: options this test does not map: {unknown}"

    cmd = ["systemd-socket-activate"]
    listens = [v for k, v in sock if k == "ListenStream"]
    assert listens == ["3128"], f"{socket_unit}: ListenStream {listens}"
    cmd += ["-l", f"127.0.0.1:{port}"]
    if accept:
        cmd.append("-a")
    stdin, stdout = unit_get(svc, "StandardInput"), unit_get(svc, "StandardOutput")
    if stdin == "socket":
        assert stdout == "socket", f"{service_unit}: StandardOutput={stdout}"
        cmd.append("--inetd")
    else:
        assert stdin is None and stdout is None, (stdin, stdout)
    if unit_get(svc, "DynamicUser") == "yes":
        cmd += ["setpriv", f"--reuid={NOBODY.pw_uid}", f"--regid={NOBODY.pw_gid}",
                "--clear-groups"]
        if unit_get(svc, "NoNewPrivileges") == "yes":
            cmd.append("--no-new-privs")
    exec_start = unit_get(svc, "ExecStart")
    assert exec_start and exec_start[0] not in "-@+!:", f"ExecStart prefix: {exec_start}"
    cmd += shlex.split(common_subst(exec_start, share, service_unit))
    return cmd


# --------------------------------------------------------------------------
# the private namespace, its syslog socket, and the launcher process

class Share:
    """A directory user nobody can read (pytest's tmp_path is 0700): the rules
    file, the private /run, the syslog socket, the launcher's config."""

    def __init__(self):
        self.dir = Path(tempfile.mkdtemp(prefix="tunneld-launch-"))
        self.dir.chmod(0o755)
        self.rules = self.dir / "rules"
        self.rules.write_text(LOOPBACK_ACL)
        self.rules.chmod(0o644)
        (self.dir / "run").mkdir()
        (self.dir / "olddev").mkdir()
        self.log_path = self.dir / "log.sock"
        self.log_sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.log_sock.bind(str(self.log_path))
        self.log_path.chmod(0o666)
        self.log_sock.setblocking(False)
        self.syslog = []
        # the binary under test, copied here if nobody could not run it there
        self.binary = binary()
        if not world_usable(self.binary):
            self.binary = str(self.dir / "tunneld")
            shutil.copy(binary(), self.binary)

    def syslog_lines(self):
        """Every datagram that reached the private /dev/log so far."""
        for _ in range(100000):
            try:
                self.syslog.append(self.log_sock.recv(8192).decode("utf-8", "replace"))
            except BlockingIOError:
                break
        return self.syslog

    def close(self):
        self.log_sock.close()
        shutil.rmtree(self.dir, ignore_errors=True)


@pytest.fixture
def share():
    s = Share()
    yield s
    s.close()


def q(path):
    return shlex.quote(str(path))


def private_dev(share):
    """Shell commands that give the mount namespace a /dev of its own: a
    tmpfs with the device nodes a container has."""
    old = share.dir / "olddev"
    return (f"mount --rbind /dev {q(old)} && "
            "mount -t tmpfs -o mode=755,size=64k tunneld-test-dev /dev && "
            "for n in null zero full random urandom tty; do "
            f"touch /dev/$n && mount --bind {q(old)}/$n /dev/$n || exit 1; done && "
            f"umount -l {q(old)} && ln -s /proc/self/fd /dev/fd && ")


def private_netfiles(netfiles):
    """Shell commands that bind the tests' resolv.conf and hosts over the
    machine's (after /run is replaced: resolv.conf may be a link into it)."""
    resolv, hosts = netfiles
    return (f"for f in {q(resolv)}:/etc/resolv.conf {q(hosts)}:/etc/hosts; do "
            't=$(readlink -m "${f#*:}") && '
            '{ [ -e "$t" ] || { mkdir -p "${t%/*}" && touch "$t"; }; } && '
            'mount --bind "${f%%:*}" "$t" || exit 1; done && ')


def private_ns(cmd, share, netfiles):
    """cmd in a private mount namespace: /run, /dev (with /dev/log the
    test's socket), /etc/resolv.conf and /etc/hosts of the tests."""
    script = (
        f"mount --bind {q(share.dir / 'run')} /run && " + private_dev(share) +
        f"ln -s {q(share.log_path)} /dev/log && " + private_netfiles(netfiles) + 'exec "$@"')
    return ["unshare", "-m", "sh", "-c", script, "sh", *cmd]


class Launcher:
    """A launcher in the foreground (its pid is self.pid); its stdout and
    stderr go to a file."""

    def __init__(self, name, cmd, share, netfiles, port, wrap=private_ns, exe=None):
        self.name, self.port, self.share = name, port, share
        self.exe = exe or share.binary
        self.out_path = share.dir / f"{name}.out"
        self.outf = open(self.out_path, "ab")
        self.proc = subprocess.Popen(wrap(cmd, share, netfiles), stdin=subprocess.DEVNULL,
                                     stdout=self.outf, stderr=subprocess.STDOUT, env=clean_env())
        self.pid = self.proc.pid
        up = wait_until(lambda: listening(port) or self.proc.poll() is not None, 10)
        if not up or self.proc.poll() is not None:
            self.stop()
            pytest.fail(f"{name} did not start ({cmd}): rc={self.proc.returncode}\n"
                        f"{self.output()}\nsyslog: {share.syslog_lines()}")

    def output(self):
        return self.out_path.read_bytes().decode("utf-8", "replace")

    def tunnelds(self):
        """Pids of the tunneld processes under the launcher (or the launcher
        itself, when it has become tunneld)."""
        return [pid for pid in [self.pid] + descendants(self.pid) if runs_tunneld(pid, self.exe)]

    def stop(self):
        procs = descendants(self.pid)
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        for pid in procs:
            kill_pid(pid)
        self.outf.close()


@pytest.fixture
def launch(share, netfiles):
    with ended_after(lambda name, cmd, port, **kw: Launcher(name, cmd, share, netfiles, port,
                                                            **kw)) as start:
        yield start


def need(exe, package):
    """The launcher's path; skip (with how to get it) when it is missing."""
    path = shutil.which(exe, path=os.environ.get("PATH", "") + ":/usr/sbin:/sbin")
    if not path:
        pytest.skip(f"{exe} is not installed (Debian package {package}; `make deps` installs it)")
    return path


# --------------------------------------------------------------------------
# the targets and the two connections

def http_handler(conn, server):
    server.results.append(read_head(conn))
    conn.sendall(ok_answer(HTTP_BODY))


def uid_of(pid):
    with open(f"/proc/{pid}/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("Uid:"))


def tunneld_lines(text):
    """(pid, logfmt fields) of each connection log line of tunneld in text
    (syslog datagrams "<PRI>tunneld[PID]: ..." or stderr lines)."""
    return [(int(m.group(1)), parse_logfmt(m.group(2)))
            for m in re.finditer(r"tunneld\[(\d+)\]: (client=[^\n]*)", text)]


def drive(launcher, make_target, log_text, users=(NOBODY.pw_uid,), serving_check=None,
          own_pids=True):
    """Two connections through launcher; log_text() returns where tunneld's
    log lines go. The tunneld relaying the second runs as one of users, and
    serving_check(pid) checks it further. Returns the pids of the two
    tunneld processes in their log lines; own_pids=False: those of another
    pid namespace, which the caller checks."""
    http = make_target(http_handler)
    echo = make_target(echo_handler)
    port = launcher.port

    # 1. curl -p: CONNECT by name (the tests' DNS server answers good.test)
    r = subprocess.run(["curl", "-sS", "--max-time", "10", "-p", "-x", f"http://127.0.0.1:{port}",
                        f"http://good.test:{http.port}/"], capture_output=True, timeout=20,
                       env=clean_env())
    assert r.returncode == 0 and r.stdout == HTTP_BODY, (r, launcher.output())

    # 2. a raw socket by address: the bytes come back exactly, then EOF
    payload = os.urandom(ECHO_BYTES)
    c = Client("127.0.0.1", port, timeout=10)
    try:
        c.send(connect_head(f"127.0.0.1:{echo.port}") + payload)
        assert c.read_until(b"\r\n\r\n") == OK_REPLY, c.buf
        assert c.read_exact(len(payload)) == payload
        # the tunneld serving it runs as the configured user
        serving = wait_until(launcher.tunnelds, 5)
        assert serving, f"no tunneld under {launcher.name}"
        uids = {uid_of(p) for p in serving}
        assert len(uids) == 1 and uids <= set(users), [(p, uid_of(p)) for p in serving]
        if serving_check:
            for p in serving:
                serving_check(p)
        c.sock.shutdown(socket.SHUT_WR)
        rest = c.read_to_eof()
        assert rest == b"", f"bytes after the relayed ones (a log line?): {rest[:300]!r}"
    finally:
        c.close()

    def both():
        lines = tunneld_lines(log_text())
        a = [x for x in lines if x[1].get("target") == f"good.test:{http.port}"]
        b = [x for x in lines if x[1].get("target") == f"127.0.0.1:{echo.port}"]
        return (a, b) if a and b else None
    found = wait_until(both, 10)
    assert found, f"no log line for both connections:\n{log_text()}\n{launcher.output()}"
    (pid1, f1), = found[0]
    (pid2, f2), = found[1]
    assert f1["status"] == "200" and f1["addr"] == f"127.0.0.1:{http.port}", f1
    assert f2["status"] == "200", f2
    assert f2["up"] == f2["down"] == str(ECHO_BYTES), f2
    assert pid1 != pid2, "both connections served by one process"
    if not own_pids:
        return pid1, pid2
    assert pid1 != launcher.pid and pid2 != launcher.pid
    # and both have ended
    assert wait_until(lambda: not any(os.path.exists(f"/proc/{p}") for p in (pid1, pid2)), 10), \
        f"tunneld {pid1} or {pid2} still there"
    return pid1, pid2


def joined(lines):
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------
# the launchers

def test_openbsd_inetd(launch, share, make_target):
    inetd = need("inetd", "openbsd-inetd")
    port = free_port()
    conf = (CONTRIB / "inetd.conf").read_text()
    conf = sub_once(r"^3128(?=\s)", f"127.0.0.1:{port}", conf, "inetd.conf")
    conf = common_subst(conf, share, "inetd.conf")
    (share.dir / "inetd.conf").write_text(conf)
    # -d: debug, in the foreground, messages on stderr
    launcher = launch("inetd", [inetd, "-d", str(share.dir / "inetd.conf")], port)
    # its pid file went to the private /run, not the machine's
    pidfile = share.dir / "run" / "inetd.pid"
    assert wait_until(pidfile.exists, 5) and int(pidfile.read_text()) == launcher.pid
    pids = drive(launcher, make_target, lambda: joined(share.syslog_lines()))
    for pid in pids:
        assert wait_until(lambda: f"{pid} reaped, status 0" in launcher.output(), 5), \
            launcher.output()


def xinetd_path():
    local = REPO / "build" / "xinetd" / "usr" / "sbin" / "xinetd"
    if local.exists():
        return str(local)
    path = shutil.which("xinetd", path=os.environ.get("PATH", "") + ":/usr/sbin:/sbin")
    if not path:
        pytest.skip(f"xinetd not found in {local.parent} or PATH: `make deps` unpacks "
                    "Debian's xinetd there (the package conflicts with openbsd-inetd)")
    return path


def test_xinetd(launch, share, make_target):
    xinetd = xinetd_path()
    r = subprocess.run([xinetd, "-version"], capture_output=True, timeout=10)
    if r.returncode != 0:
        pytest.skip(f"{xinetd} does not run: {r.stderr.decode(errors='replace')}")
    port = free_port()
    conf = (CONTRIB / "xinetd.d" / "tunneld").read_text()
    conf = sub_once(r"^(\s*)port(\s*)= 3128$", rf"\1port\2= {port}\n\1bind\2= 127.0.0.1",
                    conf, "xinetd.d/tunneld")
    conf = common_subst(conf, share, "xinetd.d/tunneld")
    (share.dir / "xinetd.d").mkdir()
    (share.dir / "xinetd.d" / "tunneld").write_text(conf)
    (share.dir / "xinetd.conf").write_text(f"includedir {share.dir / 'xinetd.d'}\n")
    pidfile = share.dir / "xinetd.pid"
    launcher = launch("xinetd", [xinetd, "-dontfork", "-pidfile", str(pidfile),
                                 "-f", str(share.dir / "xinetd.conf")], port)
    assert wait_until(pidfile.exists, 5) and int(pidfile.read_text()) == launcher.pid
    drive(launcher, make_target, lambda: joined(share.syslog_lines()))


def test_tcpserver(launch, share, make_target):
    need("tcpserver", "ucspi-tcp")
    port = free_port()
    script = (CONTRIB / "tcpserver.run").read_text()
    script = sub_once(r"(?<=\s)0 3128(?=\s)", f"127.0.0.1 {port}", script, "tcpserver.run")
    script = common_subst(script, share, "tcpserver.run")
    run = share.dir / "tcpserver.run"
    run.write_text(script)
    launcher = launch("tcpserver", ["sh", str(run)], port)
    # stderr is not the socket: tunneld's lines are beside tcpserver's -v ones
    pids = drive(launcher, make_target, launcher.output)
    for pid in pids:
        assert wait_until(lambda: f"tcpserver: end {pid} status 0" in launcher.output(), 5), \
            launcher.output()
    assert not share.syslog_lines(), share.syslog


@pytest.mark.parametrize("socket_unit", ["tunneld.socket", "tunneld-accept-no.socket"])
def test_systemd_units(launch, share, make_target, socket_unit):
    need("systemd-socket-activate", "systemd")
    port = free_port()
    cmd = systemd_command(socket_unit, share, port)
    launcher = launch("systemd", cmd, port)
    # systemd-socket-activate's stderr: tunneld logs there (under systemd it is
    # the journal's socket, and tunneld logs to syslog, as under inetd)
    pids = drive(launcher, make_target, launcher.output)
    if "-a" in cmd:
        for pid in pids:
            assert wait_until(lambda: f"Child {pid} died with code 0" in launcher.output(), 5), \
                launcher.output()
    else:
        # Accept=no: the launcher became tunneld, whose spares served both
        pids_now = launcher.tunnelds()
        spares = idle_spares(launcher.pid)
        assert [p for p in pids_now if p not in spares] == [launcher.pid]
        assert "listening on 1 socket" in launcher.output()
    assert set(pids).isdisjoint(launcher.tunnelds())


def test_systemd_units_verify(share):
    """systemd's own parser finds nothing to say about the unit files (the
    binary path substituted, since it must exist)."""
    need("systemd-analyze", "systemd")
    units = ["tunneld.socket", "tunneld@.service", "tunneld-accept-no.socket",
             "tunneld-accept-no.service"]
    d = share.dir / "units"
    d.mkdir()
    for name in units:
        text = replace_once((CONTRIB / name).read_text(), DEFAULT_BIN, share.binary, name) \
            if name.endswith(".service") else (CONTRIB / name).read_text()
        (d / name).write_text(text)
    r = subprocess.run(["systemd-analyze", "verify", "--man=no", *[str(d / u) for u in units]],
                        capture_output=True, timeout=60, env=clean_env())
    assert r.returncode == 0 and not r.stdout.strip() and not r.stderr.strip(), r


def test_launcher_files_use_the_defaults_substituted_here():
    """Every launcher file names the same binary, rules and port, so that
    the README's one set of paths holds for all of them."""
    files = ["inetd.conf", "xinetd.d/tunneld", "tcpserver.run", "tunneld@.service",
             "tunneld-accept-no.service"]
    for name in files:
        text = (CONTRIB / name).read_text()
        assert DEFAULT_BIN in text and DEFAULT_RULES in text, name
    for name in ["tunneld.socket", "tunneld-accept-no.socket"]:
        assert "ListenStream=3128" in (CONTRIB / name).read_text(), name
    assert os.access(CONTRIB / "tcpserver.run", os.X_OK), "tcpserver.run is not executable"


# --------------------------------------------------------------------------
# the systemd units' sandbox: its score, and the units under a real systemd

# systemd-analyze security's exposure (0 to 10, shown to one decimal; its
# --threshold counts tenths). The units reach 1.1: what is left is the
# host's network and root directory, which a proxy must keep, and the
# ProtectClock rtc read (char-rtc r). The units before their sandbox
# (DynamicUser=yes, NoNewPrivileges, ProtectSystem, ProtectHome, PrivateTmp)
# scored 8.3.
EXPOSURE_MAX = 1.5


@pytest.mark.parametrize("service", ["tunneld@.service", "tunneld-accept-no.service"])
def test_systemd_security(service):
    need("systemd-analyze", "systemd")
    r = subprocess.run(["systemd-analyze", "security", "--offline=true", "--no-pager",
                        f"--threshold={round(EXPOSURE_MAX * 10)}", str(CONTRIB / service)],
                       capture_output=True, text=True, timeout=60, env=clean_env())
    m = re.search(r"Overall exposure level for \S+: (\d+\.\d)", r.stdout)
    assert m, r
    assert float(m.group(1)) <= EXPOSURE_MAX and r.returncode == 0, r.stdout


SYSTEMD_DYNAMIC_UIDS = range(61184, 65520)   # systemd's DynamicUser= range
BOOT_DIR = "/run/tunneld-test"               # the binary and rules, in the booted /run


def systemd_path():
    for p in ["/usr/lib/systemd/systemd", "/lib/systemd/systemd"]:
        if os.access(p, os.X_OK):
            return p
    pytest.skip("no systemd binary (Debian package systemd; `make deps` installs it)")


def own_cgroup2():
    """The cgroup2 directory this process is in, or None."""
    mount = next((line.split()[4] for line in open("/proc/self/mountinfo")
                  if " - cgroup2 " in line), None)
    rel = next((line[3:].strip() for line in open("/proc/self/cgroup")
                if line.startswith("0::")), None)
    return Path(mount + rel) if mount and rel is not None else None


def boot_units(share, socket_unit, port, args=""):
    """The unit directory of the booted systemd: the contrib units with the
    binary, rules and port substituted (and args added after the rules),
    journald's units, and the targets their default dependencies name
    (empty: nothing else starts)."""
    d = share.dir / "units"
    d.mkdir()
    real = Path(os.path.realpath("/usr/lib/systemd/system"))
    service, _ = service_of(socket_unit)
    sock = replace_once((CONTRIB / socket_unit).read_text(), "ListenStream=3128",
                        f"ListenStream=127.0.0.1:{port}", socket_unit)
    (d / socket_unit).write_text(sock)
    svc = (CONTRIB / service).read_text()
    svc = replace_once(svc, DEFAULT_BIN, f"{BOOT_DIR}/tunneld", service)
    svc = replace_once(svc, DEFAULT_RULES, f"{BOOT_DIR}/rules{args}", service)
    (d / service).write_text(svc)
    journald = ["systemd-journald.service", "systemd-journald.socket",
                "systemd-journald-dev-log.socket"]
    for name in journald:
        shutil.copy(real / name, d / name)
    for name in ["sysinit.target", "sockets.target", "basic.target", "shutdown.target"]:
        (d / name).write_text("[Unit]\nDefaultDependencies=no\n")
    (d / "tunneld-test.target").write_text(
        f"[Unit]\nDefaultDependencies=no\nWants={socket_unit} {' '.join(journald)}\n")
    return real, d, service


def booted_ns(cgroup, unit_dirs):
    """The wrapper for Launcher: systemd as pid 1 of new pid, cgroup, mount,
    UTS and IPC namespaces (the network is the machine's, as in the tests),
    in a cgroup of its own; a fresh /run holding the binary and the rules; a
    private /dev, /tmp, /var/tmp and journal; and only the test's units."""
    real, units = unit_dirs
    hide = [p for p in ["/etc/systemd/system", "/usr/local/lib/systemd/system",
                        "/usr/lib/systemd/system-generators", "/etc/systemd/system-generators",
                        "/usr/local/lib/systemd/system-generators"] if os.path.isdir(p)]
    tmpfs = [p for p in ["/tmp", "/var/tmp", "/var/log/journal"] if os.path.isdir(p)]

    def wrap(cmd, share, netfiles):
        assert not cmd, cmd
        return ["sh", "-c", f'echo $$ > {q(cgroup / "cgroup.procs")} && exec "$@"', "sh",
                "unshare", "-C", "-p", "-f", "-m", "-u", "-i", "--mount-proc", "--kill-child",
                "sh", "-c", script(share, netfiles)]

    def script(share, netfiles):
        empty = share.dir / "empty"
        empty.mkdir()
        return (
            "set -e; mount -t tmpfs -o mode=755 tunneld-test-run /run && "
            f"mkdir -m 755 {BOOT_DIR} && cp {q(share.binary)} {BOOT_DIR}/tunneld && "
            f"cp {q(share.rules)} {BOOT_DIR}/rules && " + private_netfiles(netfiles) +
            private_dev(share) +
            "mkdir /dev/pts /dev/shm && ln -s pts/ptmx /dev/ptmx && "
            "mount -t devpts -o newinstance,ptmxmode=0666 devpts /dev/pts && "
            "umount -R /sys/fs/cgroup && mount -t cgroup2 tunneld-test-cgroup /sys/fs/cgroup && "
            f"mount --bind {q(units)} {q(real)} && " +
            "".join(f"mount --bind {q(empty)} {q(p)} && " for p in hide) +
            "".join(f"mount -t tmpfs tunneld-test-tmp {q(p)} && " for p in tmpfs) +
            f"exec env -i container=tunneld-test {systemd_path()} --unit=tunneld-test.target "
            "--log-target=journal --show-status=no")
    return wrap


class Booted:
    """systemd booted by booted_ns() under launcher (its host pid: self.pid)."""

    def __init__(self, launcher):
        self.launcher = launcher
        kids = wait_until(lambda: children(launcher.pid), 5)
        assert kids and len(kids) == 1, kids
        self.pid = kids[0]

    def run(self, *cmd):
        return subprocess.run(["nsenter", "-t", str(self.pid), "-m", "-p", *cmd],
                              capture_output=True, text=True, timeout=20, env=clean_env())

    def journal(self):
        return self.run("journalctl", "--no-pager", "-o", "short").stdout

    def active(self, pattern):
        r = self.run("systemctl", "list-units", "--plain", "--no-legend", "--state=active",
                     pattern)
        return r.stdout.split()

    def poweroff(self):
        # SIGRTMIN+14: poweroff at once, which ends the pid namespace
        os.kill(self.pid, signal.SIGRTMIN + 14)
        wait_until(lambda: self.launcher.proc.poll() is not None, 10)


def sandboxed(pid):
    """What the units' sandbox gives a serving tunneld, as the kernel says."""
    status = dict(line.split(":\t", 1) for line in open(f"/proc/{pid}/status").read()
                  .splitlines() if ":\t" in line)
    assert status["NoNewPrivs"].strip() == "1", status
    assert status["Seccomp"].strip() == "2", status
    assert int(status["CapBnd"], 16) == 0 and int(status["CapEff"], 16) == 0, status
    # ProtectSystem=strict: / is read-only in its mount namespace
    root = next(line.split() for line in open(f"/proc/{pid}/mountinfo")
                if line.split()[4] == "/")
    assert "ro" in root[5].split(","), root


@pytest.fixture
def cgroup():
    """A cgroup2 directory under this process's, removed (leaves first)
    after the test."""
    base = own_cgroup2()
    if base is None or not os.access(base, os.W_OK):
        pytest.skip("no writable cgroup2 hierarchy to boot systemd in")
    d = base / f"tunneld-test-{os.getpid()}"
    try:
        d.mkdir()
    except OSError as e:
        pytest.skip(f"cannot make a cgroup for systemd: {e}")
    yield d
    for _ in range(100):
        for sub in sorted((p for p in d.rglob("*") if p.is_dir()), key=lambda p: -len(p.parts)):
            with contextlib.suppress(OSError):
                sub.rmdir()
        with contextlib.suppress(OSError):
            d.rmdir()
        if not d.exists():
            break
        time.sleep(0.05)


@pytest.fixture
def boot(launch, share, cgroup):
    """boot(socket_unit, args) -> (Booted, its launcher, the service unit)."""
    if os.geteuid() != 0:
        pytest.skip("booting systemd in namespaces needs root")
    need("nsenter", "util-linux")
    booted = []

    def start(socket_unit, args=""):
        port = free_port()
        real, units, service = boot_units(share, socket_unit, port, args)
        wrap = booted_ns(cgroup, (real, units))
        launcher = launch("systemd-booted", [], port, wrap=wrap, exe=f"{BOOT_DIR}/tunneld")
        booted.append(Booted(launcher))
        return booted[-1], launcher, service
    yield start
    for b in booted:
        b.poweroff()


def assert_clean_journal(booted):
    """No failure of a tunneld unit (a denied system call is a SIGSYS)."""
    journal = booted.journal()
    bad = [line for line in journal.splitlines() if "tunneld" in line and
           ("Failed" in line or "SIGSYS" in line or "code=killed" in line)]
    assert not bad, journal
    return journal


@pytest.mark.parametrize("socket_unit", ["tunneld.socket", "tunneld-accept-no.socket"])
def test_systemd_booted(boot, make_target, socket_unit):
    """The shipped units, sandbox and all, under a real systemd (pid 1 of a
    pid namespace), serve both connections as a DynamicUser= uid, each
    tunneld with no capability, no_new_privs and systemd's filter."""
    booted, launcher, service = boot(socket_unit)
    pids = drive(launcher, make_target, booted.journal, users=SYSTEMD_DYNAMIC_UIDS,
                 serving_check=sandboxed, own_pids=False)
    if service.endswith("@.service"):
        # each connection was an instance of its own, and all have ended
        assert wait_until(lambda: not booted.active(service.replace("@", "@*")), 10), \
            booted.active("*")
    else:
        main = booted.run("systemctl", "show", "-P", "MainPID", service).stdout.strip()
        assert main not in ("", "0") and int(main) not in pids, (main, pids)
    assert_clean_journal(booted)


@pytest.mark.needs("http-tunnel")
@pytest.mark.parametrize("socket_unit", ["tunneld.socket", "tunneld-accept-no.socket"])
def test_systemd_booted_http_tunnel(boot, make_target, tunnel_bin, socket_unit):
    """A GET/POST tunnel session through the sandboxed units, --http-tunnel
    added: its requests come on several connections (with Accept=yes each
    one a service instance of its own, with its own user namespace), handed
    over to the session's holder by abstract unix sockets."""
    booted, launcher, service = boot(socket_unit, " --http-tunnel=/t")
    echo = make_target(echo_handler)
    payload = os.urandom(300_000)
    r = subprocess.run([tunnel_bin, f"http://127.0.0.1:{launcher.port}/t",
                        f"127.0.0.1:{echo.port}"], input=payload, capture_output=True,
                       timeout=60, env=clean_env())
    assert r.returncode == 0 and r.stdout == payload, (r.returncode, len(r.stdout), r.stderr)
    # the holder logs the session once it has ended
    line = (rf"tunneld\[\d+\]: client=\S+ user=- target=127.0.0.1:{echo.port} .*"
            rf"status=200 up={len(payload)} down={len(payload)}")
    assert wait_until(lambda: re.search(line, booted.journal()), 10), booted.journal()
    journal = assert_clean_journal(booted)
    if service.endswith("@.service"):
        assert journal.count(f"Started {service.split('@')[0]}@") >= 2, journal
