"""GET/POST sessions across nodes (`--node NAME`, PROTOCOL.md "More than
one node"): a real HAProxy in HTTP mode, started with contrib/haproxy.cfg
as shipped but for its ports, balances the opens round-robin over three
tunneld nodes and sends every later request to the node its token names.
Twenty sessions of 1 MiB each way through the real `tunnel` client, every
byte exact, each request on its session's node (HAProxy's log and the
nodes'); a token of another node, of no node, or forged is a plain 404 that
leaks nothing and disturbs nothing."""

import hashlib
import os
import re
import secrets
import select
import shutil
import subprocess
import threading
import time

import pytest

from conftest import (REPO, Client, assert_error_reply, clean_env, echo_handler, end_server,
                      free_port, listening, netns_wrap, read_request, source_sink, wait_until)
from test_tunnel_client import stream

pytestmark = pytest.mark.needs("http-tunnel")

MiB = 1 << 20
NODES = ("n1", "n2", "n3")
SHIPPED = REPO / "contrib" / "haproxy.cfg"
TOKEN_RE = re.compile(r"([a-z0-9-]{1,32})\.([0-9a-f]{48})")
# The shipped log-format: client, method, URI, status, server, token's node.
HAPROXY_LINE = re.compile(r"^\S+ (\S+) (\S+) (\d+) server=(\S+) token_node=(\S*)$")


class HAProxy:
    """Debian's haproxy in the foreground (-db) with contrib/haproxy.cfg,
    its ports (and only them) rewritten; its log lines on stdout."""

    def __init__(self, workdir, netfiles, node_ports):
        exe = shutil.which("haproxy") or "/usr/sbin/haproxy"
        if not os.access(exe, os.X_OK):
            pytest.fail("haproxy missing (Debian package haproxy; `make deps` installs it)")
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}/"
        text = SHIPPED.read_text()
        for shipped, port in [(8080, self.port), *zip((8081, 8082, 8083), node_ports)]:
            old = f"127.0.0.1:{shipped}\n"
            assert text.count(old) == 1, f"{SHIPPED.name} no longer has one {old!r}"
            text = text.replace(old, f"127.0.0.1:{port}\n")
        workdir.mkdir(parents=True, exist_ok=True)
        conf = workdir / "haproxy.cfg"
        conf.write_text(text)
        self.log_path = workdir / "haproxy.out"
        self.outf = open(self.log_path, "ab")
        self.proc = subprocess.Popen(netns_wrap([exe, "-db", "-f", str(conf)], netfiles),
                                     stdin=subprocess.DEVNULL, stdout=self.outf,
                                     stderr=self.outf, env=clean_env())
        up = wait_until(lambda: listening(self.port) or self.proc.poll() is not None, 15)
        if not up or self.proc.poll() is not None:
            self.stop()
            pytest.fail(f"haproxy did not start: rc={self.proc.returncode} "
                        f"{self.log_path.read_text()}")

    def requests(self):
        """Its request log lines: (method, uri, status, server, token_node)."""
        out = []
        for line in self.log_path.read_text(errors="replace").splitlines():
            m = HAPROXY_LINE.match(line)
            if m:
                method, uri, status, server, node = m.groups()
                out.append((method, uri, int(status), server, "" if node == "-" else node))
        return out

    def stop(self):
        end_server(self.proc)
        self.outf.close()


def start_nodes(make_proxy, mode="listen"):
    """Three tunneld nodes n1..n3 (the tunnel at /); HAProxy reaches them
    all from one address, hence --max-client-sessions."""
    return [make_proxy(mode, tunnel=True, args=["--node", name, "--max-client-sessions", "64"])
            for name in NODES]


@pytest.fixture
def nodes(make_proxy):
    return start_nodes(make_proxy)


@pytest.fixture
def haproxy(tmp_path, netfiles, nodes):
    h = HAProxy(tmp_path / "haproxy", netfiles, [p.port for p in nodes])
    yield h
    h.stop()


def session_lines(node):
    return [f for f in node.log_lines() if f.get("status") == "200"]


def refusals(node):
    return [f for f in node.log_lines() if f.get("status") != "200"]


# --------------------------------------------------------------------------
# 20 sessions through HAProxy

def run_session(tunnel_bin, url, target, up, out):
    """One `tunnel` stdin/stdout session; out gets stream()'s result."""
    out.append(stream([tunnel_bin, url, target], up, timeout=150, early_end_ok=True))


