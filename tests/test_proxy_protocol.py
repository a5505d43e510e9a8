"""--proxy-protocol: a real HAProxy in TCP mode (send-proxy-v2, and
send-proxy for v1) in front of tunneld in each serving mode, with clients
that bind their own 127/8 source: the `from` rules and the log line go by
the client HAProxy names. Then the attacks, straight to tunneld: a forged
header from a peer not on the list, a listed peer that sends none, and
truncated, oversized and garbage headers."""

import os
import shutil
import socket
import ssl
import struct
import subprocess

import pytest

from conftest import (OK_REPLY, clean_env, connect_head, end_server, free_port, listening,
                      wait_until)

pytestmark = pytest.mark.needs("proxy-protocol")

# Only 127.0.0.2 may use the proxy; HAProxy itself (127.0.0.1) may not.
ACL = "allow from 127.0.0.2 to 127.0.0.0/8\ndeny\n"
TRUST = ["--proxy-protocol", "127.0.0.1,10.0.0.0/8"]
V2SIG = b"\r\n\r\n\0\r\nQUIT\n"


class HAProxy:
    """haproxy in the foreground (-db), mode tcp, one frontend on a port of
    its own for each backend port, each server line sending `send`."""

    def __init__(self, workdir, backends, send="send-proxy-v2"):
        exe = shutil.which("haproxy") or "/usr/sbin/haproxy"
        if not os.access(exe, os.X_OK):
            pytest.fail("haproxy missing (Debian package haproxy; `make deps` installs it)")
        workdir.mkdir(parents=True, exist_ok=True)
        self.ports = [free_port() for _ in backends]
        conf = ["defaults", "    mode tcp", "    timeout connect 5s", "    timeout client 20s",
                "    timeout server 20s"]
        for i, (front, back) in enumerate(zip(self.ports, backends)):
            conf += [f"listen t{i}", f"    bind 127.0.0.1:{front}",
                     f"    server s{i} 127.0.0.1:{back} {send}"]
        (workdir / "haproxy.cfg").write_text("\n".join(conf) + "\n")
        self.out = workdir / "haproxy.out"
        self.outf = open(self.out, "ab")
        self.proc = subprocess.Popen([exe, "-db", "-f", str(workdir / "haproxy.cfg")],
                                     stdin=subprocess.DEVNULL, stdout=self.outf,
                                     stderr=self.outf, env=clean_env())
        up = wait_until(lambda: all(listening(p) for p in self.ports)
                        or self.proc.poll() is not None, 10)
        if not up or self.proc.poll() is not None:
            self.stop()
            pytest.fail(f"haproxy did not start: {self.out.read_text()}")

    def stop(self):
        end_server(self.proc)
        self.outf.close()


@pytest.fixture
def haproxy(tmp_path):
    made = []

    def make(backends, send="send-proxy-v2"):
        made.append(HAProxy(tmp_path / f"haproxy{len(made)}", backends, send))
        return made[-1]
    yield make
    for h in made:
        h.stop()


def dial(port, source, timeout=5.0):
    """A connection to 127.0.0.1:port from source (a 127/8 address)."""
    s = socket.socket()
    s.settimeout(timeout)
    s.bind((source, 0))
    s.connect(("127.0.0.1", port))
    return s


def read_all(s, limit=1 << 16):
    """Everything until the peer closes (a reset counts as a close)."""
    out = b""
    try:
        while len(out) < limit:
            d = s.recv(4096)
            if not d:
                break
            out += d
    except ConnectionResetError:
        pass
    return out


def read_head(s, rest=None):
    """The answer's head; what came after it goes into the list rest."""
    out = b""
    while b"\r\n\r\n" not in out:
        d = s.recv(4096)
        if not d:
            break
        out += d
    head, _, after = out.partition(b"\r\n\r\n")
    if rest is not None:
        rest.append(after)
    return head + b"\r\n\r\n"


def tunnel_echoes(s, sent, more=b""):
    """After the CONNECT with sent after its head: a 200, then the echo
    target's copy of sent and of more (sent once the 200 is read)."""
    rest = []
    assert read_head(s, rest) == OK_REPLY
    s.sendall(more)
    got = rest[0]
    while len(got) < len(sent + more):
        d = s.recv(4096)
        assert d, got
        got += d
    assert got == sent + more


