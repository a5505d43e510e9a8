"""Every error status of DESIGN §4 over a raw socket, in both modes: the
exact reply format, the closed connection, and the status in the log line."""

import select
import socket
import time

import pytest

from conftest import (OK_REPLY, needs_v6, Client, assert_error_reply, connect_head, expect_error,
                      wait_until)

LONG_NAME = ("a" * 63 + ".") * 3 + "a" * 62          # 254 characters


def head(request_line, *headers, eol=b"\r\n"):
    lines = [request_line, *headers]
    return eol.join(l if isinstance(l, bytes) else l.encode() for l in lines) + eol + eol


BAD_TARGETS = {
    "port-0": "good.test:0",
    "port-65536": "good.test:65536",
    "port-99999": "good.test:99999",
    "port-negative": "good.test:-1",
    "port-plus": "good.test:+443",
    "port-hex": "good.test:0x1bb",
    "port-empty": "good.test:",
    "port-leading-zeros": "good.test:000443",
    "port-missing": "good.test",
    "port-trailing-junk": "good.test:443x",
    "host-double-colon": "h::443",
    "host-empty": ":443",
    "host-bad-char": "goo!d.test:443",
    "host-slash": "good.test/x:443",
    "host-userinfo": "user@good.test:443",
    "host-percent": "good%2etest:443",
    "host-too-long": LONG_NAME + ":443",
    "absolute-uri": "http://good.test:443/",
    "v6-no-port": "[::1]",
    "v6-unbracketed": "::1:443",
    "v6-unclosed": "[::1:443",
    "v6-garbage": "[zz::1]:443",
    "v6-holding-v4": "[127.0.0.1]:443",
    "ipv4-decimal": "2130706433:443",
    "ipv4-hex-short": "0x7f.1:443",
    "ipv4-short": "127.1:443",
    "ipv4-octal": "017700000001:443",
    "ipv4-hex": "0x7f000001:443",
}

BAD_HEADS = {
    **{k: connect_head(v) for k, v in BAD_TARGETS.items()},
    "port-space": head("CONNECT good.test: 443 HTTP/1.1"),
    "no-target": head("CONNECT"),
    "empty-target": head("CONNECT  HTTP/1.1"),
    "empty-method": head(" http://x/ HTTP/1.1"),
    "no-version": head("CONNECT good.test:443"),
    "extra-token": head("CONNECT good.test:443 HTTP/1.1 x"),
    "lowercase-version": head("CONNECT good.test:443 http/1.1"),
    "garbage-version": head("CONNECT good.test:443 HTTP/x.y"),
    "nul-in-request-line": head(b"CONNECT good.test:443\0 HTTP/1.1"),
    "nul-in-field": head("CONNECT good.test:443 HTTP/1.1", b"X-A: a\0b"),
    "space-before-colon": head("CONNECT good.test:443 HTTP/1.1", "Content-Length : 0"),
    "obs-fold": head("CONNECT good.test:443 HTTP/1.1", "X-A: a", " folded"),
    "ws-before-first-field": head("CONNECT good.test:443 HTTP/1.1", " X-A: a"),
    "bare-cr": head("CONNECT good.test:443 HTTP/1.1", "X-A: a\rb"),
    "bare-cr-request-line": head("CONNECT good.test:443 HTTP/1.1\rX-A: b"),
    "field-without-colon": head("CONNECT good.test:443 HTTP/1.1", "NoColonHere"),
    "field-empty-name": head("CONNECT good.test:443 HTTP/1.1", ": value"),
    "field-space-in-name": head("CONNECT good.test:443 HTTP/1.1", "X A: b"),
    "transfer-encoding": head("CONNECT good.test:443 HTTP/1.1", "Transfer-Encoding: chunked"),
    "content-length-5": head("CONNECT good.test:443 HTTP/1.1", "Content-Length: 5"),
    "content-length-plus-0": head("CONNECT good.test:443 HTTP/1.1", "Content-Length: +0"),
    "content-length-junk": head("CONNECT good.test:443 HTTP/1.1", "Content-Length: 0x"),
    "content-length-lowercase-5": head("CONNECT good.test:443 HTTP/1.1", "content-length: 5"),
    "transfer-encoding-uppercase": head("CONNECT good.test:443 HTTP/1.1",
                                        "TRANSFER-ENCODING: chunked"),
    "transfer-encoding-identity": head("CONNECT good.test:443 HTTP/1.1",
                                       "Transfer-Encoding: identity"),
    "ctl-in-field": head("CONNECT good.test:443 HTTP/1.1", b"X-A: a\x01b"),
    "esc-in-field": head("CONNECT good.test:443 HTTP/1.1", b"X-A: \x1b[31mred"),
    "two-proxy-authorization": head("CONNECT good.test:443 HTTP/1.1",
                                    "Proxy-Authorization: Basic eDp5",
                                    "Proxy-Authorization: Basic eDp5"),
    "two-proxy-authorization-any-case": head("CONNECT good.test:443 HTTP/1.1",
                                             "Proxy-Authorization: Basic eDp5",
                                             "proxy-authorization: Basic eDp5"),
}

