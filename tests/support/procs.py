"""Processes: the tunneld binary, its environment and mount namespace,
tunneld started for a test (Proxy), waits with deadlines, and /proc
walks. Every process started here is ended by its pid."""

import contextlib
import functools
import os
import random
import re
import shlex
import signal
import socket
import subprocess
import time
from pathlib import Path

import pytest

TESTS = Path(__file__).resolve().parent.parent
REPO = TESTS.parent

# Rules for most tests: the loopback targets the tests start are allowed.
LOOPBACK_ACL = "allow to 127.0.0.0/8,::1\ndeny\n"
MODES = ["listen", "inetd"]
# and systemd Accept=no: the listening socket is passed in (LISTEN_FDS)
ALL_MODES = MODES + ["systemd"]
EXIT_USAGE = 64
# Where the GET/POST tunnel tests serve it (--http-tunnel=/t).
TUNNEL_PATH = "/t"


def binary_path():
    return Path(os.environ.get("TUNNELD") or REPO / "tunneld").resolve()


def binary_problem():
    """None if the tunneld binary ($TUNNELD or <repo>/tunneld) is usable."""
    path = binary_path()
    if path.is_file() and os.access(path, os.X_OK):
        return None
    return (f"tunneld binary not found or not executable: {path} "
            "(run `make` at the repository root, or set TUNNELD)")


def binary():
    problem = binary_problem()
    if problem:
        pytest.fail(problem)
    return str(binary_path())


@functools.lru_cache(maxsize=None)
def binary_features():
    """What `tunneld --version` lists as compiled in:
    "(+auth +tls +ipv6 +splice +http-tunnel +sandbox)"."""
    out = subprocess.run([binary(), "--version"], capture_output=True, text=True,
                         timeout=10).stdout
    return set(re.findall(r"\+([\w-]+)", out))


def needs_v6(*values):
    """A parametrize row that applies only to an IPv6 build."""
    return pytest.param(*values, marks=pytest.mark.needs("ipv6"))


def clean_env():
    """The environment for child processes: no proxy variables, C locale."""
    env = {k: v for k, v in os.environ.items() if "proxy" not in k.lower()}
    env["LC_ALL"] = "C"
    return env


_rng = random.SystemRandom()  # not a seed a plugin or test sets alike in every worker


def free_port(host="127.0.0.1"):
    """A port nothing is bound to on host, below the kernel's ephemeral
    range: a port bind(0) hands out is one any connect() on the machine
    (other tests, other lanes) may take before the server a test starts
    binds it."""
    fam = socket.AF_INET6 if ":" in host else socket.AF_INET
    with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
        low = int(f.read().split()[0])
    for _ in range(200 if low > 11024 else 0):
        port = _rng.randrange(10000, low)
        with socket.socket(fam) as s:
            try:
                s.bind((host, port))
                return port
            except OSError:
                continue
    with socket.socket(fam) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def hostport(host, port):
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def wait_until(pred, timeout, step=0.02):
    """Poll pred() until it is true or timeout seconds pass; return its value."""
    deadline = time.monotonic() + timeout
    while True:
        value = pred()
        if value or time.monotonic() >= deadline:
            return value
        time.sleep(step)


def socket_inodes(pid, depth=3):
    """The inodes of the sockets process pid and its descendants (a
    launcher's child: unshare --fork) hold open."""
    out = set()
    try:
        for fd in os.listdir(f"/proc/{pid}/fd"):
            try:
                link = os.readlink(f"/proc/{pid}/fd/{fd}")
            except OSError:
                continue
            if link.startswith("socket:["):
                out.add(link[8:-1])
        if depth:
            with open(f"/proc/{pid}/task/{pid}/children") as f:
                for child in f.read().split():
                    out |= socket_inodes(int(child), depth - 1)
    except OSError:
        pass
    return out