def v1(src, dst, sport, dport):
    fam = "TCP6" if ":" in src else "TCP4"
    return f"PROXY {fam} {src} {dst} {sport} {dport}\r\n".encode()


def v2(src, dst, sport, dport, cmd=1, tlvs=b""):
    body = socket.inet_aton(src) + socket.inet_aton(dst) + struct.pack("!HH", sport, dport) + tlvs
    return V2SIG + bytes([0x20 | cmd, 0x11]) + struct.pack("!H", len(body)) + body


@pytest.mark.parametrize("send", ["send-proxy-v2", "send-proxy"])
def test_haproxy_in_front_of_three_tunnelds(make_proxy, echo, haproxy, send):
    """Three tunnelds (--listen, inetd, LISTEN_FDS) behind one HAProxy: the
    allowed client's tunnel works byte for byte, the other's is refused by
    the rule on its own address, and each log line names the real client
    and HAProxy as peer=."""
    proxies = [make_proxy(m, acl=ACL, args=TRUST) for m in ("listen", "inetd", "systemd")]
    ha = haproxy([p.port for p in proxies], send)
    for p, front in zip(proxies, ha.ports):
        ok = dial(front, "127.0.0.2")
        ok.sendall(connect_head(echo.hostport) + b"early bytes;")
        tunnel_echoes(ok, b"early bytes;", b"more")
        ok_port = ok.getsockname()[1]
        ok.close()
        bad = dial(front, "127.0.0.3")
        bad.sendall(connect_head(echo.hostport))
        assert read_head(bad).startswith(b"HTTP/1.1 403 ")
        bad_port = bad.getsockname()[1]
        bad.close()
        good = p.wait_log(lambda f: f.get("client") == f"127.0.0.2:{ok_port}")
        assert good["status"] == "200" and good["peer"].startswith("127.0.0.1:"), good["_raw"]
        denied = p.wait_log(lambda f: f.get("client") == f"127.0.0.3:{bad_port}")
        assert denied["status"] == "403" and denied["reason"] == "denied", denied["_raw"]
        assert denied["peer"].startswith("127.0.0.1:"), denied["_raw"]
    assert echo.accepted == 3


@pytest.mark.needs("tls")
def test_haproxy_in_front_of_tls(make_proxy, echo, haproxy, tls_files):
    """With --cert the header comes before the ClientHello: HAProxy in TCP
    mode passes TLS through, and the rules still see the real client."""
    p = make_proxy("listen", acl=ACL, args=TRUST, tls=tls_files)
    ha = haproxy([p.port])
    ctx = ssl.create_default_context(cafile=str(tls_files[0]))
    for source, status in (("127.0.0.2", b"200"), ("127.0.0.3", b"403")):
        s = ctx.wrap_socket(dial(ha.ports[0], source), server_hostname="good.test")
        s.sendall(connect_head(echo.hostport))
        assert read_head(s).split(b" ")[1] == status
        port = s.getsockname()[1]
        s.close()
        line = p.wait_log(lambda f: f.get("client") == f"{source}:{port}")
        assert line["status"] == status.decode(), line["_raw"]


@pytest.mark.parametrize("header", [v1("127.0.0.2", "127.0.0.1", 1234, 3128),
                                    v2("127.0.0.2", "127.0.0.1", 1234, 3128)],
                         ids=["v1", "v2"])
def test_forged_header_from_an_untrusted_peer_is_refused(make_proxy, echo, header):
    """127.0.0.3 is not on the list: its header naming the allowed client
    is a forgery, answered 400, and the target never reached."""
    p = make_proxy("listen", acl=ACL, args=TRUST)
    s = dial(p.port, "127.0.0.3")
    s.sendall(header + connect_head(echo.hostport))
    answer = read_all(s)
    assert answer.startswith(b"HTTP/1.1 400 "), answer
    line = p.wait_log(lambda f: f.get("client") == f"127.0.0.3:{s.getsockname()[1]}")
    assert line["reason"] == "proxy-header-untrusted" and "peer" not in line, line["_raw"]
    assert echo.accepted == 0


