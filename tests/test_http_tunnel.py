"""The GET/POST tunnel's server side (`tunneld --http-tunnel`, PROTOCOL.md,
DESIGN §8), spoken by hand over raw sockets: open, send with offsets
(retried and overlapping sends applied once), receive (a lost answer asked
again), EOF and half-close both ways, DELETE, expiry, the status codes,
keep-alive across sessions and connections (in inetd mode: the hand-over
to the session's holder), Cache-Control, and what the log never says."""

import hashlib
import os
import re
import socket
import ssl
import time

import pytest

from conftest import (LOOPBACK_ACL, TUNNEL_PATH, Client, assert_error_reply, basic_token,
                      echo_handler, free_port, hash_handler, open_tunnel, openssl_hash, recv_all,
                      wait_until)

pytestmark = pytest.mark.needs("http-tunnel")

PATH = TUNNEL_PATH
BODY_MAX = 65536                   # a send's body; a receive's answer without max=
ANSWER_MAX = 512 * 1024            # a receive's answer with max=
RING = 2 * ANSWER_MAX              # what the holder reads ahead, not acknowledged
TOKEN_RE = re.compile(rb"[0-9a-f]{48}\n")
KiB = 1 << 10


# --------------------------------------------------------------------------
# the protocol by hand

class Conn:
    """One kept-alive HTTP connection to tunneld carrying tunnel requests."""

    def __init__(self, proxy, timeout=30.0, path=PATH, absolute=False):
        self.proxy, self.path = proxy, path
        self.c = Client(proxy.host, proxy.port, timeout)
        self.prefix = f"http://{proxy.host}:{proxy.port}" if absolute else ""

    def request(self, method, query="", headers=(), body=b"", path=None, timeout=None,
                clen=None):
        target = self.prefix + (self.path if path is None else path) + query
        lines = [f"{method} {target} HTTP/1.1", f"Host: {self.proxy.host}:{self.proxy.port}",
                 *headers]
        if method == "POST" or clen is not None:
            lines.append(f"Content-Length: {len(body) if clen is None else clen}")
        return self.c.request(("\r\n".join(lines) + "\r\n\r\n").encode() + body, timeout)

    def open(self, target, headers=()):
        return self.request("POST", headers=headers, body=target.encode())

    def open_ok(self, target, headers=()):
        """Open a session; return its token (str)."""
        r = self.open(target, headers)
        assert r.status == 200, r
        assert TOKEN_RE.fullmatch(r.body), r
        assert_no_store(r)
        return r.body.decode().strip()

    def send(self, token, off, data=b"", fin=False):
        q = f"?o={off}" + ("&fin" if fin else "")
        return self.request("POST", q, [f"Tunnel-Token: {token}"], data)

    def send_ok(self, token, off, data=b"", fin=False, expect=None):
        """A send that must be taken whole (or up to expect)."""
        r = self.send(token, off, data, fin)
        assert r.status == 200, r
        assert r.body == b"", r
        assert_no_store(r)
        want = off + len(data) if expect is None else expect
        assert r.header("Tunnel-Offset") == str(want), r
        return r

    def recv(self, token, off, timeout=None, most=None):
        q = f"?o={off}" + ("" if most is None else f"&max={most}")
        return self.request("GET", q, [f"Tunnel-Token: {token}"], timeout=timeout)

    def recv_ok(self, token, off, timeout=None, most=None):
        r = self.recv(token, off, timeout, most)
        assert r.status == 200, r
        assert_no_store(r)
        assert r.header("Tunnel-Offset") == str(off), r
        bound = BODY_MAX if most is None else min(most, ANSWER_MAX)
        assert len(r.body) <= bound, f"{len(r.body)} bytes in one receive (max={most})"
        return r

    def recv_until(self, token, off, n, want_eof=False, timeout=20.0, most=None):
        """Receive from off until n bytes have come (and Tunnel-Eof, if
        want_eof); return (bytes, eof seen)."""
        data = bytearray()
        eof = False
        deadline = time.monotonic() + timeout
        for _ in range(10000):
            if len(data) >= n and (eof or not want_eof):
                break
            assert time.monotonic() < deadline, \
                f"{len(data)} of {n} bytes (eof={eof}) after {timeout} s"
            assert not eof, f"Tunnel-Eof after {len(data)} of {n} bytes"
            r = self.recv_ok(token, off + len(data), most=most)
            data += r.body
            eof = r.header("Tunnel-Eof") == "1"
        return bytes(data), eof

    def delete(self, token):
        return self.request("DELETE", headers=[f"Tunnel-Token: {token}"])

    def close(self):
        self.c.close()


