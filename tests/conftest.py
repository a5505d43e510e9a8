"""Fixtures and helpers for the tunneld end-to-end tests.

Every tunneld runs inside a private mount namespace whose /etc/resolv.conf
points at tests/dnsserver.py on 127.0.0.77, so no test ever asks the
machine's resolver.  Servers listen on 127.0.0.0/8 and ::1 only; every wait
has a deadline; every process started here is ended by its pid.
"""

import base64
import functools
import hashlib
import os
import re
import shlex
import shutil
import signal
import socket
import ssl
import subprocess
import tempfile
import threading
import time
from http import HTTPStatus
from pathlib import Path

import pytest

import dnsserver

TESTS = Path(__file__).resolve().parent
REPO = TESTS.parent

OK_REPLY = b"HTTP/1.1 200 Connection established\r\n\r\n"
# Rules for most tests: the loopback targets the tests start are allowed.
LOOPBACK_ACL = "allow to 127.0.0.0/8,::1\ndeny\n"
MODES = ["listen", "inetd"]
# and systemd Accept=no: the listening socket is passed in (LISTEN_FDS)
ALL_MODES = MODES + ["systemd"]
HTTPS_BODY = b"hello from the https target\n"


# --------------------------------------------------------------------------
# small helpers

def binary_problem():
    """None if the tunneld binary ($TUNNELD or <repo>/tunneld) is usable."""
    path = Path(os.environ.get("TUNNELD") or REPO / "tunneld").resolve()
    if path.is_file() and os.access(path, os.X_OK):
        return None
    return (f"tunneld binary not found or not executable: {path} "
            "(run `make` at the repository root, or set TUNNELD)")


def binary():
    problem = binary_problem()
    if problem:
        pytest.fail(problem)
    return str(Path(os.environ.get("TUNNELD") or REPO / "tunneld").resolve())


def clean_env():
    """The environment for child processes: no proxy variables, C locale."""
    env = {k: v for k, v in os.environ.items() if "proxy" not in k.lower()}
    env["LC_ALL"] = "C"
    return env


def free_port(host="127.0.0.1"):
    fam = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(fam) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def wait_until(pred, timeout, step=0.02):
    """Poll pred() until it is true or timeout seconds pass; return its value."""
    deadline = time.monotonic() + timeout
    while True:
        value = pred()
        if value or time.monotonic() >= deadline:
            return value
        time.sleep(step)


def listening(port):
    """True if some socket is in LISTEN state on TCP port `port`."""
    want = f":{port:04X}"
    for name in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(name) as f:
                next(f)
                for line in f:
                    fields = line.split()
                    if fields[1].endswith(want) and fields[3] == "0A":
                        return True
        except FileNotFoundError:
            pass
    return False


def children(pid):
    """Pids whose parent is pid (zombies included)."""
    out = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                stat = f.read()
        except OSError:
            continue
        # the comm field may contain spaces: ppid is the 2nd field after ')'
        if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
            out.append(int(entry))
    return out


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


# --------------------------------------------------------------------------
# raw client connections

class Client:
    """A TCP client with a receive buffer and deadlines on every read."""

    def __init__(self, host, port, timeout=5.0):
        self.sock = socket.create_connection((host, port), timeout=timeout)
        self.port = self.sock.getsockname()[1]     # local port, as in the log line
        self.timeout = timeout
        self.buf = bytearray()

    def send(self, data):
        self.sock.sendall(data)

    def _fill(self, deadline):
        self.sock.settimeout(max(0.01, deadline - time.monotonic()))
        chunk = self.sock.recv(262144)
        self.buf += chunk
        return chunk

    def _take(self, n):
        out = bytes(self.buf[:n])
        del self.buf[:n]
        return out

    def read_until(self, marker, timeout=None, limit=1 << 20):
        deadline = time.monotonic() + (timeout or self.timeout)
        while marker not in self.buf:
            if len(self.buf) > limit or not self._fill(deadline):
                raise AssertionError(f"no {marker!r} before EOF/limit; got {self.buf[:300]!r}")
        return self._take(self.buf.index(marker) + len(marker))

    def read_exact(self, n, timeout=None):
        deadline = time.monotonic() + (timeout or self.timeout)
        while len(self.buf) < n:
            if not self._fill(deadline):
                raise AssertionError(f"EOF after {len(self.buf)} of {n} bytes: {self.buf[:200]!r}")
        return self._take(n)

    def read_to_eof(self, timeout=None, limit=64 << 20):
        deadline = time.monotonic() + (timeout or self.timeout)
        while len(self.buf) <= limit and self._fill(deadline):
            pass
        return self._take(len(self.buf))

    def end_state(self, timeout=3.0):
        """How the peer ends the stream: 'eof', 'reset', or 'open' (still
        open after timeout).  Data that arrives meanwhile is kept in buf."""
        deadline = time.monotonic() + timeout
        try:
            while time.monotonic() < deadline:
                if not self._fill(deadline):
                    return "eof"
        except ConnectionResetError:
            return "reset"
        except (socket.timeout, TimeoutError):
            pass
        return "open"

    def request(self, head, timeout=None):
        """Send head, read one response; return a Response."""
        self.send(head)
        return self.response(timeout)

    def response(self, timeout=None):
        raw = self.read_until(b"\r\n\r\n", timeout)
        resp = Response(raw)
        n = int(resp.header("Content-Length") or 0)
        resp.body = self.read_exact(n, timeout) if n else b""
        return resp

    def close(self):
        self.sock.close()