NOT_CONNECT = {
    "get-absolute": head("GET http://x/ HTTP/1.1", "Host: x"),
    "get-origin": head("GET / HTTP/1.1", "Host: x"),
    "post": head("POST http://x/ HTTP/1.1", "Content-Length: 0"),
    "lowercase-connect": head("connect good.test:443 HTTP/1.1"),
    "options": head("OPTIONS * HTTP/1.1"),
}

HTTP2 = {v: head(f"CONNECT good.test:443 {v}") for v in ("HTTP/2.0", "HTTP/3.0", "HTTP/2")}


def fields_line(n, size=8):
    return [f"X-F{i:03d}: {'v' * size}" for i in range(n)]


def exact_size_head(target, total):
    """A CONNECT head of exactly `total` bytes including the final CRLFCRLF."""
    base = connect_head(target, "X-Pad: ")
    return connect_head(target, "X-Pad: " + "p" * (total - len(base)))


@pytest.mark.parametrize("data", BAD_HEADS.values(), ids=BAD_HEADS.keys())
def test_400_malformed(proxy, data):
    expect_error(proxy, data, 400)


@pytest.mark.parametrize("data", NOT_CONNECT.values(), ids=NOT_CONNECT.keys())
def test_405_not_connect(proxy, data):
    expect_error(proxy, data, 405, {"Allow": "CONNECT"})


@pytest.mark.parametrize("data", HTTP2.values(), ids=HTTP2.keys())
def test_505_http2(proxy, data):
    expect_error(proxy, data, 505)


@pytest.mark.parametrize("data", [
    connect_head("good.test:443", "X-Big: " + "b" * 9000),
    connect_head("good.test:443", *fields_line(65)),
    connect_head("good.test:443", *fields_line(200)),
    exact_size_head("good.test:443", 8193),
], ids=["9000-byte-field", "65-fields", "200-fields", "8193-bytes"])
def test_431_too_large(proxy, data):
    expect_error(proxy, data, 431)


def ok_variants(port):
    t = f"127.0.0.1:{port}"
    return {
        "plain": connect_head(t),
        "http-1.0": head(f"CONNECT {t} HTTP/1.0"),
        "no-host-field": head(f"CONNECT {t} HTTP/1.1"),
        "content-length-0": connect_head(t, "Content-Length: 0"),
        "content-length-0-ows": connect_head(t, "Content-Length:\t 0  "),
        "content-length-0-no-space": connect_head(t, "content-length:0"),
        "bare-lf": head(f"CONNECT {t} HTTP/1.1", f"Host: {t}", eol=b"\n"),
        "usual-fields": connect_head(t, "User-Agent: test/1.0", "Proxy-Connection: Keep-Alive"),
        "one-proxy-authorization": connect_head(t, "Proxy-Authorization: Basic eDp5"),
        "64-fields": head(f"CONNECT {t} HTTP/1.1", *fields_line(64)),
        "8192-bytes": exact_size_head(t, 8192),
    }


