"""Servers the tests start: threaded TCP target servers and their
handlers, TLS key material, and squid (the proxy between that forbids
CONNECT). All listen on 127.0.0.0/8 or ::1 only."""

import hashlib
import os
import shutil
import socket
import ssl
import subprocess
import threading

import pytest

import dnsserver
from support.procs import (clean_env, end_server, free_port, hostport, listening, netns_wrap,
                           wait_until)

MiB = 1 << 20
HTTPS_BODY = b"hello from the https target\n"


def accept_loop(sock, stopping, take):
    """Accept on sock (which has a timeout) until stopping() is true or the
    socket is closed; take(conn) each connection."""
    while not stopping():
        try:
            conn, _ = sock.accept()
        except (socket.timeout, TimeoutError):
            continue
        except OSError:
            return
        take(conn)


class TargetServer:
    """Threaded TCP server on host; handler(conn, server) runs per connection.
    `accepted` counts connections; handlers may append to `results`."""

    def __init__(self, handler=None, host="127.0.0.1", port=0, backlog=256, reuse_port=False):
        fam = socket.AF_INET6 if ":" in host else socket.AF_INET
        self.sock = socket.socket(fam)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if reuse_port:          # a fixed port another test run may hold too
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        self.sock.bind((host, port))
        self.sock.listen(backlog)
        self.sock.settimeout(0.1)
        self.host, self.port = host, self.sock.getsockname()[1]
        self.handler = handler or echo_handler
        self.accepted = 0
        self.results = []
        self.conns = []
        self.lock = threading.Lock()
        self.stopping = False
        self.thread = threading.Thread(target=self._loop, daemon=True)
        self.thread.start()

    @property
    def hostport(self):
        return hostport(self.host, self.port)

    def _loop(self):
        accept_loop(self.sock, lambda: self.stopping, self._take)

    def _take(self, conn):
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


def read_head(conn, limit=65536):
    """Read until a blank line (or EOF, or limit bytes): the head."""
    head = b""
    while b"\r\n\r\n" not in head and len(head) < limit:
        chunk = conn.recv(4096)
        if not chunk:
            break
        head += chunk
    return head


def read_request(conn, buf=b""):
    """One request of a kept-alive connection, after buf (bytes already
    read): (request line, {lower-case name: value}, body, what follows),
    or None at EOF or an error. Bodies by Content-Length only."""
    try:
        while b"\r\n\r\n" not in buf:
            chunk = conn.recv(65536)
            if not chunk:
                return None
            buf += chunk
        head, buf = buf.split(b"\r\n\r\n", 1)
        line, *rest = head.split(b"\r\n")
        fields = dict((k.lower(), v) for k, v in (f.split(b": ", 1) for f in rest if b": " in f))
        n = int(fields.get(b"content-length", b"0"))
        while len(buf) < n:
            chunk = conn.recv(65536)
            if not chunk:
                return None
            buf += chunk
    except OSError:
        return None
    return line, fields, buf[:n], buf[n:]


def ok_answer(body):
    """A whole HTTP/1.1 200 answer with a text/plain body, Connection: close."""
    return (b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: %d\r\n"
            b"Connection: close\r\n\r\n%s" % (len(body), body))


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


def source_sink(blob):
    """Target: send blob and half-close while reading to EOF (server.sent_all
    once all of blob is sent); record (sha256 of what came, its length, how
    it ended)."""
    def handler(conn, server):
        def send():
            conn.sendall(blob)
            server.sent_all = True
            conn.shutdown(socket.SHUT_WR)
        sender = threading.Thread(target=send, daemon=True)
        sender.start()
        data, how = recv_all(conn, limit=64 * MiB)
        sender.join(30)
        server.results.append((hashlib.sha256(data).hexdigest(), len(data), how))
    return handler


def https_handler(ctx):
    def handler(conn, server):
        try:
            tls = ctx.wrap_socket(conn, server_side=True)
        except (ssl.SSLError, OSError) as e:
            server.results.append(e)
            return
        server.results.append(read_head(tls))
        tls.sendall(ok_answer(HTTPS_BODY))
        try:
            tls.unwrap()                        # close_notify, as OpenSSL 3 wants
        except (ssl.SSLError, OSError):
            pass
        tls.close()
    return handler


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


class Squid:
    """squid on 127.0.0.1 with its own config, pid file, logs and coredump
    dir under workdir; CONNECT refused, everything else from localhost to
    loopback allowed, nothing cached. Foreground (-N), in the tests' mount
    namespace so that it never asks the machine's resolver."""

    def __init__(self, workdir, netfiles, connect=False, htpasswd=None):
        """connect: CONNECT to loopback allowed (as an upstream proxy);
        htpasswd: a file for basic_ncsa_auth, then every request needs it."""
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
acl forbidden_port port 9
{self.auth_lines(htpasswd)}http_access deny CONNECT {'forbidden_port' if connect else 'all'}
http_access allow localhost to_loopback{' auth' if htpasswd else ''}
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

    @staticmethod
    def auth_lines(htpasswd):
        if not htpasswd:
            return ""
        helper = next((p for p in ("/usr/lib/squid/basic_ncsa_auth",
                                   "/usr/lib/squid3/basic_ncsa_auth") if os.path.exists(p)), None)
        if not helper:
            pytest.fail("squid's basic_ncsa_auth missing (Debian package squid)")
        return (f"auth_param basic program {helper} {htpasswd}\n"
                "auth_param basic realm upstream\n"
                "acl auth proxy_auth REQUIRED\n")

    def log(self):
        try:
            return self.access_log.read_text()
        except OSError:
            return ""

    def stop(self):
        end_server(self.proc)
        self.outf.close()
