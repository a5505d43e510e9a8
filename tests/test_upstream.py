"""An upstream proxy (--upstream): tunnels through a real squid's CONNECT,
with and without squid's own Basic auth; the rules decide first, "via"
chooses the way; the upstream's refusals mapped; a hanging upstream."""

import os
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

from conftest import (EXIT_USAGE, Client, Squid, basic_auth, basic_token, connect_head, make_hash,
                      expect_error, open_tunnel, read_head, run_tunneld)

pytestmark = pytest.mark.needs("upstream")
USER, PASSWORD = "router", "s3cret:with colon"


@pytest.fixture(scope="module")
def upstream(netfiles):
    d = Path(tempfile.mkdtemp(prefix="tunneld-squid-up-"))
    s = Squid(d, netfiles, connect=True)
    yield s
    s.stop()
    shutil.rmtree(d, ignore_errors=True)


@pytest.fixture(scope="module")
def auth_upstream(netfiles):
    d = Path(tempfile.mkdtemp(prefix="tunneld-squid-auth-"))
    d.chmod(0o755)
    pw = d / "htpasswd"
    subprocess.run(["htpasswd", "-cbm", str(pw), USER, PASSWORD], check=True,
                   capture_output=True, timeout=30)
    pw.chmod(0o644)
    s = Squid(d / "run", netfiles, connect=True, htpasswd=pw)
    yield s
    s.stop()
    shutil.rmtree(d, ignore_errors=True)


def cred_file(tmp_path, text, name="upstream-auth"):
    p = tmp_path / name
    p.write_text(text)
    p.chmod(0o600)
    return str(p)


def squid_saw(squid, hostport, timeout=5.0):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if f"CONNECT {hostport}" in squid.log():
            return True
        time.sleep(0.1)
    return False


@pytest.mark.parametrize("mode", ["listen", "inetd"])
def test_bytes_exact_through_squid(make_proxy, upstream, echo, mode):
    proxy = make_proxy(mode, args=["--upstream", upstream.url])
    blob = os.urandom(300_000)
    c = open_tunnel(proxy, echo.hostport, blob[:1000])   # optimistic bytes too
    c.send(blob[1000:])
    assert c.read_exact(len(blob), 15) == blob
    c.close()
    assert squid_saw(upstream, echo.hostport), upstream.log()
    f = proxy.wait_log(lambda f: f.get("status") == "200" and f.get("via") == "upstream")
    assert f["addr"] == f"127.0.0.1:{upstream.port}", f


def test_via_direct_and_via_upstream(make_proxy, upstream, make_target):
    direct, routed = make_target(), make_target()
    acl = (f"allow via direct to 127.0.0.1 port {direct.port}\n"
           f"allow via upstream to good.test port {routed.port}\n"
           "deny\n")
    proxy = make_proxy("listen", acl=acl, args=["--upstream", upstream.url])
    for target in (f"127.0.0.1:{direct.port}", f"good.test:{routed.port}"):
        c = open_tunnel(proxy, target)
        c.send(b"ping\n")
        assert c.read_exact(5, 5) == b"ping\n"
        c.close()
    assert squid_saw(upstream, f"good.test:{routed.port}"), upstream.log()
    assert f"127.0.0.1:{direct.port}" not in upstream.log()
    # The rules decide first: a target they deny never reaches the upstream.
    expect_error(proxy, connect_head(f"127.0.0.1:{routed.port}"), 403)
    assert f"CONNECT 127.0.0.1:{routed.port}" not in upstream.log()


def test_a_name_with_one_denied_address_does_not_go_upstream(make_proxy, upstream, echo):
    # mixed.test is 127.0.0.2 and 127.0.0.1: squid would pick either.
    acl = "deny to 127.0.0.2\nallow to 127.0.0.0/8\ndeny\n"
    proxy = make_proxy("listen", acl=acl, args=["--upstream", upstream.url])
    expect_error(proxy, connect_head(f"mixed.test:{echo.port}"), 403)
    assert "mixed.test" not in upstream.log()


