"""IPv6 listeners and targets, and several --listen addresses at once."""

import pytest

from conftest import (Client, assert_error_reply, connect_head, free_port, listening, open_tunnel,
                      wait_until)

pytestmark = pytest.mark.needs("ipv6")


def check_echo(proxy, target, via=None):
    c = open_tunnel(proxy, target, via=via)
    c.send(b"over v6?")
    assert c.read_exact(8) == b"over v6?"
    c.close()
    return c


def test_ipv6_listener_and_target(make_proxy, mode, make_target):
    echo6 = make_target(host="::1")
    p = make_proxy(mode, acl="allow to ::1\ndeny\n", host="::1")
    c = check_echo(p, echo6.hostport)
    fields = p.log_for(c.port)
    assert fields["status"] == "200"
    assert "::1" in fields["client"] and "::1" in fields["addr"], fields
    assert fields["addr"].endswith(f":{echo6.port}"), fields


def test_ipv6_name_target(make_proxy, mode, make_target):
    echo6 = make_target(host="::1")
    p = make_proxy(mode, acl="allow to ::1\ndeny\n")
    check_echo(p, f"v6.test:{echo6.port}")


def test_repeated_listen(make_proxy, echo):
    port6 = free_port("::1")
    p = make_proxy("listen", args=["--listen", f"[::1]:{port6}"])
    assert wait_until(lambda: listening(port6), 5), "second --listen not listening"
    check_echo(p, echo.hostport)
    check_echo(p, echo.hostport, via=("::1", port6))


def test_ipv6_loop_to_own_listener(make_proxy, mode):
    p = make_proxy(mode, acl="allow to ::1\ndeny\n", host="::1")
    c = Client("::1", p.port)
    resp = c.request(connect_head(f"[::1]:{p.port}"))
    assert_error_reply(c, resp, 403)
