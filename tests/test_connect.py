"""The connect phase: one --connect-timeout deadline for the lookup and every
attempt, and Happy Eyeballs (RFC 8305) among a name's addresses.

A silent address is a loopback listener whose accept queue is full (listen(0)
and one connection never accepted): the kernel drops further SYNs, so a
connect to it neither succeeds nor fails. The names are in dnsserver.py's
table (v6-first.test, silent16.test).
"""

import re
import socket
import ssl
import time

import pytest

import dnsserver
from conftest import (HTTPS_BODY, Client, assert_error_reply, connect_head, echo_handler,
                      https_handler, open_tunnel)

SILENT16 = dnsserver.ZONE["silent16.test"]["A"]


@pytest.fixture
def make_silent():
    """Factory: make_silent(host, port=0) -> the port of a listener on host
    that drops SYNs (checked: a probe's connect does not complete)."""
    socks = []

    def make(host, port=0):
        fam = socket.AF_INET6 if ":" in host else socket.AF_INET
        lsock = socket.socket(fam)
        socks.append(lsock)
        lsock.bind((host, port))
        lsock.listen(0)
        port = lsock.getsockname()[1]
        socks.append(socket.create_connection((host, port), timeout=2))
        probe = socket.socket(fam)
        probe.settimeout(0.3)
        with pytest.raises(OSError):        # the queue is full: no answer to a SYN
            probe.connect((host, port))
        probe.close()
        return port
    yield make
    for s in socks:
        s.close()


def on_one_port(make, hosts):
    """make(host, port) on each of hosts with one port number; bounded retries
    for a port that is free on all of them."""
    for _ in range(20):
        port = make(hosts[0], 0)
        try:
            for h in hosts[1:]:
                make(h, port)
            return port
        except OSError:
            continue
    pytest.fail(f"no port free on all of {hosts}")


def attempt_lines(proxy):
    """The -v lines about connect attempts: (address, what) in log order."""
    return re.findall(r"^(?:.*?\s)?(\S+:\d+): (connecting|connected|\S.*)$",
                      proxy.log_text(), re.M)


@pytest.mark.needs("ipv6")
def test_silent_ipv6_first_then_ipv4_connects_at_once(make_proxy, mode, make_silent,
                                                      make_target):
    """The first address (::1, as the resolver sorts it) never answers; the
    second attempt starts 250 ms later and wins, long before the 10 s
    timeout. The old code waited the whole timeout on the first: the bound
    is half of it, generous on a loaded machine; the log lines give the
    order."""
    port = on_one_port(lambda h, p: make_silent(h, p) if ":" in h else
                       make_target(echo_handler, h, port=p).port, ["::1", "127.0.0.1"])
    p = make_proxy(mode, args=["-v", "--connect-timeout", "10"])
    start = time.monotonic()
    c = open_tunnel(p, f"v6-first.test:{port}", timeout=15)
    elapsed = time.monotonic() - start
    c.send(b"eyeballs")
    assert c.read_exact(8) == b"eyeballs"
    c.close()
    assert elapsed < 5.0, elapsed
    fields = p.log_for(c.port)
    assert fields["status"] == "200" and fields["addr"] == f"127.0.0.1:{port}", fields
    lines = attempt_lines(p)
    assert lines.index((f"[::1]:{port}", "connecting")) < \
        lines.index((f"127.0.0.1:{port}", "connecting")), lines
    assert (f"127.0.0.1:{port}", "connected") in lines, lines
    assert any(a == f"[::1]:{port}" and "cancel" in what.lower() for a, what in lines), lines


