"""The relay (DESIGN §4, §4a): optimistic data, half-close both ways, reset
propagation, big transfers both ways at once, many tunnels at once, the idle
timeout, and the byte counts in the log line."""

import hashlib
import os
import socket
import threading
import time

import pytest

from conftest import (OK_REPLY, Client, connect_head, greet_shut_handler,
                      hash_handler, open_tunnel, recv_all)

MiB = 1 << 20


@pytest.mark.parametrize("size", [5, 3000, 20000])
def test_optimistic_data_forwarded(proxy, echo, size):
    payload = os.urandom(size)
    c = Client(proxy.host, proxy.port)
    c.send(connect_head(echo.hostport) + payload)          # one write
    assert c.read_until(b"\r\n\r\n") == OK_REPLY
    assert c.read_exact(size) == payload
    c.send(b"more")
    assert c.read_exact(4) == b"more"
    c.sock.shutdown(socket.SHUT_WR)
    assert c.read_to_eof() == b""
    fields = proxy.log_for(c.port)
    assert fields["status"] == "200", fields
    assert fields["target"] == echo.hostport and fields["addr"] == echo.hostport, fields
    assert fields["up"] == fields["down"] == str(size + 4), fields


def test_half_close_from_client(proxy, make_target):
    """Like `echo x | nc`: the client ends its stream, the reply still arrives."""
    target = make_target(hash_handler)
    c = open_tunnel(proxy, target.hostport)
    data = os.urandom(100_000)
    c.send(data)
    c.sock.shutdown(socket.SHUT_WR)
    assert c.read_to_eof() == hashlib.sha256(data).hexdigest().encode() + b"\n"
    assert target.wait_results(1) == [data]


def test_half_close_from_target(proxy, make_target):
    """The target ends its stream first; the client still sends, and all of it
    arrives."""
    target = make_target(greet_shut_handler)
    c = open_tunnel(proxy, target.hostport)
    assert c.read_until(b"\n") == b"hello, then EOF\n"
    assert c.end_state(3) == "eof", "target's EOF was not forwarded"
    data = os.urandom(50_000)
    for i in range(0, len(data), 10_000):
        c.send(data[i:i + 10_000])
        time.sleep(0.05)
    c.sock.shutdown(socket.SHUT_WR)
    assert target.wait_results(1) == [data]
    fields = proxy.log_for(c.port)
    assert (fields["up"], fields["down"]) == (str(len(data)), "16"), fields


def test_reset_from_target_reaches_client(proxy, echo):
    c = open_tunnel(proxy, echo.hostport)
    c.send(b"ping")
    assert c.read_exact(4) == b"ping"
    c.send(b"RESET-ME")
    assert c.end_state(3) == "reset"


def test_reset_from_client_reaches_target(proxy, echo):
    c = open_tunnel(proxy, echo.hostport)
    c.send(b"ping")
    assert c.read_exact(4) == b"ping"
    c.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\1\0\0\0\0\0\0\0")
    c.close()                                   # RST
    assert echo.wait_results(1, timeout=5) == ["reset"]


def source_sink_handler(blob):
    """Send blob then half-close, while reading to EOF; record (sha256, size)."""
    def handler(conn, server):
        def send():
            conn.sendall(blob)
            server.sent_all = True
            conn.shutdown(socket.SHUT_WR)
        sender = threading.Thread(target=send, daemon=True)
        sender.start()
        data, how = recv_all(conn, limit=len(blob) * 2)
        sender.join(30)
        server.results.append((hashlib.sha256(data).hexdigest(), len(data), how))
    return handler


def test_8mib_both_ways_at_once(any_proxy, make_target):
    down = os.urandom(8 * MiB)
    up = os.urandom(8 * MiB)
    target = make_target(source_sink_handler(down))
    c = open_tunnel(any_proxy, target.hostport, timeout=30)
    c.sock.settimeout(30)
    errors = []

    def send():
        try:
            c.sock.sendall(up)
            c.sock.shutdown(socket.SHUT_WR)
        except OSError as e:
            errors.append(e)
    sender = threading.Thread(target=send, daemon=True)
    sender.start()
    h, n = hashlib.sha256(c.buf), len(c.buf)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        chunk = c.sock.recv(1 << 18)
        if not chunk:
            break
        h.update(chunk)
        n += len(chunk)
    sender.join(30)
    assert not errors
    assert (n, h.hexdigest()) == (len(down), hashlib.sha256(down).hexdigest())
    assert target.wait_results(1, 30) == [(hashlib.sha256(up).hexdigest(), len(up), "eof")]
    fields = any_proxy.log_for(c.port)
    assert (fields["up"], fields["down"]) == (str(len(up)), str(len(down))), fields


