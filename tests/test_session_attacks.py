"""The GET/POST tunnel's sessions under attack: what a pooling proxy, a
greedy client and a hostile local user do (issue 10).

- an open on a session holder's second kept-alive connection makes exactly
  one process and one target connection (no fork without end);
- sessions opened on another session's kept-alive connection see only their
  own bytes, both ways, and outlive the other's DELETE;
- another uid squatting the abstract name "tunneld/<id>" of a session (one
  just ended, or one never made) receives no byte and no descriptor, and the
  client gets 404;
- --max-conns, --max-sessions and --max-client-sessions hold exactly, and an
  ended or killed session frees its place;
- the loop check holds on a holder's kept-alive connection (inetd mode too);
- Connection: close and HTTP/1.0 close after the answer, the open included;
- a request for a session that is ending is always answered.

Every check is on what a real client sees: status lines, headers, bytes, the
end of the connection, and the processes and target connections made.
"""

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time

import pytest

from conftest import (TESTS, Client, assert_error_reply, connect_head, echo_handler, kill_pid,
                      recv_all, wait_until)
from test_http_tunnel import PATH, TOKEN_RE, Conn, holder

pytestmark = pytest.mark.needs("http-tunnel")

SQUATTER = TESTS / "squat_unix.py"
NOBODY = 65534
SQUAT_SECONDS = 3.0
CHUNK = 65536


# --------------------------------------------------------------------------
# processes, names, targets

def settled_count(proxy, quiet=0.5, timeout=4.0):
    """The number of proxy.procs() once it has not changed for `quiet` s."""
    deadline = time.monotonic() + timeout
    last, since = len(proxy.procs()), time.monotonic()
    while time.monotonic() < deadline:
        time.sleep(0.05)
        n = len(proxy.procs())
        if n != last:
            last, since = n, time.monotonic()
        elif time.monotonic() - since >= quiet:
            break
    return last


def watch_count(proxy, seconds, step=0.02):
    """Sample the process count for `seconds`: (max seen, last)."""
    deadline = time.monotonic() + seconds
    most = last = len(proxy.procs())
    for _ in range(100000):
        if time.monotonic() >= deadline:
            break
        time.sleep(step)
        last = len(proxy.procs())
        most = max(most, last)
    return most, last


def listening_names():
    """Abstract names of listening unix sockets: name -> set of inodes."""
    out = {}
    with open("/proc/net/unix") as f:
        next(f)
        for line in f:
            fields = line.split()
            if len(fields) >= 8 and int(fields[3], 16) & 0x10000:   # __SO_ACCEPTCON
                out.setdefault(fields[7], set()).add(fields[6])
    return out


def session_name(live, token):
    """The abstract name token's session has, or would have, in the tunneld
    that holds the session of `live` (a token open now): tunneld/UID/SCOPE/ID
    with SCOPE as /proc/net/unix shows it for live (PROTOCOL.md)."""
    return live_name(live).rsplit("/", 1)[0] + "/" + token[:16]


def holder_pids(proxy, token):
    """The pids holding the listening socket of token's session."""
    inodes = listening_names().get("@" + live_name(token), set())
    links = {f"socket:[{i}]" for i in inodes}
    pids = set()
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            fds = os.listdir(f"/proc/{entry}/fd")
        except OSError:
            continue
        for fd in fds:
            try:
                if os.readlink(f"/proc/{entry}/fd/{fd}") in links:
                    pids.add(int(entry))
                    break
            except OSError:
                pass
    return pids


def fused(handler, limit):
    """handler, but once more than `limit` connections came the target
    stops listening: a process that forks without end runs out of targets
    (502) instead of filling the machine."""
    def run(conn, server):
        if server.accepted > limit:
            server.sock.close()
            return
        handler(conn, server)
    return run


def stalled(release, timeout=30.0):
    """A target that reads nothing until `release` is set, then records
    (bytes, how it ended)."""
    def handler(conn, server):
        release.wait(timeout)
        data, how = recv_all(conn)
        server.results.append((data, how))
    return handler


class ConnFrom(Conn):
    """A Conn whose client socket is bound to source address src."""

    def __init__(self, proxy, src, timeout=10.0):
        self.proxy, self.path, self.prefix = proxy, PATH, ""
        c = Client.__new__(Client)
        c.sock = socket.create_connection((proxy.host, proxy.port), timeout,
                                          source_address=(src, 0))
        c.port, c.timeout, c.buf = c.sock.getsockname()[1], timeout, bytearray()
        self.c = c


def raw(method, version="1.1", headers=(), body=b"", query=""):
    lines = [f"{method} {PATH}{query} HTTP/{version}", "Host: 127.0.0.1", *headers]
    if method == "POST":
        lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


def token_of(resp):
    assert resp.status == 200 and TOKEN_RE.fullmatch(resp.body), resp
    return resp.body.decode().strip()


def open_when_free(proxy, target, tries):
    """An open, tried every 50 ms while it is refused (a place is freeing):
    the last answer."""
    r = None
    for _ in range(tries):
        r = Conn(proxy, timeout=10).open(target.hostport)
        if r.status == 200:
            break
        time.sleep(0.05)
    return r


# The over-limit answer: 503 with Retry-After: 2 (assert_error_reply).
BUSY = {"Retry-After": "2"}


# --------------------------------------------------------------------------
# 1. an open on a holder's second connection: one process, one target connection

