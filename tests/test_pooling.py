"""Proxies that pool their connections to tunneld (issue 10): requests of
several GET/POST tunnel sessions follow one another on one kept-alive
connection, and an open lands on a connection that another session's
holder serves. Through a real HAProxy (`http-reuse always`, a backend with
a small maxconn) with six real `tunnel` clients at once, and through
tests/poolproxy.py, which puts requests on its shared connections in the
order a test chooses, spoken by hand and by real clients. Every session
gets exactly its own bytes both ways (pending uploads included), and no
tunneld process outlives its sessions."""

import hashlib
import os
import shutil
import socket
import subprocess
import threading
import time

import pytest

from conftest import (TUNNEL_PATH, alive, children, clean_env, echo_handler, ended_after,
                      end_server, free_port, listening, recv_all, source_sink, wait_until)
from poolproxy import PoolProxy
from test_http_tunnel import BODY_MAX, Conn, holder
from test_tunnel_client import assert_large_answers, stream, two_way

pytestmark = pytest.mark.needs("http-tunnel")

PATH = TUNNEL_PATH
KiB, MiB = 1 << 10, 1 << 20
# Fresh processes that wait for a kept-alive connection's next request
# close it after --header-timeout: short here, so that the tests can wait
# for every process to go while the pooling proxy keeps its connections.
HEADER_TIMEOUT = 3


# --------------------------------------------------------------------------
# helpers

def holder_sockets(pids):
    """The "@tunneld/<id>" abstract unix sockets that pids hold (session holders)."""
    names = {}
    try:
        with open("/proc/net/unix") as f:
            next(f)
            for line in f:
                fields = line.split()
                if len(fields) >= 8 and fields[7].startswith("@tunneld/"):
                    names[fields[6]] = fields[7]
    except OSError:
        return []
    out = []
    for pid in pids:
        try:
            for fd in os.listdir(f"/proc/{pid}/fd"):
                link = os.readlink(f"/proc/{pid}/fd/{fd}")
                if link.startswith("socket:[") and link[8:-1] in names:
                    out.append((pid, names[link[8:-1]]))
        except OSError:
            pass
    return out


def holder_of(proxy, token):
    """The pid of the process that holds token's session (None: none)."""
    return next((pid for pid, n in holder_sockets(proxy.procs())
                 if n.endswith("/" + token[:16])), None)


def assert_no_process_left(proxy, timeout, what):
    left = wait_until(lambda: not proxy.procs(), timeout) or proxy.procs()
    assert left is True, (f"tunneld processes left {timeout} s after {what}: {left}, "
                          f"holding sessions: {holder_sockets(left)}")


def sha(data):
    return hashlib.sha256(data).hexdigest()


def client_session(cmd, up, timeout=60):
    """A `tunnel` stdin/stdout session; a client that ends early is
    reported by its exit code: (returncode, (sha256, length) of stdout,
    stderr)."""
    return stream(cmd, up, timeout=timeout, early_end_ok=True)


