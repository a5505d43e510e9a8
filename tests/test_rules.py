"""Access rules through the binary (DESIGN §6): bypass spellings, DNS
rebinding, per-address checks, the matcher's conditions, tls and tls-sni."""

import ssl
import time

import pytest

from conftest import HTTPS_BODY, Client, connect_head, echo_handler, open_tunnel

NO_LOOPBACK_ACL = "deny to 127.0.0.0/8,::1\nallow\n"

# Ways to name the loopback target that a rule `deny to 127.0.0.0/8,::1`
# must catch: numeric oddities, mapped IPv6, names that resolve there.
BYPASS_HOSTS = [
    "127.0.0.1", "127.0.0.2", "2130706433", "0x7f.1", "127.1", "017700000001", "0x7f000001",
    "127.0.0.01", "0177.0.0.1", "127.000.000.001", "0x7f.0.0.1", "127.0.0.1.",
    "[::ffff:127.0.0.1]", "[::ffff:7f00:1]", "[0:0:0:0:0:ffff:127.0.0.1]",
    "[::1]", "[0:0:0:0:0:0:0:1]", "[0::1]",
    "localhost", "localhost.", "LOCALHOST", "LocalHost",
    "rebind.test", "mapped.test", "v6.test", "GOOD.TEST", "good.test.",
]

# With no --acl the built-in rules apply; the targets listen on port 443.
BUILTIN_DENIED = [
    "127.0.0.1", "localhost", "[::1]", "0.0.0.0", "0", "[::]", "[::ffff:127.0.0.1]",
    "[::ffff:0.0.0.0]", "good.test", "2130706433", "v6.test", "mapped.test", "127.1",
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
    assert sum(t.accepted for t in targets) == 0, f"CONNECT {target} reached the target"
    assert proxy.log_for(c.port)["status"] == str(resp.status)
    c.close()


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
    targets = [make_target(echo_handler, h, port=443) for h in ("127.0.0.1", "::1")]
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


@pytest.mark.parametrize("up", ["127.0.0.1", "127.0.0.2"])
def test_addresses_tried_in_turn(make_proxy, mode, same_port, up):
    down = "127.0.0.2" if up == "127.0.0.1" else "127.0.0.1"
    t_up, t_down = same_port(up, down)
    t_down.close()                          # refused on this address
    p = make_proxy(mode, acl="allow to 127.0.0.0/8\ndeny\n")
    c = open_tunnel(p, f"mixed.test:{t_up.port}")
    c.send(b"turn")
    assert c.read_exact(4) == b"turn"
    c.close()
    assert p.log_for(c.port)["addr"] == f"{up}:{t_up.port}"


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


@pytest.mark.parametrize("rules,target,expected", [r[1:] for r in MATCHER],
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
    tls = tls_over(c, server_hostname, cafile)
    tls.sendall(b"GET / HTTP/1.1\r\nHost: good.test\r\nConnection: close\r\n\r\n")
    data = b""
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        chunk = tls.recv(4096)
        if not chunk:
            break
        data += chunk
    return data


def test_tls_sni_matching_host_passes(make_proxy, mode, https_target):
    p = make_proxy(mode, acl="allow tls-sni\ndeny\n")
    c = open_tunnel(p, f"good.test:{https_target.port}")
    assert https_get(c, "good.test", https_target.cafile).endswith(HTTPS_BODY)
    assert p.log_for(c.port)["status"] == "200"


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
