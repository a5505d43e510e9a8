"""Clients speaking TLS to tunneld itself (--cert/--key, DESIGN §7): curl
--proxy https://, Python over a TLS socket, big transfers through the TLS
layer, error replies over TLS, and bad key material."""

import hashlib
import os
import socket
import ssl
import subprocess

import pytest

from conftest import (HTTPS_BODY, OK_REPLY, Client, clean_env, connect_head, free_port,
                      run_tunneld)

MiB = 1 << 20


@pytest.fixture
def tls_proxy(make_proxy, mode, tls_files):
    cert, key = tls_files
    p = make_proxy(mode, args=["--cert", str(cert), "--key", str(key)])
    p.cafile = str(cert)
    return p


class TLSClient:
    """A TLS connection to the proxy with the same reading helpers as Client."""

    def __init__(self, proxy, timeout=10):
        ctx = ssl.create_default_context(cafile=proxy.cafile)
        raw = socket.create_connection((proxy.host, proxy.port), timeout=timeout)
        self.port = raw.getsockname()[1]
        self.sock = ctx.wrap_socket(raw, server_hostname="127.0.0.1")
        self.buf = bytearray()

    def send(self, data):
        self.sock.sendall(data)

    def _fill(self):
        chunk = self.sock.recv(262144)
        self.buf += chunk
        return chunk

    def read_until(self, marker):
        for _ in range(10000):
            if marker in self.buf:
                break
            if not self._fill():
                raise AssertionError(f"EOF before {marker!r}: {bytes(self.buf[:300])!r}")
        i = self.buf.index(marker) + len(marker)
        out = bytes(self.buf[:i])
        del self.buf[:i]
        return out

    def read_exact(self, n):
        while len(self.buf) < n:
            if not self._fill():
                raise AssertionError(f"EOF after {len(self.buf)} of {n} bytes")
        out = bytes(self.buf[:n])
        del self.buf[:n]
        return out

    def read_to_eof(self):
        try:
            while self._fill():
                pass
        except (ssl.SSLEOFError, ConnectionResetError):
            pass
        out = bytes(self.buf)
        self.buf.clear()
        return out

    def close(self):
        self.sock.close()


def test_curl_https_proxy(tls_proxy, https_target):
    r = subprocess.run(["curl", "-sS", "--max-time", "10",
                        "--proxy", f"https://127.0.0.1:{tls_proxy.port}",
                        "--proxy-cacert", tls_proxy.cafile, "--cacert", https_target.cafile,
                        f"https://good.test:{https_target.port}/"],
                       capture_output=True, timeout=20, env=clean_env())
    assert r.returncode == 0, r.stderr
    assert r.stdout == HTTPS_BODY


def test_tls_optimistic_data_and_echo(tls_proxy, echo):
    c = TLSClient(tls_proxy)
    c.send(connect_head(echo.hostport) + b"early bytes")
    assert c.read_until(b"\r\n\r\n") == OK_REPLY
    assert c.read_exact(11) == b"early bytes"
    for size in (1, 1000, 100_000):
        data = os.urandom(size)
        c.send(data)
        assert c.read_exact(size) == data
    c.close()


def source_handler(blob):
    def handler(conn, server):
        conn.sendall(blob)
    return handler


def hash_n_handler(n):
    """Read exactly n bytes, answer their sha256 hex."""
    def handler(conn, server):
        h, got = hashlib.sha256(), 0
        while got < n:
            chunk = conn.recv(min(65536, n - got))
            if not chunk:
                break
            h.update(chunk)
            got += len(chunk)
        conn.sendall(h.hexdigest().encode())
    return handler


def test_tls_download_4mib(tls_proxy, make_target):
    blob = os.urandom(4 * MiB)
    target = make_target(source_handler(blob))
    c = TLSClient(tls_proxy)
    c.send(connect_head(target.hostport))
    assert c.read_until(b"\r\n\r\n") == OK_REPLY
    got = c.read_to_eof()
    assert len(got) == len(blob) and got == blob


def test_tls_upload_4mib(tls_proxy, make_target):
    """Many TLS records arrive at once: the bytes mbedTLS holds must be relayed
    without waiting for the socket to turn readable again."""
    blob = os.urandom(4 * MiB)
    target = make_target(hash_n_handler(len(blob)))
    c = TLSClient(tls_proxy)
    c.send(connect_head(target.hostport))
    assert c.read_until(b"\r\n\r\n") == OK_REPLY
    c.send(blob)
    assert c.read_exact(64).decode() == hashlib.sha256(blob).hexdigest()


def test_tls_error_reply(tls_proxy):
    c = TLSClient(tls_proxy)
    c.send(connect_head("good.test:0"))
    head = c.read_until(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 400 Bad Request\r\n"), head
    length = int(head.lower().split(b"content-length:")[1].split(b"\r\n")[0])
    assert c.read_exact(length).endswith(b"\n")
    assert c.read_to_eof() == b""
    c.close()
    assert tls_proxy.log_for(c.port)["status"] == "400"


def test_plain_client_to_tls_listener_gets_no_tunnel(tls_proxy, echo):
    c = Client(tls_proxy.host, tls_proxy.port)
    c.send(connect_head(echo.hostport))
    assert c.end_state(3) in ("eof", "reset")
    assert not c.buf.startswith(b"HTTP/1.1 200"), c.buf
    assert echo.accepted == 0


def test_bad_key_material(tmp_path, netfiles, tls_files):
    cert, key = tls_files
    junk = tmp_path / "junk.pem"
    junk.write_text("-----BEGIN PRIVATE KEY-----\nnot base64\n-----END PRIVATE KEY-----\n")
    port = f"127.0.0.1:{free_port()}"
    r = run_tunneld(["--log", "stderr", "--listen", port, "--cert", str(cert),
                     "--key", str(junk)], netfiles)
    assert r.returncode == 78 and str(junk).encode() in r.stderr, (r.returncode, r.stderr)
    r = run_tunneld(["--log", "stderr", "--listen", port, "--cert", str(cert)], netfiles)
    assert r.returncode == 64, (r.returncode, r.stderr)
