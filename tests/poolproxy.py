"""A pooling HTTP proxy for the GET/POST tunnel tests.

Like a corporate proxy (or HAProxy with `http-reuse always`), it does not
keep one upstream connection per client connection: every request read
from any client (its head and its Content-Length body) is forwarded on a
connection taken from a small shared pool toward one origin (tunneld), and
the answer goes back to the client that asked. So requests of different
sessions follow one another on the same upstream connection, and an open
may land on a connection that a session's holder serves.

Which pooled connection carries a request:

- the request header `Pool-Conn: N` (the proxy's own, not forwarded) pins
  it to slot N of the pool (a test's chosen interleaving);
- otherwise an idle connection whose last request was for another session
  is preferred (an open prefers one that has carried any session), then
  any idle one, most recently used first; a new one is made while fewer
  than `size` exist; else the request waits for one to come free. An
  open waits up to `open_patience` seconds for an existing connection
  before it is given a new one: so opens land on connections that other
  sessions' requests used (a holder's).

One request at a time per upstream connection (no pipelining). Requests in
absolute form (`POST http://host:port/t HTTP/1.1`, from `tunnel -x`) go on
in origin form; hop-by-hop fields are dropped and `Connection: keep-alive`
is added. An upstream connection that fails before its answer is complete
is dropped, and the client is answered like a real proxy does: `503` for
an open (the one answer after which `tunnel` repeats an open), `502`
otherwise (no Tunnel-Offset: `tunnel` repeats the request). Both counted in
`failures`.

Every request is logged (`log`: slot, upstream connection number, method,
session name) so that a test can check the mixing really happened;
sessions are named s1, s2, ... in the order their opens were answered.
Listens on 127.0.0.1 only; every wait has a deadline; stop() closes every
socket it holds.
"""

import select
import socket
import threading
import time

from faultproxy import HOP, Closed, Reader, field, parse_head
from support.servers import accept_loop

PIN = "pool-conn"
BODY_MAX = 1 << 20


class Upstream:
    """One pooled connection to the origin."""

    def __init__(self, number, slot, addr, timeout):
        self.number, self.slot = number, slot
        self.sock = socket.create_connection(addr, timeout=timeout)
        self.reader = Reader(self.sock)
        self.busy = False
        self.dead = False
        self.last = None          # the session of the last request carried
        self.used = 0.0           # when it last came free
        self.sessions = []        # the session of each request carried, in order

    def stale(self):
        """The origin closed it (or sent bytes nobody asked for) while idle."""
        if self.reader.buf:
            return True
        try:
            return bool(select.select([self.sock], [], [], 0)[0])
        except (OSError, ValueError):
            return True

    def kill(self):
        self.dead = True
        try:
            self.sock.close()
        except OSError:
            pass