def test_without_the_option_a_header_is_refused(make_proxy, echo):
    p = make_proxy("listen", acl="allow\n")
    s = dial(p.port, "127.0.0.2")
    s.sendall(v1("10.1.1.1", "127.0.0.1", 1, 2) + connect_head(echo.hostport))
    assert read_all(s).startswith(b"HTTP/1.1 400 ")
    assert echo.accepted == 0


@pytest.mark.parametrize("mode", ["listen", "inetd"])
@pytest.mark.parametrize("data,reason", [
    (b"", "proxy-header-missing"),  # sent only as the request below
    (b"PROXY TCP4 127.0.0.2 127.0.0.1 1", "proxy-header-timeout"),
    (V2SIG + b"\x21\x11\x00\x0c\x7f\x00", "proxy-header-timeout"),
    (b"PROXY UNKNOWN " + b"x" * 100 + b"\r\n", "proxy-header-bad"),
    (V2SIG + b"\x21\x11\x07\xd0" + b"\0" * 100, "proxy-header-bad"),
    (V2SIG + b"\x11\x11\x00\x0c" + b"\0" * 12, "proxy-header-bad"),
    (V2SIG + b"\x21\x12\x00\x0c" + b"\0" * 12, "proxy-header-bad"),
    (v2("127.0.0.2", "127.0.0.1", 1, 2, tlvs=b"\x04\x00\x09abc"), "proxy-header-bad"),
    (b"PROXY TCP4 127.0.0.2 127.0.0.1 01 2\r\n", "proxy-header-bad"),
    (b"PROXY TCP4 127.0.0.2 127.0.0.1 1 2\n", "proxy-header-bad"),
], ids=["none", "v1-cut", "v2-cut", "v1-too-long", "v2-too-long", "v2-version", "v2-udp",
        "v2-tlv-overrun", "v1-leading-zero", "v1-no-cr"])
def test_trusted_peer_without_a_good_header_is_closed(make_proxy, echo, mode, data, reason):
    """From a listed peer, anything but a whole, valid header is closed
    unanswered (the protocol says abort), within --header-timeout, and
    logged; the request after it never reaches the target."""
    p = make_proxy(mode, acl="allow\n", args=[*TRUST, "--header-timeout", "1"])
    s = dial(p.port, "127.0.0.1")
    s.sendall(data + (connect_head(echo.hostport) if reason != "proxy-header-timeout" else b""))
    assert read_all(s) == b""
    line = p.wait_log(lambda f: f.get("reason", "").startswith("proxy-header"))
    assert line["reason"] == reason and line["status"] == "0", line["_raw"]
    assert echo.accepted == 0


@pytest.mark.parametrize("header", [V2SIG + b"\x20\x00\x00\x00", b"PROXY UNKNOWN\r\n",
                                    V2SIG + b"\x20\x11\x00\x0c" + bytes(12)],
                         ids=["v2-local", "v1-unknown", "v2-local-addresses"])
def test_local_header_keeps_the_socket_address(make_proxy, echo, header):
    """A health check (v2 LOCAL, v1 UNKNOWN) names no client: the peer's
    own address holds, which the rule here allows, and it is logged."""
    p = make_proxy("listen", acl="allow from 127.0.0.1\ndeny\n", args=TRUST)
    s = dial(p.port, "127.0.0.1")
    s.sendall(header + connect_head(echo.hostport) + b"ping")
    tunnel_echoes(s, b"ping")
    port = s.getsockname()[1]
    s.close()
    line = p.wait_log(lambda f: f.get("client") == f"127.0.0.1:{port}")
    assert line["status"] == "200", line["_raw"]


def test_the_header_client_cannot_escape_the_rules(make_proxy, echo):
    """A listed peer naming a client the rules deny gets the 403 that
    client would; the same peer naming an allowed one gets through."""
    p = make_proxy("listen", acl=ACL, args=TRUST)
    for src, want in (("10.9.9.9", b"403"), ("127.0.0.2", b"200")):
        s = dial(p.port, "127.0.0.1")
        s.sendall(v2(src, "127.0.0.1", 4444, p.port) + connect_head(echo.hostport))
        assert read_head(s).split(b" ")[1] == want
        s.close()
        line = p.wait_log(lambda f: f.get("client") == f"{src}:4444")
        assert line["status"] == want.decode(), line["_raw"]


