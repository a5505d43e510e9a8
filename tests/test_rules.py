"""Access rules through the binary (DESIGN §6): bypass spellings, DNS
rebinding, per-address checks, the matcher's conditions, tls and tls-sni."""

import ctypes
import os
import socket
import ssl
import struct
import subprocess
import threading
import time

import pytest

from conftest import (needs_v6, HTTPS_BODY, Client, Proxy, connect_head, echo_handler, ended_after,
                      greet_shut_handler, listening, open_tunnel)

NO_LOOPBACK_ACL = "deny to 127.0.0.0/8,::1\nallow\n"

# Ways to name the loopback target that a rule `deny to 127.0.0.0/8,::1`
# must catch: numeric oddities, mapped IPv6, names that resolve there.
BYPASS_HOSTS = [
    "127.0.0.1", "127.0.0.2", "2130706433", "0x7f.1", "127.1", "017700000001", "0x7f000001",
    "127.0.0.01", "0177.0.0.1", "127.000.000.001", "0x7f.0.0.1", "127.0.0.1.",
    "[::ffff:127.0.0.1]", "[::ffff:7f00:1]", "[0:0:0:0:0:ffff:127.0.0.1]",
    "[::1]", "[0:0:0:0:0:0:0:1]", "[0::1]", "[::1%lo]", "[::1%251]",
    "localhost", "localhost.", "LOCALHOST", "LocalHost",
    "rebind.test", needs_v6("mapped.test"), needs_v6("v6.test"), "GOOD.TEST", "good.test.",
]

# With no --acl the built-in rules apply; the targets listen on port 443.
BUILTIN_DENIED = [
    "127.0.0.1", "localhost", "[::1]", "0.0.0.0", "0", "[::]", "[::ffff:127.0.0.1]",
    "[::ffff:0.0.0.0]", "good.test", "2130706433", needs_v6("v6.test"), needs_v6("mapped.test"),
    "127.1",
]


@pytest.fixture
def same_port(make_target):
    """Echo targets on several loopback addresses sharing one port number."""
    def make(*hosts, handler=echo_handler):
        for _ in range(20):                 # bounded retries for a port free on all
            first = make_target(handler, hosts[0])
            try:
                return [first] + [make_target(handler, h, port=first.port) for h in hosts[1:]]
            except OSError:
                continue
        pytest.fail(f"no port free on all of {hosts}")
    return make


def expect_denied(proxy, target, targets, statuses=(400, 403)):
    c = Client(proxy.host, proxy.port)
    resp = c.request(connect_head(target))
    assert resp.status in statuses, f"CONNECT {target}: {resp}"
    c.close()
    assert sum(t.accepted for t in targets) == 0, f"CONNECT {target} reached the target"
    assert proxy.log_for(c.port)["status"] == str(resp.status)


def expect_echo(proxy, target):
    c = open_tunnel(proxy, target)
    c.send(b"allowed?")
    assert c.read_exact(8) == b"allowed?"
    c.close()


@pytest.mark.parametrize("host", BYPASS_HOSTS)
def test_bypass_spellings_denied(make_proxy, mode, same_port, host):
    targets = same_port("127.0.0.1", "::1")
    p = make_proxy(mode, acl=NO_LOOPBACK_ACL)
    expect_denied(p, f"{host}:{targets[0].port}", targets)


@pytest.mark.parametrize("host", BUILTIN_DENIED)
def test_builtin_rules_deny_local(make_proxy, mode, make_target, host):
    targets = [make_target(echo_handler, h, port=443, reuse_port=True)
               for h in ("127.0.0.1", "::1")]
    p = make_proxy(mode, acl=None)
    expect_denied(p, f"{host}:443", targets)


def test_port_range_rule(make_proxy, mode, echo, make_target):
    """`port 1000-2000` allows a target inside the range, not one outside."""
    inside = None
    for port in range(1000, 2001):          # bounded: the first free port
        try:
            inside = make_target(echo_handler, port=port)
            break
        except OSError:
            continue
    assert inside, "no free port in 1000-2000"
    p = make_proxy(mode, acl="allow port 1000-2000\ndeny\n")
    expect_echo(p, inside.hostport)
    expect_denied(p, echo.hostport, [echo], statuses=(403,))