def test_sixteen_silent_addresses_504_within_the_timeout(make_proxy, mode, make_silent):
    """16 silent addresses with --connect-timeout 2: one 504 at about 2 s
    (the old code took 2 s per address, 32 s), and attempts 250 ms apart:
    at most 8 fit in 2 s. The upper bound is far from the old 32 s, not
    tight on 2 s (a loaded machine)."""
    port = on_one_port(make_silent, SILENT16)
    p = make_proxy(mode, args=["-v", "--connect-timeout", "2"])
    c = Client(p.host, p.port, timeout=20)
    start = time.monotonic()
    resp = c.request(connect_head(f"silent16.test:{port}"))
    elapsed = time.monotonic() - start
    assert_error_reply(c, resp, 504)
    assert 1.8 <= elapsed <= 12.0, elapsed
    fields = p.log_for(c.port)
    assert fields["reason"] == "connect-timeout", fields
    started = [a for a, what in attempt_lines(p) if what == "connecting"]
    assert 4 <= len(started) <= 8, started
    assert len(set(started)) == len(started), started
    timed_out = [a for a, what in attempt_lines(p) if "timed out" in what.lower()]
    assert sorted(timed_out) == sorted(started), attempt_lines(p)


@pytest.mark.needs("ipv6")
@pytest.mark.parametrize("rule", ["plain", pytest.param("tls", marks=pytest.mark.needs("tls"))])
def test_denied_address_never_connected(make_proxy, mode, make_target, tls_files, rule):
    """::1 comes first but the rules deny it: no SYN ever reaches it (its
    listener accepts nothing) and 127.0.0.1 serves. With a tls rule the
    check reads the ClientHello first, still before any attempt."""
    cert, key = tls_files
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(cert, key)
    handler = echo_handler if rule == "plain" else https_handler(ctx)
    servers = {}

    def make(host, port):
        servers[host] = make_target(echo_handler if ":" in host else handler, host, port=port)
        return servers[host].port
    port = on_one_port(make, ["::1", "127.0.0.1"])
    acl = "allow to 127.0.0.1\ndeny\n" if rule == "plain" else "allow to 127.0.0.1 tls\ndeny\n"
    p = make_proxy(mode, acl=acl, args=["-v"])
    c = open_tunnel(p, f"v6-first.test:{port}")
    if rule == "plain":
        c.send(b"allowed?")
        assert c.read_exact(8) == b"allowed?"
    else:
        cctx = ssl.create_default_context(cafile=str(cert))
        with cctx.wrap_socket(c.sock, server_hostname="good.test") as tls:
            tls.sendall(b"GET / HTTP/1.1\r\nHost: good.test\r\nConnection: close\r\n\r\n")
            data = b""
            for _ in range(100):                # bounded reads to EOF
                chunk = tls.recv(4096)
                if not chunk:
                    break
                data += chunk
            assert data.endswith(HTTPS_BODY), data
    c.close()
    fields = p.log_for(c.port)
    assert fields["status"] == "200" and fields["addr"] == f"127.0.0.1:{port}", fields
    assert servers["::1"].accepted == 0
    assert f"[::1]:{port} denied by rule at line 2" in p.log_text()
    assert (f"[::1]:{port}", "connecting") not in attempt_lines(p)


@pytest.mark.needs("ipv6")
def test_verbose_logs_each_attempt(make_proxy, make_target):
    """-v: a line when an attempt starts and one with its outcome. ::1 refuses
    (nothing listens there), so 127.0.0.1 is tried at once, not 250 ms later."""
    def make(host, port):
        if ":" not in host:
            return make_target(echo_handler, host, port=port).port
        with socket.socket(socket.AF_INET6) as s:      # a port free on ::1, then let go
            s.bind((host, port))
            return s.getsockname()[1]
    port = on_one_port(make, ["127.0.0.1", "::1"])
    p = make_proxy("listen", args=["-v"])
    c = open_tunnel(p, f"v6-first.test:{port}")
    c.close()
    p.log_for(c.port)
    assert attempt_lines(p) == [(f"[::1]:{port}", "connecting"),
                                (f"127.0.0.1:{port}", "connecting"),
                                (f"[::1]:{port}", "Connection refused"),
                                (f"127.0.0.1:{port}", "connected")], p.log_text()