class Response:
    def __init__(self, raw):
        self.raw = raw
        lines = raw[:-4].split(b"\r\n")
        self.status_line = lines[0].decode("latin-1")
        parts = self.status_line.split(" ", 2)
        self.version = parts[0]
        self.status = int(parts[1]) if len(parts) > 1 and parts[1].isdigit() else None
        self.reason = parts[2] if len(parts) > 2 else ""
        self.headers = []
        for line in lines[1:]:
            name, _, value = line.decode("latin-1").partition(":")
            self.headers.append((name, value.strip()))
        self.body = b""

    def header(self, name):
        values = [v for n, v in self.headers if n.lower() == name.lower()]
        assert len(values) <= 1, f"duplicate {name}: {self.headers}"
        return values[0] if values else None

    def __repr__(self):
        return f"Response({self.raw + self.body!r})"


def connect_head(target, *headers):
    lines = [f"CONNECT {target} HTTP/1.1", f"Host: {target}", *headers]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def assert_error_reply(client, resp, status):
    """The error reply format of DESIGN §4, then the connection closes.
    Closes the client."""
    assert resp.status_line == f"HTTP/1.1 {status} {HTTPStatus(status).phrase}", resp
    assert (resp.header("Content-Type") or "").split(";")[0] == "text/plain", resp
    assert (resp.header("Connection") or "").lower() == "close", resp
    assert resp.header("Content-Length") == str(len(resp.body)), resp
    assert resp.body.endswith(b"\n") and resp.body.count(b"\n") == 1, resp
    assert client.end_state(3) in ("eof", "reset"), "connection not closed after error reply"
    assert client.buf == b"", f"bytes after the error body: {client.buf!r}"
    client.close()      # tunneld may linger for our FIN before it logs and exits


def open_tunnel(proxy, target, payload=b"", timeout=5.0, via=None):
    """CONNECT through proxy (or via=(host, port)) to target; return the
    Client after the 200."""
    c = Client(*(via or (proxy.host, proxy.port)), timeout)
    c.send(connect_head(target) + payload)
    head = c.read_until(b"\r\n\r\n", timeout)
    assert head == OK_REPLY, head + c.buf
    return c


# --------------------------------------------------------------------------
# tunneld processes