def test_the_upstreams_refusals_are_mapped(make_proxy, upstream):
    proxy = make_proxy("listen", args=["--upstream", upstream.url])
    # squid's http_access forbids port 9: its 403 is tunneld's 403.
    expect_error(proxy, connect_head("127.0.0.1:9"), 403)
    f = proxy.wait_log(lambda f: f.get("reason") == "upstream-denied")
    assert f["via"] == "upstream"
    # Nothing listens there: squid answers 503, tunneld 502.
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        closed = s.getsockname()[1]
    expect_error(proxy, connect_head(f"127.0.0.1:{closed}"), 502)
    proxy.wait_log(lambda f: f.get("reason") == "upstream-refused")


def test_squid_with_auth(make_proxy, auth_upstream, echo, tmp_path):
    good = make_proxy("listen", args=["--upstream", auth_upstream.url, "--upstream-auth",
                                      cred_file(tmp_path, f"{USER}:{PASSWORD}\n")])
    c = open_tunnel(good, echo.hostport)
    c.send(b"authenticated\n")
    assert c.read_exact(14, 5) == b"authenticated\n"
    c.close()
    assert wait_for(lambda: f" {USER} " in auth_upstream.log()), auth_upstream.log()
    # A wrong password: squid's 407 is tunneld's fault, not the client's: 502,
    # and no challenge reaches the client.
    bad = make_proxy("listen", args=["--upstream", auth_upstream.url, "--upstream-auth",
                                     cred_file(tmp_path, f"{USER}:wrong", "bad")])
    resp = expect_error(bad, connect_head(echo.hostport), 502)
    assert resp.header("Proxy-Authenticate") is None
    bad.wait_log(lambda f: f.get("reason") == "upstream-auth")
    assert "wrong" not in bad.log_text() and PASSWORD not in good.log_text()
    # No credentials at all: the same.
    none = make_proxy("listen", args=["--upstream", auth_upstream.url])
    expect_error(none, connect_head(echo.hostport), 502)


def wait_for(pred, timeout=5.0):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if pred():
            return True
        time.sleep(0.1)
    return False


def fake_upstream(make_target, answer):
    """An upstream that records the request head and answers answer (None:
    never answers, holding the connection)."""
    def handler(conn, server):
        server.results.append(read_head(conn))
        if answer is None:
            time.sleep(6)
            return
        conn.sendall(answer)
        time.sleep(0.5)
    return make_target(handler)


@pytest.mark.needs("auth")
def test_the_request_says_exactly_basic_and_keeps_the_clients_credentials(
        make_proxy, make_target, tmp_path, make_users):
    fake = fake_upstream(make_target, b"HTTP/1.1 200 Connection established\r\n"
                                      b"Content-Length: 5\r\n\r\nBANNER from target")
    users = make_users(f"alice:{make_hash('openssl-sha512', 'pw')}\n")
    proxy = make_proxy("listen", users=users,
                       args=["--upstream", f"http://{fake.hostport}/", "--upstream-auth",
                             cred_file(tmp_path, f"{USER}:{PASSWORD}")])
    c = Client(proxy.host, proxy.port)
    c.send(connect_head("good.test:443", basic_auth("alice", "pw")))
    assert c.read_until(b"\r\n\r\n", 5) == b"HTTP/1.1 200 Connection established\r\n\r\n"
    # The target's bytes behind the upstream's 200 are kept, whatever its
    # Content-Length says.
    assert c.read_exact(18, 5) == b"BANNER from target"
    c.close()
    head = fake.wait_results(1)[0].decode()
    assert head.startswith("CONNECT good.test:443 HTTP/1.1\r\nHost: good.test:443\r\n"), head
    assert f"Proxy-Authorization: Basic {basic_token(USER, PASSWORD)}\r\n" in head, head
    assert basic_token("alice", "pw") not in head, head
    assert PASSWORD not in proxy.log_text()