def test_rebinding_name_denied_by_address(make_proxy, mode, echo):
    p = make_proxy(mode, acl="deny to 127.0.0.0/8,::1\nallow to rebind.test\ndeny\n")
    expect_denied(p, f"rebind.test:{echo.port}", [echo], statuses=(403,))


@pytest.mark.parametrize("denied,allowed", [("127.0.0.2", "127.0.0.1"),
                                            ("127.0.0.1", "127.0.0.2")])
def test_mixed_name_connects_only_to_allowed_address(make_proxy, mode, same_port,
                                                     denied, allowed):
    t_allowed, t_denied = same_port(allowed, denied)
    p = make_proxy(mode, acl=f"deny to {denied}\nallow to 127.0.0.0/8\ndeny\n")
    c = open_tunnel(p, f"mixed.test:{t_allowed.port}")
    c.send(b"which?")
    assert c.read_exact(6) == b"which?"
    c.close()
    assert p.log_for(c.port)["addr"] == f"{allowed}:{t_allowed.port}"
    assert t_denied.accepted == 0 and t_allowed.accepted == 1


@pytest.mark.parametrize("failure", ["refused", "timeout"])
@pytest.mark.parametrize("up", ["127.0.0.1", "127.0.0.2"])
def test_addresses_tried_in_turn(make_proxy, mode, same_port, make_target, up, failure):
    """mixed.test has two allowed addresses; one fails, the other serves."""
    down = "127.0.0.2" if up == "127.0.0.1" else "127.0.0.1"
    filler = None
    if failure == "timeout":                # a full accept queue drops SYNs
        # The hole is bound where the target's port is free on down, never
        # after closing one there: another socket may take the port between.
        for _ in range(20):
            t_up, hole = make_target(echo_handler, up), socket.socket()
            try:
                hole.bind((down, t_up.port))
                break
            except OSError:
                hole.close()
                t_up.close()
        else:
            pytest.fail(f"no port free on both {up} and {down}")
        hole.listen(0)
        filler = socket.create_connection((down, t_up.port), timeout=2)
    else:
        t_up, t_down = same_port(up, down)
        t_down.close()
    try:
        p = make_proxy(mode, acl="allow to 127.0.0.0/8\ndeny\n", args=["--connect-timeout", "1"])
        c = open_tunnel(p, f"mixed.test:{t_up.port}")
        c.send(b"turn")
        assert c.read_exact(4) == b"turn"
        c.close()
        assert p.log_for(c.port)["addr"] == f"{up}:{t_up.port}"
    finally:
        if filler:
            filler.close()
            hole.close()


DENIED = (403,)
REFUSED = (400, 403)        # a denial, or the spelling itself refused