class Proxy:
    """One tunneld: listen mode (`tunneld --listen`), inetd mode
    (systemd-socket-activate --inetd -a spawning one tunneld per connection)
    or systemd mode (systemd-socket-activate passing the listening socket,
    LISTEN_FDS=1, as for a systemd unit with Accept=no)."""

    def __init__(self, workdir, netfiles, mode="listen", acl=LOOPBACK_ACL, args=(),
                 host="127.0.0.1", wrap=(), port=None):
        self.mode, self.host = mode, host
        self.port = port or free_port(host)
        hostport = f"[{host}]:{self.port}" if ":" in host else f"{host}:{self.port}"
        workdir.mkdir(parents=True, exist_ok=True)
        self.log_path = workdir / f"tunneld-{mode}-{self.port}.log"
        opts = ["--log", "stderr", *args]
        if acl is not None:
            self.acl_path = workdir / f"acl-{self.port}"
            self.acl_path.write_text(acl)
            opts += ["--acl", str(self.acl_path)]
        # wrap: a command that execs tunneld (prlimit ...), keeping its pid
        if mode == "listen":
            cmd = [*wrap, binary(), "--listen", hostport, *opts]
        elif mode == "inetd":
            cmd = ["systemd-socket-activate", "--inetd", "-a", "-l", hostport, *wrap, binary(), *opts]
        else:
            cmd = ["systemd-socket-activate", "-l", hostport, *wrap, binary(), *opts]
        self.logf = open(self.log_path, "ab")
        st = os.fstat(self.logf.fileno())
        self.log_id = (st.st_dev, st.st_ino)
        self.proc = subprocess.Popen(netns_wrap(cmd, netfiles), stdin=subprocess.DEVNULL,
                                     stdout=subprocess.DEVNULL, stderr=self.logf,
                                     env=clean_env())
        self.pid = self.proc.pid     # unshare and sh exec: this is the listener
        up = wait_until(lambda: listening(self.port) or self.proc.poll() is not None, 5)
        if not up or self.proc.poll() is not None:
            self.stop()
            pytest.fail(f"tunneld did not start ({cmd}): rc={self.proc.returncode} "
                        f"log={self.log_text()!r}")

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
        return children(self.pid)

    def stop(self):
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
        # A GET/POST tunnel session's holder may have left the process tree
        # (its parent ended first): it still writes to this log.
        for pid in procs_with_stderr(self.log_id):
            kill_pid(pid)
        self.logf.close()


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


# --------------------------------------------------------------------------
# target servers

class TargetServer:
    """Threaded TCP server on host; handler(conn, server) runs per connection.
    `accepted` counts connections; handlers may append to `results`."""

    def __init__(self, handler, host="127.0.0.1", port=0, backlog=256, reuse_port=False):
        fam = socket.AF_INET6 if ":" in host else socket.AF_INET
        self.sock = socket.socket(fam)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if reuse_port:          # a fixed port another test run may hold too
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        self.sock.bind((host, port))
        self.sock.listen(backlog)
        self.sock.settimeout(0.1)
        self.host, self.port = host, self.sock.getsockname()[1]
        self.handler = handler
        self.accepted = 0
        self.results = []
        self.conns = []
        self.lock = threading.Lock()
        self.stopping = False
        self.thread = threading.Thread(target=self._loop, daemon=True)
        self.thread.start()

    @property
    def hostport(self):
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"

    def _loop(self):
        while not self.stopping:
            try:
                conn, _ = self.sock.accept()
            except (socket.timeout, TimeoutError):
                continue
            except OSError:
                return
            with self.lock:
                self.accepted += 1
                self.conns.append(conn)
            conn.settimeout(30)
            threading.Thread(target=self._run, args=(conn,), daemon=True).start()

    def _run(self, conn):
        try:
            self.handler(conn, self)
        except OSError as e:
            self.results.append(e)
        finally:
            conn.close()

    def wait_results(self, n, timeout=10):
        assert wait_until(lambda: len(self.results) >= n, timeout), \
            f"target produced {len(self.results)} of {n} results"
        return self.results

    def close(self):
        self.stopping = True
        self.thread.join(5)
        self.sock.close()
        with self.lock:
            for c in self.conns:
                try:
                    c.close()
                except OSError:
                    pass


def recv_all(conn, limit=64 << 20):
    """Read conn to EOF; return (bytes, 'eof' | 'reset')."""
    chunks, n = [], 0
    try:
        while n <= limit:
            chunk = conn.recv(65536)
            if not chunk:
                return b"".join(chunks), "eof"
            chunks.append(chunk)
            n += len(chunk)
    except ConnectionResetError:
        return b"".join(chunks), "reset"
    return b"".join(chunks), "limit"


def echo_handler(conn, server):
    """Echo until EOF, then close; record how the client ended ('eof'/'reset')."""
    try:
        while True:
            chunk = conn.recv(65536)
            if not chunk:
                server.results.append("eof")
                return
            if chunk.endswith(b"RESET-ME"):
                conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\1\0\0\0\0\0\0\0")
                server.results.append("reset-sent")
                return
            conn.sendall(chunk)
    except ConnectionResetError:
        server.results.append("reset")