def assert_no_store(resp):
    assert resp.header("Cache-Control") == "no-store", resp
    assert resp.header("Content-Length") == str(len(resp.body)), resp


def sha_line(data):
    """What hash_handler answers for data."""
    return hashlib.sha256(data).hexdigest().encode() + b"\n"


def wrong_secret(token):
    """The same session id with the last digit of the secret changed."""
    return token[:-1] + ("0" if token[-1] != "0" else "1")


def recorder(conn, server):
    """Read to EOF; record what came and how it ended."""
    data, how = recv_all(conn)
    server.results.append((data, how))


def greeter(blob):
    """Send blob, half-close, then record what the client sends until EOF."""
    def handler(conn, server):
        conn.sendall(blob)
        conn.shutdown(socket.SHUT_WR)
        data, how = recv_all(conn)
        server.results.append((data, how))
    return handler


def holder(blob):
    """Send blob and keep the connection open until the client ends it."""
    def handler(conn, server):
        conn.sendall(blob)
        data, how = recv_all(conn)
        server.results.append((data, how))
    return handler


# --------------------------------------------------------------------------
# open, send, receive

def test_open_answers_a_token(tproxy, echo):
    c = Conn(tproxy)
    r = c.open(echo.hostport)
    assert r.status == 200, r
    assert TOKEN_RE.fullmatch(r.body), r
    assert_no_store(r)
    assert wait_until(lambda: echo.accepted == 1, 5), "the open did not reach the target"
    tokens = {r.body} | {Conn(tproxy).open(echo.hostport).body for _ in range(3)}
    assert len(tokens) == 4, tokens


def test_round_trip_and_delete(tproxy, echo):
    c = Conn(tproxy)
    token = c.open_ok(echo.hostport)
    c.send_ok(token, 0, b"hello ")
    c.send_ok(token, 6, b"tunnel")
    data, eof = c.recv_until(token, 0, 12)
    assert (data, eof) == (b"hello tunnel", False)
    r = c.delete(token)
    assert r.status == 200 and r.body == b"", r
    assert_no_store(r)
    assert echo.wait_results(1) == ["eof"], "DELETE did not end the target connection"
    assert_error_reply(None, Conn(tproxy).recv(token, 12), 404)


def test_default_path_is_root(make_proxy, echo):
    p = make_proxy("listen", tunnel=True)
    c = Conn(p, path="/")
    token = c.open_ok(echo.hostport)
    c.send_ok(token, 0, b"root")
    assert c.recv_until(token, 0, 4) == (b"root", False)


def test_absolute_form_requests(tproxy, echo):
    """Through a proxy the requests come in absolute form."""
    c = Conn(tproxy, absolute=True)
    token = c.open_ok(echo.hostport)
    c.send_ok(token, 0, b"absolute")
    assert c.recv_until(token, 0, 8) == (b"absolute", False)
    assert c.delete(token).status == 200


def test_sends_in_order_reach_the_target_once(tproxy, make_target):
    target = make_target(hash_handler)
    c = Conn(tproxy)
    token = c.open_ok(target.hostport)
    data = os.urandom(300 * KiB)
    off = 0
    for size in (1, BODY_MAX, 1000, BODY_MAX, 50000, BODY_MAX, BODY_MAX):
        size = min(size, len(data) - off)
        c.send_ok(token, off, data[off:off + size])
        off += size
    assert off == len(data)
    c.send_ok(token, len(data), fin=True)
    got, eof = c.recv_until(token, 0, 65, want_eof=True)
    assert got == hashlib.sha256(data).hexdigest().encode() + b"\n"
    assert target.wait_results(1) == [data]