def test_open_on_holders_second_connection_makes_one_session(make_proxy, mode, make_target):
    p = make_proxy(mode, tunnel=PATH)
    target = make_target(fused(echo_handler, 6))
    first = Conn(p, timeout=10)
    a = first.open_ok(target.hostport)
    first.send_ok(a, 0, b"ping")
    second = Conn(p, timeout=10)
    assert second.recv_until(a, 0, 4) == (b"ping", False)   # second: now the holder's
    before = settled_count(p)
    assert target.accepted == 1

    b = second.open_ok(target.hostport)
    most, _ = watch_count(p, 1.5)
    after = settled_count(p, quiet=0.3)
    assert target.accepted == 2, \
        f"one open made {target.accepted - 1} target connections (processes: " \
        f"{before} before, up to {most} after)"
    assert after == before + 1, f"one open: {before} processes before, {after} after " \
                                f"(up to {most})"

    # the second session works both ways, on its connection and a new one
    second.send_ok(b, 0, b"second ")
    Conn(p).send_ok(b, 7, b"session")
    assert second.recv_until(b, 0, 14) == (b"second session", False)
    # and the first still does
    first.send_ok(a, 4, b" again")
    assert first.recv_until(a, 4, 6) == (b" again", False)
    assert Conn(p).recv_until(a, 4, 6) == (b" again", False)
    assert first.delete(a).status == 200
    assert second.delete(b).status == 200
    assert target.wait_results(2) == ["eof", "eof"]


def test_holders_handing_to_each_other_at_once(make_proxy, mode, echo):
    """Holder A meets a request for B on its connection while holder B meets
    one for A on its own: each hands its request to the other at the same
    moment, and neither may wait for the other (which would stall both
    sessions until the hand-over's deadline)."""
    p = make_proxy(mode, tunnel=PATH)
    x, y = Conn(p, timeout=10), Conn(p, timeout=10)
    a, b = x.open_ok(echo.hostport), y.open_ok(echo.hostport)
    for rnd in range(3):
        off = 2 * rnd
        reqs = [(x, b, b"B" * 2), (y, a, b"A" * 2)]
        for conn, token, data in reqs:
            conn.c.send(raw("POST", headers=[f"Tunnel-Token: {token}"], body=data,
                            query=f"?o={off}"))
        t0 = time.monotonic()
        for conn, token, data in reqs:
            r = conn.c.response(15)
            assert r.status == 200 and r.header("Tunnel-Offset") == str(off + 2), r
        took = time.monotonic() - t0
        assert took < 10, f"round {rnd}: crossed hand-overs answered after {took:.1f} s"
        # x now belongs to B's holder and y to A's: swap them back
        x, y = y, x
    assert Conn(p).recv_until(a, 0, 6) == (b"AAAAAA", False)
    assert Conn(p).recv_until(b, 0, 6) == (b"BBBBBB", False)


def test_a_stopped_holder_stalls_no_other_session(make_proxy, mode, echo):
    """Holder B hands a request for C on to C's holder, which is stopped
    (SIGSTOP: as good as a slow one). B waits for C's word in its loop, so
    B's own session is served meanwhile; once C runs again it takes and
    answers the request."""
    p = make_proxy(mode, tunnel=PATH)
    y = Conn(p, timeout=10)
    b = y.open_ok(echo.hostport)
    c = Conn(p).open_ok(echo.hostport)
    (pid_c,) = holder_pids(p, c)
    os.kill(pid_c, signal.SIGSTOP)
    try:
        y.c.send(raw("POST", headers=[f"Tunnel-Token: {c}"], body=b"to C", query="?o=0"))
        time.sleep(0.3)                      # B has handed it on and waits for C
        t0 = time.monotonic()
        Conn(p).send_ok(b, 0, b"B still")
        assert Conn(p).recv_until(b, 0, 7) == (b"B still", False)
        took = time.monotonic() - t0
        assert took < 10, f"session B waited {took:.1f} s for a stopped holder of C"
    finally:
        os.kill(pid_c, signal.SIGCONT)
    r = y.c.response(10)
    assert r.status == 200 and r.header("Tunnel-Offset") == "4", r
    assert Conn(p).recv_until(c, 0, 4) == (b"to C", False)


# --------------------------------------------------------------------------
# 2. a session opened on another's kept-alive connection: its own bytes only

def block_a_send(conn, token, stream, limit=200, seconds=20.0):
    """Send `stream` in 64 KiB pieces until one is not answered within 1 s
    (the target takes no more): return how many bytes went, the last piece
    pending. Bounded in count and time."""
    deadline = time.monotonic() + seconds
    off = 0
    for _ in range(limit):
        assert time.monotonic() < deadline, f"{off} bytes went and no send waited"
        piece = stream[off:off + CHUNK]
        assert len(piece) == CHUNK, f"{off} bytes went and no send waited"
        try:
            r = conn.request("POST", f"?o={off}", [f"Tunnel-Token: {token}"], piece,
                             timeout=1.0)
        except (socket.timeout, TimeoutError):
            return off
        assert r.status == 200, r
        off = int(r.header("Tunnel-Offset"))
    raise AssertionError(f"{off} bytes went and no send waited")


@pytest.mark.parametrize("state", ["unread", "upload"])
def test_session_on_anothers_connection_sees_only_its_own_bytes(make_proxy, mode,
                                                                 make_target, state):
    p = make_proxy(mode, tunnel=PATH)
    release = threading.Event()
    a_bytes = b"A's private bytes from its target\n"
    if state == "unread":
        ta = make_target(fused(holder(a_bytes), 3))
    else:
        ta = make_target(fused(stalled(release), 3))
        ta.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    tb = make_target(fused(holder(b"B-own\n"), 3))
    x = Conn(p, timeout=10)
    a = x.open_ok(ta.hostport)
    upload = os.urandom(48 * CHUNK)
    if state == "unread":
        time.sleep(0.3)                # the holder has read A's bytes by now
    else:
        y = Conn(p, timeout=10)        # A's send waits on y: its target takes no more
        went = block_a_send(y, a, upload)
    try:
        b = x.open_ok(tb.hostport)
        assert wait_until(lambda: tb.accepted == 1, 3)
        got, _ = x.recv_until(b, 0, 6)
        assert got == b"B-own\n", f"B's first receive: {got[:200]!r}"
        x.send_ok(b, 0, b"to-B")
        if state == "unread":           # A's bytes are still A's, unread
            assert x.recv_until(a, 0, len(a_bytes)) == (a_bytes, False)
        r = x.delete(a)
        assert r.status == 200, f"A's DELETE on the shared connection: {r}"
        # B lives on after A's end: on the shared connection and on a new one
        x.send_ok(b, 4, b"!")
        Conn(p).send_ok(b, 5, fin=True)
        assert tb.wait_results(1) == [(b"to-B!", "eof")], "B's target got other bytes"
        assert x.delete(b).status == 200
    finally:
        release.set()
    results = ta.wait_results(1)
    data, how = results[0]
    if state == "unread":
        assert data == b"", f"A's target got {data[:100]!r}"
    else:
        assert went <= len(data) <= went + CHUNK and data == upload[:len(data)], \
            f"A's target got {len(data)} bytes, not a prefix of A's upload " \
            f"({went} taken before)"


