"""tunneld's own resolver (dns.c) against the test server: what getaddrinfo()
did for it, and what a stub resolver must refuse. The answer parser itself
is tested in tests/unit/test_dns.c; the error statuses in test_errors.py."""

from conftest import Client, binary_features, connect_head, open_tunnel


def new_queries(dns, before):
    return dns.queries[before:]


def test_truncated_answer_asked_again_over_tcp(proxy, dns, echo):
    """tcp.test answers over UDP with the TC bit alone: the A question is
    asked again over TCP, and its answer used."""
    before = len(dns.queries)
    c = open_tunnel(proxy, f"tcp.test:{echo.port}")
    c.send(b"tcp?")
    assert c.read_exact(4) == b"tcp?"
    c.close()
    assert proxy.log_for(c.port)["addr"] == f"127.0.0.1:{echo.port}"
    assert ("tcp.test", 1, False) in new_queries(dns, before)
    assert ("tcp.test", 1, True) in new_queries(dns, before)


def test_answer_with_another_id_ignored(proxy, dns, echo):
    """forged.test: a reply naming 127.0.0.3 with the wrong id comes first;
    the resolver waits for the one to its question."""
    c = open_tunnel(proxy, f"forged.test:{echo.port}")
    c.send(b"real")
    assert c.read_exact(4) == b"real"
    c.close()
    assert proxy.log_for(c.port)["addr"] == f"127.0.0.1:{echo.port}"


def test_hosts_file_answers_without_a_query(proxy, dns, echo):
    """localhost is in the hosts file: no question reaches the server (whose
    table has it too), upper case or with the root's dot alike."""
    before = len(dns.queries)
    for name in ("localhost", "LocalHost."):
        c = open_tunnel(proxy, f"{name}:{echo.port}")
        c.send(b"hosts")
        assert c.read_exact(5) == b"hosts"
        c.close()
        assert proxy.log_for(c.port)["addr"] == f"127.0.0.1:{echo.port}"
    assert not [q for q in new_queries(dns, before) if q[0] == "localhost"]


def test_both_families_asked(proxy, dns):
    """A and AAAA, as getaddrinfo(AF_UNSPEC) asked; A alone in a build
    without IPv6."""
    before = len(dns.queries)
    c = Client(proxy.host, proxy.port)
    r = c.request(connect_head("nx.test:443"))
    assert r.status == 502
    c.close()
    assert proxy.log_for(c.port)["reason"] == "dns-no-such-name"
    asked = {q[1] for q in new_queries(dns, before) if q[0] == "nx.test"}
    assert asked == ({1, 28} if "ipv6" in binary_features() else {1}), asked