def test_retried_send_acknowledged_not_applied_twice(tproxy, make_target):
    target = make_target(recorder)
    c = Conn(tproxy)
    token = c.open_ok(target.hostport)
    c.send_ok(token, 0, b"abc")
    c.send_ok(token, 0, b"abc", expect=3)        # the answer was lost: sent again
    c.send_ok(token, 1, b"bcdef", expect=6)      # overlapping: only "def" is new
    c.send_ok(token, 0, b"", expect=6)           # nothing new at all
    c.send_ok(token, 6, b"g", fin=True)
    c.send_ok(token, 6, b"g", fin=True, expect=7)   # the fin retried
    assert target.wait_results(1) == [(b"abcdefg", "eof")]


def test_gap_is_409(tproxy, make_target):
    target = make_target(recorder)
    c = Conn(tproxy)
    token = c.open_ok(target.hostport)
    c.send_ok(token, 0, b"ab")
    assert_error_reply(None, Conn(tproxy).send(token, 3, b"x"), 409)
    # the session goes on from where it was
    c.send_ok(token, 2, b"cd", fin=True)
    assert target.wait_results(1) == [(b"abcd", "eof")]


def test_send_after_fin_is_409(tproxy, make_target):
    target = make_target(hash_handler)
    c = Conn(tproxy)
    token = c.open_ok(target.hostport)
    c.send_ok(token, 0, b"last", fin=True)
    assert_error_reply(None, Conn(tproxy).send(token, 4, b"more"), 409)
    assert target.wait_results(1) == [b"last"]


def test_receive_same_offset_twice_same_bytes(tproxy, make_target):
    blob = os.urandom(100 * KiB)               # more than one answer holds
    target = make_target(holder(blob))
    c = Conn(tproxy)
    token = c.open_ok(target.hostport)
    first = c.recv_ok(token, 0).body
    assert first and blob.startswith(first)
    # the answer was lost: the same offset again, on a new connection too
    again = c.recv_ok(token, 0).body
    assert again[:len(first)] == first
    other = Conn(tproxy)
    assert other.recv_ok(token, 0).body[:len(first)] == first
    # moving on acknowledges: the old offset is gone, the rest follows
    rest, _ = other.recv_until(token, len(first), len(blob) - len(first))
    assert first + rest == blob
    assert_error_reply(None, Conn(tproxy).recv(token, 0), 409)


def test_receive_beyond_what_was_read_is_409(tproxy, make_target):
    target = make_target(holder(b"0123456789"))
    c = Conn(tproxy)
    token = c.open_ok(target.hostport)
    assert c.recv_until(token, 0, 10) == (b"0123456789", False)
    assert_error_reply(None, Conn(tproxy).recv(token, 11), 409)


def test_receive_comes_in_bounded_pieces(tproxy, make_target):
    """64 KiB not yet acknowledged at most; every byte once, in order."""
    blob = os.urandom(300 * KiB)
    target = make_target(greeter(blob))
    c = Conn(tproxy)
    token = c.open_ok(target.hostport)
    time.sleep(0.3)                          # let the target fill what it may
    data, eof = c.recv_until(token, 0, len(blob), want_eof=True)
    assert data == blob and eof