@pytest.mark.parametrize("variant", list(ok_variants(1)))
def test_200_accepted_heads(proxy, echo, variant):
    data = ok_variants(echo.port)[variant]
    c = Client(proxy.host, proxy.port)
    c.send(data)
    assert c.read_until(b"\r\n\r\n") == OK_REPLY
    c.send(b"ping")
    assert c.read_exact(4) == b"ping"
    c.close()


def test_408_partial_head(make_proxy, mode):
    p = make_proxy(mode, args=["--header-timeout", "1"])
    c = Client(p.host, p.port, timeout=15)
    start = time.monotonic()
    resp = c.request(b"CONNECT good.test:443 HTTP/1.1\r\nHost: good")
    elapsed = time.monotonic() - start
    assert_error_reply(c, resp, 408)
    assert 0.8 <= elapsed <= 10, elapsed


def test_408_slow_drip_counts_whole_head(make_proxy, mode):
    """The deadline is for the whole head, not per read (slowloris): a byte
    every 0.1 s would take 14 s to send the head; the 408 comes while it is
    still being sent (an event, not a tight clock bound)."""
    p = make_proxy(mode, args=["--header-timeout", "1"])
    c = Client(p.host, p.port, timeout=4)
    start = time.monotonic()
    data = b"CONNECT good.test:443 HTTP/1.1\r\n" + b"X-Slow: " + b"s" * 100
    sent = 0
    for byte in data:                       # bounded: at most len(data) sends
        readable, _, _ = select.select([c.sock], [], [], 0.1)
        if readable:
            break                           # the answer has started
        c.send(bytes([byte]))
        sent += 1
    resp = c.response(timeout=4)
    elapsed = time.monotonic() - start
    assert_error_reply(c, resp, 408)
    assert sent < len(data), f"408 only after the whole head ({elapsed:.1f} s)"
    assert elapsed <= 10, f"408 only after {elapsed:.1f}s"


@pytest.mark.parametrize("first", [b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03", b"GE\x00T / HTTP/1.1"],
                         ids=["tls-hello", "nul-in-method"])
def test_what_cannot_be_a_request_is_answered_at_once(make_proxy, mode, first):
    """Bytes that cannot begin a request line (a TLS client on a plain port)
    get their 400 as they arrive, not after --header-timeout (60 s here)."""
    p = make_proxy(mode, args=["--header-timeout", "60"])
    c = Client(p.host, p.port, timeout=20)
    c.send(first)
    resp = c.response(timeout=20)
    assert_error_reply(c, resp, 400)
    reason = "tls-on-plain-port" if first[0] == 0x16 else "bad-request"
    assert p.wait_log(lambda f: f.get("status") == "400")["reason"] == reason


def test_header_timeout_silent_client_closed(make_proxy, mode):
    p = make_proxy(mode, args=["--header-timeout", "1"])
    c = Client(p.host, p.port, timeout=4)
    start = time.monotonic()
    state = c.end_state(timeout=10)
    assert state in ("eof", "reset"), "a silent client kept its connection"
    assert c.buf == b"" or c.buf.startswith(b"HTTP/1.1 408 "), c.buf
    assert time.monotonic() - start <= 10


def test_403_builtin_rules(make_proxy, mode):
    p = make_proxy(mode, acl=None)
    expect_error(p, connect_head("127.0.0.1:443"), 403)


def test_403_rules_deny(make_proxy, mode, echo):
    p = make_proxy(mode, acl="deny to 127.0.0.1\nallow\n")
    expect_error(p, connect_head(f"127.0.0.1:{echo.port}"), 403)
    assert echo.accepted == 0


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost", "good.test",
                                  needs_v6("[::ffff:127.0.0.1]")])
def test_403_loop_to_own_listener(any_proxy, host):
    expect_error(any_proxy, connect_head(f"{host}:{any_proxy.port}"), 403)


def test_502_nxdomain(proxy):
    expect_error(proxy, connect_head("nx.test:443"), 502)