def test_an_upstream_that_hangs(make_proxy, make_target):
    fake = fake_upstream(make_target, None)
    proxy = make_proxy("listen", args=["--upstream", f"http://{fake.hostport}",
                                       "--connect-timeout", "1"])
    t = time.monotonic()
    expect_error(proxy, connect_head("good.test:443"), 504)
    assert time.monotonic() - t < 4
    proxy.wait_log(lambda f: f.get("reason") == "upstream-timeout")


def test_an_upstream_that_refuses_the_connection(make_proxy):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        closed = s.getsockname()[1]
    proxy = make_proxy("listen", args=["--upstream", f"http://127.0.0.1:{closed}"])
    expect_error(proxy, connect_head("good.test:443"), 502)
    proxy.wait_log(lambda f: f.get("reason") == "upstream-connect-failed")


def test_an_upstream_that_is_this_tunneld(make_proxy, free_port_here=None):
    from conftest import free_port
    port = free_port()
    proxy = make_proxy("listen", port=port, args=["--upstream", f"http://127.0.0.1:{port}"])
    expect_error(proxy, connect_head("good.test:443"), 502)
    proxy.wait_log(lambda f: f.get("reason") == "upstream-loop")


def tls_front(make_target, upstream, tls_files):
    """A TLS front (Python's ssl) before squid, in one thread: an SSL
    object read and written from two threads at once corrupts its stream."""
    import select
    import ssl
    cert, key = tls_files
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(cert, key)

    def front(conn, server):
        tls = ctx.wrap_socket(conn, server_side=True)
        back = socket.create_connection(("127.0.0.1", upstream.port), timeout=10)
        ends = set()
        deadline = time.monotonic() + 60
        while len(ends) < 2 and time.monotonic() < deadline:
            ready = [] if tls.pending() else select.select(
                [x for x in (tls, back) if x not in ends], [], [], 1)[0]
            if tls.pending() or tls in ready:
                b = tls.recv(65536)
                if b:
                    back.sendall(b)
                else:
                    back.shutdown(socket.SHUT_WR)
                    ends.add(tls)
            if back in ready:
                b = back.recv(65536)
                if b:
                    tls.sendall(b)
                else:
                    ends.add(back)
        tls.close()
        back.close()
    return make_target(front)


@pytest.mark.needs("tls")
def test_https_upstream(make_proxy, upstream, echo, tls_files, make_target):
    """tunneld speaks TLS to the front before squid, checking its
    certificate against --upstream-cacert."""
    cert, _ = tls_files
    fr = tls_front(make_target, upstream, tls_files)
    proxy = make_proxy("listen", args=["--upstream", f"https://good.test:{fr.port}",
                                       "--upstream-cacert", str(cert)])
    blob = os.urandom(100_000)
    c = open_tunnel(proxy, echo.hostport, blob)
    assert c.read_exact(len(blob), 15) == blob
    c.close()
    assert squid_saw(upstream, echo.hostport)


@pytest.mark.parametrize("args, words", [
    (["--upstream", "http://user:pw@127.0.0.1:3128"], ["--upstream", "--upstream-auth"]),
    (["--upstream", "socks5://127.0.0.1:1080"], ["--upstream", "http://"]),
    (["--upstream", "http://127.0.0.1"], ["--upstream", "port"]),
    pytest.param(["--upstream", "https://127.0.0.1:3128"], ["--upstream-cacert"],
                 marks=pytest.mark.needs("tls")),
    (["--upstream-auth", "/dev/null"], ["--upstream-auth needs --upstream"]),
])
def test_bad_upstream_options(netfiles, args, words):
    r = run_tunneld(args, netfiles)
    assert r.returncode == EXIT_USAGE, r
    err = r.stderr.decode()
    assert err.count("\n") == 1 and all(w in err for w in words), err
    assert "pw@" not in err and ":pw" not in err


@pytest.mark.parametrize("text, where", [("nocolon\n", ":1:"), ("a:b\nc:d\n", ":2:"),
                                         (":nouser", ":1:"), ("a:b\x01", ":1:")])
