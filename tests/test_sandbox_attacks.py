"""Attacks on the sandbox and on inetd mode's spawner (tunneld.8 SANDBOX,
--user, --max-conns; PROTOCOL.md "How tunneld holds a session"): legitimate
paths that must not make a sandboxed process call what its stage refuses
(it would die: no answer, no log line), --user in inetd mode with files only
root can read, the uids and filters of every process that serves, and the
spawner's lifetime: it never outlives the connection's processes, never
holds a client's connection open, and costs one process per connection.

A process the sandbox kills shows as a kernel audit line type=1326 with
exe=<the binary>; where dmesg can be read, the tests also check that none
appeared while they ran."""

import os
import pwd
import re
import shutil
import socket
import ssl
import subprocess
import tempfile
import time

import pytest

from conftest import (LOOPBACK_ACL, OK_REPLY, Client, binary, connect_head,
                      greet_shut_handler, open_tunnel, runs_tunneld, wait_until)
from test_http_tunnel import PATH, Conn
from test_sandbox import assert_stages, ids, serving, status
from test_session_attacks import holder_pids

pytestmark = [pytest.mark.needs("sandbox"), pytest.mark.needs("http-tunnel")]

needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="dropping privileges needs root")


# --------------------------------------------------------------------------
# helpers

def _kills():
    """The kernel's seccomp kill lines for this binary (type=1326), or None
    when the kernel log cannot be read here."""
    try:
        out = subprocess.run(["dmesg"], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return None
    if out.returncode:
        return None
    exe = os.path.realpath(binary())
    return {line for line in out.stdout.splitlines()  # a spare's: its sealed copy
            if "type=1326" in line and (f'exe="{exe}"' in line or 'exe="/memfd:tunneld' in line)}


@pytest.fixture(autouse=True)
def no_seccomp_kill():
    """No process of this binary killed by its sandbox while the test ran."""
    before = _kills()
    yield
    after = _kills()
    if before is not None and after is not None:
        new = sorted(after - before)
        assert not new, "killed by the sandbox:\n" + "\n".join(new)


@pytest.fixture
def open_dir():
    """A directory every user can read (pytest's tmp dirs are root's only):
    files there stay readable after --user nobody."""
    d = tempfile.mkdtemp(prefix="tunneld-sbx-")
    os.chmod(d, 0o755)
    yield d
    shutil.rmtree(d, ignore_errors=True)


def readable_acl(d, text=LOOPBACK_ACL):
    path = os.path.join(d, "rules")
    with open(path, "w") as f:
        f.write(text)
    os.chmod(path, 0o644)
    return path


def nobody_ids():
    pw = pwd.getpwnam("nobody")
    return [pw.pw_uid] * 4, [pw.pw_gid] * 4, []


# --------------------------------------------------------------------------
# 1. legitimate paths that must not meet a refused system call

@pytest.mark.parametrize("mode", ["listen", "inetd"])
def test_a_name_with_many_addresses_is_answered(make_proxy, dns, echo, mode):
    """A name with 130 addresses (a big round-robin, or any name whose owner
    publishes that many): the lookup, once glibc's getaddrinfo sorting
    them with qsort (which asks sysinfo(2)), now dns.c's, must finish
    under the request's stage: 200, not a process killed without an
    answer or a log line."""
    dns.zone["many.test"] = {"A": ["127.0.0.1"] * 130}
    try:
        p = make_proxy(mode)
        c = Client(p.host, p.port)
        c.send(connect_head(f"many.test:{echo.port}") + b"ping")
        r = c.response()
        # tunneld's resolver takes the 2 KiB UDP answer (its buffer holds
        # 4 KiB); musl's getaddrinfo read 512 bytes of it and failed: 502.
        assert r.status == 200, r
        assert c.read_exact(4) == b"ping"
        c.close()
        f = p.wait_log(lambda f: f.get("target") == f"many.test:{echo.port}")
        assert f["status"] == str(r.status), f
    finally:
        del dns.zone["many.test"]


@pytest.mark.parametrize("mode", ["listen", "inetd"])
def test_lookup_timeout_and_error_answers_under_the_sandbox(make_proxy, echo, mode):
    """--connect-timeout expiring inside getaddrinfo (alarm, siglongjmp), an
    unknown name, a denied address with -v logging, an IPv6 name: each
    answered, none killed."""
    p = make_proxy(mode, acl="allow to 127.0.0.1,::1\ndeny\n",
                   args=["--connect-timeout", "1", "-v"])
    for target, want in ((f"slow.test:{echo.port}", 504), (f"nx.test:{echo.port}", 502),
                         (f"127.0.0.2:{echo.port}", 403), (f"mixed.test:{echo.port}", 200),
                         (f"v6.test:{echo.port}", None)):
        c = Client(p.host, p.port, timeout=8)
        r = c.request(connect_head(target))
        if want is None:            # no ::1 listener on that port: 502, or 200 elsewhere
            assert r.status in (200, 502), (target, r)
        else:
            assert r.status == want, (target, r, p.log_text())
        c.close()
    assert wait_until(lambda: len(p.log_lines()) >= 5, 5), p.log_text()


@pytest.mark.parametrize("mode", ["listen", "inetd"])
def test_syslog_sink_without_dev_log_in_every_stage(make_proxy, echo, mode):
    """--log syslog where /dev/log is absent: every line reconnects (a unix
    datagram socket and a connect) from the request, relay and session
    stages alike; a CONNECT and a session's whole life still work, a
    holder's kept-alive connection goes on to a fresh process after the
    DELETE, and nothing is killed."""
    if os.path.exists("/dev/log"):
        pytest.skip("/dev/log exists here: the reconnect path is not taken")
    p = make_proxy(mode, args=["--log", "syslog", "-v"], tunnel=PATH)
    c = open_tunnel(p, echo.hostport, b"ping")
    assert c.read_exact(4) == b"ping"
    c.close()
    t = Conn(p, timeout=10)
    a = t.open_ok(echo.hostport)
    t.send_ok(a, 0, b"x")
    assert t.recv_until(a, 0, 1) == (b"x", False)
    assert t.delete(a).status == 200
    t.c.send(connect_head(echo.hostport) + b"pong")
    assert t.c.read_until(b"\r\n\r\n") == OK_REPLY
    assert t.c.read_exact(4) == b"pong"
    t.close()
    assert wait_until(lambda: not p.procs() or mode == "listen", 5), p.procs()


# --------------------------------------------------------------------------
# 2. --user in inetd mode: files read before the drop, nothing after

@needs_root
def test_fresh_process_of_a_user_dropped_tunneld_reads_no_root_file(make_proxy, echo,
                                                                      tmp_path):
    """inetd mode, --user nobody, rules only root can read (as tunneld.8
    says --user is for: the files are read, then root is dropped). An open
    met on a session holder's kept-alive connection goes to a child of the
    spawner; that child must not read the rules again as nobody (it can
    not: 500 bad-config), it has them from before the drop."""
    rules = tmp_path / "root-only-rules"
    rules.write_text(LOOPBACK_ACL)
    rules.chmod(0o600)
    p = make_proxy("inetd", args=["--user", "nobody", "--acl", str(rules)], acl=None, tunnel=PATH)
    c = Conn(p, timeout=10)
    a = c.open_ok(echo.hostport)
    r = c.open(echo.hostport)            # met by a's holder: a fresh process
    assert r.status == 200, (r, p.log_text())
    b = r.body.decode().strip()
    c.send_ok(b, 0, b"ping")
    assert c.recv_until(b, 0, 4) == (b"ping", False)
    for t in (a, b):
        assert Conn(p).delete(t).status == 200


@needs_root
@pytest.mark.needs("tls")
@pytest.mark.parametrize("bad", ["rules", "user"])
def test_no_tls_handshake_as_root_when_the_config_is_bad(make_proxy, tls_files, bad):
    """inetd mode, --user, TLS: when the rules do not parse (or the user is
    unknown) the process still answers 500 over TLS; it must not read and
    parse the client's ClientHello as root meanwhile (--user: 'in inetd
    mode in every connection's process before it reads a byte from the
    client')."""
    cert, key = tls_files
    user = "nobody" if bad == "rules" else "no-such-user-tunneld"
    acl = "this is not a rule\n" if bad == "rules" else LOOPBACK_ACL
    p = make_proxy("inetd", acl=acl,
                   args=["--user", user, "--cert", str(cert), "--key", str(key)])
    with socket.create_connection((p.host, p.port), 5):
        time.sleep(0.5)     # the files are read: it waits for our ClientHello, or has ended
        for pid in serving(p):
            uids = ids(pid)[0]
            assert 0 not in uids, f"pid {pid} waits for the TLS handshake as root: " \
                                  f"{status(pid)['Uid']}\n{p.log_text()}"


@needs_root
def test_user_already_in_effect_is_no_error(make_proxy, echo, open_dir):
    """inetd mode started as nobody (as contrib/ launches it) with --user
    nobody: there is nothing to drop, and setgroups(2) as nobody fails with
    EPERM; every connection must not be answered 500 for it."""
    if not shutil.which("setpriv"):
        pytest.skip("setpriv missing")
    p = make_proxy("inetd", acl=None, args=["--user", "nobody", "--acl", readable_acl(open_dir)],
                   wrap=["setpriv", f"--reuid={pwd.getpwnam('nobody').pw_uid}",
                         f"--regid={pwd.getpwnam('nobody').pw_gid}", "--clear-groups"])
    c = Client(p.host, p.port)
    r = c.request(connect_head(echo.hostport))
    assert r.status == 200, (r, p.log_text())
    c.close()


@needs_root
def test_every_process_of_an_inetd_tunnel_is_nobody_and_filtered(make_proxy, echo,
                                                                   open_dir):
    """inetd mode, --user nobody, rules nobody can read: the connection's
    process (a holder), the spawner, a spawner child holding a second
    session, and a spawner child serving a CONNECT on a kept-alive
    connection: all nobody with no group besides, all Seccomp: 2 and
    NoNewPrivs: 1. Sessions opened by one process are reached from another
    connection (the names carry nobody's uid, in every process alike)."""
    p = make_proxy("inetd", args=["--user", "nobody", "--acl", readable_acl(open_dir)], acl=None,
                   tunnel=PATH)
    c = Conn(p, timeout=10)
    a = c.open_ok(echo.hostport)
    c.send_ok(a, 0, b"a")
    b = c.open_ok(echo.hostport)                     # a spawner child holds b
    (ha,), (hb,) = holder_pids(p, a), holder_pids(p, b)
    assert ha != hb
    x = Conn(p, timeout=10)                          # another connection reaches a
    assert x.recv_until(a, 0, 1) == (b"a", False)
    assert x.delete(a).status == 200                 # x outlives a's session...
    x.c.send(connect_head(echo.hostport) + b"ping")  # ...its CONNECT: a spawner child
    assert x.c.read_until(b"\r\n\r\n") == OK_REPLY
    assert x.c.read_exact(4) == b"ping"
    pids = set(serving(p)) | p.procs()
    pids = {q for q in pids if runs_tunneld(q)}
    assert hb in pids and len(pids) >= 3, pids
    want = nobody_ids()
    for pid in pids:
        assert ids(pid) == want, (pid, status(pid))
        assert_stages(pid, 1)
    x.close()
    assert c.delete(b).status == 200


# --------------------------------------------------------------------------
# 3. the spawner: no leak, no connection held, bounded

def test_spawner_never_outlives_the_connection(make_proxy, echo):
    """inetd mode with --http-tunnel: 20 CONNECTs one after another, and a
    session whose kept-alive connection then carries a CONNECT (served by
    a spawner child): once all end, no process of tunneld is left (the
    spawner looks every second)."""
    p = make_proxy("inetd", tunnel=PATH)
    for i in range(20):
        c = open_tunnel(p, echo.hostport, b"x")
        assert c.read_exact(1) == b"x"
        c.close()
    c = Conn(p, timeout=10)
    a = c.open_ok(echo.hostport)
    assert c.delete(a).status == 200
    c.c.send(connect_head(echo.hostport) + b"ping")
    assert c.c.read_until(b"\r\n\r\n") == OK_REPLY
    assert c.c.read_exact(4) == b"ping"
    c.close()
    assert wait_until(lambda: not p.procs(), 5), \
        f"left: {[(q, status(q)['State']) for q in p.procs()]}"


def test_client_sees_eof_when_its_process_ends(make_proxy, make_target, echo):
    """The spawner never keeps a client's connection open: a CONNECT whose
    target closes (the connection's own process), and a request a holder
    hands on (a spawner child's 404, Connection: close) both end in EOF."""
    p = make_proxy("inetd", tunnel=PATH)
    g = make_target(greet_shut_handler)
    c = open_tunnel(p, g.hostport)
    assert c.read_exact(16) == b"hello, then EOF\n"
    c.sock.shutdown(socket.SHUT_WR)
    assert c.end_state(3) == "eof"
    c.close()
    h = Conn(p, timeout=10)
    a = h.open_ok(echo.hostport)
    r = h.request("GET", path="/elsewhere", headers=["Connection: close"])
    assert r.status == 404, r
    assert h.c.end_state(3) == "eof", "the connection stays open after the answer"
    h.close()
    assert Conn(p).delete(a).status == 200


def test_spawner_outlives_a_killed_holder_only_while_its_children_serve(make_proxy, echo):
    """SIGKILL the connection's process (a's holder) while a spawner child
    holds b: b still works, and once b is deleted nothing is left."""
    p = make_proxy("inetd", tunnel=PATH)
    c = Conn(p, timeout=10)
    a = c.open_ok(echo.hostport)
    b = c.open_ok(echo.hostport)
    (ha,) = holder_pids(p, a)
    os.kill(ha, 9)
    assert wait_until(lambda: ha not in p.procs(), 3)
    y = Conn(p, timeout=10)
    y.send_ok(b, 0, b"after")
    assert y.recv_until(b, 0, 5) == (b"after", False)
    assert y.delete(b).status == 200
    y.close()
    c.close()
    assert wait_until(lambda: not p.procs(), 5), p.procs()


def test_inetd_connection_costs_two_processes_at_most(make_proxy, echo):
    """With --http-tunnel each inetd connection has its process and one
    spawner (which --max-conns does not count): 6 CONNECTs at once make at
    most 12 processes."""
    p = make_proxy("inetd", tunnel=PATH)
    cs = [open_tunnel(p, echo.hostport) for _ in range(6)]
    time.sleep(0.3)
    n = len(p.procs())
    assert n <= 12, f"{n} processes for 6 connections"
    for c in cs:
        c.close()
    assert wait_until(lambda: not p.procs(), 5), p.procs()


# --------------------------------------------------------------------------
# 4. TLS: the TLS half and the spawner child behind it

@needs_root
@pytest.mark.needs("tls")
@pytest.mark.parametrize("mode", ["listen", "inetd"])
def test_tls_tunnel_halves_are_nobody_and_filtered(make_proxy, tls_files, echo, open_dir,
                                                   tmp_path, mode):
    """A GET/POST tunnel over TLS with a key only root can read and --user
    nobody: the TLS half (relay stage) and the plain side's holder both run
    as nobody under their filters, and the session works."""
    cert, key = tls_files
    own_key = tmp_path / "key.pem"
    own_key.write_bytes(key.read_bytes())
    own_key.chmod(0o600)
    p = make_proxy(mode, args=["--user", "nobody", "--cert", str(cert), "--key", str(own_key),
                           "--acl", readable_acl(open_dir)], acl=None, tunnel=PATH)
    ctx = ssl.create_default_context(cafile=str(cert))
    with ctx.wrap_socket(socket.create_connection((p.host, p.port), 5),
                         server_hostname="good.test") as s:
        s.settimeout(10)
        body = echo.hostport.encode()
        s.sendall(b"POST /t HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % len(body)
                  + body)
        got = b""
        for _ in range(100):
            if re.search(rb"\r\n\r\n[0-9a-f]{48}\n", got):
                break
            chunk = s.recv(4096)
            assert chunk, got
            got += chunk
        assert got.startswith(b"HTTP/1.1 200"), got
        token = re.search(rb"[0-9a-f]{48}", got.split(b"\r\n\r\n", 1)[1]).group().decode()
        (h,) = holder_pids(p, token)
        pids = {q for q in p.procs() if runs_tunneld(q)}
        if mode == "listen":
            pids.discard(p.pid)
        assert h in pids and len(pids) >= 2, pids
        for pid in pids:
            assert ids(pid) == nobody_ids(), (pid, status(pid))
            assert_stages(pid, 1)
        s.sendall(b"DELETE /t HTTP/1.1\r\nHost: x\r\nTunnel-Token: %s\r\n\r\n"
                  % token.encode())
        got = b""
        for _ in range(100):
            if b"\r\n\r\n" in got:
                break
            chunk = s.recv(4096)
            assert chunk, got
            got += chunk
        assert got.startswith(b"HTTP/1.1 200"), got