# --------------------------------------------------------------------------
# 3. another uid squats a session's name

def start_squatter(name, out_path):
    out = open(out_path, "wb")
    proc = subprocess.Popen(
        ["setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups",
         sys.executable, str(SQUATTER), name, str(SQUAT_SECONDS)],
        stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT)
    out.close()

    def events():
        try:
            text = out_path.read_text()
        except OSError:
            return []
        return [json.loads(line) for line in text.splitlines() if line.startswith("{")]
    first = wait_until(lambda: events() or proc.poll() is not None, 10)
    evs = events()
    if not evs or evs[0].get("event") != "bound":
        proc.kill()
        proc.wait(5)
        pytest.fail(f"the squatter did not bind {name!r}: {first!r} "
                    f"{out_path.read_text()!r}")
    assert "@" + name in listening_names(), "the squatter's name not in /proc/net/unix"
    assert evs[0]["uid"] == NOBODY, evs[0]
    return proc, events


def squatter_report(proc, events):
    try:
        proc.wait(SQUAT_SECONDS + 5)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(5)
    evs = events()
    got = [e for e in evs if e.get("event") == "msg" and (e["len"] or e["fds"])]
    return got, evs


def answer_or_error(fn):
    """(fn(), None), or (None, how it failed)."""
    try:
        return fn(), None
    except (AssertionError, OSError) as e:
        return None, f"{type(e).__name__}: {e}"


@pytest.mark.parametrize("which", ["ended", "never-made"])
def test_other_uid_squatting_a_session_name_gets_nothing(make_proxy, mode, make_target,
                                                         tmp_path, which):
    p = make_proxy(mode, tunnel=PATH)
    target = make_target(holder(b"private bytes of the session\n"))
    other_target = make_target(holder(b"another session\n"))
    other = Conn(p, timeout=10)
    live = other.open_ok(other_target.hostport)        # a session that goes on
    if which == "ended":
        c = Conn(p, timeout=10)
        token = c.open_ok(target.hostport)
        name = session_name(live, token)
        assert "@" + name in listening_names(), \
            f"@{name} not in /proc/net/unix while the session lives"
        assert c.recv_until(token, 0, 29)[0] == b"private bytes of the session\n"
        assert c.delete(token).status == 200
        assert wait_until(lambda: "@" + name not in listening_names(), 3), \
            "the ended session's name is still bound"
    else:
        token = os.urandom(24).hex()
        name = session_name(live, token)   # the scope is read off a live session
    proc, events = start_squatter(name, tmp_path / "squatter.jsonl")
    try:
        problems = []
        # a request with the token on a new connection
        r, err = answer_or_error(lambda: Conn(p, timeout=6).recv(token, 0))
        if err or r.status != 404:
            problems.append(f"new connection: {err or r}")
        else:
            assert_error_reply(None, r, 404)
        # and on the other session's kept-alive connection, which its holder serves
        assert other.recv_until(live, 0, 16)[0] == b"another session\n"
        r, err = answer_or_error(lambda: other.send(token, 0, b"secret upload"))
        if err or r.status != 404:
            problems.append(f"the other session's connection: {err or r}")
        got, evs = squatter_report(proc, events)
        if got:
            problems.append(f"the squatter received {sum(e['len'] for e in got)} bytes and "
                            f"{sum(e['fds'] for e in got)} descriptors: "
                            f"{[e['head'][:120] for e in got]}")
        assert not problems, "; ".join(problems)
        assert evs[-1].get("event") == "end", evs
        # the live session is unharmed
        Conn(p).send_ok(live, 0, b"still mine", fin=True)
        assert other_target.wait_results(1) == [(b"still mine", "eof")]
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(5)


# --------------------------------------------------------------------------
# 4. the limits

@pytest.mark.parametrize("how", ["listen", "systemd"])
def test_max_conns_counts_every_process(make_proxy, make_target, how):
    """--max-conns 4, with --listen and with the socket systemd passes
    (LISTEN_FDS): 40 opens, each on a connection of its own (half of them
    after a GET that made the connection a holder's, so that the open is met
    by the holder), never make more than 4 processes besides the listener;
    the excess waits (or gets 503); after the DELETEs everything is free."""
    p = make_proxy(how, args=["--max-conns", "4"], tunnel=PATH)
    target = make_target(fused(echo_handler, 80))
    first = Conn(p, timeout=10)
    a = first.open_ok(target.hostport)
    first.send_ok(a, 0, b"a")
    assert first.recv_until(a, 0, 1) == (b"a", False)
    results, lock = [], threading.Lock()
    via_holder = threading.Semaphore(2)     # the holder is not flooded with connections

    def one(i):
        try:
            if i % 2:
                with via_holder:
                    # connected once it may send: a connection that stays
                    # silent for --header-timeout is rightly answered 408
                    c = Conn(p, timeout=25)
                    r = c.recv(a, 0)        # handed to the holder of a, or a 503
                    if r.status == 200:
                        assert r.body == b"a", r
                        r = c.open(target.hostport)
            else:
                c = Conn(p, timeout=25)
                r = c.open(target.hostport)
            if r.status == 503:
                assert_error_reply(None, r, 503)
                out = "503"
            else:
                token = token_of(r)
                c.send_ok(token, 0, b"%d" % i)
                assert c.recv_until(token, 0, len(b"%d" % i))[0] == b"%d" % i
                time.sleep(0.1)
                assert c.delete(token).status == 200
                out = "ok"
            c.close()
        except Exception as e:      # noqa: BLE001 - recorded, judged below
            out = f"{type(e).__name__}: {e}"
        with lock:
            results.append(out)
    threads = [threading.Thread(target=one, args=(i,), daemon=True) for i in range(40)]
    for t in threads:
        t.start()
    most = 0
    deadline = time.monotonic() + 40
    for _ in range(100000):
        most = max(most, len(p.procs()))
        if not any(t.is_alive() for t in threads) or time.monotonic() > deadline:
            break
        time.sleep(0.01)
    for t in threads:
        t.join(max(0.1, deadline - time.monotonic()))
    assert not any(t.is_alive() for t in threads), f"opens unanswered after 40 s: {results}"
    assert most <= 4, f"{most} processes besides the listener with --max-conns 4 " \
                      f"(target connections: {target.accepted})"
    bad = [r for r in results if r not in ("ok", "503")]
    assert not bad, f"{len(bad)} of 40 opens failed: {bad[:5]}"
    assert results.count("ok") >= 4, results
    assert first.delete(a).status == 200
    first.close()
    assert wait_until(lambda: not p.procs(), 3), \
        f"processes left after the DELETEs: {p.procs()}"
    assert wait_until(lambda: len(target.results) == results.count("ok") + 1, 3)
    assert target.accepted == results.count("ok") + 1