def clients_at_once(cmds, ups):
    """client_session(cmds[i], ups[i]) for every i at once: the results,
    or for a client whose run raised, the exception's text."""
    results = [None] * len(cmds)

    def one(i):
        try:
            results[i] = client_session(cmds[i], ups[i])
        except Exception as e:                      # reported by the caller, per client
            results[i] = repr(e)
    threads = [threading.Thread(target=one, args=(i,), daemon=True) for i in range(len(cmds))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(70)
    return results


class PConn(Conn):
    """Conn (the protocol by hand) through the pooling proxy: one client
    connection to it; pin=N puts every request on the proxy's slot N."""

    def __init__(self, pp, pin=None, timeout=30.0):
        super().__init__(pp, timeout)
        self.pin = pin

    def request(self, method, query="", headers=(), body=b"", path=None, timeout=None,
                clen=None):
        if self.pin is not None:
            headers = [*headers, f"Pool-Conn: {self.pin}"]
        return super().request(method, query, headers, body, path, timeout, clen)


@pytest.fixture
def make_pool():
    with ended_after(lambda server, **kw: PoolProxy((server.host, server.port), **kw)) as make:
        yield make


def gated_holder(blob, gate):
    """Send blob, read nothing until gate is set (at most 30 s), then record
    what the client sends until EOF."""
    def handler(conn, server):
        conn.sendall(blob)
        gate.wait(30)
        data, how = recv_all(conn)
        server.results.append((data, how))
    return handler


# --------------------------------------------------------------------------
# HAProxy between: http-reuse always, few connections to tunneld

class HAProxy:
    """haproxy in the foreground (-db) on 127.0.0.1 with its config in
    workdir: mode http, every idle connection to tunneld reused for any
    client (http-reuse always), timeouts above the 20 s long poll. Opens,
    sends and deletes go through a server line of at most maxconn requests
    at a time (more wait in its queue); receives through one of `polls`:
    were the long polls queued with the sends, all maxconn places could be
    long polls waiting for sends that wait behind them (20 s each time)."""

    def __init__(self, workdir, server_port, maxconn=3, polls=6):
        exe = shutil.which("haproxy") or "/usr/sbin/haproxy"
        if not os.access(exe, os.X_OK):
            pytest.fail("haproxy missing (Debian package haproxy; `make deps` installs it)")
        workdir.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        conf = workdir / "haproxy.cfg"
        conf.write_text(f"""\
global
    maxconn 256
    nbthread 2

defaults
    mode http
    timeout connect 5s
    timeout client 40s
    timeout server 40s
    timeout queue 40s
    timeout http-request 10s
    timeout http-keep-alive 30s
    http-reuse always

frontend tunnel_in
    bind 127.0.0.1:{self.port}
    use_backend polls if METH_GET
    default_backend tunneld

backend tunneld
    server tunneld 127.0.0.1:{server_port} maxconn {maxconn}

backend polls
    server tunneld 127.0.0.1:{server_port} maxconn {polls}
""")
        self.out = workdir / "haproxy.out"
        self.outf = open(self.out, "ab")
        self.proc = subprocess.Popen([exe, "-db", "-f", str(conf)], stdin=subprocess.DEVNULL,
                                     stdout=self.outf, stderr=self.outf, env=clean_env())
        self.pid = self.proc.pid
        up = wait_until(lambda: listening(self.port) or self.proc.poll() is not None, 10)
        if not up or self.proc.poll() is not None:
            self.stop()
            pytest.fail(f"haproxy did not start: rc={self.proc.returncode} "
                        f"{self.out.read_text()}")

    def stop(self):
        end_server(self.proc)
        if not self.outf.closed:
            self.outf.close()


def test_haproxy_six_tunnel_clients(tunnel_bin, make_proxy, mode, make_target, tmp_path):
    """Six `tunnel` stdin/stdout sessions at once through HAProxy, which
    carries their opens, sends and deletes over at most three connections
    to tunneld at a time, and reuses every idle one for any session: each
    client gets exactly its own 256 KiB back from the echo target. Then
    no tunneld process is left: not while HAProxy keeps its idle
    connections (after --header-timeout), nor once it is stopped."""
    server = make_proxy(mode, args=["--header-timeout", str(HEADER_TIMEOUT)], tunnel=PATH)
    echo = make_target(echo_handler)
    n, size = 6, 256 * KiB
    ha = HAProxy(tmp_path / "haproxy", server.port, maxconn=3, polls=n)
    ups = [os.urandom(size) for _ in range(n)]
    try:
        results = clients_at_once([[tunnel_bin, f"http://127.0.0.1:{ha.port}{PATH}",
                                    echo.hostport]] * n, ups)
        bad = {i: r for i, r in enumerate(results)
               if not (isinstance(r, tuple) and r[0] == 0 and r[1] == (sha(ups[i]), size))}
        assert not bad, (f"clients without their own bytes back (of {n}): {bad}; "
                         f"haproxy: {ha.out.read_text()[-2000:]}")
        assert sorted(echo.wait_results(n, 10)) == ["eof"] * n
        assert_no_process_left(server, HEADER_TIMEOUT + 3,
                               "the clients ended (HAProxy still holds its idle connections)")
    finally:
        ha.stop()
    assert_no_process_left(server, 5, "the clients ended and HAProxy stopped")


def test_haproxy_8mib_down_in_large_answers(tunnel_bin, make_proxy, mode, make_target,
                                            tmp_path):
    """A download through HAProxy comes in answers of up to 512 KiB, some
    over 64 KiB, every byte exact."""
    server = make_proxy(mode, tunnel=PATH)
    ha = HAProxy(tmp_path / "haproxy", server.port, maxconn=3, polls=2)
    try:
        err = two_way(tunnel_bin, make_target, f"http://127.0.0.1:{ha.port}{PATH}", 8 * MiB,
                      "-v", timeout=90, up_size=64 * KiB)
        assert_large_answers(err, 8 * MiB)
    finally:
        ha.stop()


def test_pooling_proxy_8mib_down_in_large_answers(tunnel_bin, make_proxy, mode, make_target,
                                                  make_pool):
    """The same through the pooling proxy, which buffers each answer whole
    before it passes it on."""
    server = make_proxy(mode, tunnel=PATH)
    pp = make_pool(server, size=2)
    err = two_way(tunnel_bin, make_target, server.url, 8 * MiB, "-v", "-x", pp.url,
                  timeout=90, up_size=64 * KiB)
    assert_large_answers(err, 8 * MiB)


# --------------------------------------------------------------------------
# the pooling proxy, spoken by hand

def test_open_on_holders_connection_interleaved(make_proxy, mode, make_target, make_pool):
    """One shared upstream connection: A's open makes its process A's
    holder; B's open follows on that same connection, then A's and B's
    sends and receives alternate on it. B's session starts clean (offset
    0 both ways, none of A's bytes), each target gets exactly its own
    session's bytes, and when both sessions are deleted no process is left,
    though the proxy keeps the connection open."""
    server = make_proxy(mode, args=["--header-timeout", str(HEADER_TIMEOUT)], tunnel=PATH)
    blob_a, blob_b = b"A's private greeting\n" * 30, b"B greets\n" * 7
    ta, tb = make_target(holder(blob_a)), make_target(holder(blob_b))
    pp = make_pool(server, size=1)
    ca, cb = PConn(pp), PConn(pp)                   # two clients, one upstream
    up_a, up_b = os.urandom(70 * KiB), os.urandom(9000)

    a = ca.open_ok(ta.hostport)
    ca.send_ok(a, 0, up_a[:1500])
    assert ca.recv_until(a, 0, len(blob_a)) == (blob_a, False)   # not yet acknowledged
    b = cb.open_ok(tb.hostport)
    assert pp.log[-1]["open"] and pp.log[-1]["conn"] == pp.log[0]["conn"], pp.log
    got, _ = cb.recv_until(b, 0, len(blob_b))
    leak = " but A's bytes" if got[:20] == blob_a[:20] else ""
    assert got == blob_b, f"B's first receive is not B's target's greeting{leak}: {got[:80]!r}"
    cb.send_ok(b, 0, up_b[:1000])
    ca.send_ok(a, 1500, up_a[1500:BODY_MAX])
    cb.send_ok(b, 1000, up_b[1000:5000])
    ca.send_ok(a, BODY_MAX, up_a[BODY_MAX:], fin=True)
    assert ca.recv_until(a, len(blob_a), 0, want_eof=True) == (b"", True)
    cb.send_ok(b, 5000, up_b[5000:], fin=True)
    assert cb.recv_until(b, len(blob_b), 0, want_eof=True) == (b"", True)
    holders = {"A": holder_of(server, a), "B": holder_of(server, b)}
    assert None not in holders.values() and holders["A"] != holders["B"], holders
    if mode == "listen":        # a fresh process for B's open: the listener forks it
        assert holders["B"] in children(server.pid), \
            f"B's holder {holders['B']} is not the listener's child: {children(server.pid)}"
    ra, rb = ta.wait_results(1), tb.wait_results(1)
    assert [(sha(d), len(d), how) for d, how in ra] == [(sha(up_a), len(up_a), "eof")], \
        "A's target did not get exactly A's bytes"
    assert [(sha(d), len(d), how) for d, how in rb] == [(sha(up_b), len(up_b), "eof")], \
        "B's target did not get exactly B's bytes"
    assert {e["conn"] for e in pp.log} == {1} and not pp.failures, (pp.log, pp.failures)
    assert ca.delete(a).status == 200
    gone = wait_until(lambda: not alive(holders["A"]), 2)
    assert gone, f"A's holder {holders['A']} outlived A's session (B's is still open)"
    assert alive(holders["B"]), "B's holder ended with A's session"
    assert cb.delete(b).status == 200
    assert wait_until(lambda: not alive(holders["B"]), 2), "B's holder outlived B's session"
    assert not pp.failures, pp.failures
    assert_no_process_left(server, HEADER_TIMEOUT + 3,
                           "both sessions were deleted (the proxy still holds its connection)")


def test_pending_upload_stays_with_its_session(make_proxy, mode, make_target, make_pool):
    """A's target reads nothing: A's sends fill the buffers until one waits
    in A's holder. Meanwhile A's receive goes on a second pooled
    connection (handed to A's holder), then B's open on that connection.
    A's pending upload reaches A's target only, once it reads; B's target
    gets exactly B's bytes, and B's offsets start at 0."""
    server = make_proxy(mode, args=["--header-timeout", str(HEADER_TIMEOUT)], tunnel=PATH)
    gate = threading.Event()
    blob_a, blob_b = b"A's private greeting\n" * 30, b"B greets\n" * 7
    ta = make_target(gated_holder(blob_a, gate))
    ta.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)   # fills sooner
    tb = make_target(holder(blob_b))
    pp = make_pool(server, size=2)
    c0, c1 = PConn(pp, pin=0, timeout=40), PConn(pp, pin=1)
    a = c0.open_ok(ta.hostport)
    sent = bytearray()
    fill = {"waiting_since": None, "answers": [], "error": None, "stop": False}

    def filler():
        try:
            off = 0
            for _ in range(400):                    # at most 25 MiB
                if fill["stop"]:
                    return
                chunk = os.urandom(BODY_MAX)
                sent.extend(chunk)
                fill["waiting_since"] = time.monotonic()
                r = c0.send(a, off, chunk)
                fill["waiting_since"] = None
                fill["answers"].append((r.status, r.header("Tunnel-Offset")))
                assert r.status == 200, r
                off = int(r.header("Tunnel-Offset"))
                del sent[off:]                      # a short answer: those bytes not taken
        except Exception as e:                      # reported by the main thread
            fill["error"] = repr(e)
    t = threading.Thread(target=filler, daemon=True)
    t.start()
    try:
        pending = wait_until(lambda: fill["error"] or (
            fill["waiting_since"] and time.monotonic() - fill["waiting_since"] > 0.5), 20)
        assert pending and not fill["error"], \
            f"no send waited for the target: {fill['error']}, {len(fill['answers'])} answers"
        fill["stop"] = True
        assert c1.recv_until(a, 0, len(blob_a)) == (blob_a, False)
        b = c1.open_ok(tb.hostport)
        assert pp.log[-1]["open"] and pp.log[-1]["conn"] == pp.log[-2]["conn"], pp.log
        up_b = os.urandom(3000)
        rb_send = c1.send(b, 0, up_b, fin=True)
        wait_until(lambda: tb.results, 10)       # B's target ends when B's fin comes
    finally:
        gate.set()
        t.join(30)
    assert not t.is_alive() and not fill["error"], fill
    assert len(tb.results) == 1, f"B's target: {tb.results}, B's send: {rb_send}"
    (data, how), = tb.results
    assert (sha(data), len(data), how) == (sha(up_b), len(up_b), "eof"), \
        (f"B's target got {len(data)} bytes, not B's {len(up_b)}"
         + (" (A's pending upload among them)" if data[:64] and bytes(data[:64]) in sent else ""))
    assert rb_send.status == 200 and rb_send.header("Tunnel-Offset") == str(len(up_b)), rb_send
    assert c1.recv_until(b, 0, len(blob_b), want_eof=True) == (blob_b, True)
    c0.send_ok(a, len(sent), fin=True)
    (data, how), = ta.wait_results(1, 10)
    assert (sha(data), len(data), how) == (sha(bytes(sent)), len(sent), "eof"), \
        f"A's target got {len(data)} bytes, A sent {len(sent)}"
    assert c0.delete(a).status == 200 and c1.delete(b).status == 200
    assert not pp.failures, pp.failures
    assert_no_process_left(server, HEADER_TIMEOUT + 3, "both sessions were deleted")


