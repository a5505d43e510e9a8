"""Proxy-Status (RFC 9209) on every error answer, read by real clients
(curl -v, Python http.client) and over raw sockets; and RFC 9931: after
refusing a CONNECT, 407 included, tunneld closes the connection, so a
second request on it gets no answer."""

import http.client
import socket
import ssl
import subprocess
import time

import pytest

from conftest import (ALICE, LOOPBACK_ACL, TUNNEL_PATH, Client, basic_auth, connect_head,
                      expect_error, open_tunnel)
from test_errors import blackhole  # noqa: F401 (a fixture)
from test_faults import own_user

NAME = "tunneld"


def status_of(error, **params):
    extra = "".join(f'; {k}="{v}"' for k, v in params.items())
    return f"{NAME}; error={error}{extra}"


def refused_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]          # bound, then closed: nothing listens


def tunnel_open(target):
    """A GET/POST tunnel's open of target, as bytes."""
    body = target.encode()
    return (f"POST {TUNNEL_PATH} HTTP/1.1\r\nHost: x\r\nContent-Length: {len(body)}"
            "\r\n\r\n").encode() + body


def check(proxy, target, status, error, *headers, **params):
    resp = expect_error(proxy, connect_head(target, *headers), status)
    assert resp.header("Proxy-Status") == status_of(error, **params), resp
    return resp


def test_nxdomain_is_dns_error_with_rcode(proxy):
    check(proxy, "nx.test:443", 502, "dns_error", rcode="NXDOMAIN")


def test_name_without_address_is_dns_error_noerror(proxy, dns):
    """A name that exists with no A nor AAAA record: the nameserver said
    NOERROR, not NXDOMAIN, and the answer says so."""
    dns.zone["empty.test"] = {}
    try:
        check(proxy, "empty.test:443", 502, "dns_error", rcode="NOERROR")
        assert proxy.wait_log(lambda f: f.get("target") == "empty.test:443")["reason"] == "dns-no-address"
    finally:
        del dns.zone["empty.test"]


def test_refused_is_connection_refused(proxy):
    check(proxy, f"127.0.0.1:{refused_port()}", 502, "connection_refused")


def test_rule_deny_is_destination_ip_prohibited(make_proxy, mode, echo):
    p = make_proxy(mode, acl="deny to 127.0.0.1\nallow\n")
    resp = check(p, f"good.test:{echo.port}", 403, "destination_ip_prohibited")
    assert b"127.0.0.1" not in resp.raw + resp.body  # the address a rule hid stays hidden
    assert echo.accepted == 0


def test_loop_looks_like_a_rule_deny(proxy):
    check(proxy, f"good.test:{proxy.port}", 403, "destination_ip_prohibited")


def test_bad_request_is_http_request_error(proxy):
    check(proxy, "good.test:0", 400, "http_request_error")


def test_too_large_is_http_request_error(proxy):
    check(proxy, "good.test:443", 431, "http_request_error", "X-Pad: " + "a" * 9000)


def test_header_timeout_is_http_request_error(make_proxy):
    p = make_proxy("listen", args=["--header-timeout", "1"])
    c = Client(p.host, p.port, timeout=10)
    c.send(b"CONNECT good.test:443 HTTP/1.1\r\n")
    resp = c.response()
    assert resp.status == 408 and resp.header("Proxy-Status") == status_of(
        "http_request_error"), resp
    c.close()


def test_dns_timeout_is_dns_timeout(make_proxy, mode):
    p = make_proxy(mode, args=["--connect-timeout", "1"])
    c = Client(p.host, p.port, timeout=10)
    resp = c.request(connect_head("slow.test:443"))
    assert resp.status == 504 and resp.header("Proxy-Status") == status_of("dns_timeout"), resp
    c.close()


def test_connect_timeout_is_connection_timeout(make_proxy, blackhole):  # noqa: F811
    p = make_proxy("listen", args=["--connect-timeout", "1"])
    c = Client(p.host, p.port, timeout=10)
    resp = c.request(connect_head(f"127.0.0.1:{blackhole}"))
    assert resp.status == 504, resp
    assert resp.header("Proxy-Status") == status_of("connection_timeout"), resp
    c.close()