class PoolProxy:
    def __init__(self, origin, size=1, timeout=40.0, open_patience=3.0):
        self.origin, self.size, self.timeout = origin, size, timeout
        self.open_patience = open_patience
        self.cond = threading.Condition()
        self.slots = [None] * size
        self.upstreams = []       # every upstream connection made, dead ones too
        self.log = []             # one dict per request forwarded
        self.names = {}           # token -> session name
        self.failures = []        # (method, session, error) of upstream failures
        self.problems = []        # unexpected errors on client connections
        self.clients = set()
        self.stopping = False
        self.sock = socket.create_server(("127.0.0.1", 0), backlog=128)
        self.sock.settimeout(0.1)
        self.port = self.sock.getsockname()[1]
        self.host = "127.0.0.1"
        self.url = f"http://127.0.0.1:{self.port}"
        self.thread = threading.Thread(target=self._loop, daemon=True)
        self.thread.start()

    # ---- the record ------------------------------------------------------

    def sessions_by_connection(self):
        """Upstream connection number -> the sessions it carried, in order."""
        with self.cond:
            return {u.number: list(u.sessions) for u in self.upstreams}

    def mixed_connections(self):
        """Upstream connections that carried requests of two sessions or more."""
        return {n: s for n, s in self.sessions_by_connection().items()
                if len(set(s) - {None}) >= 2}

    def opens_on_used_connections(self):
        """Opens sent on a connection that had carried another session's request."""
        out = []
        with self.cond:
            for u in self.upstreams:
                for i, name in enumerate(u.sessions):
                    entry = next((e for e in self.log if e["conn"] == u.number
                                  and e["index"] == i), None)
                    if entry and entry["open"] and {s for s in u.sessions[:i] if s} - {name}:
                        out.append((u.number, name, u.sessions[:i]))
        return out

    # ---- the pool --------------------------------------------------------

    def _new(self, slot):
        u = Upstream(len(self.upstreams) + 1, slot, self.origin, self.timeout)
        self.upstreams.append(u)
        self.slots[slot] = u
        return u

    def _choose(self, session, is_open, patient):
        live = [u for u in self.slots if u is not None and not u.dead]
        idle = []
        for u in live:
            if not u.busy:
                if u.stale():
                    u.kill()
                else:
                    idle.append(u)
        if idle:
            def rank(u):
                other = u.last is not None and (is_open or u.last != session)
                return (other, u.used)
            return max(idle, key=rank)
        if is_open and patient and live:
            return None           # an open waits a while for a used connection
        free = [i for i, u in enumerate(self.slots) if u is None or u.dead]
        return self._new(free[0]) if free else None

    def _acquire(self, session, is_open, pin):
        start = time.monotonic()
        deadline = start + self.timeout
        with self.cond:
            for _ in range(100000):
                if self.stopping:
                    raise Closed()
                if pin is not None:
                    u = self.slots[pin]
                    if u is not None and not u.busy and not u.dead and u.stale():
                        u.kill()
                    if u is None or u.dead:
                        u = self._new(pin)
                    elif u.busy:
                        u = None
                else:
                    u = self._choose(session, is_open,
                                     time.monotonic() < start + self.open_patience)
                if u is not None:
                    u.busy = True
                    return u
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError("no pooled connection came free")
                self.cond.wait(min(left, 0.2))
        raise TimeoutError("no pooled connection came free")

    def _release(self, u, session):
        with self.cond:
            u.busy = False
            u.last = session
            u.used = time.monotonic()
            self.cond.notify_all()

    # ---- serving ---------------------------------------------------------

    def _loop(self):
        accept_loop(self.sock, lambda: self.stopping, self._take)

    def _take(self, conn):
        conn.settimeout(self.timeout)
        with self.cond:
            self.clients.add(conn)
        threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn):
        client = Reader(conn)
        try:
            for _ in range(100000):
                try:
                    head = client.head()
                except (Closed, OSError):
                    return
                if not self._one(conn, client, head):
                    return
        except (Closed, OSError, TimeoutError) as e:
            if not self.stopping:
                with self.cond:
                    self.problems.append(repr(e))
        finally:
            conn.close()
            with self.cond:
                self.clients.discard(conn)

    def _one(self, conn, client, head):
        """Forward one request; False when the client connection ends."""
        line, fields = parse_head(head)
        parts = line.split(" ")
        if len(parts) != 3:
            conn.sendall(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n"
                         b"Connection: close\r\n\r\n")
            return False
        method, target, _ = parts
        if target.startswith("http://"):
            target = "/" + target[len("http://"):].partition("/")[2]
        n = int(field(fields, "content-length") or 0)
        if n > BODY_MAX:
            conn.sendall(b"HTTP/1.1 413 Payload Too Large\r\nContent-Length: 0\r\n"
                         b"Connection: close\r\n\r\n")
            return False
        body = client.exact(n) if n else b""
        pin = field(fields, PIN)
        token = field(fields, "tunnel-token")
        is_open = method == "POST" and token is None
        client_close = (field(fields, "connection") or "").lower() == "close"
        out = [f"{method} {target} HTTP/1.1"]
        out += [f"{k}: {v}" for k, v in fields if k.lower() not in HOP and k.lower() != PIN]
        out.append("Connection: keep-alive")
        data = ("\r\n".join(out) + "\r\n\r\n").encode("latin-1") + body
        with self.cond:
            session = self.names.get(token, token) if token else None
        u = self._acquire(session, is_open, int(pin) if pin is not None else None)
        with self.cond:
            entry = {"conn": u.number, "slot": u.slot, "index": len(u.sessions),
                     "method": method, "open": is_open, "session": session, "status": None}
            u.sessions.append(session)
            self.log.append(entry)
        try:
            u.sock.sendall(data)
            rhead = u.reader.head()
            _, rfields = parse_head(rhead)
            rlen = field(rfields, "content-length")
            if rlen is None:
                rbody = u.reader.to_eof()
                u.kill()
            elif int(rlen) > BODY_MAX:
                raise Closed()
            else:
                rbody = u.reader.exact(int(rlen))
            if (field(rfields, "connection") or "").lower() == "close":
                u.kill()
        except (Closed, OSError) as e:
            u.kill()
            self._release(u, session)
            with self.cond:
                self.failures.append((method, session, repr(e)))
                entry["status"] = "failed"
            status = b"503 Service Unavailable" if is_open else b"502 Bad Gateway"
            msg = b"poolproxy: the upstream connection failed\n"
            conn.sendall(b"HTTP/1.1 " + status + b"\r\nContent-Type: text/plain\r\n"
                         b"Content-Length: %d\r\n\r\n%s" % (len(msg), msg))
            return True
        status = rhead.split(b" ", 2)[1].decode("latin-1")
        if is_open and status == "200":
            tok = rbody.decode("latin-1").strip()
            with self.cond:
                session = self.names.setdefault(tok, f"s{len(self.names) + 1}")
                u.sessions[entry["index"]] = session
                entry["session"] = session
        entry["status"] = status
        self._release(u, session)
        conn.sendall(rhead + rbody)
        return not client_close

    def stop(self):
        self.stopping = True
        self.thread.join(5)
        self.sock.close()
        with self.cond:
            socks = list(self.clients) + [u for u in self.upstreams if not u.dead]
            self.cond.notify_all()
        for s in socks:
            if isinstance(s, Upstream):
                s.kill()
            else:
                try:
                    s.close()
                except OSError:
                    pass

    def close_upstreams(self):
        """Close every idle pooled connection (as a proxy ending does)."""
        with self.cond:
            for u in self.upstreams:
                if not u.dead and not u.busy:
                    u.kill()