def test_loop_through_the_balancer_is_refused(make_proxy, echo):
    """The address the header says the client reached leads back through
    the balancer: a CONNECT to it is a loop, never connected."""
    p = make_proxy("listen", acl=ACL, args=TRUST)
    s = dial(p.port, "127.0.0.1")
    s.sendall(v1("127.0.0.2", "127.0.0.1", 5555, echo.port) + connect_head(echo.hostport))
    assert read_all(s).startswith(b"HTTP/1.1 403 ")
    line = p.wait_log(lambda f: f.get("client") == "127.0.0.2:5555")
    assert line["reason"] == "loop", line["_raw"]
    assert echo.accepted == 0


@pytest.mark.parametrize("value", ["", "10.0.0.0/33", "a.b", "127.0.0.1,,127.0.0.2",
                                   ",".join(["127.0.0.1"] * 17)])
def test_bad_list_is_a_usage_error(netfiles, value):
    from conftest import EXIT_USAGE, run_tunneld
    r = run_tunneld(["--proxy-protocol", value], netfiles)
    assert r.returncode == EXIT_USAGE
    err = r.stderr.decode()
    assert err.count("\n") == 1 and "--proxy-protocol" in err, err


@pytest.mark.needs("http-tunnel")
def test_session_limits_count_the_real_client(make_proxy, mode, echo):
    """GET/POST sessions behind a balancer: --max-client-sessions counts
    the client each header names, not the balancer, and requests handed to
    the session's holder work from any connection."""
    from conftest import TUNNEL_PATH, Client
    from test_http_tunnel import Conn

    class ConnVia(Conn):
        """A Conn from the balancer's address, its header naming src."""

        def __init__(self, proxy, src, sport):
            self.proxy, self.path, self.prefix = proxy, TUNNEL_PATH, ""
            self.c = Client(proxy.host, proxy.port, 10)
            self.c.send(v2(src, "127.0.0.1", sport, proxy.port))

    p = make_proxy(mode, acl="allow\n", tunnel=TUNNEL_PATH,
                   args=[*TRUST, "--max-client-sessions", "1"])
    a = ConnVia(p, "10.0.0.7", 1111).open_ok(echo.hostport)
    over = ConnVia(p, "10.0.0.7", 1112).open(echo.hostport)
    assert over.status == 503, over
    b = ConnVia(p, "10.0.0.8", 1113).open_ok(echo.hostport)
    ConnVia(p, "10.0.0.8", 1114).send_ok(a, 0, b"to a")
    assert ConnVia(p, "10.0.0.7", 1115).recv_until(a, 0, 4) == (b"to a", False)
    assert ConnVia(p, "10.0.0.8", 1116).delete(b).status == 200
    assert ConnVia(p, "10.0.0.7", 1117).delete(a).status == 200
    line = p.wait_log(lambda f: f.get("client") == "10.0.0.7:1112")
    assert line["status"] == "503" and line["peer"].startswith("127.0.0.1:"), line["_raw"]
    p.wait_log(lambda f: f.get("client") == "10.0.0.7:1111" and f.get("status") == "200")


@pytest.mark.needs("ipv6")
def test_ipv6_peer_and_client(make_proxy, echo):
    """A balancer on ::1 naming an IPv6 client (v1 TCP6): the rule on the
    client's prefix allows it, the log line names it in brackets."""
    p = make_proxy("listen", host="::1", acl="allow from 2001:db8::/32\ndeny\n",
                   args=["--proxy-protocol", "::1"])
    for src, want in (("2001:db8::5", b"200"), ("2001:db9::5", b"403")):
        s = socket.create_connection(("::1", p.port), 5)
        s.sendall(v1(src, "::1", 7777, p.port) + connect_head(echo.hostport))
        assert read_head(s).split(b" ")[1] == want
        s.close()
        line = p.wait_log(lambda f: f.get("client") == f"[{src}]:7777")
        assert line["status"] == want.decode() and line["peer"].startswith("[::1]:"), line["_raw"]