def hash_handler(conn, server):
    """Read to EOF, then answer sha256 hex of what arrived, then close."""
    data, how = recv_all(conn)
    server.results.append(data)
    conn.sendall(hashlib.sha256(data).hexdigest().encode() + b"\n")


def greet_shut_handler(conn, server):
    """Send a greeting, half-close, then collect what the client sends."""
    conn.sendall(b"hello, then EOF\n")
    conn.shutdown(socket.SHUT_WR)
    data, how = recv_all(conn)
    server.results.append(data)


def https_handler(ctx):
    def handler(conn, server):
        try:
            tls = ctx.wrap_socket(conn, server_side=True)
        except (ssl.SSLError, OSError) as e:
            server.results.append(e)
            return
        head = b""
        while b"\r\n\r\n" not in head and len(head) < 65536:
            chunk = tls.recv(4096)
            if not chunk:
                break
            head += chunk
        server.results.append(head)
        tls.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: "
                    + str(len(HTTPS_BODY)).encode() + b"\r\nConnection: close\r\n\r\n"
                    + HTTPS_BODY)
        try:
            tls.unwrap()                        # close_notify, as OpenSSL 3 wants
        except (ssl.SSLError, OSError):
            pass
        tls.close()
    return handler


# --------------------------------------------------------------------------
# fixtures

def pytest_sessionstart(session):
    """No binary: stop at once with a failure, not a wall of errors or skips."""
    problem = binary_problem()
    if problem:
        pytest.exit("FAILED: " + problem, returncode=1)


@pytest.fixture(scope="session", autouse=True)
def dns():
    srv = dnsserver.DNSServer().start()
    yield srv
    srv.stop()


@pytest.fixture(scope="session")
def netfiles(tmp_path_factory):
    d = tmp_path_factory.mktemp("net")
    resolv, hosts = d / "resolv.conf", d / "hosts"
    resolv.write_text(f"nameserver {dnsserver.HOST}\noptions timeout:1 attempts:1\n")
    hosts.write_text("127.0.0.1 localhost\n::1 localhost ip6-localhost\n")
    return resolv, hosts


@pytest.fixture(params=MODES)
def mode(request):
    return request.param


@pytest.fixture
def make_proxy(tmp_path, netfiles):
    """Factory: make_proxy(mode, acl=..., args=[...], host=..., wrap=[...],
    port=...) -> Proxy."""
    started = []

    def make(mode="listen", acl=LOOPBACK_ACL, args=(), host="127.0.0.1", wrap=(), port=None):
        p = Proxy(tmp_path, netfiles, mode, acl, args, host, wrap, port)
        started.append(p)
        return p
    yield make
    for p in started:
        p.stop()


@pytest.fixture
def proxy(make_proxy, mode):
    """A tunneld in listen and inetd mode with the loopback rules."""
    return make_proxy(mode)


@pytest.fixture(params=ALL_MODES)
def any_mode(request):
    return request.param


@pytest.fixture
def any_proxy(make_proxy, any_mode):
    """A tunneld in each of the three ways it is started, loopback rules."""
    return make_proxy(any_mode)


@pytest.fixture
def make_target():
    started = []

    def make(handler=echo_handler, host="127.0.0.1", **kw):
        s = TargetServer(handler, host, **kw)
        started.append(s)
        return s
    yield make
    for s in started:
        s.close()


@pytest.fixture
def echo(make_target):
    return make_target(echo_handler)


@pytest.fixture(scope="session")
def tls_files(tmp_path_factory):
    if not shutil.which("openssl"):
        pytest.fail("openssl CLI missing")
    d = tmp_path_factory.mktemp("tls")
    cert, key = d / "cert.pem", d / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                    "ec_paramgen_curve:prime256v1", "-nodes", "-keyout", str(key),
                    "-out", str(cert), "-days", "2", "-subj", "/CN=good.test",
                    "-addext", "subjectAltName=DNS:good.test,IP:127.0.0.1"],
                   check=True, capture_output=True, timeout=30)
    return cert, key


@pytest.fixture(scope="session")
def https_target(tls_files):
    cert, key = tls_files
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(cert, key)
    srv = TargetServer(https_handler(ctx))
    srv.cafile = str(cert)
    yield srv
    srv.close()


# --------------------------------------------------------------------------
# authentication (DESIGN §5): credentials, hash lines, credential files