# --------------------------------------------------------------------------
# the pooling proxy, real clients

def test_tunnel_clients_through_pooling_proxy(tunnel_bin, make_proxy, mode, make_target,
                                              make_pool):
    """Three `tunnel` stdin/stdout sessions at once through the pooling
    proxy (four shared connections, opens put on used ones): each gets
    exactly its own bytes both ways, the requests really mixed, and no
    process outlives the sessions while the proxy keeps its connections."""
    server = make_proxy(mode, args=["--header-timeout", str(HEADER_TIMEOUT)], tunnel=PATH)
    pp = make_pool(server, size=4)
    n, size = 3, 256 * KiB
    downs = [os.urandom(size) for _ in range(n)]
    ups = [os.urandom(size) for _ in range(n)]
    targets = [make_target(source_sink(d)) for d in downs]
    results = clients_at_once([[tunnel_bin, "-x", pp.url, server.url, t.hostport]
                               for t in targets], ups)
    bad = {i: r for i, r in enumerate(results)
           if not (isinstance(r, tuple) and r[0] == 0 and r[1] == (sha(downs[i]), size))}
    assert not bad, f"clients without their target's bytes: {bad}; proxy: {pp.failures}"
    for i, target in enumerate(targets):
        assert target.wait_results(1, 10) == [(sha(ups[i]), size, "eof")], \
            f"target {i} did not get exactly its client's bytes"
    assert pp.mixed_connections(), \
        f"no connection carried two sessions: {pp.sessions_by_connection()}"
    assert pp.opens_on_used_connections(), \
        f"no open on a connection that had carried another session: {pp.log}"
    assert_no_process_left(server, HEADER_TIMEOUT + 3,
                           "the clients ended (the proxy still holds its connections)")