def test_twenty_sessions_each_on_its_node(tunnel_bin, nodes, haproxy, make_target):
    count = 20
    downs = [os.urandom(MiB) for _ in range(count)]
    ups = [os.urandom(MiB) for _ in range(count)]
    targets = [make_target(source_sink(d)) for d in downs]
    results = [[] for _ in range(count)]
    threads = [threading.Thread(target=run_session, daemon=True,
                                args=(tunnel_bin, haproxy.url, targets[i].hostport, ups[i],
                                      results[i])) for i in range(count)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(180)
    for i in range(count):
        assert results[i], f"session {i} did not end"
        rc, got, err = results[i][0]
        assert rc == 0, (i, rc, err)
        assert got == (hashlib.sha256(downs[i]).hexdigest(), MiB), f"session {i}: bytes differ"
        assert targets[i].wait_results(1, 30) == [
            (hashlib.sha256(ups[i]).hexdigest(), MiB, "eof")], f"session {i}: bytes up differ"

    # Each node logs each of its sessions once it ends (after the DELETE).
    assert wait_until(lambda: sum(len(session_lines(p)) for p in nodes) >= count, 15), \
        [p.log_text() for p in nodes]
    held = {}
    for name, p in zip(NODES, nodes):
        assert refusals(p) == [], p.log_text()   # no request went astray
        for f in session_lines(p):
            assert (f["up"], f["down"]) == (str(MiB), str(MiB)), f["_raw"]
            held[f["target"]] = name
    assert sorted(held) == sorted(t.hostport for t in targets), held

    # HAProxy's view: the opens (no token) round-robin, every other request
    # on the server its token names; many requests per session.
    reqs = haproxy.requests()
    opens = [r for r in reqs if not r[4]]
    assert all(r[0] == "POST" and r[2] == 200 for r in opens), opens
    per_node = [sum(r[3] == name for r in opens) for name in NODES]
    assert sum(per_node) == count and max(per_node) - min(per_node) <= 1, per_node
    assert per_node == [sum(v == name for v in held.values()) for name in NODES], \
        (per_node, held)
    rest = [r for r in reqs if r[4]]
    assert all(r[3] == r[4] for r in rest), [r for r in rest if r[3] != r[4]]
    assert all(r[2] == 200 for r in rest), [r for r in rest if r[2] != 200]
    assert len(rest) >= count * (MiB // 65536 + MiB // (512 * 1024)), len(rest)
    assert {r[0] for r in rest} == {"GET", "POST", "DELETE"}


# --------------------------------------------------------------------------
# tokens of other nodes, of none, forged

def request(node_or_port, method, token=None, body=b"", query="", client=None):
    """One request on client (a fresh connection to the port if None);
    (client, response)."""
    c = client or Client("127.0.0.1", node_or_port, 30)
    head = [f"{method} /{query} HTTP/1.1", "Host: nodes.test"]
    if token is not None:
        head.append(f"Tunnel-Token: {token}")
    if method == "POST":
        head.append(f"Content-Length: {len(body)}")
    return c, c.request(("\r\n".join(head) + "\r\n\r\n").encode() + body)


def open_on(node, target):
    c, r = request(node.port, "POST", body=target.encode())
    assert r.status == 200, r
    token = r.body.decode().strip()
    m = TOKEN_RE.fullmatch(token)
    assert m, token
    return c, token, m.group(1), m.group(2)


def echo_round(node, token, off, data, client=None):
    """A send of data at off and the receive of its echo, on node."""
    c, r = request(node.port, "POST", token, data, f"?o={off}", client)
    assert r.status == 200 and r.header("Tunnel-Offset") == str(off + len(data)), r
    got = b""
    for _ in range(20):
        c, r = request(node.port, "GET", token, query=f"?o={off + len(got)}", client=c)
        assert r.status == 200, r
        got += r.body
        if len(got) >= len(data):
            break
    assert got == data
    return c


def assert_plain_404(c, r):
    """Like any unknown session's: no Tunnel-Offset, the same one line."""
    assert_error_reply(c, r, 404)
    assert r.header("Tunnel-Offset") is None, r
    assert r.header("Tunnel-Eof") is None, r


def test_token_of_another_node_is_refused(make_proxy, mode, make_target):
    nodes = start_nodes(make_proxy, mode)
    n1, n2, _ = nodes
    echo = make_target(echo_handler)
    c, token, name, hexpart = open_on(n1, echo.hostport)
    assert name == "n1"
    c = echo_round(n1, token, 0, b"before\n", c)

    # What n2 says to a session it never had: the reference answer.
    ref_c, ref = request(n2.port, "GET", "n2." + secrets.token_hex(24), query="?o=0")
    assert_plain_404(ref_c, ref)
    # n1's token, as it is and renamed to n2, on fresh connections to n2
    # (the process that takes the connection) and on the kept-alive
    # connection of a session n2 holds (its holder).
    holder_c, _, _, _ = open_on(n2, echo.hostport)   # kept by its holder
    for tok in (token, "n2." + hexpart, hexpart):
        for method, body, query in (("GET", b"", "?o=7"), ("POST", b"stolen", "?o=7"),
                                    ("DELETE", b"", "")):
            c2, r = request(n2.port, method, tok, body, query)
            assert_plain_404(c2, r)
            assert (r.status_line, r.body) == (ref.status_line, ref.body)
    _, r = request(n2.port, "GET", token, query="?o=7", client=holder_c)
    assert (r.status_line, r.body) == (ref.status_line, ref.body)
    assert_plain_404(holder_c, r)
    # The session on n1 went on untouched: nothing taken, nothing lost.
    c = echo_round(n1, token, 7, b"after\n", Client("127.0.0.1", n1.port, 30))
    _, r = request(n1.port, "DELETE", token, client=c)
    assert r.status == 200, r

    # n2 logged the astray ones as such, and never a byte of the token.
    astray = n2.wait_log(lambda f: f.get("reason") == "other-node", what="other-node")
    assert astray["status"] == "404" and astray["up"] == "0" and astray["down"] == "0"
    assert wait_until(lambda: sum(f.get("reason") == "other-node"
                                  for f in n2.log_lines()) >= 6, 10), n2.log_text()
    for p in nodes:
        assert hexpart[:16] not in p.log_text() and hexpart[16:] not in p.log_text()


def test_forged_and_foreign_tokens_through_haproxy(nodes, haproxy, make_target):
    echo = make_target(echo_handler)
    port = haproxy.port
    c, r = request(port, "POST", body=echo.hostport.encode())
    assert r.status == 200, r
    token = r.body.decode().strip()
    name, hexpart = TOKEN_RE.fullmatch(token).groups()
    other = next(n for n in NODES if n != name)
    secret_flipped = hexpart[:16] + format(int(hexpart[16:], 16) ^ 1, "032x")
    for tok in (f"{name}.{secret_flipped}",        # forged secret, right node
                f"{other}.{hexpart}",              # the right id, another node
                f"zz.{hexpart}",                   # a node HAProxy does not know
                hexpart,                           # no node at all
                f"{name}.{hexpart}x", f"{name}.{hexpart}".upper(), "",
                "n1." + "0" * 48, "n" * 200 + "." + hexpart):
        c2, r = request(port, "GET", tok, query="?o=0")
        assert r.status == 404, (tok, r)
        assert r.header("Tunnel-Offset") is None, (tok, r)
        c2.close()
    # Two tokens where HAProxy routes on one (the last field of a list, the
    # last of two lines) and tunneld sees both: refused, never served.
    for extra in (f"Tunnel-Token: {other}.{hexpart}, {token}",
                  f"Tunnel-Token: {other}.{hexpart}\r\nTunnel-Token: {token}"):
        c2 = Client("127.0.0.1", port, 30)
        r = c2.request(f"POST /?o=0 HTTP/1.1\r\nHost: nodes.test\r\n{extra}\r\n"
                       "Content-Length: 6\r\n\r\nstolen".encode())
        assert r.status in (400, 404) and r.header("Tunnel-Offset") is None, (extra, r)
        c2.close()
    # The session is intact through HAProxy.
    for off, data in ((0, b"one\n"), (4, b"two\n")):
        _, r = request(port, "POST", token, data, f"?o={off}")
        assert r.status == 200 and r.header("Tunnel-Offset") == str(off + len(data)), r
    got = b""
    for _ in range(20):
        _, r = request(port, "GET", token, query=f"?o={len(got)}")
        assert r.status == 200, r
        got += r.body
        if len(got) >= 8:
            break
    assert got == b"one\ntwo\n"
    # No token's secret in HAProxy's log (only the node names it captured).
    assert hexpart[16:] not in haproxy.log_path.read_text()
    assert secret_flipped[16:] not in haproxy.log_path.read_text()


def test_without_node_a_named_token_is_no_session(make_proxy, mode, make_target):
    p = make_proxy(mode, tunnel=True)
    echo = make_target(echo_handler)
    c, r = request(p.port, "POST", body=echo.hostport.encode())
    assert r.status == 200 and re.fullmatch(rb"[0-9a-f]{48}\n", r.body), r
    token = r.body.decode().strip()
    c2, r = request(p.port, "GET", "n1." + token, query="?o=0")
    assert_plain_404(c2, r)
    assert p.wait_log(lambda f: f.get("reason") == "other-node")["status"] == "404"
    c = echo_round(p, token, 0, b"still here\n", c)


# --------------------------------------------------------------------------
# a node that stops

def test_node_that_stops_ends_its_sessions_cleanly(tunnel_bin, nodes, haproxy, make_target):
    """Its sessions are lost, nowhere else looked for: HAProxy answers
    their requests 503 (the shipped config checks no server), `tunnel`
    repeats them for 30 s and gives up with one line; the other nodes
    never see them."""
    echo = make_target(echo_handler)
    proc = subprocess.Popen([tunnel_bin, haproxy.url, echo.hostport], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=clean_env())
    try:
        proc.stdin.write(b"ping\n")
        proc.stdin.flush()
        got = b""
        deadline = time.monotonic() + 20
        while len(got) < 5 and time.monotonic() < deadline:
            if select.select([proc.stdout], [], [], 1)[0]:
                got += os.read(proc.stdout.fileno(), 64)
        assert got == b"ping\n"
        name = next(r[4] for r in haproxy.requests() if r[4])
        holder = nodes[NODES.index(name)]
        holder.stop()
        start = time.monotonic()
        rc = proc.wait(60)
        took = time.monotonic() - start
        err = proc.stderr.read().decode(errors="replace")
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(5)
    assert rc == 1, (rc, err)
    lines = err.strip().split("\n")
    assert len(lines) == 1 and lines[0].startswith("tunnel: ") and "gave up after 30 s" in lines[0], err
    assert 25 < took < 50, took
    late = [r for r in haproxy.requests() if r[4]]
    assert all(r[3] == name for r in late), late        # never balanced elsewhere
    assert any(r[2] == 503 for r in late), late
    for p in nodes:
        if p is not holder:
            assert refusals(p) == [], p.log_text()


# --------------------------------------------------------------------------
# the client takes the token as given, and nothing else

def fake_node(token_body):
    """A server answering the open with token_body and recording the
    Tunnel-Token of every later request, which it answers 404."""
    def handler(conn, server):
        buf = b""
        conn.settimeout(10)
        while (req := read_request(conn, buf)) is not None:
            _, fields, _, buf = req
            if b"tunnel-token" not in fields:
                conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s"
                             % (len(token_body), token_body))
                continue
            server.results.append(fields[b"tunnel-token"])
            conn.sendall(b"HTTP/1.1 404 Not Found\r\nContent-Length: 11\r\nConnection: close"
                         b"\r\n\r\nno session\n")
            return
    return handler


@pytest.mark.parametrize("ending", [b"\n", b"\r\n", b""], ids=["lf", "crlf", "none"])
def test_client_sends_the_named_token_back_unchanged(tunnel_bin, make_target, echo, ending):
    token = b"eu-west-1." + secrets.token_hex(24).encode()
    server = make_target(fake_node(token + ending))
    r = subprocess.run([tunnel_bin, f"http://{server.hostport}/", echo.hostport], input=b"x",
                       capture_output=True, timeout=30, env=clean_env())
    assert r.returncode != 0 and b"404" in r.stderr, r
    assert server.results and set(server.results) == {token}, server.results


@pytest.mark.parametrize("body", [
    b"N1.%s\n", b"n1.%sx\n", b"n1..%s\n", b"n1.x\r\nEvil: yes.%s\n", b"%s.n1\n",
    b"n" * 33 + b".%s\n", b"n1.%s\n\n", b"n1 .%s\n"],
    ids=["upper", "long-hex", "two-dots", "header-injection", "suffix", "long-name",
         "two-newlines", "space"])
def test_client_refuses_a_malformed_token(tunnel_bin, make_target, echo, body):
    server = make_target(fake_node(body % secrets.token_hex(24).encode()))
    r = subprocess.run([tunnel_bin, f"http://{server.hostport}/", echo.hostport], input=b"x",
                       capture_output=True, timeout=30, env=clean_env())
    assert r.returncode == 76, r
    assert b"without a session token" in r.stderr, r
    assert server.results == [], "the client sent a malformed token back"