ALICE = ("alice", "secret")
# ALICE's hash line made each way the README names; the kind is the test id.
HASH_KINDS = ["htpasswd-bcrypt-2y", "bcrypt-2b", "openssl-sha512", "openssl-sha256",
              "tunneld-hash-password"]


def _bytes(s):
    return s.encode() if isinstance(s, str) else s


def basic_token(user, password):
    """RFC 7617's token: base64 of user:password (str as UTF-8, or bytes)."""
    return base64.b64encode(_bytes(user) + b":" + _bytes(password)).decode()


def basic_auth(user, password, scheme="Basic"):
    """A whole Proxy-Authorization header line for connect_head()."""
    return f"Proxy-Authorization: {scheme} {basic_token(user, password)}"


def openssl_hash(password, flag="-6"):
    """crypt(3) hash of password (str or bytes, any bytes but NUL and
    newline) by `openssl passwd FLAG -stdin`."""
    r = subprocess.run(["openssl", "passwd", flag, "-stdin"], input=_bytes(password) + b"\n",
                       capture_output=True, timeout=30, check=True)
    return r.stdout.decode().strip()


def htpasswd_hash(user, password, *flags):
    """The hash part of `htpasswd -nb FLAGS user password` (bcrypt with -B)."""
    if not shutil.which("htpasswd"):
        pytest.fail("htpasswd missing (Debian package apache2-utils)")
    r = subprocess.run(["htpasswd", "-nb", *flags, user, password], capture_output=True,
                       timeout=30, check=True)
    line = r.stdout.decode().strip()
    assert line.startswith(user + ":"), line
    return line[len(user) + 1:]


def tunneld_hash(password, tunneld=None):
    """`tunneld --hash-password` with password on stdin: CompletedProcess."""
    return subprocess.run([tunneld or binary(), "--hash-password"], input=_bytes(password),
                          capture_output=True, timeout=30, env=clean_env())


def make_hash(kind, password):
    if kind == "htpasswd-bcrypt-2y":
        return htpasswd_hash("x", password, "-B")
    if kind == "bcrypt-2b":        # the same hash spelt $2b$, as other tools write it
        h = htpasswd_hash("x", password, "-B")
        assert h.startswith("$2y$"), h
        return "$2b$" + h[4:]
    if kind == "openssl-sha512":
        return openssl_hash(password, "-6")
    if kind == "openssl-sha256":
        return openssl_hash(password, "-5")
    if kind == "tunneld-hash-password":
        r = tunneld_hash(_bytes(password) + b"\n")
        assert r.returncode == 0, r.stderr
        return r.stdout.decode().strip()
    raise ValueError(kind)


@pytest.fixture(scope="session")
def alice_hashes():
    """kind -> a hash of ALICE's password, for each of HASH_KINDS."""
    return {kind: make_hash(kind, ALICE[1]) for kind in HASH_KINDS}


@pytest.fixture
def make_users(tmp_path):
    """Factory: make_users(text or bytes) -> path of a new credential file."""
    n = [0]

    def make(content):
        n[0] += 1
        path = tmp_path / f"users-{n[0]}"
        path.write_bytes(_bytes(content))
        return path
    return make


# --------------------------------------------------------------------------
# TLS key material and the build without features

def self_signed(d, newkey, name="good.test"):
    """A self-signed certificate for name and 127.0.0.1 with a new key
    (`openssl req -newkey` arguments); returns (cert, key) paths in d."""
    if not shutil.which("openssl"):
        pytest.fail("openssl CLI missing")
    cert, key = d / "cert.pem", d / "key.pem"
    subprocess.run(["openssl", "req", "-x509", *newkey, "-nodes", "-keyout", str(key),
                    "-out", str(cert), "-days", "2", "-subj", f"/CN={name}",
                    "-addext", f"subjectAltName=DNS:{name},IP:127.0.0.1"],
                   check=True, capture_output=True, timeout=60)
    return cert, key


@pytest.fixture(scope="session")
def rsa_tls_files(tmp_path_factory):
    """Like tls_files, with an RSA 2048 key."""
    return self_signed(tmp_path_factory.mktemp("tls-rsa"), ["-newkey", "rsa:2048"])


@pytest.fixture(scope="session")
def tunneld_min():
    """The build with every feature off ($TUNNELD_MIN or <repo>/tunneld-min)."""
    path = Path(os.environ.get("TUNNELD_MIN") or REPO / "tunneld-min").resolve()
    if not (path.is_file() and os.access(path, os.X_OK)):
        pytest.fail(f"{path} missing: run `make tunneld-min` at the repository root "
                    "(or set TUNNELD_MIN)")
    return str(path)