def test_receive_max_bounds_the_answer_and_the_ring_the_reading(tproxy, make_target):
    """max=N: an answer of at most N bytes, and never more than 512 KiB
    however much is asked; without it 64 KiB. The holder reads 1 MiB ahead
    of what is acknowledged and not a byte more; every byte once, in order."""
    blob = os.urandom(3 * RING)
    target = make_target(greeter(blob))
    c = Conn(tproxy)
    token = c.open_ok(target.hostport)
    got = b""
    for _ in range(400):                     # bounded: until 512 KiB are there
        got = c.recv_ok(token, 0, most=10 ** 12).body  # asks for more than the bound
        if len(got) == ANSWER_MAX:
            break
        time.sleep(0.05)
    assert got == blob[:ANSWER_MAX]
    assert c.recv_ok(token, 0).body == blob[:BODY_MAX]             # no max=: 64 KiB
    assert c.recv_ok(token, 0, most=1).body == blob[:1]
    assert c.recv_ok(token, 0, most=ANSWER_MAX + 1).body == blob[:ANSWER_MAX]
    assert_error_reply(None, Conn(tproxy).recv(token, 0, most=0), 400)
    # Nothing acknowledged yet: the holder has read up to RING, never past it.
    for _ in range(400):
        assert_error_reply(None, Conn(tproxy).recv(token, RING + 1), 409)
        r = Conn(tproxy).recv(token, RING, most=ANSWER_MAX)
        if r.status == 200:                  # RING is there: acknowledged up to it
            break
        assert_error_reply(None, r, 409)
        time.sleep(0.05)
    assert r.status == 200 and r.header("Tunnel-Offset") == str(RING), r
    rest, eof = c.recv_until(token, RING + len(r.body), len(blob) - RING - len(r.body),
                             want_eof=True, most=ANSWER_MAX)
    assert r.body + rest == blob[RING:] and eof


def test_a_receive_cuts_off_an_answer_still_being_written(tproxy, make_target):
    """Forty 512 KiB receives at 0, pipelined on a connection that reads
    nothing (4 KiB receive buffer): the holder writes them one after another
    as the socket takes them, serving the session meanwhile. A receive on
    another connection at 512 KiB acknowledges those bytes, so the ring may
    overwrite them: the unread connection is cut off, and every byte it got
    is still the stream's (never the bytes read in their place)."""
    blob = os.urandom(2 * RING + ANSWER_MAX)
    target = make_target(greeter(blob))
    c = Conn(tproxy)
    token = c.open_ok(target.hostport)
    for _ in range(400):                     # bounded: until 512 KiB are there
        if len(c.recv_ok(token, 0, most=ANSWER_MAX).body) == ANSWER_MAX:
            break
        time.sleep(0.05)
    stuck = socket.socket()
    stuck.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # before the window is said
    stuck.settimeout(10)
    stuck.connect((tproxy.host, tproxy.port))
    one = (f"GET {PATH}?o=0&max={ANSWER_MAX} HTTP/1.1\r\nHost: x\r\n"
           f"Tunnel-Token: {token}\r\n\r\n").encode()
    stuck.sendall(one * 40)
    assert stuck.recv(1, socket.MSG_PEEK)    # the holder serves it: its answers have begun
    time.sleep(0.5)                          # let them fill what they may
    data, eof = c.recv_until(token, ANSWER_MAX, len(blob) - ANSWER_MAX, want_eof=True,
                             most=ANSWER_MAX)
    assert data == blob[ANSWER_MAX:] and eof
    got, how = recv_all(stuck)
    stuck.close()
    answers = 0
    while got:                               # whole answers, then at most a part of one
        head, sep, rest = got.partition(b"\r\n\r\n")
        if head.startswith(b"HTTP/1.1 409 "):  # cut between two answers: the next was stale
            assert rest.count(b"\n") <= 1, rest[:200]   # its one line, and the end
            break
        assert sep and head.startswith(b"HTTP/1.1 200 "), got[:200]
        assert rest[:ANSWER_MAX] == blob[:len(rest[:ANSWER_MAX])], f"answer {answers} differs"
        got = rest[ANSWER_MAX:]
        answers += 1
    assert answers < 40, (answers, how)


def test_eof_from_target_then_client_still_sends(tproxy, make_target):
    target = make_target(greeter(b"hello, then EOF\n"))
    c = Conn(tproxy)
    token = c.open_ok(target.hostport)
    assert c.recv_until(token, 0, 16, want_eof=True) == (b"hello, then EOF\n", True)
    data = os.urandom(100 * KiB)
    c.send_ok(token, 0, data[:BODY_MAX])
    c.send_ok(token, BODY_MAX, data[BODY_MAX:], fin=True)
    assert target.wait_results(1) == [(data, "eof")]
    assert c.delete(token).status == 200