def test_max_conns_in_inetd_mode_bounds_the_processes_tunneld_starts(make_proxy,
                                                                      make_target):
    """inetd mode, --max-conns 1: the holder may start one fresh process (an
    open met on its kept-alive connection); while it lives, a second such
    open is 503; after its DELETE one may start again."""
    p = make_proxy("inetd", args=["--max-conns", "1"], tunnel=PATH)
    target = make_target(fused(echo_handler, 8))
    first = Conn(p, timeout=10)
    a = first.open_ok(target.hostport)
    first.send_ok(a, 0, b"a")

    def holders_conn():
        c = Conn(p, timeout=10)
        assert c.recv_ok(a, 0).body == b"a"
        return c
    x, z = holders_conn(), holders_conn()
    b = x.open_ok(target.hostport)
    r = z.open(target.hostport)
    assert r.status == 503, f"a second fresh process beyond --max-conns 1: {r}"
    assert_error_reply(None, r, 503)
    time.sleep(0.2)
    assert target.accepted == 2, f"{target.accepted} target connections"
    assert x.delete(b).status == 200
    x.close()
    r = None
    for _ in range(20):
        r = holders_conn().open(target.hostport)
        if r.status == 200:
            break
        time.sleep(0.1)
    assert r.status == 200, f"after the DELETE: {r}"
    assert first.delete(a).status == 200


@pytest.mark.parametrize("how", ["delete", "sigkill"])
def test_max_sessions(make_proxy, mode, echo, how):
    p = make_proxy(mode, args=["--max-sessions", "3"], tunnel=PATH)
    conns = [Conn(p, timeout=10) for _ in range(3)]
    tokens = [c.open_ok(echo.hostport) for c in conns]
    assert wait_until(lambda: echo.accepted == 3, 3)
    c4 = Conn(p, timeout=10)
    assert_error_reply(c4.c, c4.open(echo.hostport), 503, BUSY)
    time.sleep(0.2)
    assert echo.accepted == 3, "the target was connected for the open over the limit"
    if how == "delete":
        assert conns[0].delete(tokens[0]).status == 200
        window = 0.5        # "at once": ~100 ms, with room for a busy machine
    else:
        pids = holder_pids(p, tokens[0])
        assert pids, f"no process holds the session of {tokens[0][:16]}"
        for pid in pids:
            kill_pid(pid, signal.SIGKILL)
        window = 1.5
    t0 = time.monotonic()
    r = None
    for _ in range(100):
        r = Conn(p, timeout=10).open(echo.hostport)
        if r.status == 200 or time.monotonic() - t0 > window:
            break
        assert r.status == 503, r
        time.sleep(0.05)
    assert r.status == 200, f"{time.monotonic() - t0:.2f} s after the {how}: {r}"
    assert wait_until(lambda: echo.accepted == 4, 3)
    time.sleep(0.1)
    assert echo.accepted == 4, "an open over the limit connected the target"
    # and the limit is still 3
    c5 = Conn(p, timeout=10)
    assert_error_reply(c5.c, c5.open(echo.hostport), 503, BUSY)
    for c, t in zip(conns[1:], tokens[1:]):
        assert c.delete(t).status == 200


def test_max_client_sessions(make_proxy, mode, echo):
    p = make_proxy(mode, args=["--max-client-sessions", "2"], tunnel=PATH)
    conns = [Conn(p, timeout=10) for _ in range(2)]
    tokens = [c.open_ok(echo.hostport) for c in conns]
    c3 = Conn(p, timeout=10)
    assert_error_reply(c3.c, c3.open(echo.hostport), 503, BUSY)
    time.sleep(0.2)
    assert echo.accepted == 2, "the target was connected for the open over the limit"
    other = ConnFrom(p, "127.0.0.2")
    t_other = other.open_ok(echo.hostport)       # another client address: its own places
    other.send_ok(t_other, 0, b"from .2")
    assert other.recv_until(t_other, 0, 7) == (b"from .2", False)
    assert conns[0].delete(tokens[0]).status == 200
    r = open_when_free(p, echo, 10)
    assert r.status == 200, f"after a DELETE: {r}"
    assert wait_until(lambda: echo.accepted == 4, 3), echo.accepted   # counted by its thread


# --------------------------------------------------------------------------
# 5. the loop check on a holder's kept-alive connection