def listening(port, tables=("/proc/net/tcp", "/proc/net/tcp6"), pid=None):
    """True if some socket is in LISTEN state on TCP port `port` (in the
    network namespace whose tables are named); with pid, one that process
    holds: another test's server on that port at another address is not
    it."""
    want = f":{port:04X}"
    mine = socket_inodes(pid) if pid else None
    for name in tables:
        try:
            with open(name) as f:
                next(f)
                for line in f:
                    fields = line.split()
                    # The kernel lists listening sockets first: the rest
                    # (thousands in TIME_WAIT on a busy test machine) would
                    # make each look take long enough for the table to
                    # change under it, and an entry be skipped.
                    if fields[3] != "0A":
                        break
                    if fields[1].endswith(want) and (mine is None or fields[9] in mine):
                        return True
        except (FileNotFoundError, ProcessLookupError):
            pass
    return False


def log_says(path, offset, *marks):
    """True if the file at path holds one of the byte strings marks after
    offset."""
    with open(path, "rb") as f:
        f.seek(offset)
        text = f.read()
    return any(m in text for m in marks)


def _stat_fields(pid):
    """The fields of /proc/pid/stat after the comm field (which may contain
    spaces): [state, ppid, ...]."""
    with open(f"/proc/{pid}/stat") as f:
        return f.read().rsplit(")", 1)[1].split()


def alive(pid):
    """pid exists and is not a zombie."""
    try:
        return _stat_fields(pid)[0] != "Z"
    except (OSError, IndexError):
        return False


def children(pid):
    """Pids whose parent is pid (zombies included)."""
    out = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            ppid = int(_stat_fields(entry)[1])
        except (OSError, IndexError):
            continue
        if ppid == pid:
            out.append(int(entry))
    return out


def runs_tunneld(pid, exe=None):
    """Process pid executes tunneld (exe, or the binary under test): the
    file itself, or a spare's sealed copy of it (a memory file)."""
    try:
        link = os.readlink(f"/proc/{pid}/exe")
    except OSError:
        return False
    return (link.startswith("/memfd:tunneld ") or
            os.path.realpath(link) == os.path.realpath(exe or binary_path()))


def listening_inodes(pid):
    """The inodes of every listening TCP and unix socket in the network
    namespace of process pid."""
    out = set()
    for name in (f"/proc/{pid}/net/tcp", f"/proc/{pid}/net/tcp6"):
        with contextlib.suppress(FileNotFoundError):
            with open(name) as f:
                next(f)
                for line in f:
                    fields = line.split()
                    if fields[3] != "0A":   # listening sockets come first
                        break
                    out.add(fields[9])
    with contextlib.suppress(FileNotFoundError):
        with open(f"/proc/{pid}/net/unix") as f:
            next(f)
            for line in f:
                fields = line.split()
                if int(fields[3], 16) & 0x10000:    # __SO_ACCEPTCON
                    out.add(fields[6])
    return out


def idle_spares(pid):
    """The children of listener pid that wait for a client on its listening
    sockets (tunneld's spares): holding a listening socket pid holds."""
    try:
        listen = socket_inodes(pid, depth=0) & listening_inodes(pid)
    except (ProcessLookupError, PermissionError):
        return set()
    return {c for c in children(pid) if socket_inodes(c, depth=0) & listen}


def descendants(pid):
    out, todo = [], [pid]
    for _ in range(10000):
        if not todo:
            break
        kids = children(todo.pop())
        out += kids
        todo += kids
    return out


def fd_count(pid):
    return len(os.listdir(f"/proc/{pid}/fd"))


def kill_pid(pid, sig=signal.SIGKILL):
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        pass


def procs_with_stderr(file_id):
    """Pids whose fd 2 is the file (st_dev, st_ino) file_id."""
    out = []
    for entry in os.listdir("/proc"):
        if entry.isdigit() and int(entry) != os.getpid():
            try:
                st = os.stat(f"/proc/{entry}/fd/2")
            except OSError:
                continue
            if (st.st_dev, st.st_ino) == file_id:
                out.append(int(entry))
    return out