def test_fin_half_closes_while_data_flows_back(tproxy, make_target):
    """hash_handler answers only after the EOF: the fin must be a half-close."""
    target = make_target(hash_handler)
    c = Conn(tproxy)
    token = c.open_ok(target.hostport)
    data = b"count these bytes\n" * 1000
    c.send_ok(token, 0, data, fin=True)
    got, eof = c.recv_until(token, 0, 65, want_eof=True)
    assert got == hashlib.sha256(data).hexdigest().encode() + b"\n" and eof
    assert target.wait_results(1) == [data]


def test_target_reset_is_410_then_404(tproxy, echo):
    c = Conn(tproxy)
    token = c.open_ok(echo.hostport)
    c.send_ok(token, 0, b"ping")
    assert c.recv_until(token, 0, 4) == (b"ping", False)
    c.send_ok(token, 4, b"RESET-ME")
    assert echo.wait_results(1) == ["reset-sent"]
    r = None
    for _ in range(3):                       # bounded: the reset reaches tunneld
        r = Conn(tproxy).recv(token, 4, timeout=25)
        if r.status != 200:
            break
        assert r.body == b"", r
    assert_error_reply(None, r, 410)
    assert_error_reply(None, Conn(tproxy).recv(token, 4), 404)


def test_long_poll_answers_empty(make_proxy, make_target):
    """No data: the receive waits, then answers empty (within the session
    timeout), and the session lives on."""
    p = make_proxy("listen", args=["--session-timeout", "3"], tunnel=PATH)
    target = make_target(echo_handler)
    c = Conn(p)
    token = c.open_ok(target.hostport)
    t0 = time.monotonic()
    r = c.recv_ok(token, 0, timeout=20)
    waited = time.monotonic() - t0
    assert r.body == b"" and r.header("Tunnel-Eof") is None, r
    assert 0.5 < waited < 15, f"the long poll took {waited:.1f} s"
    c.send_ok(token, 0, b"still here")
    assert c.recv_until(token, 0, 10) == (b"still here", False)


# --------------------------------------------------------------------------
# sessions: tokens, expiry, keep-alive, hand-over

def test_session_expires_when_the_client_goes_silent(make_proxy, mode, echo):
    p = make_proxy(mode, args=["--session-timeout", "2"], tunnel=PATH)
    c = Conn(p)
    token = c.open_ok(echo.hostport)
    c.send_ok(token, 0, b"x")
    assert c.recv_until(token, 0, 1) == (b"x", False)
    t0 = time.monotonic()
    assert echo.wait_results(1, timeout=10) == ["eof"], "the silent session did not end"
    assert time.monotonic() - t0 > 1.0, "the session ended before its timeout"
    r = Conn(p).recv(token, 1)
    assert_error_reply(None, r, 404)
    assert_no_store(r)
    c.close()
    assert wait_until(lambda: not p.workers(), 5), f"processes left: {p.workers()}"


@pytest.mark.parametrize("token", [
    "deadbeef",
    "g" * 48,
    "0" * 48,
    "0123456789abcdef" * 4,
    "0123456789ABCDEF" * 3,
], ids=["short", "not-hex", "zeros", "too-long", "upper-case"])
def test_bogus_token_404_without_data(tproxy, make_target, token):
    target = make_target(holder(b"private bytes of the real session\n"))
    c = Conn(tproxy)
    real = c.open_ok(target.hostport)
    for method in ("GET", "POST", "DELETE"):
        r = Conn(tproxy).request(method, "?o=0" if method != "DELETE" else "",
                                 [f"Tunnel-Token: {token}"], b"x" if method == "POST" else b"")
        assert_error_reply(None, r, 404)
        assert b"private" not in r.body
    assert c.recv_until(real, 0, 34)[0] == b"private bytes of the real session\n"
    c.send_ok(real, 0, b"owner", fin=True)
    assert target.wait_results(1) == [(b"owner", "eof")], "a bogus request reached the target"