# (id, rules, CONNECT target, expected: 200 or the statuses of a denial).
# {p} is the echo port; {p1}/{p5} are p+1/p+5, {m1}/{m5} are p-1/p-5.
MATCHER = [
    ("to-wildcard-suffix", "allow to *.test\ndeny", "good.test:{p}", 200),
    ("to-wildcard-not-an-address", "allow to *.test\ndeny", "127.0.0.1:{p}", DENIED),
    ("to-wildcard-subdomain", "allow to *.good.test\ndeny", "sub.good.test:{p}", 200),
    ("to-wildcard-label-boundary", "allow to *.good.test\ndeny", "notgood.test:{p}", DENIED),
    ("to-exact-name", "allow to good.test\ndeny", "good.test:{p}", 200),
    ("to-exact-name-other", "allow to good.test\ndeny", "other.test:{p}", DENIED),
    ("to-exact-name-not-subdomain", "allow to good.test\ndeny", "sub.good.test:{p}", DENIED),
    ("deny-name-any-case", "deny to good.test\nallow", "GOOD.Test:{p}", REFUSED),
    ("deny-name-trailing-dot", "deny to good.test\nallow", "good.test.:{p}", REFUSED),
    ("deny-wildcard-any-case", "deny to *.test\nallow", "Good.TEST:{p}", REFUSED),
    ("deny-name-not-literal", "deny to good.test\nallow", "127.0.0.1:{p}", 200),
    ("to-address-of-name", "allow to 127.0.0.1\ndeny", "good.test:{p}", 200),
    ("to-cidr", "allow to 127.0.0.0/8\ndeny", "127.0.0.1:{p}", 200),
    ("to-cidr-v4-not-v6", "allow to 127.0.0.0/8\ndeny", "v6.test:{p}", DENIED),
    ("to-v6-address", "allow to ::1\ndeny", "[::1]:{p}", 200),
    ("to-v6-cidr", "allow to ::/64\ndeny", "v6.test:{p}", 200),
    ("to-mapped-as-v4", "allow to 127.0.0.0/8\ndeny", "mapped.test:{p}", 200),
    ("to-list", "allow to 10.0.0.1,127.0.0.1\ndeny", "127.0.0.1:{p}", 200),
    ("to-star", "allow to *\ndeny", "good.test:{p}", 200),
    ("port-range-low-edge", "allow port {p}-{p5}\ndeny", "127.0.0.1:{p}", 200),
    ("port-range-high-edge", "allow port {m5}-{p}\ndeny", "127.0.0.1:{p}", 200),
    ("port-range-above", "allow port {p1}-{p5}\ndeny", "127.0.0.1:{p}", DENIED),
    ("port-range-below", "allow port {m5}-{m1}\ndeny", "127.0.0.1:{p}", DENIED),
    ("port-list", "allow port 1,{p}\ndeny", "127.0.0.1:{p}", 200),
    ("port-other", "allow port {p1}\ndeny", "127.0.0.1:{p}", DENIED),
    ("from-cidr-excludes-client", "allow from 10.0.0.0/8\ndeny", "127.0.0.1:{p}", DENIED),
    ("from-cidr-includes-client", "allow from 127.0.0.0/8\ndeny", "127.0.0.1:{p}", 200),
    ("from-v6-not-v4-client", "allow from ::1\ndeny", "127.0.0.1:{p}", DENIED),
    ("user-never-matches", "allow user x\ndeny", "127.0.0.1:{p}", DENIED),
    ("deny-user-never-matches", "deny user x\nallow", "127.0.0.1:{p}", 200),
    ("first-match-allow", "allow to 127.0.0.1\ndeny to 127.0.0.1", "127.0.0.1:{p}", 200),
    ("first-match-deny", "deny to 127.0.0.1\nallow to 127.0.0.1", "127.0.0.1:{p}", DENIED),
    ("no-match-denies", "allow to 10.0.0.0/8", "127.0.0.1:{p}", DENIED),
    ("empty-file-denies", "", "127.0.0.1:{p}", DENIED),
    ("all-conditions-must-hold", "allow to 127.0.0.1 port {p1}\ndeny", "127.0.0.1:{p}", DENIED),
    ("all-conditions-hold", "allow from 127.0.0.0/8 to 127.0.0.1 port {p}\ndeny",
     "127.0.0.1:{p}", 200),
    ("comments-and-blank-lines", "# rules\n\n   \n# deny\nallow to 127.0.0.1\n",
     "127.0.0.1:{p}", 200),
]


# Rows that need an IPv6 build: skipped against one without.
V6_ROWS = {"to-cidr-v4-not-v6", "to-v6-address", "to-v6-cidr", "to-mapped-as-v4"}


@pytest.mark.parametrize("rules,target,expected",
                         [needs_v6(*r[1:]) if r[0] in V6_ROWS else r[1:] for r in MATCHER],
                         ids=[r[0] for r in MATCHER])