@pytest.mark.parametrize("kind", ["connect", "open"])
def test_loop_check_on_holders_connection(make_proxy, mode, echo, kind):
    p = make_proxy(mode, tunnel=PATH)
    c = Conn(p, timeout=10)
    a = c.open_ok(echo.hostport)
    c.send_ok(a, 0, b"hi")
    assert c.recv_until(a, 0, 2) == (b"hi", False)
    before = settled_count(p)
    own = f"127.0.0.1:{p.port}"
    if kind == "connect":
        c.c.send(connect_head(own))
        r = c.c.response(timeout=10)
        assert r.status == 403, f"CONNECT {own} on the holder's connection: {r}"
        assert_error_reply(c.c, r, 403)
    else:
        r = c.open(own)
        assert r.status == 403, f"an open of {own} on the holder's connection: {r}"
        assert_error_reply(None, r, 403)
        c.close()                   # an error answer lingers for the client's FIN
    after = settled_count(p)
    assert after <= before, f"{before} processes before, {after} after: nested tunnelds"
    Conn(p).send_ok(a, 2, b" again")
    assert Conn(p).recv_until(a, 0, 8) == (b"hi again", False)


# --------------------------------------------------------------------------
# 6. HTTP/1.1 connection semantics

@pytest.mark.parametrize("case", ["open-close", "open-1.0", "open-1.0-keep-alive",
                                  "send-close"])
def test_connection_close_and_http10(make_proxy, mode, echo, case):
    p = make_proxy(mode, tunnel=PATH)
    c = Client(p.host, p.port, 10)
    body = echo.hostport.encode()
    if case == "send-close":
        token = Conn(p).open_ok(echo.hostport)
        r = c.request(raw("POST", headers=[f"Tunnel-Token: {token}", "Connection: close"],
                          body=b"data", query="?o=0"))
        assert r.status == 200 and r.header("Tunnel-Offset") == "4", r
    else:
        version = "1.0" if "1.0" in case else "1.1"
        headers = {"open-close": ["Connection: close"], "open-1.0": [],
                   "open-1.0-keep-alive": ["Connection: keep-alive"]}[case]
        r = c.request(raw("POST", version, headers, body))
        token = token_of(r)
    if case == "open-1.0-keep-alive":
        # an HTTP/1.0 client keeps the connection when told so (RFC 9112 §9.3)
        assert (r.header("Connection") or "").lower() == "keep-alive", r
        r = c.request(raw("POST", "1.0", [f"Tunnel-Token: {token}", "Connection: keep-alive"],
                          b"data", "?o=0"), timeout=10)
        assert r.status == 200 and r.header("Tunnel-Offset") == "4", \
            f"the next request on the HTTP/1.0 keep-alive connection: {r}"
        r = c.request(raw("GET", "1.0", [f"Tunnel-Token: {token}", "Connection: keep-alive"],
                          query="?o=0"), timeout=10)
        assert r.status == 200 and r.body == b"data", r
    else:
        assert (r.header("Connection") or "").lower() == "close", \
            f"{case}: no Connection: close on the answer: {r}"
        assert c.end_state(3) == "eof", f"{case}: the connection stayed open after the answer"
        assert c.buf == b"", f"bytes after the answer: {bytes(c.buf)!r}"
        if case != "send-close":
            r = Conn(p).send(token, 0, b"data")
            assert r.status == 200 and r.header("Tunnel-Offset") == "4", \
                f"{case}: the session did not outlive the connection of its open: {r}"
        assert Conn(p).recv_until(token, 0, 4) == (b"data", False)
    assert Conn(p).delete(token).status == 200


# --------------------------------------------------------------------------
# 7. a request for a session that is ending is answered

def answered(client, timeout=10):
    """The response on client, or the string saying how none came."""
    try:
        return client.response(timeout)
    except (AssertionError, OSError) as e:
        return f"{type(e).__name__}: {e}"


def test_request_for_an_ending_session_is_answered(make_proxy, mode, echo):
    """20 rounds: a session with bytes waiting, its DELETE, and GETs for it on
    new connections sent at the same moment (0-3 ms apart) and right after
    the DELETE's answer. Each GET gets an answer: 200 with the bytes (served
    before the end) or 404; after the DELETE's answer, 404."""
    p = make_proxy(mode, tunnel=PATH)
    problems = []
    for i in range(20):
        c = Conn(p, timeout=10)
        token = c.open_ok(echo.hostport)
        data = b"x%02d" % i
        c.send_ok(token, 0, data)
        assert c.recv_until(token, 0, 3) == (data, False)
        racers = [Client(p.host, p.port, 10) for _ in range(3)]
        late = Client(p.host, p.port, 10)
        time.sleep(0.03)                    # their processes are up and reading
        get = raw("GET", headers=[f"Tunnel-Token: {token}"], query="?o=0")
        c.c.send(raw("DELETE", headers=[f"Tunnel-Token: {token}"]))
        for k, r in enumerate(racers):
            if k:
                time.sleep(0.001 * (i % 4))
            r.send(get)
        d = c.c.response(10)
        assert d.status == 200, d
        late.send(get)
        for k, r in enumerate(racers):
            resp = answered(r)
            if isinstance(resp, str):
                problems.append(f"round {i}, GET {k} with the DELETE: no answer: {resp}")
            elif not (resp.status == 404 or (resp.status == 200 and resp.body == data)):
                problems.append(f"round {i}, GET {k} with the DELETE: {resp.raw + resp.body!r}")
        resp = answered(late)
        if isinstance(resp, str) or resp.status != 404:
            problems.append(f"round {i}, GET after the DELETE's answer: "
                            f"{resp if isinstance(resp, str) else resp.raw + resp.body!r}")
        for r in racers + [late]:
            r.close()
        c.close()
    assert not problems, f"{len(problems)} GETs not answered 200/404: {problems[:4]}"


