"""A small HTTP forward proxy for the GET/POST tunnel tests, with faults.

It takes absolute-form requests (`POST http://host:port/path HTTP/1.1`),
forwards them in origin-form to the origin over a kept-alive connection of
its own (one per client connection), and passes the answer back, as a
pooling corporate proxy does. Bodies are framed by Content-Length only
(what the tunnel protocol uses); an answer without one is read to EOF.

Faults, counted so that a test can check they really happened:

- drop_every=N: every Nth request of each method (counted over the whole
  proxy: a download of a few large answers loses some too) is forwarded and its whole answer read from the origin, so the origin has
  acted on it, and then the client connection is closed without a byte of
  the answer: a lost response.
- close_between=True: the client connection is closed after every answer,
  without announcing it (no `Connection: close`): the client finds out when
  it sends its next request there.
- error_every=N: every Nth request is answered `502` by the proxy itself,
  without forwarding it (an upstream failure, no Tunnel-Offset).

It listens on 127.0.0.1 only; every socket operation has a timeout, and
stop() closes every connection it holds.
"""

import socket
import threading

from support.servers import accept_loop

HEAD_MAX = 65536
BODY_MAX = 16 << 20
# hop-by-hop fields (RFC 9110 §7.6.1) and the proxy's own: not forwarded
HOP = {"connection", "proxy-connection", "keep-alive", "proxy-authorization",
       "proxy-authenticate", "te", "trailer", "transfer-encoding", "upgrade"}


class Closed(Exception):
    pass


class Reader:
    """Buffered reads from a socket: a head through its blank line, then
    exactly n bytes, or everything to EOF."""

    def __init__(self, sock):
        self.sock = sock
        self.buf = bytearray()

    def _fill(self):
        chunk = self.sock.recv(65536)
        if not chunk:
            raise Closed()
        self.buf += chunk

    def head(self):
        while b"\r\n\r\n" not in self.buf:
            if len(self.buf) > HEAD_MAX:
                raise Closed()
            self._fill()
        i = self.buf.index(b"\r\n\r\n") + 4
        out = bytes(self.buf[:i])
        del self.buf[:i]
        return out

    def exact(self, n):
        while len(self.buf) < n:
            self._fill()
        out = bytes(self.buf[:n])
        del self.buf[:n]
        return out

    def to_eof(self):
        try:
            while len(self.buf) <= BODY_MAX:
                self._fill()
        except Closed:
            pass
        out = bytes(self.buf)
        self.buf.clear()
        return out


def parse_head(raw):
    """(first line, [(name, value)]) of a head."""
    lines = raw[:-4].decode("latin-1").split("\r\n")
    fields = []
    for line in lines[1:]:
        name, _, value = line.partition(":")
        fields.append((name, value.strip()))
    return lines[0], fields


def field(fields, name):
    for n, v in fields:
        if n.lower() == name:
            return v
    return None


class FaultProxy:
    def __init__(self, drop_every=0, close_between=False, error_every=0, timeout=30):
        self.drop_every, self.close_between = drop_every, close_between
        self.error_every, self.timeout = error_every, timeout
        self.lock = threading.Lock()
        self.requests = 0            # requests read from clients
        self.forwarded = 0           # answers passed back whole
        self.dropped = 0             # answers read from the origin and thrown away
        self.dropped_methods = []    # the method of each
        self.per_method = {}         # requests read, by method
        self.errors = 0              # 502s of the proxy's own
        self.closed_between = 0      # connections closed after an answer
        self.connections = 0         # client connections accepted
        self.methods = []            # (method, target) of every request
        self.problems = []           # unexpected exceptions, for the test to show
        self.conns = set()
        self.stopping = False
        self.sock = socket.create_server(("127.0.0.1", 0), backlog=128)
        self.sock.settimeout(0.1)
        self.port = self.sock.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.thread = threading.Thread(target=self._loop, daemon=True)
        self.thread.start()

    def _loop(self):
        accept_loop(self.sock, lambda: self.stopping, self._take)

    def _take(self, conn):
        conn.settimeout(self.timeout)
        with self.lock:
            self.connections += 1
            self.conns.add(conn)
        threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _track(self, sock, add):
        with self.lock:
            (self.conns.add if add else self.conns.discard)(sock)

    def _serve(self, conn):
        origin, origin_addr = None, None
        client = Reader(conn)
        try:
            for _ in range(100000):
                try:
                    head = client.head()
                except (Closed, OSError):
                    return
                line, fields = parse_head(head)
                parts = line.split(" ")
                if len(parts) != 3 or not parts[1].startswith("http://"):
                    conn.sendall(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n"
                                 b"Connection: close\r\n\r\n")
                    return
                method, url, version = parts
                n = int(field(fields, "content-length") or 0)
                body = client.exact(n) if n else b""
                with self.lock:
                    self.requests += 1
                    count = self.requests
                    self.per_method[method] = self.per_method.get(method, 0) + 1
                    nth = self.per_method[method]
                    self.methods.append((method, url))
                if self.error_every and count % self.error_every == 0:
                    with self.lock:
                        self.errors += 1
                    msg = b"proxy: upstream failed\n"
                    conn.sendall(b"HTTP/1.1 502 Bad Gateway\r\nContent-Type: text/plain\r\n"
                                 b"Content-Length: %d\r\n\r\n%s" % (len(msg), msg))
                    continue
                hostport, _, path = url[len("http://"):].partition("/")
                host, _, port = hostport.rpartition(":")
                addr = (host.strip("[]"), int(port or 80))
                if origin is None or origin_addr != addr:
                    if origin is not None:
                        origin.close()
                        self._track(origin, False)
                    origin = socket.create_connection(addr, timeout=self.timeout)
                    self._track(origin, True)
                    origin_addr, upstream = addr, Reader(origin)
                out = [f"{method} /{path} {version}"]
                out += [f"{k}: {v}" for k, v in fields if k.lower() not in HOP]
                out += ["Connection: keep-alive"]
                origin.sendall(("\r\n".join(out) + "\r\n\r\n").encode("latin-1") + body)
                rhead = upstream.head()
                _, rfields = parse_head(rhead)
                rlen = field(rfields, "content-length")
                rclose = (field(rfields, "connection") or "").lower() == "close"
                if rlen is not None:
                    rbody = upstream.exact(int(rlen))
                else:
                    rbody, rclose = upstream.to_eof(), True
                if rclose:
                    origin.close()
                    self._track(origin, False)
                    origin = None
                if self.drop_every and nth % self.drop_every == 0:
                    with self.lock:
                        self.dropped += 1
                        self.dropped_methods.append(method)
                    return                 # the answer is lost with the connection
                conn.sendall(rhead + rbody)
                with self.lock:
                    self.forwarded += 1
                if self.close_between:
                    with self.lock:
                        self.closed_between += 1
                    return
        except (Closed, OSError) as e:
            if not self.stopping:
                with self.lock:
                    self.problems.append(repr(e))
        finally:
            conn.close()
            self._track(conn, False)
            if origin is not None:
                origin.close()
                self._track(origin, False)

    def stop(self):
        self.stopping = True
        self.thread.join(5)
        self.sock.close()
        with self.lock:
            conns = list(self.conns)
        for c in conns:
            try:
                c.close()
            except OSError:
                pass