def test_rule_matcher(make_proxy, mode, same_port, rules, target, expected):
    targets = same_port("127.0.0.1", "::1")
    p = targets[0].port
    fill = dict(p=p, p1=p + 1, p5=p + 5, m1=p - 1, m5=p - 5)
    proxy = make_proxy(mode, acl=rules.format(**fill) + "\n")
    if expected == 200:
        expect_echo(proxy, target.format(**fill))
    else:
        expect_denied(proxy, target.format(**fill), targets, statuses=expected)


# ---------------------------------------------------------------- tls rules

def tls_over(c, server_hostname, cafile=None):
    """Start TLS over an open tunnel; return the SSL socket."""
    assert c.buf == b""
    if cafile:
        ctx = ssl.create_default_context(cafile=cafile)
    else:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    return ctx.wrap_socket(c.sock, server_hostname=server_hostname)


def https_get(c, server_hostname, cafile=None):
    with tls_over(c, server_hostname, cafile) as tls:
        tls.sendall(b"GET / HTTP/1.1\r\nHost: good.test\r\nConnection: close\r\n\r\n")
        data = b""
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            chunk = tls.recv(4096)
            if not chunk:
                break
            data += chunk
        return data


@pytest.mark.parametrize("connect_host,sni", [("good.test", "good.test"),
                                              ("GOOD.TEST", "good.test"),
                                              ("good.test", "Good.Test")])
def test_tls_sni_matching_host_passes(make_proxy, mode, https_target, connect_host, sni):
    """Names compare as DNS names do: without regard to case."""
    p = make_proxy(mode, acl="allow tls-sni\ndeny\n")
    c = open_tunnel(p, f"{connect_host}:{https_target.port}")
    assert https_get(c, sni).endswith(HTTPS_BODY)
    assert p.log_for(c.port)["status"] == "200"


NOT_A_CLIENT_HELLO = {
    "garbage-hello": b"\x16\x03\x01\x00\x05hello",
    "server-hello": b"\x16\x03\x01\x00\x04\x02\x00\x00\x00",
    "truncated-hello": b"\x16\x03\x01\x40\x00" + b"\x01" * 10,
    "record-header-only": b"\x16\x03\x01\x02\x00",
    "one-byte": b"\x16",
}


@pytest.mark.parametrize("rule", ["tls", "tls-sni"])
@pytest.mark.parametrize("first_bytes", NOT_A_CLIENT_HELLO.values(), ids=NOT_A_CLIENT_HELLO.keys())
def test_tls_rule_needs_a_whole_client_hello(make_proxy, echo, rule, first_bytes):
    """Bytes that are not a complete ClientHello never pass a tls rule; an
    unfinished one is given up at --header-timeout."""
    p = make_proxy("listen", acl=f"allow {rule}\ndeny\n", args=["--header-timeout", "1"])
    c = open_tunnel(p, echo.hostport)
    c.send(first_bytes)
    state = c.end_state(3.5)
    assert echo.accepted == 0, f"{first_bytes!r} passed `allow {rule}` and reached the target"
    assert state in ("eof", "reset"), "tunneld waits forever for a ClientHello"
    assert c.buf == b""
    assert p.log_for(c.port)["status"] == "403"


@pytest.mark.parametrize("connect_host,sni", [("good.test", "other.test"),
                                              ("127.0.0.1", "good.test")])
def test_tls_sni_mismatch_denied(make_proxy, mode, https_target, connect_host, sni):
    p = make_proxy(mode, acl="allow tls-sni\ndeny\n")
    before = https_target.accepted
    c = open_tunnel(p, f"{connect_host}:{https_target.port}")
    with pytest.raises((ssl.SSLError, OSError)):
        https_get(c, sni)
    assert https_target.accepted == before
    assert p.log_for(c.port)["status"] == "403"


@pytest.mark.parametrize("rules", ["allow tls-sni\ndeny\n", "allow tls\ndeny\n"])
def test_tls_rules_close_plaintext_client(make_proxy, mode, echo, rules):
    p = make_proxy(mode, acl=rules)
    c = open_tunnel(p, f"good.test:{echo.port}")       # 200 comes before the check
    c.send(b"hello, not a ClientHello\r\n")
    assert c.end_state(3) in ("eof", "reset")
    assert c.buf == b""
    assert echo.accepted == 0
    assert p.log_for(c.port)["status"] == "403"