def test_target_reset_410_then_404_repeatedly(make_proxy, mode, echo):
    """12 rounds: a receive waits; the target resets while GETs for the
    session come on new connections (0-3 ms apart); each is answered 410,
    404 or (superseded) 200 empty, one of them at least 410; GETs sent after
    that get 404: never a silent close."""
    p = make_proxy(mode, tunnel=PATH)
    problems = []
    for i in range(12):
        c = Conn(p, timeout=25)
        token = c.open_ok(echo.hostport)
        c.send_ok(token, 0, b"ping")
        assert c.recv_until(token, 0, 4) == (b"ping", False)
        sender = Conn(p, timeout=10)
        racers = [Client(p.host, p.port, 25) for _ in range(8)]
        after = [Client(p.host, p.port, 10) for _ in range(2)]
        time.sleep(0.05)
        get = raw("GET", headers=[f"Tunnel-Token: {token}"], query="?o=4")
        c.c.send(get)                           # a receive waits for the target
        time.sleep(0.02)
        sender.c.send(raw("POST", headers=[f"Tunnel-Token: {token}"], body=b"RESET-ME",
                          query="?o=4"))
        for r in racers:
            r.send(get)
            time.sleep(0.0002 * (1 + i % 5))
        statuses = []
        for k, n in enumerate([c.c, *racers]):
            resp = answered(n, 25)
            if isinstance(resp, str) or not (resp.status in (404, 410) or
                                             (resp.status == 200 and resp.body == b"")):
                problems.append(f"round {i}, GET {k} during the reset: "
                                f"{resp if isinstance(resp, str) else resp.raw + resp.body!r}")
            else:
                statuses.append(resp.status)
        if 410 not in statuses:
            r = c.recv(token, 4, timeout=25) if 200 in statuses[:1] else None
            statuses.append(r and r.status)
        assert 410 in statuses, f"round {i}: nobody was told of the reset: {statuses}"
        for k, n in enumerate(after):           # after the 410, twice
            n.send(get)
            resp = answered(n)
            if isinstance(resp, str) or resp.status != 404:
                problems.append(f"round {i}, GET {k} after the 410: "
                                f"{resp if isinstance(resp, str) else resp.raw + resp.body!r}")
        for n in racers + after:
            n.close()
        c.close()
        sender.close()
    assert not problems, f"{len(problems)} GETs not answered as they should: {problems[:4]}"


# --------------------------------------------------------------------------
# 8. found by a red-team review: another uid flooding a session's name,
#    an unsolicited 503, header timeouts in a holder, limits and names per
#    tunneld, a session whose clients never read

FLOODER = TESTS / "squat_flood.py"
FLOOD_SECONDS = 30.0   # at most: the test ends the flood (SIGTERM) once its requests are done
FLOODERS = 3


def live_name(token, timeout=3.0):
    """The abstract name (without "@") a holder listens on for token's
    session, found in /proc/net/unix by its id, whatever the rest of the
    name ("tunneld/UID/SCOPE/ID"; "tunneld/ID" in older builds)."""
    suffix = "/" + token[:16]
    found = wait_until(lambda: [n for n in listening_names()
                                if n.startswith("@tunneld/") and n.endswith(suffix)], timeout)
    assert found and len(found) == 1, f"names listening for {token[:16]}: {found}"
    return found[0][1:]


def one_request(proxy, head, timeout=6.0):
    """head on a new connection: (status, body), or how no answer came."""
    c = Client(proxy.host, proxy.port, timeout)
    try:
        r = c.request(head, timeout)
        return r.status, r.body
    except (AssertionError, OSError) as e:
        return f"{type(e).__name__}: {e}"
    finally:
        c.close()


def test_other_uid_flooding_a_session_name_costs_its_requests_nothing(make_proxy, mode,
                                                                      echo, tmp_path):
    """uid 65534 connects without pause to a live session's abstract name
    (FLOODERS processes, non-blocking, each holding 200 connections, until
    the requests are done)
    to fill the holder's backlog; meanwhile 30 of the session's own
    requests, each on a new connection (handed to the holder), all get
    their 200 and bytes, no 503."""
    p = make_proxy(mode, tunnel=PATH)
    c = Conn(p, timeout=10)
    token = c.open_ok(echo.hostport)
    c.send_ok(token, 0, b"hi")
    assert c.recv_until(token, 0, 2) == (b"hi", False)
    name = live_name(token)
    procs, paths = [], [tmp_path / f"flood{k}.jsonl" for k in range(FLOODERS)]
    for path in paths:
        with open(path, "wb") as out:
            procs.append(subprocess.Popen(
                ["setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups",
                 sys.executable, str(FLOODER), name, str(FLOOD_SECONDS)],
                stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT))

    def events(path):
        try:
            return [json.loads(line) for line in path.read_text().splitlines()
                    if line.startswith("{")]
        except (OSError, ValueError):
            return []
    try:
        for proc, path in zip(procs, paths):
            wait_until(lambda: events(path) or proc.poll() is not None, 10)
            evs = events(path)
            assert evs and evs[0].get("event") == "start" and evs[0].get("uid") == NOBODY, \
                f"a flooder did not start as uid {NOBODY}: {path.read_text()!r}"
        time.sleep(0.3)                         # the backlog is full by now
        get = raw("GET", headers=[f"Tunnel-Token: {token}", "Connection: close"], query="?o=0")
        answers = [one_request(p, get) for _ in range(30)]
        during = all(proc.poll() is None for proc in procs)
        for proc in procs:
            proc.terminate()
        for proc in procs:
            proc.wait(10)
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait(5)
    ends = [(events(path) or [{}])[-1] for path in paths]
    for e in ends:
        assert e.get("event") == "end" and e["other"] == 0 and e["ok"] >= 100, \
            f"a flooder did not reach the session's name: {e}"
    bad = [(i, a) for i, a in enumerate(answers) if a != (200, b"hi")]
    assert not bad, f"{len(bad)} of 30 requests of the session not answered 200 during " \
                    f"another uid's flood ({ends}): {bad[:5]}"
    assert during, f"the flood ({FLOOD_SECONDS} s) ended before the 30 requests did"
    c.send_ok(token, 2, b" after")
    assert Conn(p).recv_until(token, 0, 8) == (b"hi after", False)


