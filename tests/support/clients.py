"""Clients: a raw TCP client with deadlines on every read, the answers it
reads, CONNECT heads, and the one check of an error answer (DESIGN §4)."""

import base64
import socket
import threading
import time
from http import HTTPStatus

OK_REPLY = b"HTTP/1.1 200 Connection established\r\n\r\n"
# RFC 9110's reason phrases where Python's table still has RFC 7231's.
RFC9110_PHRASES = {413: "Content Too Large"}


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


def _bytes(s):
    return s.encode() if isinstance(s, str) else s


def basic_token(user, password):
    """RFC 7617's token: base64 of user:password (str as UTF-8, or bytes)."""
    return base64.b64encode(_bytes(user) + b":" + _bytes(password)).decode()


def basic_auth(user, password, scheme="Basic"):
    """A whole Proxy-Authorization header line for connect_head()."""
    return f"Proxy-Authorization: {scheme} {basic_token(user, password)}"


def assert_error_reply(client, resp, status, headers=None):
    """The error answer of DESIGN §4: the status line, a one-line text/plain
    body, and each of headers {name: value} exactly. With a client (not
    None): Connection: close, then the connection closes, and the client
    is closed."""
    phrase = RFC9110_PHRASES.get(status) or HTTPStatus(status).phrase
    assert resp.status_line == f"HTTP/1.1 {status} {phrase}", resp
    assert (resp.header("Content-Type") or "").split(";")[0] == "text/plain", resp
    assert resp.header("Content-Length") == str(len(resp.body)), resp
    assert resp.body.endswith(b"\n") and resp.body.count(b"\n") == 1, resp
    for name, value in (headers or {}).items():
        assert resp.header(name) == value, (name, resp)
    if client is None:
        return
    assert (resp.header("Connection") or "").lower() == "close", resp
    assert client.end_state(3) in ("eof", "reset"), "connection not closed after error reply"
    assert client.buf == b"", f"bytes after the error body: {client.buf!r}"
    client.close()      # tunneld may linger for our FIN before it logs and exits


def expect_error(proxy, data, status, headers=None, target=None, logged=True):
    """Send data on a new connection: the answer is the error answer of
    status (assert_error_reply); no connection reached target; if logged,
    the connection's summary line says status with a reason= and nothing
    unprintable. Returns the Response, .port the client's local port."""
    c = Client(proxy.host, proxy.port)
    try:
        resp = c.request(data)
        resp.port = c.port
        assert_error_reply(c, resp, status, headers)
        if target is not None:
            assert target.accepted == 0, "a refused request reached the target"
        if logged:
            fields = proxy.wait_log(lambda f: f.get("client", "").endswith(f":{c.port}")
                                    and "status" in f, what=f"summary for client port {c.port}")
            assert fields["status"] == str(status), fields
            assert fields.get("reason"), f"no reason= in {fields}"
            assert fields["_raw"].isprintable(), f"control characters logged: {fields['_raw']!r}"
        return resp
    finally:
        c.close()


def at_once(n, one, timeout=60):
    """Run one(i, barrier) in n threads at once; each returns True or says
    what went wrong. An exception is its repr (and breaks the barrier, so
    that no other waits for it). Returns the n results."""
    barrier = threading.Barrier(n, timeout=30)
    results = [None] * n

    def run(i):
        try:
            results[i] = one(i, barrier)
        except Exception as e:                  # reported by the caller, per thread
            barrier.abort()
            results[i] = repr(e)
    threads = [threading.Thread(target=run, args=(i,), daemon=True) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout)
    return results


def open_tunnel(proxy, target, payload=b"", timeout=5.0, via=None):
    """CONNECT through proxy (or via=(host, port)) to target; return the
    Client after the 200."""
    c = Client(*(via or (proxy.host, proxy.port)), timeout)
    c.send(connect_head(target) + payload)
    head = c.read_until(b"\r\n\r\n", timeout)
    assert head == OK_REPLY, head + c.buf
    return c