def test_tls_rule_any_sni_passes(make_proxy, mode, https_target):
    p = make_proxy(mode, acl="allow tls\ndeny\n")
    c = open_tunnel(p, f"good.test:{https_target.port}")
    assert https_get(c, "other.test").endswith(HTTPS_BODY)


def fragmented_tls_get(c, server_hostname, cafile, cuts):
    """TLS over the tunnel with the ClientHello written in pieces (cut at the
    offsets in `cuts`, 50 ms apart), then GET /; return the response bytes."""
    ctx = ssl.create_default_context(cafile=cafile)
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    tls = ctx.wrap_bio(incoming, outgoing, server_hostname=server_hostname)
    c.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def pump(first=False):
        data = outgoing.read()
        if first:
            for a, b in zip([0, *cuts], [*cuts, len(data)]):
                c.send(data[a:b])
                time.sleep(0.05)
        elif data:
            c.send(data)
    first = True
    for _ in range(50):                     # bounded handshake round trips
        try:
            tls.do_handshake()
            break
        except ssl.SSLWantReadError:
            pump(first)
            first = False
            chunk = c.sock.recv(65536)
            if not chunk:
                raise ConnectionError("tunnel closed during the handshake")
            incoming.write(chunk)
    pump()
    tls.write(b"GET / HTTP/1.1\r\nHost: good.test\r\nConnection: close\r\n\r\n")
    pump()
    out = b""
    for _ in range(100):
        try:
            out += tls.read(65536)
            continue
        except ssl.SSLWantReadError:
            pass
        except (ssl.SSLZeroReturnError, ssl.SSLEOFError):
            break
        chunk = c.sock.recv(65536)
        if not chunk:
            break
        incoming.write(chunk)
    return out


@pytest.mark.parametrize("cuts", [[3], [5], [40, 120]], ids=["in-record-header", "after-header",
                                                            "three-pieces"])
def test_tls_sni_fragmented_client_hello(make_proxy, mode, https_target, cuts):
    p = make_proxy(mode, acl="allow tls-sni\ndeny\n")
    c = open_tunnel(p, f"good.test:{https_target.port}")
    assert fragmented_tls_get(c, "good.test", https_target.cafile, cuts).endswith(HTTPS_BODY)


@pytest.mark.needs("ipv6")
def test_tls_rule_mixed_with_plain_rules(make_proxy, mode, make_target, https_target):
    """Only a rule that tests tls needs the ClientHello: a target allowed by a
    plain rule may speak first (an SSH banner) without waiting for the client."""
    p = make_proxy(mode, acl="allow to 127.0.0.1 tls\nallow to ::1\ndeny\n")
    banner = make_target(greet_shut_handler, host="::1")
    c = open_tunnel(p, banner.hostport)
    assert c.read_until(b"\n") == b"hello, then EOF\n"
    c.close()
    c = open_tunnel(p, f"127.0.0.1:{https_target.port}")
    assert https_get(c, "good.test").endswith(HTTPS_BODY)
    before = https_target.accepted
    c = open_tunnel(p, f"127.0.0.1:{https_target.port}")
    c.send(b"SSH-2.0-plaintext\r\n")
    assert c.end_state(3) in ("eof", "reset")
    assert https_target.accepted == before
    assert p.log_for(c.port)["status"] == "403"


def test_tls_rule_connect_failure_after_early_200(make_proxy, mode):
    """With a tls rule the 200 precedes the connect; a refused target then
    just closes the tunnel, and the log says 502."""
    p = make_proxy(mode, acl="allow tls\ndeny\n")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        c = open_tunnel(p, f"127.0.0.1:{s.getsockname()[1]}")
        with pytest.raises((ssl.SSLError, OSError)):
            https_get(c, "good.test")
        assert p.log_for(c.port)["status"] == "502"