def test_bad_upstream_auth_file(netfiles, tmp_path, text, where):
    f = cred_file(tmp_path, text)
    r = run_tunneld(["--upstream", "http://127.0.0.1:3128", "--upstream-auth", f,
                     "--log", "stderr", "--listen", "127.0.0.1:0"], netfiles)
    assert r.returncode == 78, r
    assert f + where in r.stderr.decode(), r.stderr


def test_via_upstream_without_upstream(netfiles, tmp_path):
    acl = tmp_path / "acl"
    acl.write_text("allow via upstream port 443\n")
    r = run_tunneld(["--acl", str(acl), "--log", "stderr", "--listen", "127.0.0.1:0"], netfiles)
    assert r.returncode == 78 and f"{acl}:1: 'via upstream' without --upstream" in \
        r.stderr.decode(), r


def test_a_name_unknown_here_is_judged_by_name(make_proxy, upstream):
    """nx.test has no address here: the rules judge the name alone and the
    upstream is asked (squid's dst rule cannot hold for it: its 403); "via
    direct" for it answers as a failed lookup does."""
    acl = "allow via direct to nx.test port 444\nallow to nx.test\ndeny\n"
    proxy = make_proxy("listen", acl=acl, args=["--upstream", upstream.url])
    expect_error(proxy, connect_head("nx.test:443"), 403)
    proxy.wait_log(lambda f: f.get("reason") == "upstream-denied")
    assert squid_saw(upstream, "nx.test:443"), upstream.log()
    expect_error(proxy, connect_head("nx.test:444"), 502)
    proxy.wait_log(lambda f: f.get("reason") == "dns-no-such-name")
    assert "nx.test:444" not in upstream.log()


@pytest.mark.needs("http-tunnel")
def test_a_session_whose_target_speaks_first_through_the_upstream(make_proxy, make_target):
    """A GET/POST session through the upstream to a target that speaks
    first (an SSH server's banner), its bytes in the same segment as the
    upstream's 200: the session's first receive has them."""
    from test_http_tunnel import TUNNEL_PATH, Conn
    fake = fake_upstream(make_target, b"HTTP/1.1 200 Connection established\r\n\r\n"
                                      b"SSH-2.0-target\r\n")
    proxy = make_proxy("listen", tunnel=TUNNEL_PATH, args=["--upstream", f"http://{fake.hostport}/"])
    c = Conn(proxy)
    token = c.open_ok("good.test:443")
    data, _ = c.recv_until(token, 0, 16, timeout=10)
    assert data == b"SSH-2.0-target\r\n"
    c.delete(token)
    c.close()
    assert fake.wait_results(1)[0].startswith(b"CONNECT good.test:443 HTTP/1.1\r\n")


@pytest.mark.needs("tls")
@pytest.mark.needs("http-tunnel")
def test_a_session_through_an_https_upstream(make_proxy, upstream, make_target, tls_files, echo):
    """A GET/POST session whose target is reached through an https://
    upstream: its holder relays through TLS, both ways, every byte."""
    from test_http_tunnel import TUNNEL_PATH, Conn
    cert, _ = tls_files
    fr = tls_front(make_target, upstream, tls_files)
    proxy = make_proxy("listen", tunnel=TUNNEL_PATH,
                       args=["--upstream", f"https://good.test:{fr.port}", "--upstream-cacert", str(cert)])
    c = Conn(proxy)
    token = c.open_ok(echo.hostport)
    blob = os.urandom(200_000)
    off = 0
    for i in range(0, len(blob), 50_000):
        c.send_ok(token, off, blob[i:i + 50_000])
        off += 50_000
    try:
        data, _ = c.recv_until(token, 0, len(blob), timeout=15)
    except AssertionError as e:
        raise AssertionError(f"{e}; tunneld's log: {proxy.log_text()}") from None
    assert data == blob, proxy.log_text()
    c.delete(token)
    c.close()
    assert squid_saw(upstream, echo.hostport), proxy.log_text()