def test_expired_sessions_idle_connection_closed_without_503_at_max_conns(make_proxy,
                                                                         echo):
    """--listen --max-conns 2: two sessions, so two holders, the limit.
    Session 1 expires (--session-timeout 2) while its kept-alive connection
    carries no request: that connection is closed with no byte sent (the
    listener, at its limit, must not write a 503 nobody asked for)."""
    p = make_proxy("listen", args=["--max-conns", "2", "--session-timeout", "2"], tunnel=PATH)
    c1, c2 = Conn(p, timeout=10), Conn(p, timeout=10)
    t1 = c1.open_ok(echo.hostport)
    t2 = c2.open_ok(echo.hostport)
    t0 = time.monotonic()
    state = "open"
    for k in range(40):                         # ~0.3 s each, 12 s at most
        state = c1.c.end_state(0.3)
        if state != "open":
            break
        c2.send_ok(t2, k, b"x")                 # session 2 lives on: still at the limit
    took = time.monotonic() - t0
    assert c1.c.buf == b"", f"session 1's idle connection got {bytes(c1.c.buf)!r} " \
                            f"{took:.1f} s after the open, with no request on it"
    assert state == "eof", f"session 1's idle connection: {state} after {took:.1f} s"
    assert 1.5 <= took <= 10, f"closed {took:.1f} s after the open (session timeout 2 s)"
    c1.close()
    assert_error_reply(None, Conn(p).recv(t1, 0), 404)
    assert Conn(p).recv_until(t2, 0, k) == (b"x" * k, False)


def test_header_timeout_on_a_holders_connections(make_proxy, mode, echo):
    """--header-timeout 2, on connections a session's holder serves: an
    idle kept-alive one is closed within ~2 s, with no byte; a request head
    trickled a byte every 0.7 s is answered 408 within ~2 s of its first
    byte (the clock does not start again with every byte)."""
    p = make_proxy(mode, args=["--header-timeout", "2"], tunnel=PATH)
    c = Conn(p, timeout=10)
    token = c.open_ok(echo.hostport)
    c.send_ok(token, 0, b"q")
    idle, slow = Conn(p, timeout=10), Conn(p, timeout=10)
    assert idle.recv_ok(token, 0).body == b"q"      # both are the holder's now
    assert slow.recv_ok(token, 0).body == b"q"
    t_idle = time.monotonic()
    seen = {}

    def watch():
        state = idle.c.end_state(12)
        seen["idle"] = (state, time.monotonic() - t_idle, bytes(idle.c.buf))
    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    head = raw("GET", headers=[f"Tunnel-Token: {token}"], query="?o=1")
    t_first = time.monotonic()
    resp = took = None
    for i in range(16):                         # 0.7 s a byte: 11.2 s at most
        try:
            slow.c.send(head[i:i + 1])
        except OSError:
            pass                                # closed: its answer is read below
        try:
            resp = slow.c.response(0.7)
        except (socket.timeout, TimeoutError):
            continue
        except (AssertionError, OSError) as e:
            resp = f"{type(e).__name__}: {e}"
        took = time.monotonic() - t_first
        break
    assert resp is not None, f"no answer to a head trickled for " \
                             f"{time.monotonic() - t_first:.1f} s ({i + 1} bytes) " \
                             f"with --header-timeout 2"
    assert not isinstance(resp, str), f"the trickled head after {took:.1f} s: {resp}"
    assert resp.status == 408, resp
    assert 1.5 <= took <= 10, f"408 {took:.1f} s after the head's first byte"
    assert_error_reply(slow.c, resp, 408)
    watcher.join(15)
    state, after, data = seen["idle"]
    assert data == b"", f"the idle connection got {data!r}"
    assert state == "eof", f"the idle kept-alive connection: {state} after {after:.1f} s"
    assert 1.5 <= after <= 10, f"the idle connection closed after {after:.1f} s " \
                              f"(--header-timeout 2)"
    assert Conn(p).recv_until(token, 0, 1) == (b"q", False)


def test_limits_count_per_tunneld_not_per_port(make_proxy, echo):
    """One tunneld listening on two ports, --max-sessions 3
    --max-client-sessions 2: opens alternate between the ports; the third
    from one client address is 503 on either port, and so is the fourth
    from anywhere; an ended session frees its place for either port."""
    import types
    from conftest import free_port, listening
    port2 = free_port()
    p = make_proxy("listen", args=["--listen", f"127.0.0.1:{port2}",
                               "--max-sessions", "3", "--max-client-sessions", "2"], tunnel=PATH)
    assert wait_until(lambda: listening(port2), 5), "tunneld does not listen on its 2nd port"
    q = types.SimpleNamespace(host=p.host, port=port2)     # the same tunneld
    kept = []
    for proxy in (p, q):
        c = Conn(proxy, timeout=10)
        kept.append((c, c.open_ok(echo.hostport)))
    for proxy, which in ((p, "first"), (q, "second")):
        c = Conn(proxy, timeout=10)
        r = c.open(echo.hostport)
        assert r.status == 503, f"a 3rd session from 127.0.0.1 on the {which} port: {r}"
        assert_error_reply(c.c, r, 503, BUSY)
    o = ConnFrom(q, "127.0.0.2")
    kept.append((o, o.open_ok(echo.hostport)))             # the 3rd session in all
    for proxy, which in ((p, "first"), (q, "second")):
        c = ConnFrom(proxy, "127.0.0.3")
        r = c.open(echo.hostport)
        assert r.status == 503, f"a 4th session (from .3) on the {which} port: {r}"
        assert_error_reply(c.c, r, 503, BUSY)
    time.sleep(0.2)
    assert echo.accepted == 3, f"{echo.accepted} target connections for 3 sessions"
    c, t = kept[0]                                          # from .1, on the first port
    assert c.delete(t).status == 200
    r = open_when_free(q, echo, 20)
    assert r.status == 200, f"after a DELETE on the first port, an open on the second: {r}"


TWO_TUNNELDS = [("listen", "ports"), ("inetd", "ports"),
                # each the pid 1 of its own pid namespace (two containers
                # sharing the host's network): the same pid, other tunnelds
                ("listen", "pid-namespaces"),
                # inetd services of one port on two addresses, set up apart
                ("inetd", "one-port-two-addresses")]