def test_502_refused(proxy):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]          # bound, not listening: refused
        expect_error(proxy, connect_head(f"127.0.0.1:{port}"), 502)


def test_502_dns_timeout(proxy):
    """slow.test never answers: a DNS failure, reported within a few seconds."""
    c = Client(proxy.host, proxy.port, timeout=10)
    start = time.monotonic()
    resp = c.request(connect_head("slow.test:443"))
    assert_error_reply(c, resp, 502)
    assert time.monotonic() - start < 8


@pytest.fixture
def blackhole():
    """A listener whose accept queue is full: further SYNs are dropped, so a
    connect to it times out."""
    lsock = socket.socket()
    lsock.bind(("127.0.0.1", 0))
    lsock.listen(0)
    filler = socket.create_connection(lsock.getsockname(), timeout=2)
    probe = socket.socket()
    probe.settimeout(0.3)
    with pytest.raises(OSError):            # verify the queue is really full
        probe.connect(lsock.getsockname())
    probe.close()
    yield lsock.getsockname()[1]
    filler.close()
    lsock.close()


def test_504_connect_timeout(make_proxy, mode, blackhole):
    p = make_proxy(mode, args=["--connect-timeout", "1"])
    c = Client(p.host, p.port, timeout=15)
    start = time.monotonic()
    resp = c.request(connect_head(f"127.0.0.1:{blackhole}"))
    elapsed = time.monotonic() - start
    assert_error_reply(c, resp, 504)
    assert 0.8 <= elapsed <= 10, elapsed       # the kernel alone would retry for minutes
    assert p.log_for(c.port)["status"] == "504"


def test_500_inetd_broken_rules(make_proxy):
    p = make_proxy("inetd", acl="allow to 127.0.0.0/8\nallow frm 10.0.0.1\n")
    expect_error(p, connect_head("good.test:443"), 500)
    assert wait_until(lambda: "died with code 78" in p.log_text(), 5), p.log_text()
    assert f"{p.acl_path}:2" in p.log_text()


def test_client_gone_before_reply_still_logged(proxy, dns):
    """The client leaves while tunneld resolves (slow.test takes 1 s);
    writing the answer then fails (EPIPE/ECONNRESET) but the connection is
    still logged, with the client's address."""
    before = len(dns.queries)
    c = Client(proxy.host, proxy.port)
    c.send(connect_head("slow.test:443"))
    # tunneld has started, read the request and asks for the name (a loaded
    # machine may take longer than any fixed pause to start it in inetd mode)
    assert wait_until(lambda: any(q[0] == "slow.test" for q in dns.queries[before:]), 10)
    c.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\1\0\0\0\0\0\0\0")
    c.close()
    fields = proxy.wait_log(lambda f: f.get("target") == "slow.test:443", 8, "slow.test")
    assert fields["status"] in ("502", "504"), fields
    assert fields["client"] == f"127.0.0.1:{c.port}", f"client address lost: {fields['_raw']}"


def test_client_eof_mid_head_closes_at_once(proxy):
    """The stream ended inside the head: no waiting for --header-timeout."""
    p = proxy
    c = Client(p.host, p.port)
    c.send(b"CONNECT good.test:443 HTTP/1.1\r\nHost: go")
    c.sock.shutdown(socket.SHUT_WR)
    assert c.end_state(1) in ("eof", "reset"), "tunneld waits for the rest of a closed stream"
    assert c.buf == b"" or c.buf.startswith(b"HTTP/1.1 400 "), c.buf
    c.close()
    p.log_for(c.port)


def test_listen_mode_logs_client_that_reset_at_once(make_proxy):
    """accept() already gave the client's address: a client that resets right
    after its request is still named in the log (fail2ban needs it)."""
    p = make_proxy("listen")
    c = Client(p.host, p.port)
    c.send(connect_head("nx.test:443"))
    c.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\1\0\0\0\0\0\0\0")
    c.close()
    fields = p.wait_log(lambda f: f.get("target") == "nx.test:443", 5, "nx.test")
    assert fields["client"] == f"127.0.0.1:{c.port}", f"client address lost: {fields['_raw']}"
