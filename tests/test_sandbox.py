"""The syscall sandbox seen from outside (tunneld.8, SANDBOX): every process
that reads a client's bytes runs under seccomp filters, stacked per stage.
That a refused call kills is tests/unit/test_sandbox.c; here, that the real
processes of each serving mode carry their stages while they serve."""

import contextlib
import os
import socket
import ssl

import pytest

from conftest import (Client, connect_head, descendants, idle_spares, open_tunnel, runs_tunneld,
                      wait_until)
from test_http_tunnel import PATH, Conn
from test_session_attacks import holder_pids

pytestmark = pytest.mark.needs("sandbox")


def status(pid):
    """/proc/PID/status as a dict of its fields."""
    with open(f"/proc/{pid}/status") as f:
        return dict(line.rstrip("\n").split(":\t", 1) for line in f if ":\t" in line)


def serving(proxy):
    """tunneld's processes other than a listener and its spares waiting
    for a client: those that serve."""
    out = []
    pids = descendants(proxy.pid)
    spares = idle_spares(proxy.pid)     # after: one started between is none of pids
    for pid in [p for p in pids if p not in spares] + [proxy.pid]:
        if not runs_tunneld(pid):
            continue
        if proxy.mode != "inetd" and pid == proxy.pid:
            continue
        out.append(pid)
    return out


def assert_stages(pid, filters):
    """pid runs under seccomp filter mode with no new privileges, with at
    least `filters` filters (where the kernel counts them)."""
    st = status(pid)
    assert st["Seccomp"].strip() == "2", st
    assert st["NoNewPrivs"].strip() == "1", st
    if "Seccomp_filters" in st:
        assert int(st["Seccomp_filters"]) >= filters, st


@contextlib.contextmanager
def tls_tunnel(p, cert, echo):
    """A CONNECT over TLS to echo, open while the block runs."""
    ctx = ssl.create_default_context(cafile=str(cert))
    with ctx.wrap_socket(socket.create_connection((p.host, p.port), 5),
                         server_hostname="good.test") as s:
        s.settimeout(5)
        s.sendall(connect_head(echo.hostport) + b"ping")
        got = b""
        for _ in range(100):
            if got.endswith(b"ping"):
                break
            got += s.recv(4096)
        assert got.startswith(b"HTTP/1.1 200") and got.endswith(b"ping"), (got, p.log_text())
        yield s


def test_relaying_process_is_sandboxed(make_proxy, any_mode, echo):
    p = make_proxy(any_mode)
    c = open_tunnel(p, echo.hostport, b"ping")
    assert c.read_exact(4) == b"ping"
    pids = serving(p)
    assert len(pids) == 1, pids
    assert_stages(pids[0], 2)        # the request's stage, then the relay's
    if p.mode != "inetd":            # the listener forks; it reads no request
        assert status(p.pid)["Seccomp"].strip() == "0"
    c.close()


@pytest.mark.needs("tls")
def test_tls_process_is_sandboxed(make_proxy, mode, tls_files, echo):
    cert, key = tls_files
    p = make_proxy(mode, args=["--cert", str(cert), "--key", str(key)])
    with tls_tunnel(p, cert, echo):
        pids = serving(p)
        assert len(pids) == 1, pids
        assert_stages(pids[0], 2)


def test_session_holder_and_spawner_are_sandboxed(make_proxy, mode, echo):
    """A GET/POST tunnel session's holder, and in inetd mode the spawner
    beside it; and the fresh process a kept-alive connection's next open
    goes to."""
    p = make_proxy(mode, tunnel=PATH)
    c = Conn(p, timeout=10)
    a = c.open_ok(echo.hostport)
    c.send_ok(a, 0, b"ping")
    assert c.recv_until(a, 0, 4) == (b"ping", False)
    (h,) = holder_pids(p, a)
    assert_stages(h, 2)              # the request's stage, then the session's
    b = c.open_ok(echo.hostport)     # goes to a fresh process
    (h2,) = holder_pids(p, b)
    assert h2 != h
    assert_stages(h2, 2)
    pids = serving(p)
    assert wait_until(lambda: set(serving(p)) >= {h, h2}, 5)
    for pid in pids:
        assert_stages(pid, 1)
    if mode == "inetd":              # holders, and one spawner
        assert len(pids) == 3, pids
    for t in (a, b):
        assert Conn(p).delete(t).status == 200


# --------------------------------------------------------------------------
# least privilege: --user in every serving mode

needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="dropping privileges needs root")


def ids(pid):
    st = status(pid)
    return ([int(x) for x in st["Uid"].split()], [int(x) for x in st["Gid"].split()],
            st["Groups"].split())


@needs_root
@pytest.mark.needs("tls")
def test_user_drops_root_after_reading_root_only_files(make_proxy, mode, tls_files, echo,
                                                        tmp_path):
    """A key only root can read: read, then every serving process is nobody,
    with nobody's group and no other, in inetd mode too."""
    import pwd
    nobody = pwd.getpwnam("nobody")
    cert, key = tls_files
    own_key = tmp_path / "key.pem"
    own_key.write_bytes(key.read_bytes())
    own_key.chmod(0o600)
    p = make_proxy(mode, args=["--user", "nobody", "--cert", str(cert), "--key", str(own_key)])
    with tls_tunnel(p, cert, echo):
        (pid,) = serving(p)
        uids, gids, groups = ids(pid)
        assert uids == [nobody.pw_uid] * 4 and gids == [nobody.pw_gid] * 4, (uids, gids)
        assert groups == [], groups
    assert "running as root" not in p.log_text()


@needs_root
def test_root_without_user_is_warned(make_proxy, mode, echo):
    p = make_proxy(mode)
    c = open_tunnel(p, echo.hostport, b"ping")
    assert c.read_exact(4) == b"ping"
    c.close()
    assert wait_until(lambda: "running as root: --user NAME" in p.log_text(), 5), p.log_text()


def test_unknown_user_is_refused(make_proxy, echo):
    """inetd mode: the connection is answered 500 and the log says why."""
    p = make_proxy("inetd", args=["--user", "no-such-user-tunneld"])
    c = Client(p.host, p.port)
    c.send(connect_head(echo.hostport))
    r = c.response()
    assert r.status == 500, r
    assert wait_until(lambda: "--user no-such-user-tunneld: no such user" in p.log_text(), 5)