def test_wrong_secret_404_and_session_unharmed(tproxy, make_target):
    target = make_target(holder(b"private bytes of the real session\n"))
    c = Conn(tproxy)
    token = c.open_ok(target.hostport)
    bad = wrong_secret(token)
    for _ in range(3):
        r = Conn(tproxy).recv(bad, 0)
        assert_error_reply(None, r, 404)
        assert b"private" not in r.body, r
        assert_error_reply(None, Conn(tproxy).send(bad, 0, b"intruder"), 404)
    assert_error_reply(None, Conn(tproxy).delete(bad), 404)
    assert c.recv_until(token, 0, 34)[0] == b"private bytes of the real session\n"
    c.send_ok(token, 0, b"owner", fin=True)
    assert target.wait_results(1) == [(b"owner", "eof")]


def test_two_sessions_on_one_connection(tproxy, make_target):
    """Proxies pool connections: requests of two sessions interleave on one."""
    ta, tb = make_target(hash_handler), make_target(hash_handler)
    c = Conn(tproxy)
    a = c.open_ok(ta.hostport)
    b = c.open_ok(tb.hostport)
    da, db = os.urandom(5000), os.urandom(7000)
    c.send_ok(a, 0, da[:2000])
    c.send_ok(b, 0, db[:3000])
    c.send_ok(a, 2000, da[2000:], fin=True)
    c.send_ok(b, 3000, db[3000:], fin=True)
    assert c.recv_until(b, 0, 65, want_eof=True) == (sha_line(db), True)
    assert c.recv_until(a, 0, 65, want_eof=True) == (sha_line(da), True)
    # one session's end must not end the connection the other's requests use
    r = c.delete(a)
    assert r.status == 200, r
    try:
        assert c.delete(b).status == 200
    except AssertionError as e:
        raise AssertionError(f"after DELETE of session a ({r.raw!r}) the connection did not "
                             f"answer a request of session b: {e}") from None
    assert ta.wait_results(1) == [da] and tb.wait_results(1) == [db]


def test_each_request_on_its_own_connection(tproxy, make_target):
    """Every request on a new connection: in inetd mode each is handed over
    to the session's holder by another process."""
    target = make_target(hash_handler)
    token = Conn(tproxy).open_ok(target.hostport)
    data = os.urandom(200 * KiB)
    off = 0
    conns = []
    while off < len(data):
        c = Conn(tproxy)
        conns.append(c)
        n = min(BODY_MAX, len(data) - off)
        c.send_ok(token, off, data[off:off + n], fin=off + n == len(data))
        off += n
    got = bytearray()
    for _ in range(20):
        c = Conn(tproxy)
        conns.append(c)
        r = c.recv_ok(token, len(got))
        got += r.body
        if r.header("Tunnel-Eof") == "1":
            break
    assert bytes(got) == hashlib.sha256(data).hexdigest().encode() + b"\n"
    assert Conn(tproxy).delete(token).status == 200
    assert target.wait_results(1) == [data]
    for c in conns:
        c.close()
    assert wait_until(lambda: not tproxy.workers(), 5), f"processes left: {tproxy.workers()}"


@pytest.mark.needs("tls")
def test_requests_over_tls(make_proxy, mode, tls_files, make_target):
    """With --cert/--key every request is TLS; in inetd mode the request
    processes relay the decrypted requests to the holder."""
    cert, key = tls_files
    p = make_proxy(mode, tls=tls_files, tunnel=PATH)
    ctx = ssl.create_default_context(cafile=str(cert))

    def tls_conn():
        c = Conn(p)
        c.c.sock = ctx.wrap_socket(c.c.sock, server_hostname="127.0.0.1")
        return c
    target = make_target(hash_handler)
    first = tls_conn()
    token = first.open_ok(target.hostport)
    data = os.urandom(150 * KiB)
    first.send_ok(token, 0, data[:BODY_MAX])
    second = tls_conn()
    second.send_ok(token, BODY_MAX, data[BODY_MAX:2 * BODY_MAX])
    second.send_ok(token, BODY_MAX, data[BODY_MAX:2 * BODY_MAX], expect=2 * BODY_MAX)
    tls_conn().send_ok(token, 2 * BODY_MAX, data[2 * BODY_MAX:], fin=True)
    want = hashlib.sha256(data).hexdigest().encode() + b"\n"
    got = tls_conn().recv_ok(token, 0).body
    assert got and want.startswith(got)
    assert first.recv_ok(token, 0).body.startswith(got)     # asked again, on the first
    assert first.recv_until(token, 0, 65, want_eof=True) == (want, True)
    assert first.delete(token).status == 200
    assert target.wait_results(1) == [data]