@pytest.mark.needs("auth")
def test_407_is_http_request_denied(make_proxy, mode, alice_hashes):
    p = make_proxy(mode, users=f"alice:{alice_hashes['openssl-sha512']}\n")
    check(p, "good.test:443", 407, "http_request_denied")
    check(p, "good.test:443", 407, "http_request_denied", basic_auth("alice", "wrong"))


@pytest.mark.needs("http-tunnel")
@pytest.mark.needs("auth")
def test_longest_answer_still_fits(make_proxy, alice_hashes):
    """The biggest head tunneld writes: a tunnel's 401 with a 64-character
    realm, Cache-Control and Proxy-Status, whole (a head too long for its
    buffer would not be sent at all)."""
    realm = "r" * 64
    p = make_proxy("listen", tunnel=TUNNEL_PATH, args=["--realm", realm],
                   users=f"alice:{alice_hashes['openssl-sha512']}\n")
    c = Client(p.host, p.port)
    resp = c.request(tunnel_open("good.test:443"))
    assert resp.status == 401, resp
    assert resp.header("Proxy-Status") == status_of("http_request_denied"), resp
    assert realm in resp.header("WWW-Authenticate"), resp
    c.close()


def test_inetd_broken_rules_is_proxy_configuration_error(make_proxy):
    p = make_proxy("inetd", acl="allow frm 10.0.0.1\n")
    check(p, "good.test:443", 500, "proxy_configuration_error")