# ------------------------------------------- rules that protect the router

def client_hello(sni):
    """A minimal TLS 1.2 ClientHello record whose server_name is sni, as a
    client that sends an address literal there would write it (Python's ssl
    never sends one)."""
    name = sni.encode()
    ext = struct.pack("!HB H", len(name) + 3, 0, len(name)) + name
    exts = struct.pack("!HH", 0, len(ext)) + ext
    body = (b"\x03\x03" + os.urandom(32) + b"\x00" + b"\x00\x02\x13\x01" + b"\x01\x00"
            + struct.pack("!H", len(exts)) + exts)
    hs = b"\x01" + len(body).to_bytes(3, "big") + body
    return b"\x16\x03\x01" + struct.pack("!H", len(hs)) + hs


def test_tls_sni_never_matches_an_address_literal(make_proxy, mode, echo):
    """RFC 6066 §3: no literal address in HostName, so an SNI of 127.0.0.1
    for CONNECT 127.0.0.1 does not pass tls-sni; the same hello with a name
    for CONNECT of that name does."""
    p = make_proxy(mode, acl="allow tls-sni\ndeny\n")
    hello = client_hello("good.test")
    c = open_tunnel(p, f"good.test:{echo.port}")
    c.send(hello)
    assert c.read_exact(len(hello)) == hello
    c.close()
    hello = client_hello("127.0.0.1")
    c = open_tunnel(p, f"127.0.0.1:{echo.port}")
    c.send(hello)
    assert c.end_state(3) in ("eof", "reset")
    assert c.buf == b""
    assert echo.accepted == 1, "an IP-literal SNI passed `allow tls-sni`"
    assert p.log_for(c.port)["status"] == "403"


@pytest.mark.parametrize("host", ["127.0.0.1", "127.0.0.2", needs_v6("::1")])
def test_self_denies_loopback(make_proxy, mode, same_port, host):
    """`self` is every address of this host: lo's, and all of 127.0.0.0/8."""
    targets = same_port(host)
    p = make_proxy(mode, acl="deny to self\nallow\n")
    target = f"[{host}]" if ":" in host else host
    expect_denied(p, f"{target}:{targets[0].port}", targets, statuses=DENIED)


CLONE_NEWNET = 0x40000000


def in_netns(pid, fn, timeout=10):
    """fn(), run by a thread that entered the network namespace of pid: the
    sockets it makes live there."""
    libc = ctypes.CDLL(None, use_errno=True)
    out = {}

    def run():
        try:
            with open(f"/proc/{pid}/ns/net") as ns:
                if libc.setns(ns.fileno(), CLONE_NEWNET) != 0:
                    raise OSError(ctypes.get_errno(), "setns")
            out["value"] = fn()
        except BaseException as e:          # re-raised in the caller
            out["error"] = e
    t = threading.Thread(target=run, daemon=True)
    t.start()
    t.join(timeout)
    if "error" in out:
        raise out["error"]
    assert "value" in out, "the thread in the network namespace did not finish"
    return out["value"]


NETNS_PORT = 3128
# lo, and a veth pair with no address yet: nothing leaves this namespace.
NETNS_SETUP = ("ip link set lo up && ip link add tv0 type veth peer name tv1 && "
               "ip link set tv0 up && ip link set tv1 up && exec \"$@\"")


class NetnsProxy(Proxy):
    """tunneld on NETNS_PORT in a network namespace of its own (see
    NETNS_SETUP); the clients connect from a thread inside it."""

    def __init__(self, workdir, netfiles, mode, acl):
        super().__init__(workdir, netfiles, mode, acl, port=NETNS_PORT)

    @staticmethod
    def command(mode, where, wrap, opts):
        return ["unshare", "-n", "sh", "-c", NETNS_SETUP, "sh",
                *Proxy.command(mode, where, wrap, opts)]

    def listening(self):
        return listening(self.port, (f"/proc/{self.pid}/net/tcp",))

    def ip(self, *args):
        subprocess.run(["nsenter", "-t", str(self.pid), "-n", "ip", *args], check=True, timeout=10)

    def status(self, target):
        """CONNECT target from inside the namespace: the answer's status."""
        c = in_netns(self.pid, lambda: Client("127.0.0.1", NETNS_PORT))
        resp = c.request(connect_head(target))
        c.close()
        assert self.log_for(c.port)["status"] == str(resp.status)
        return resp.status