# --------------------------------------------------------------------------
# features: a test marked needs("tls") is skipped against a binary built
# without TLS (the all-off build runs the suite too). `tunneld --version`
# lists what is compiled in: "(+auth +tls +ipv6 +splice +http-tunnel +sandbox)".

@functools.lru_cache(maxsize=None)
def binary_features():
    out = subprocess.run([binary(), "--version"], capture_output=True, text=True,
                         timeout=10).stdout
    return set(re.findall(r"\+([\w-]+)", out))


def needs_v6(*values):
    """A parametrize row that applies only to an IPv6 build."""
    return pytest.param(*values, marks=pytest.mark.needs("ipv6"))


def pytest_configure(config):
    config.addinivalue_line("markers", "needs(feature): skip unless the binary has it")


def pytest_runtest_setup(item):
    for mark in item.iter_markers("needs"):
        if mark.args[0] not in binary_features():
            pytest.skip(f"built without {mark.args[0]}")


# --------------------------------------------------------------------------
# the GET/POST tunnel (DESIGN §8): the client binary and squid, the proxy
# between that forbids CONNECT

@pytest.fixture(scope="session")
def tunnel_bin():
    """The client ($TUNNEL or <repo>/tunnel)."""
    path = Path(os.environ.get("TUNNEL") or REPO / "tunnel").resolve()
    if not (path.is_file() and os.access(path, os.X_OK)):
        pytest.fail(f"{path} missing: run `make tunnel` at the repository root (or set TUNNEL)")
    return str(path)


class Squid:
    """squid on 127.0.0.1 with its own config, pid file, logs and coredump
    dir under workdir; CONNECT refused, everything else from localhost to
    loopback allowed, nothing cached. Foreground (-N), in the tests' mount
    namespace so that it never asks the machine's resolver."""

    def __init__(self, workdir, netfiles):
        exe = shutil.which("squid") or "/usr/sbin/squid"
        if not os.access(exe, os.X_OK):
            pytest.fail("squid missing (Debian package squid; `make deps` installs it)")
        workdir.mkdir(parents=True, exist_ok=True)
        # Debian's squid drops to user proxy when started as root: its logs
        # and pid file must be writable for it.
        workdir.chmod(0o777)
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.dir = workdir
        self.access_log = workdir / "access.log"
        self.cache_log = workdir / "cache.log"
        conf = workdir / "squid.conf"
        conf.write_text(f"""\
http_port 127.0.0.1:{self.port}
pid_filename {workdir}/squid.pid
cache_log {self.cache_log}
access_log stdio:{self.access_log}
cache_store_log none
netdb_filename none
coredump_dir {workdir}
cache deny all
cache_mem 8 MB
icp_port 0
htcp_port 0
pinger_enable off
visible_hostname tunneld-test
dns_nameservers {dnsserver.HOST}
shutdown_lifetime 0 seconds
max_filedescriptors 1024
acl to_loopback dst 127.0.0.0/8
http_access deny CONNECT
http_access allow localhost to_loopback
http_access deny all
""")
        self.outf = open(workdir / "squid.out", "ab")
        self.proc = subprocess.Popen(netns_wrap([exe, "-N", "-f", str(conf)], netfiles),
                                     stdin=subprocess.DEVNULL, stdout=self.outf,
                                     stderr=self.outf, env=clean_env())
        up = wait_until(lambda: listening(self.port) or self.proc.poll() is not None, 15)
        if not up or self.proc.poll() is not None:
            self.stop()
            pytest.fail(f"squid did not start: rc={self.proc.returncode} "
                        f"{(workdir / 'squid.out').read_text()} {self.log()}")

    def log(self):
        try:
            return self.access_log.read_text()
        except OSError:
            return ""

    def stop(self):
        end_server(self.proc)
        self.outf.close()


@pytest.fixture(scope="module")
def squid(netfiles):
    # Not under pytest's tmp dir: its parents are closed to user proxy.
    d = Path(tempfile.mkdtemp(prefix="tunneld-squid-"))
    try:
        s = Squid(d, netfiles)
        yield s
        s.stop()
    finally:
        shutil.rmtree(d, ignore_errors=True)
