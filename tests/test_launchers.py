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
"""

import os
import pwd
import re
import shlex
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path

import pytest

from conftest import (LOOPBACK_ACL, OK_REPLY, REPO, Client, binary, clean_env, connect_head,
                      descendants, free_port, kill_pid, listening, parse_logfmt, wait_until)

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
    "ProtectSystem": "sandboxing: tunneld writes no file",
    "ProtectHome": "sandboxing: tunneld reads no home",
    "PrivateTmp": "sandboxing: tunneld uses no /tmp",
    "RuntimeMaxSec": "a connection's limit of a day",
}
SOCKET_KEYS = {"ListenStream", "Accept", "Service", "MaxConnections"}
SERVICE_KEYS = {"ExecStart", "StandardInput", "StandardOutput", "DynamicUser",
                "NoNewPrivileges"} | set(UNIT_IGNORED)


def systemd_command(socket_unit, share, port):
    """systemd-socket-activate's command line for socket_unit and the
    service it starts, as systemd would run them (see UNIT_IGNORED)."""
    sock = unit_file(socket_unit)["Socket"]
    unknown = {k for k, _ in sock} - SOCKET_KEYS
    assert not unknown, f"{socket_unit}: options this test does not map: {unknown}"
    accept = unit_get(sock, "Accept", "no") == "yes"
    stem = socket_unit.rsplit(".", 1)[0]
    service_unit = unit_get(sock, "Service") or f"{stem}{'@' if accept else ''}.service"
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


def private_ns(cmd, share, netfiles):
    """cmd in a private mount namespace: /run, /dev (with /dev/log the
    test's socket), /etc/resolv.conf and /etc/hosts of the tests."""
    q = lambda p: shlex.quote(str(p))    # noqa: E731
    old = share.dir / "olddev"
    resolv, hosts = netfiles
    script = (
        f"mount --bind {q(share.dir / 'run')} /run && "
        f"mount --rbind /dev {q(old)} && "
        "mount -t tmpfs -o mode=755,size=64k tunneld-test-dev /dev && "
        "for n in null zero full random urandom tty; do "
        f"touch /dev/$n && mount --bind {q(old)}/$n /dev/$n || exit 1; done && "
        f"umount -l {q(old)} && ln -s /proc/self/fd /dev/fd && "
        f"ln -s {q(share.log_path)} /dev/log && "
        # resolv.conf may be a link into the /run just replaced
        f"for f in {q(resolv)}:/etc/resolv.conf {q(hosts)}:/etc/hosts; do "
        't=$(readlink -m "${f#*:}") && '
        '{ [ -e "$t" ] || { mkdir -p "${t%/*}" && touch "$t"; }; } && '
        'mount --bind "${f%%:*}" "$t" || exit 1; done && exec "$@"')
    return ["unshare", "-m", "sh", "-c", script, "sh", *cmd]


class Launcher:
    """A launcher in the foreground (its pid is self.pid); its stdout and
    stderr go to a file."""

    def __init__(self, name, cmd, share, netfiles, port):
        self.name, self.port, self.share = name, port, share
        self.out_path = share.dir / f"{name}.out"
        self.outf = open(self.out_path, "ab")
        self.proc = subprocess.Popen(private_ns(cmd, share, netfiles), stdin=subprocess.DEVNULL,
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
        want = os.path.realpath(self.share.binary)
        out = []
        for pid in [self.pid] + descendants(self.pid):
            try:
                if os.path.realpath(os.readlink(f"/proc/{pid}/exe")) == want:
                    out.append(pid)
            except OSError:
                pass
        return out

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
    started = []

    def start(name, cmd, port):
        launcher = Launcher(name, cmd, share, netfiles, port)
        started.append(launcher)
        return launcher
    yield start
    for launcher in started:
        launcher.stop()


def need(exe, package):
    """The launcher's path; skip (with how to get it) when it is missing."""
    path = shutil.which(exe, path=os.environ.get("PATH", "") + ":/usr/sbin:/sbin")
    if not path:
        pytest.skip(f"{exe} is not installed (Debian package {package}; `make deps` installs it)")
    return path


# --------------------------------------------------------------------------
# the targets and the two connections

def http_handler(conn, server):
    head = b""
    while b"\r\n\r\n" not in head and len(head) < 65536:
        chunk = conn.recv(4096)
        if not chunk:
            break
        head += chunk
    server.results.append(head)
    conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: %d\r\n"
                 b"Connection: close\r\n\r\n%s" % (len(HTTP_BODY), HTTP_BODY))


def echo_handler(conn, server):
    while True:
        chunk = conn.recv(65536)
        if not chunk:
            return
        conn.sendall(chunk)


def uid_of(pid):
    with open(f"/proc/{pid}/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("Uid:"))


def tunneld_lines(text):
    """(pid, logfmt fields) of each connection log line of tunneld in text
    (syslog datagrams "<PRI>tunneld[PID]: ..." or stderr lines)."""
    return [(int(m.group(1)), parse_logfmt(m.group(2)))
            for m in re.finditer(r"tunneld\[(\d+)\]: (client=[^\n]*)", text)]


def drive(launcher, make_target, log_text, user=NOBODY.pw_uid):
    """Two connections through launcher; log_text() returns where tunneld's
    log lines go. Returns the pids of the two tunneld processes."""
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
        assert {uid_of(p) for p in serving} == {user}, [(p, uid_of(p)) for p in serving]
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
        # Accept=no: the launcher became tunneld, which forked both
        assert launcher.tunnelds() == [launcher.pid]
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