@pytest.fixture
def netns_proxy(tmp_path, netfiles):
    with ended_after(lambda mode="listen", acl=None: NetnsProxy(tmp_path, netfiles, mode, acl)) \
            as make:
        yield make


def test_self_counts_an_address_added_later(netns_proxy, make_target):
    """The built-in rules deny `self`, looked up when a request is checked:
    an address given to an interface after tunneld started (DHCP) is denied
    without a restart. Before, the same CONNECT was allowed (502: no route)."""
    p = netns_proxy("listen")
    assert p.status("10.77.0.1:443") == 502
    p.ip("addr", "add", "10.77.0.1/24", "dev", "tv0")
    target = in_netns(p.pid, lambda: make_target(echo_handler, "10.77.0.1", port=443))
    assert p.status("10.77.0.1:443") == 403
    assert target.accepted == 0
    assert p.status("10.77.0.2:443") in (502, 504)   # not ours: allowed


# The IPv4 address 127.0.0.1 / 169.254.169.254 / 10.0.0.1 as each IPv6 form
# that carries one: IPv4-compatible, NAT64 /96, local-use NAT64 /48 (RFC 6052
# layout, the u octet in bits 64..71), 6to4.
EMBEDDED = {
    "127.0.0.1": ["[::127.0.0.1]", "[64:ff9b::7f00:1]", "[64:ff9b:1:7f00:0:100::]",
                  "[2002:7f00:1::1]"],
    "169.254.169.254": ["[::169.254.169.254]", "[64:ff9b::a9fe:a9fe]",
                        "[64:ff9b:1:a9fe:a9:fe00::]", "[2002:a9fe:a9fe::1]"],
    "10.0.0.1": ["[::10.0.0.1]", "[64:ff9b::a00:1]", "[64:ff9b:1:a00:0:100::]",
                 "[2002:a00:1::1]"],
}

# (id, rules, {carried IPv4 address: status for each of its IPv6 forms}).
# In the namespace no IPv6 route leads anywhere: an allowed form gives 502.
EMBEDDED_ROWS = [
    ("builtin", None, {"127.0.0.1": 403, "169.254.169.254": 403, "10.0.0.1": 502}),
    ("deny-v4", "deny to 169.254.0.0/16\nallow\n", {"169.254.169.254": 403, "10.0.0.1": 502}),
    ("deny-v4-then-allow-v6",
     "deny to 169.254.0.0/16\nallow to 64:ff9b::/96,2002::/16,::/96,64:ff9b:1::/48\n",
     {"169.254.169.254": 403, "10.0.0.1": 502}),
    # An allow of an IPv4 prefix is not widened to the forms that carry it
    # (old code never widened it either: this row guards the choice).
    ("allow-v4-not-widened", "allow to 169.254.0.0/16\ndeny\n", {"169.254.169.254": 403}),
]


@pytest.mark.needs("ipv6")
@pytest.mark.parametrize("rules,expected", [r[1:] for r in EMBEDDED_ROWS],
                         ids=[r[0] for r in EMBEDDED_ROWS])
def test_ipv6_forms_of_an_ipv4_address(netns_proxy, mode, rules, expected):
    """A deny holds for the IPv4 address an IPv6 one carries; an allow only
    for the address as it is. Run in a namespace of its own, so an address
    that old code allowed goes nowhere."""
    p = netns_proxy(mode, rules)
    got = {host: p.status(f"{host}:443") for v4 in expected for host in EMBEDDED[v4]}
    assert got == {host: expected[v4] for v4 in expected for host in EMBEDDED[v4]}