def test_requests_through_squid(tproxy, squid, make_target):
    """squid between (CONNECT refused there) passes the requests, their
    Tunnel-* headers and the answers, and keeps nothing: a second session's
    first receive is not the first session's cached answer."""
    class ViaSquid(Conn):
        def __init__(self):
            super().__init__(tproxy, absolute=True)
            self.c.close()
            self.c = Client("127.0.0.1", squid.port, 30)
    for i in range(2):
        blob = b"session %d's own bytes\n" % i
        target = make_target(holder(blob))
        c = ViaSquid()
        token = c.open_ok(target.hostport)
        assert c.recv_until(token, 0, len(blob)) == (blob, False)
        c.send_ok(token, 0, b"up %d" % i, fin=True)
        assert c.delete(token).status == 200
        assert target.wait_results(1) == [(b"up %d" % i, "eof")]
    assert "CONNECT" not in squid.log()


def test_connect_still_served(tproxy, echo):
    c = open_tunnel(tproxy, echo.hostport)
    c.send(b"plain CONNECT")
    assert c.read_exact(13) == b"plain CONNECT"


def test_no_store_on_every_answer(tproxy, echo):
    """A cache between must never keep an answer: `GET /t?o=0` is the same
    URL for every session (the token is a header), so one cached answer
    would be replayed to another session. Errors too: a 404 is cacheable
    by default (RFC 9111 §4.2.2). (Other paths are not the tunnel's.)"""
    c = Conn(tproxy)
    token = c.open_ok(echo.hostport)
    answers = {
        "send": c.send(token, 0, b"abc"),
        "receive": c.recv(token, 0),
        "409": Conn(tproxy).send(token, 10, b"x"),
        "404-token": Conn(tproxy).recv(wrong_secret(token), 0),
        "delete": c.delete(token),
        "404-ended": Conn(tproxy).recv(token, 3),
    }
    missing = {k: r.status_line for k, r in answers.items()
               if r.header("Cache-Control") != "no-store"}
    assert not missing, f"without Cache-Control: no-store: {missing}"


# --------------------------------------------------------------------------
# status codes

def test_body_over_65536_is_413(tproxy, make_target):
    target = make_target(recorder)
    c = Conn(tproxy)
    token = c.open_ok(target.hostport)
    c.send_ok(token, 0, os.urandom(BODY_MAX))
    # the head alone: the length is refused before any body is read
    r = Conn(tproxy).request("POST", f"?o={BODY_MAX}", [f"Tunnel-Token: {token}"],
                             clen=BODY_MAX + 1, timeout=5)
    assert_error_reply(None, r, 413)
    r = Conn(tproxy).request("POST", headers=[], clen=BODY_MAX + 1, timeout=5)
    assert_error_reply(None, r, 413)


def test_chunked_post_is_400(tproxy, echo):
    c = Conn(tproxy)
    r = c.c.request(f"POST {PATH} HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
                    f"{len(echo.hostport):x}\r\n{echo.hostport}\r\n0\r\n\r\n".encode())
    assert_error_reply(None, r, 400)
    assert echo.accepted == 0


@pytest.mark.parametrize("target", ["no-port", "127.0.0.1:0", "127.0.0.1:99999", "",
                                    "a b:80", "[::1:80"])
def test_malformed_target_is_400(tproxy, target):
    assert_error_reply(None, Conn(tproxy).open(target), 400)