@pytest.mark.parametrize("mode,apart", TWO_TUNNELDS, ids=[f"{m}-{a}" for m, a in TWO_TUNNELDS])
def test_two_tunnelds_of_one_user_keep_their_sessions_apart(make_proxy, mode, apart, echo):
    """Two tunnelds of the same uid: a session opened on the first is
    unknown to the second (404, on a new connection and on a kept-alive
    connection of the second's own session), and the first still serves
    it."""
    if apart == "ports":
        p1, p2 = make_proxy(mode, tunnel=PATH), make_proxy(mode, tunnel=PATH)
    elif apart == "pid-namespaces":
        wrap = ["unshare", "--pid", "--fork", "--kill-child"]
        p1, p2 = make_proxy(mode, wrap=wrap, tunnel=PATH), make_proxy(mode, wrap=wrap, tunnel=PATH)
    else:
        p1 = make_proxy(mode, args=["--realm", "one"], tunnel=PATH)
        p2 = make_proxy(mode, args=["--realm", "two"], host="127.0.0.2", port=p1.port, tunnel=PATH)

        def up():
            try:
                socket.create_connection((p2.host, p2.port), timeout=1).close()
                return True
            except OSError:
                return False
        assert wait_until(up, 5), "the second inetd service did not come up"
    c = Conn(p1, timeout=10)
    token = c.open_ok(echo.hostport)
    c.send_ok(token, 0, b"instance 1 only")
    assert c.recv_until(token, 0, 15) == (b"instance 1 only", False)
    r = Conn(p2, timeout=10).recv(token, 0)
    assert r.status == 404, f"the first tunneld's session through the second: {r}"
    assert_error_reply(None, r, 404)
    d = Conn(p2, timeout=10)
    other = d.open_ok(echo.hostport)                        # d is the second's holder's
    d.send_ok(other, 0, b"two")
    r = d.recv(token, 0)
    assert r.status == 404, f"the first tunneld's session on a holder's connection " \
                            f"of the second: {r}"
    assert_error_reply(None, r, 404)
    r = Conn(p2, timeout=10).send(token, 15, b"!")
    assert r.status == 404, f"a send to the first tunneld's session through the second: {r}"
    Conn(p1).send_ok(token, 15, b"!")
    assert Conn(p1).recv_until(token, 0, 16) == (b"instance 1 only!", False)
    assert Conn(p2).recv_until(other, 0, 3) == (b"two", False)
    assert c.delete(token).status == 200


def test_a_full_request_met_as_its_holder_ends_goes_on(make_proxy, mode, echo):
    """Holder A reads, in one turn, its session's DELETE on one connection
    and on another a send for session B whose head and first body bytes
    fill the connection's buffer: the send is not "too large" (431) but goes
    on to B's holder with the rest of the connection, once A has ended."""
    p = make_proxy(mode, tunnel=PATH)
    x = Conn(p, timeout=15)
    a = x.open_ok(echo.hostport)
    x.send_ok(a, 0, b"a")
    y = Conn(p, timeout=15)
    assert y.recv_until(a, 0, 1) == (b"a", False)       # y: now A's holder's too
    b = Conn(p).open_ok(echo.hostport)
    (pid_a,) = holder_pids(p, a)
    body = os.urandom(CHUNK)
    os.kill(pid_a, signal.SIGSTOP)
    try:
        x.c.send(raw("DELETE", headers=[f"Tunnel-Token: {a}"]))
        y.c.send(raw("POST", headers=[f"Tunnel-Token: {b}"], body=body, query="?o=0"))
        time.sleep(0.3)                                 # both wait for A, whole
    finally:
        os.kill(pid_a, signal.SIGCONT)
    assert x.c.response(10).status == 200
    r = y.c.response(10)
    assert r.status == 200 and r.header("Tunnel-Offset") == str(CHUNK), r
    assert Conn(p).recv_until(b, 0, CHUNK) == (body, False)


def test_reexecuted_holders_leak_no_descriptor(make_proxy, echo):
    """inetd mode: opens one after another on one kept-alive connection each
    make a holder exec'd anew by the last; every one holds as many
    descriptors as the first such (none carried down the chain)."""
    p = make_proxy("inetd", tunnel=PATH)
    c = Conn(p, timeout=10)
    tokens = [c.open_ok(echo.hostport) for _ in range(7)]
    counts = []
    for t in tokens[1:-1]:          # the last holds c besides: one more
        (pid,) = holder_pids(p, t)
        counts.append(len(os.listdir(f"/proc/{pid}/fd")))
    assert len(set(counts)) == 1, f"descriptors of holders exec'd one after another: {counts}"
    for t in tokens:
        assert Conn(p).delete(t).status == 200


def test_a_session_whose_clients_never_read_stalls_no_other(make_proxy, mode, echo):
    """Session B's clients never read their answers (5 connections with a
    4 KiB receive buffer, 60 pipelined 64 KiB GETs each): B's holder is
    stuck writing. One of session A's connections carries a request for B;
    A's own request on a fresh connection is still answered at once."""
    p = make_proxy(mode, tunnel=PATH)
    x = Conn(p, timeout=30)
    a = x.open_ok(echo.hostport)
    x.send_ok(a, 0, b"A")
    y = Conn(p, timeout=10)
    b = y.open_ok(echo.hostport)
    y.send_ok(b, 0, os.urandom(CHUNK))
    # B's receive buffer full, nothing acknowledged: every GET ?o=0 is 64 KiB
    assert wait_until(lambda: len(Conn(p, timeout=10).recv_ok(b, 0).body) == CHUNK, 5, 0.05)
    get_b = raw("GET", headers=[f"Tunnel-Token: {b}"], query="?o=0")
    hogs = []
    try:
        for _ in range(5):
            s = socket.socket()
            s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            s.settimeout(5)
            s.connect((p.host, p.port))
            hogs.append(s)
            s.sendall(get_b * 60)
        time.sleep(1.0)                         # B's holder is stuck writing by now
        x.c.send(get_b)                         # A's holder hands it on to B's
        time.sleep(0.5)
        t0 = time.monotonic()
        got = one_request(p, raw("GET", headers=[f"Tunnel-Token: {a}", "Connection: close"],
                                 query="?o=0"), timeout=10)
        took = time.monotonic() - t0
        assert got == (200, b"A") and took < 8, \
            f"A's own request while B is stuck, after {took:.1f} s: {got}"
    finally:
        for s in hogs:
            s.close()