def end_server(proc, grace=10):
    """End a server the tests started (a Popen): SIGTERM, then after grace
    seconds SIGKILL."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(grace)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


def parse_logfmt(line):
    return {m.group(1): m.group(2).strip('"')
            for m in re.finditer(r'(\w+)=("(?:[^"\\]|\\.)*"|\S*)', line)}


@contextlib.contextmanager
def ended_after(start, end=lambda x: x.stop()):
    """For a factory fixture: `with ended_after(Thing) as make: yield make`;
    make(...) is start(...), and each thing made is ended (end(thing)) when
    the block is left."""
    made = []

    def make(*args, **kw):
        thing = start(*args, **kw)
        made.append(thing)
        return thing
    try:
        yield make
    finally:
        for thing in made:
            end(thing)


def netns_wrap(cmd, netfiles):
    """Run cmd in a private mount namespace with the test resolv.conf and hosts."""
    resolv, hosts = netfiles
    script = (f"mount --bind {shlex.quote(str(resolv))} /etc/resolv.conf && "
              f"mount --bind {shlex.quote(str(hosts))} /etc/hosts && exec \"$@\"")
    return ["unshare", "-m", "sh", "-c", script, "sh", *cmd]


def run_tunneld(args, netfiles, stdin=subprocess.DEVNULL, timeout=10):
    """Run tunneld to completion (for usage/config checks); CompletedProcess."""
    return subprocess.run(netns_wrap([binary(), *args], netfiles), stdin=stdin,
                          capture_output=True, timeout=timeout, env=clean_env())


class Proxy:
    """One tunneld: listen mode (`tunneld --listen`), inetd mode
    (systemd-socket-activate --inetd -a spawning one tunneld per connection)
    or systemd mode (systemd-socket-activate passing the listening socket,
    LISTEN_FDS=1, as for a systemd unit with Accept=no).

    The options most tests vary have keywords: tls=(cert, key) serves TLS
    (.cafile is the cert), tunnel=PATH serves the GET/POST tunnel under
    PATH (True: at the default path; .url is the client's SERVER), users=
    a credential file. In inetd mode a tunnel's further options are first
    tried on a connection that ends at once (stdin /dev/null): the
    launcher would start happily and each connection would just be reset."""

    def __init__(self, workdir, netfiles, mode="listen", acl=LOOPBACK_ACL, args=(),
                 host="127.0.0.1", wrap=(), port=None, *, tls=None, tunnel=None, users=None):
        self.mode, self.host = mode, host
        workdir.mkdir(parents=True, exist_ok=True)
        # A port of our choosing that another test took between free_port
        # and the bind is no failure of tunneld's: choose again.
        for _ in range(1 if port else 3):
            self.port = port or free_port(host)
            if self.start(workdir, netfiles, acl, args, host, wrap, tls, tunnel, users):
                return
            if self.proc.poll() is None or b" in use" not in self.log_path.read_bytes():
                break
            self.logf.close()
        self.stop()
        pytest.fail(f"tunneld did not start ({self.cmd}): rc={self.proc.returncode} "
                    f"log={self.log_text()!r}")

    def start(self, workdir, netfiles, acl, args, host, wrap, tls, tunnel, users):
        """Start the listener on self.port; True once it listens."""
        self.log_path = workdir / f"tunneld-{self.mode}-{self.port}.log"
        opts = ["--log", "stderr", *self.feature_args(tls, tunnel, users), *args]
        if acl is not None:
            self.acl_path = workdir / f"acl-{self.port}"
            self.acl_path.write_text(acl)
            opts += ["--acl", str(self.acl_path)]
        if self.mode == "inetd" and tunnel and args:
            self.check_options(opts, netfiles)
        self.logf = open(self.log_path, "ab")
        st = os.fstat(self.logf.fileno())
        self.log_id = (st.st_dev, st.st_ino)
        self.cmd = self.command(self.mode, hostport(host, self.port), wrap, opts)
        self.proc = subprocess.Popen(netns_wrap(self.cmd, netfiles), stdin=subprocess.DEVNULL,
                                     stdout=subprocess.DEVNULL, stderr=self.logf,
                                     env=clean_env())
        self.pid = self.proc.pid     # unshare and sh exec: this is the listener
        # Up when the listener says so, after listen(): tunneld's "listening
        # on N sockets", the launcher's "Listening on ADDRESS as FD"; or,
        # logging elsewhere (--log syslog), when a socket it holds listens.
        up = wait_until(lambda: log_says(self.log_path, st.st_size, b"]: listening on ",
                                         b"Listening on ")
                        or listening(self.port, pid=self.pid)
                        or self.proc.poll() is not None, 10)
        return bool(up) and self.proc.poll() is None

    def feature_args(self, tls, tunnel, users):
        out = []
        scheme = "http"
        if tls:
            out += ["--cert", str(tls[0]), "--key", str(tls[1])]
            self.cafile, scheme = str(tls[0]), "https"
        if tunnel:
            out.append("--http-tunnel" if tunnel is True else f"--http-tunnel={tunnel}")
            path = "" if tunnel is True else tunnel
            self.url = f"{scheme}://{hostport(self.host, self.port)}{path}"
        if users:
            out += ["--users", str(users)]
        return out

    @staticmethod
    def check_options(opts, netfiles):
        r = run_tunneld(opts, netfiles)
        if r.returncode == EXIT_USAGE or b"unknown option" in r.stderr:
            pytest.fail(f"tunneld (inetd mode) refuses {opts}: rc={r.returncode} "
                        f"{r.stderr.decode(errors='replace').strip()}")

    @staticmethod
    def command(mode, where, wrap, opts):
        """The command line; wrap: a command that execs tunneld (prlimit
        ...), keeping its pid."""
        if mode == "listen":
            return [*wrap, binary(), "--listen", where, *opts]
        if mode == "inetd":
            return ["systemd-socket-activate", "--inetd", "-a", "-l", where, *wrap, binary(),
                    *opts]
        return ["systemd-socket-activate", "-l", where, *wrap, binary(), *opts]

    def log_text(self):
        return self.log_path.read_bytes().decode("utf-8", "replace")

    def log_lines(self):
        """Connection log lines as dicts; "_raw" holds the line itself."""
        return [dict(parse_logfmt(line), _raw=line)
                for line in self.log_text().split("\n") if "client=" in line]

    def wait_log(self, pred, timeout=5.0, what="a matching"):
        """The first connection log line (as a dict) for which pred holds."""
        fields = wait_until(lambda: next((f for f in self.log_lines() if pred(f)), None), timeout)
        assert fields, f"no {what} log line:\n{self.log_text()}"
        return fields

    def log_for(self, client_port, timeout=5.0):
        """The connection log line of the client whose local port was client_port."""
        return self.wait_log(lambda f: f.get("client", "").endswith(f":{client_port}"),
                             timeout, f"client port {client_port}")

    def workers(self):
        """The processes serving a connection (a listener's spares that
        wait for a client are none)."""
        kids = children(self.pid)
        spares = idle_spares(self.pid)  # after: one started between is no kid
        return [c for c in kids if c not in spares]

    def procs(self):
        """The live processes of this tunneld besides self.pid (the listener
        in listen mode, the launcher in inetd mode): its descendants, and
        those that left the tree but still write to its log (a GET/POST
        tunnel session's holder whose parent ended first)."""
        pids = set(descendants(self.pid)) | set(procs_with_stderr(self.log_id))
        pids.discard(self.pid)
        return {p for p in pids if alive(p)} - idle_spares(self.pid)  # after, as in workers()

    def stop(self, rounds=10):
        procs = descendants(self.pid)
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(3)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(3)
        for pid in procs:
            kill_pid(pid)
        # Several rounds: one that forked while the last round ran is
        # caught by the next.
        for _ in range(rounds):
            pids = self.procs()
            if not pids:
                break
            for pid in pids:
                kill_pid(pid)
            time.sleep(0.05)
        self.logf.close()