def test_busy_is_connection_limit_reached(make_proxy, echo, tmp_path):
    """No process to be had (RLIMIT_NPROC, as in test_faults): the listener
    answers itself (answer_busy)."""
    user, wrap = own_user(tmp_path)
    p = make_proxy("listen", args=["--user", user], wrap=[*wrap, "prlimit", "--nproc=3:3", "--"])
    held = [open_tunnel(p, echo.hostport) for _ in range(2)]
    c = Client(p.host, p.port)
    c.send(connect_head(echo.hostport))
    head = c.read_until(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 503 "), head
    assert f"\r\nProxy-Status: {status_of('connection_limit_reached')}\r\n".encode() in head
    c.close()
    for h in held:
        h.close()


@pytest.mark.needs("http-tunnel")
def test_too_many_sessions_is_connection_limit_reached(make_proxy, mode, echo):
    p = make_proxy(mode, args=["--max-sessions", "1"], tunnel=TUNNEL_PATH)
    open_it = tunnel_open(echo.hostport)
    first = Client(p.host, p.port)
    assert first.request(open_it).status == 200
    c = Client(p.host, p.port)
    resp = c.request(open_it)
    assert resp.status == 503, resp
    assert resp.header("Proxy-Status") == status_of("connection_limit_reached"), resp
    c.close()
    first.close()


def test_no_proxy_status_on_success(proxy, echo):
    c = Client(proxy.host, proxy.port)
    head = c.request(connect_head(echo.hostport))
    assert head.status == 200 and head.header("Proxy-Status") is None, head
    c.close()


def test_curl_shows_it(proxy):
    """curl -v prints the answer to CONNECT: the field is there as sent."""
    r = subprocess.run(["curl", "-sv", "--max-time", "10", "--proxy",
                        f"http://127.0.0.1:{proxy.port}", "https://nx.test:443/"],
                       capture_output=True, text=True, timeout=20)
    assert r.returncode != 0
    assert f'< Proxy-Status: {status_of("dns_error", rcode="NXDOMAIN")}' in r.stderr, r.stderr


def test_http_client_reads_it(proxy):
    conn = http.client.HTTPConnection("127.0.0.1", proxy.port, timeout=10)
    conn.request("CONNECT", f"127.0.0.1:{refused_port()}")
    resp = conn.getresponse()
    assert resp.status == 502
    assert resp.getheader("Proxy-Status") == status_of("connection_refused")
    conn.close()


# --------------------------------------------------------------------------
# the GET/POST tunnel's refusals

@pytest.mark.needs("http-tunnel")
@pytest.mark.needs("auth")
def test_tunnel_refusals_carry_it(make_proxy, mode, alice_hashes):
    p = make_proxy(mode, tunnel=TUNNEL_PATH)
    c = Client(p.host, p.port)
    open_it = tunnel_open(f"127.0.0.1:{refused_port()}")
    resp = c.request(open_it)
    assert resp.status == 502 and resp.header("Proxy-Status") == status_of(
        "connection_refused"), resp
    c.close()
    c = Client(p.host, p.port)
    resp = c.request(f"GET {TUNNEL_PATH}?s={'0' * 48}&o=0 HTTP/1.1\r\nHost: x\r\n\r\n".encode())
    assert resp.status == 404 and resp.header("Proxy-Status") == status_of(
        "http_request_error"), resp
    c.close()
    p = make_proxy(mode, tunnel=TUNNEL_PATH, users=f"alice:{alice_hashes['openssl-sha512']}\n")
    c = Client(p.host, p.port)
    resp = c.request(open_it)
    assert resp.status == 401 and resp.header("Proxy-Status") == status_of(
        "http_request_denied"), resp
    c.close()


# --------------------------------------------------------------------------
# RFC 9931: the connection ends with the refusal

def no_second_answer(c):
    """After the first answer: the stream ends and carries nothing more."""
    state = c.end_state(5)
    assert state in ("eof", "reset"), state
    assert c.buf == b"", f"a second answer: {bytes(c.buf)!r}"


def second_request_gets_eof(c, first, status):
    resp = c.request(first)
    assert resp.status == status, resp
    assert (resp.header("Connection") or "").lower() == "close", resp
    try:
        c.send(connect_head("good.test:443", basic_auth(*ALICE)))
    except OSError:
        pass                               # already closed: nothing can answer it
    no_second_answer(c)


@pytest.mark.needs("auth")
@pytest.mark.parametrize("case", ["407", "403", "400"])
def test_second_request_after_refusal_sees_eof(make_proxy, mode, alice_hashes, case):
    users = f"alice:{alice_hashes['openssl-sha512']}\n"
    p = make_proxy(mode, users=users, acl="deny to 127.0.0.1\nallow\n" if case == "403"
                   else LOOPBACK_ACL)
    first = {"407": connect_head("good.test:443"),
             "403": connect_head("good.test:443", basic_auth(*ALICE)),
             "400": connect_head("good.test:0", basic_auth(*ALICE))}[case]
    c = Client(p.host, p.port)
    second_request_gets_eof(c, first, int(case))
    c.close()


@pytest.mark.needs("auth")
def test_pipelined_second_request_after_407_unanswered(make_proxy, mode, alice_hashes):
    """Both requests in one write: the credentials of the second are never
    looked at, and it gets no answer."""
    p = make_proxy(mode, users=f"alice:{alice_hashes['openssl-sha512']}\n")
    c = Client(p.host, p.port)
    resp = c.request(connect_head("good.test:443") +
                     connect_head("good.test:443", basic_auth(*ALICE)))
    assert resp.status == 407, resp
    no_second_answer(c)
    c.close()


@pytest.mark.needs("tls")
@pytest.mark.needs("auth")
def test_second_request_after_407_through_tls(make_proxy, tls_files, alice_hashes):
    p = make_proxy("listen", tls=tls_files, users=f"alice:{alice_hashes['openssl-sha512']}\n")
    ctx = ssl.create_default_context(cafile=p.cafile)
    raw = socket.create_connection((p.host, p.port), timeout=10)
    s = ctx.wrap_socket(raw, server_hostname="127.0.0.1")
    s.sendall(connect_head("good.test:443"))
    buf = b""
    deadline = time.monotonic() + 10
    while b"\r\n\r\n" not in buf and time.monotonic() < deadline:
        chunk = s.recv(4096)
        if not chunk:
            break
        buf += chunk
    assert buf.startswith(b"HTTP/1.1 407 "), buf
    assert f"Proxy-Status: {status_of('http_request_denied')}\r\n".encode() in buf, buf
    head, _, rest = buf.partition(b"\r\n\r\n")
    clen = int(head.split(b"Content-Length: ")[1].split(b"\r\n")[0])
    try:
        s.sendall(connect_head("good.test:443", basic_auth(*ALICE)))
    except OSError:
        pass
    tail = rest
    try:
        while time.monotonic() < deadline:
            chunk = s.recv(4096)
            if not chunk:
                break
            tail += chunk
    except (ssl.SSLError, ConnectionResetError):
        pass                               # a reset ends it as well
    assert tail == rest and len(rest) == clen, tail   # the body, then nothing
    s.close()