def test_100_concurrent_tunnels(any_proxy, echo):
    n = 100
    barrier = threading.Barrier(n, timeout=30)
    results = [None] * n

    def one(i):
        payload = (b"tunnel %03d|" % i) * 500 + os.urandom(500)
        try:
            c = open_tunnel(any_proxy, echo.hostport, timeout=30)
            barrier.wait()                      # all tunnels are open at once
            c.send(payload)
            c.sock.shutdown(socket.SHUT_WR)
            got = c.read_to_eof(timeout=30)
            results[i] = True if got == payload else f"{len(got)} bytes, differ"
            c.close()
        except Exception as e:                  # reported below, per tunnel
            barrier.abort()
            results[i] = repr(e)
    threads = [threading.Thread(target=one, args=(i,), daemon=True) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    bad = {i: r for i, r in enumerate(results) if r is not True}
    assert not bad, f"{len(bad)} tunnels failed: {dict(list(bad.items())[:5])}"
    assert echo.accepted == n


def test_idle_timeout_closes_quiet_tunnel(make_proxy, mode, echo):
    p = make_proxy(mode, args=["--idle-timeout", "1"])
    c = open_tunnel(p, echo.hostport)
    c.send(b"x")
    assert c.read_exact(1) == b"x"
    start = time.monotonic()
    state = c.end_state(timeout=4)
    elapsed = time.monotonic() - start
    assert state in ("eof", "reset"), "quiet tunnel still open after 4 s"
    assert 0.8 <= elapsed <= 3.5, elapsed
    assert echo.wait_results(1)[0] in ("eof", "reset")   # the target side closed too
    assert p.log_for(c.port)["status"] == "200"


def test_idle_timeout_spares_two_way_traffic(make_proxy, mode, echo):
    p = make_proxy(mode, args=["--idle-timeout", "1"])
    c = open_tunnel(p, echo.hostport)
    for i in range(5):                      # 1.5 s of traffic, never 1 s quiet
        time.sleep(0.3)
        c.send(b"%d" % i)
        assert c.read_exact(1) == b"%d" % i
    assert c.end_state(0.2) == "open"


def ticker_handler(conn, server):
    for i in range(5):
        time.sleep(0.3)
        conn.sendall(b"%d" % i)
    server.results.append("done")


def test_idle_timeout_spares_target_to_client_traffic(make_proxy, mode, make_target):
    p = make_proxy(mode, args=["--idle-timeout", "1"])
    target = make_target(ticker_handler)
    c = open_tunnel(p, target.hostport)
    assert c.read_exact(5, timeout=6) == b"01234"


def test_idle_timeout_spares_client_to_target_traffic(make_proxy, mode, make_target):
    p = make_proxy(mode, args=["--idle-timeout", "1"])
    target = make_target(hash_handler)
    c = open_tunnel(p, target.hostport)
    for i in range(5):
        time.sleep(0.3)
        c.send(b"%d" % i)
    c.sock.shutdown(socket.SHUT_WR)
    assert c.read_to_eof() == hashlib.sha256(b"01234").hexdigest().encode() + b"\n"


def test_head_in_many_segments(proxy, echo):
    """One read is not one message: the head trickles in, byte by byte."""
    c = Client(proxy.host, proxy.port)
    c.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    for byte in connect_head(echo.hostport):
        c.send(bytes([byte]))
        time.sleep(0.001)
    assert c.read_until(b"\r\n\r\n") == OK_REPLY
    c.send(b"whole")
    assert c.read_exact(5) == b"whole"


@pytest.mark.parametrize("size", [10, MiB])
def test_client_half_closes_before_the_200(proxy, make_target, size):
    """`printf 'CONNECT ...\\r\\n\\r\\ndata' | nc`: the client's data and EOF
    come right after the head, before tunneld has even connected."""
    target = make_target(hash_handler)
    data = os.urandom(size)
    c = Client(proxy.host, proxy.port, timeout=10)
    c.send(connect_head(target.hostport) + data)
    c.sock.shutdown(socket.SHUT_WR)
    assert c.read_until(b"\r\n\r\n") == OK_REPLY
    assert c.read_to_eof() == hashlib.sha256(data).hexdigest().encode() + b"\n"


def closing_handler(conn, server):
    server.results.append("closed")


def test_target_closes_at_once(proxy, make_target):
    target = make_target(closing_handler)
    c = open_tunnel(proxy, target.hostport)
    assert c.end_state(3) == "eof"
    c.close()
    fields = proxy.log_for(c.port)
    assert (fields["status"], fields["up"], fields["down"]) == ("200", "0", "0"), fields


def test_request_timeouts_do_not_limit_the_tunnel(make_proxy, mode, echo):
    p = make_proxy(mode, args=["--header-timeout", "1", "--connect-timeout", "1"])
    c = open_tunnel(p, echo.hostport)
    time.sleep(1.6)
    c.send(b"still here")
    assert c.read_exact(10) == b"still here"


def endless_handler(conn, server):
    """Send until the peer goes away; record how many bytes were taken."""
    block, sent = os.urandom(65536), 0
    try:
        while sent < 256 * MiB:
            conn.sendall(block)
            sent += len(block)
    except OSError:
        pass
    server.results.append(sent)


def test_client_gone_mid_stream_still_logged(proxy, make_target):
    target = make_target(endless_handler)
    c = open_tunnel(proxy, target.hostport)
    c.read_exact(100_000)
    c.close()                                   # unread data: a reset
    fields = proxy.log_for(c.port, timeout=8)
    assert fields["status"] == "200" and int(fields["down"]) >= 100_000, fields
    target.wait_results(1)


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def test_back_pressure_bounds_memory(proxy, make_target):
    """A client that stops reading stops tunneld reading the target: the
    target gets stuck and tunneld's memory stays small."""
    blob = os.urandom(48 * MiB)
    target = make_target(source_sink_handler(blob))
    target.sent_all = False
    c = open_tunnel(proxy, target.hostport, timeout=30)
    worker = proxy.workers()
    assert len(worker) == 1, worker
    before = rss_kib(worker[0])
    time.sleep(1.5)                             # read nothing meanwhile
    growth = rss_kib(worker[0]) - before
    assert growth < 4096, f"tunneld grew by {growth} KiB while the client read nothing"
    assert not target.sent_all, "the target sent 48 MiB into a client that reads nothing"
    c.sock.shutdown(socket.SHUT_WR)
    got = c.read_to_eof(timeout=30, limit=64 * MiB)
    assert hashlib.sha256(got).digest() == hashlib.sha256(blob).digest(), len(got)


def test_max_conns_queues_and_releases(make_proxy, echo):
    p = make_proxy("listen", args=["--max-conns", "2"])
    for _ in range(6):                          # the count comes back down
        c = open_tunnel(p, echo.hostport)
        c.sock.shutdown(socket.SHUT_WR)
        assert c.read_to_eof() == b""
        c.close()
    held = [open_tunnel(p, echo.hostport) for _ in range(2)]
    third = Client(p.host, p.port)
    third.send(connect_head(echo.hostport))
    assert third.end_state(1) == "open" and third.buf == b"", \
        f"a third connection was served at --max-conns 2: {third.buf!r}"
    held[0].close()
    assert third.read_until(b"\r\n\r\n") == OK_REPLY
    third.send(b"3rd")
    assert third.read_exact(3) == b"3rd"


def test_idle_timeout_spares_a_reader_that_pauses(make_proxy, mode, make_target):
    """A client that stops reading a download for longer than --idle-timeout
    is slow, not idle: while tunneld holds bytes for it the idle clock does
    not run, and every byte arrives once it reads again."""
    size = 48 * MiB
    data = os.urandom(size)

    def source(conn, server):
        conn.sendall(data)
        conn.settimeout(20)
        server.results.append(conn.recv(1))   # b"" at the client's end

    p = make_proxy(mode, args=["--idle-timeout", "1"])
    target = make_target(source)
    c = open_tunnel(p, target.hostport)
    time.sleep(3)                           # nothing read: tunneld's buffers fill
    got = c.read_exact(size, timeout=30)
    assert hashlib.sha256(got).digest() == hashlib.sha256(data).digest()
    c.sock.shutdown(socket.SHUT_WR)
    assert target.wait_results(1) == [b""]