def test_target_refused_is_502(tproxy):
    assert_error_reply(None, Conn(tproxy).open(f"127.0.0.1:{free_port()}"), 502)


def test_put_is_405(tproxy):
    r = Conn(tproxy).request("PUT", clen=0)
    assert_error_reply(None, r, 405)
    assert r.header("Allow") == "CONNECT, GET, POST, DELETE", r


@pytest.mark.parametrize("path", ["/", "/other", "/t/", "/tt", "/t/x"])
def test_other_path_is_404(tproxy, echo, path):
    token = Conn(tproxy).open_ok(echo.hostport)
    assert_error_reply(None, Conn(tproxy).request("POST", path=path,
                                                  body=echo.hostport.encode()), 404)
    assert_error_reply(None, Conn(tproxy).request("GET", "?o=0", [f"Tunnel-Token: {token}"],
                                                  path=path), 404)
    # the target counts accepts in a thread of its own: let it catch up
    assert wait_until(lambda: echo.accepted >= 1, 3)
    time.sleep(0.1)
    assert echo.accepted == 1, "an open on another path reached the target"


def test_rules_refuse_target_403(make_proxy, mode, make_target):
    target = make_target(echo_handler, host="127.0.0.2")
    p = make_proxy(mode, acl="deny to 127.0.0.2\n" + LOOPBACK_ACL, tunnel=PATH)
    assert_error_reply(None, Conn(p).open(target.hostport), 403)
    time.sleep(0.2)
    assert target.accepted == 0


def test_builtin_rules_refuse_loopback_403(make_proxy, echo):
    p = make_proxy("listen", acl=None, tunnel=PATH)
    assert_error_reply(None, Conn(p).open(echo.hostport), 403)
    assert echo.accepted == 0


# --------------------------------------------------------------------------
# authentication and the log

PASSWORD = "pw-Xq7-never-logged"


@pytest.fixture
def auth_tproxy(make_proxy, make_users, mode):
    return make_proxy(mode, users=f"alice:{openssl_hash(PASSWORD, '-5')}\n", tunnel=PATH)


def authorization(user, password):
    return f"Authorization: Basic {basic_token(user, password)}"


@pytest.mark.needs("auth")
@pytest.mark.parametrize("creds", [None, ("alice", "wrong"), ("mallory", PASSWORD)],
                         ids=["none", "wrong-password", "unknown-user"])
def test_open_without_valid_credentials_401(auth_tproxy, echo, creds):
    headers = [authorization(*creds)] if creds else []
    r = Conn(auth_tproxy).open(echo.hostport, headers)
    assert_error_reply(None, r, 401)
    assert (r.header("WWW-Authenticate") or "").startswith('Basic realm="tunneld"'), r
    assert echo.accepted == 0


@pytest.mark.needs("auth")
def test_log_never_has_token_or_password(auth_tproxy, echo):
    c = Conn(auth_tproxy)
    token = c.open_ok(echo.hostport, [authorization("alice", PASSWORD)])
    c.send_ok(token, 0, b"12345")                     # later requests: no password
    assert c.recv_until(token, 0, 5) == (b"12345", False)
    assert_error_reply(None, Conn(auth_tproxy).recv(wrong_secret(token), 0), 404)
    assert_error_reply(None, Conn(auth_tproxy).open(echo.hostport,
                                                    [authorization("alice", "wrong")]), 401)
    assert c.delete(token).status == 200
    fields = auth_tproxy.wait_log(lambda f: f.get("target") == echo.hostport
                                  and f.get("status") == "200", what="session")
    assert fields["user"] == "alice", fields
    assert (fields.get("up"), fields.get("down")) == ("5", "5"), fields
    c.close()
    time.sleep(0.3)
    text = auth_tproxy.log_text()
    b64 = authorization("alice", PASSWORD).split()[-1]
    for secret in (token, token[16:], wrong_secret(token)[16:], PASSWORD, b64):
        assert secret not in text, f"{secret!r} in the log:\n{text}"
