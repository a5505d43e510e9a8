"""The `tunnel` client (DESIGN §8) against the real tunneld, started the
ways users start them: stdin/stdout sessions (ssh ProxyCommand style),
--listen with many local connections, through a real squid that refuses
CONNECT, through a proxy that drops answers and connections, over TLS, in
plain CONNECT mode (direct, with a password, and through an outer proxy),
and its exit codes and one-line errors."""

import getpass
import hashlib
import os
import random
import re
import secrets
import shutil
import signal
import socket
import subprocess
import threading
import time

import pytest

from conftest import (ALICE, LOOPBACK_ACL, TUNNEL_PATH, alive, at_once, children, clean_env,
                      descendants, echo_handler, free_port, kill_pid, listening, netns_wrap,
                      openssl_hash, read_request, recv_all, self_signed, source_sink,
                      wait_until)
from faultproxy import FaultProxy

pytestmark = pytest.mark.needs("http-tunnel")

PATH = TUNNEL_PATH
KiB, MiB = 1 << 10, 1 << 20
PAYLOAD = b"".join(b"line %04d through the tunnel\n" % i for i in range(500))


# --------------------------------------------------------------------------
# helpers

def env_with(**extra):
    env = clean_env()
    env.pop("TUNNEL_PASSWORD", None)
    env.update(extra)
    return env


def run_tunnel(tunnel_bin, *args, data=b"", env=None, timeout=30, pass_fds=()):
    return subprocess.run([tunnel_bin, *args], input=data, capture_output=True,
                          timeout=timeout, env=env or env_with(), pass_fds=pass_fds)


def assert_exit(r, code, *words):
    """tunnel ended with code and one stderr line `tunnel: ...` naming words."""
    err = r.stderr.decode("utf-8", "replace")
    assert r.returncode == code, (r.returncode, err)
    lines = err.strip("\n").split("\n")
    assert len(lines) == 1 and lines[0].startswith("tunnel: "), err
    for w in words:
        assert w in lines[0], err


def stream(cmd, up, env=None, timeout=60, early_end_ok=False):
    """Run cmd with up on its stdin (written while its stdout is read, then
    closed); return (returncode, sha256 and length of stdout, stderr).
    early_end_ok: a client that ends before taking all of up is reported by
    its exit code, not by the broken pipe."""
    proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, env=env or env_with())
    errors, err = [], []

    def write():
        try:
            for i in range(0, len(up), 65536):
                proc.stdin.write(up[i:i + 65536])
            proc.stdin.close()
        except OSError as e:
            errors.append(e)
    threads = [threading.Thread(target=write, daemon=True),
               threading.Thread(target=lambda: err.append(proc.stderr.read()), daemon=True)]
    for t in threads:
        t.start()
    h, n = hashlib.sha256(), 0
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            chunk = proc.stdout.read1(1 << 18)
            if not chunk:
                break
            h.update(chunk)
            n += len(chunk)
        proc.wait(max(1, deadline - time.monotonic()))
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(5)
    for t in threads:
        t.join(5)
    assert early_end_ok or not errors, errors
    return proc.returncode, (h.hexdigest(), n), b"".join(err)


def two_way(tunnel_bin, make_target, server_url, size, *opts, env=None, timeout=60,
            up_size=None):
    """A stdin/stdout session moving size bytes down and size (or up_size)
    up, independently; both directions checked by sha256."""
    up_size = size if up_size is None else up_size
    down, up = os.urandom(size), os.urandom(up_size)
    target = make_target(source_sink(down))
    rc, got, err = stream([tunnel_bin, *opts, server_url, target.hostport], up, env, timeout)
    assert rc == 0, (rc, err)
    assert got == (hashlib.sha256(down).hexdigest(), size), "the target's bytes differ"
    assert target.wait_results(1, 30) == [(hashlib.sha256(up).hexdigest(), up_size, "eof")], \
        "the bytes to the target differ"
    return err


ANSWER_MAX = 512 * KiB


def answer_sizes(err):
    """The body sizes of the receives a `tunnel -v` logged: each asks for
    max=512 KiB."""
    return [int(n) for n in re.findall(
        rb"GET [^ ,]*\?o=\d+&max=%d, 0 bytes: 200 [^,]*, (\d+) bytes" % ANSWER_MAX, err)]


def assert_large_answers(err, size):
    """The download came in answers of up to 512 KiB, some over 64 KiB,
    and they add up to it."""
    sizes = answer_sizes(err)
    assert sizes and sum(sizes) == size, (len(sizes), sum(sizes))
    assert max(sizes) <= ANSWER_MAX and max(sizes) > 64 * KiB, sorted(sizes)[-5:]


# --------------------------------------------------------------------------
# stdin/stdout sessions, direct, both serving modes

def test_stdio_round_trip(tunnel_bin, tproxy, make_target):
    err = two_way(tunnel_bin, make_target, tproxy.url, 300 * KiB)
    assert err == b"", err
    tproxy.wait_log(lambda f: f.get("status") == "200", what="session")
    # the client said DELETE: the session's holder is gone
    assert wait_until(lambda: not tproxy.workers(), 5), f"left: {tproxy.workers()}"


def test_echo_like_netcat(tunnel_bin, tproxy, echo):
    r = run_tunnel(tunnel_bin, tproxy.url, echo.hostport, data=PAYLOAD)
    assert r.returncode == 0, r.stderr
    assert r.stdout == PAYLOAD
    assert echo.wait_results(1) == ["eof"]


@pytest.mark.needs("ipv6")
def test_ipv6_server_and_target(tunnel_bin, make_proxy, make_target):
    p = make_proxy("listen", host="::1", tunnel=PATH)
    echo6 = make_target(echo_handler, host="::1")
    r = run_tunnel(tunnel_bin, f"http://[::1]:{p.port}{PATH}", echo6.hostport, data=PAYLOAD)
    assert r.returncode == 0, r.stderr
    assert r.stdout == PAYLOAD


# --------------------------------------------------------------------------
# squid between, refusing CONNECT

def test_squid_4mib_each_way(tunnel_bin, squid, tproxy, make_target):
    two_way(tunnel_bin, make_target, tproxy.url, 4 * MiB, "-x", squid.url, timeout=90)
    log = squid.log()
    assert f"POST {tproxy.url}" in log and f"GET {tproxy.url}" in log, log[-2000:]
    assert "CONNECT" not in log, log[-2000:]


def test_squid_8mib_down_in_large_answers(tunnel_bin, squid, tproxy, make_target):
    """Downloads come in answers of up to 512 KiB (max=), through squid
    too, every byte exact."""
    err = two_way(tunnel_bin, make_target, tproxy.url, 8 * MiB, "-v", "-x", squid.url,
                  timeout=90, up_size=64 * KiB)
    assert_large_answers(err, 8 * MiB)
    # squid's own record: answers to GET of over 64 KiB passed it
    carried = [int(n) for n in re.findall(r"/200 (\d+) GET " + re.escape(tproxy.url), squid.log())]
    assert carried and max(carried) > ANSWER_MAX, squid.log()[-2000:]


def oversize_server(clen):
    """A server answering the open with a token, every send with its
    offset, and each of two receives with a 200 of clen bytes (the second
    with Tunnel-Eof): the receives' queries are recorded."""
    token = secrets.token_hex(24).encode()

    def handler(conn, server):
        buf = b""
        conn.settimeout(10)
        for _ in range(100):
            req = read_request(conn, buf)
            if req is None:
                return
            line, fields, body, buf = req
            m = re.search(rb"o=(\d+)", line)
            off = int(m.group(1)) if m else 0
            if b"tunnel-token" not in fields:
                body = token + b"\n"
                conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body))
            elif line.startswith(b"GET "):
                server.results.append(line.split()[1])
                eof = b"Tunnel-Eof: 1\r\n" if len(server.results) > 1 else b""
                try:
                    conn.sendall(b"HTTP/1.1 200 OK\r\nTunnel-Offset: %d\r\n%sContent-Length: %d"
                                 b"\r\n\r\n" % (off, eof, clen) + b"x" * clen)
                except OSError:
                    return
            else:
                conn.sendall(b"HTTP/1.1 200 OK\r\nTunnel-Offset: %d\r\nContent-Length: 0\r\n\r\n"
                             % (off + len(body)))
    return handler


def test_client_refuses_an_answer_over_what_it_asked(tunnel_bin, make_target):
    """The client asks for 512 KiB an answer and holds no more: a server
    answering a byte more is refused (76), not buffered."""
    server = make_target(oversize_server(ANSWER_MAX + 1))
    r = subprocess.run([tunnel_bin, f"http://{server.hostport}/", "127.0.0.1:9"],
                       input=b"", capture_output=True, timeout=30, env=clean_env())
    assert r.returncode == 76, r
    assert b"without a Content-Length of at most 524288" in r.stderr, r
    assert server.results and server.results[0] == b"/?o=0&max=524288", server.results


def test_client_takes_an_answer_of_what_it_asked(tunnel_bin, make_target):
    """The same server with 512 KiB answers: taken whole, written out."""
    server = make_target(oversize_server(ANSWER_MAX))
    rc, got, err = stream([tunnel_bin, f"http://{server.hostport}/", "127.0.0.1:9"], b"",
                          timeout=30)
    assert rc == 0, (rc, err)
    assert got == (hashlib.sha256(b"x" * 2 * ANSWER_MAX).hexdigest(), 2 * ANSWER_MAX)
    assert server.results == [b"/?o=0&max=524288", b"/?o=524288&max=524288"], server.results


def test_squid_refuses_connect(tunnel_bin, squid, tproxy, echo):
    r = run_tunnel(tunnel_bin, "--mode", "connect", "-x", squid.url,
                   f"http://127.0.0.1:{tproxy.port}", echo.hostport, data=b"never\n")
    assert r.returncode in (69, 77), (r.returncode, r.stderr)
    assert_exit(r, r.returncode, "403")
    c = subprocess.run(["curl", "-sS", "--max-time", "10", "-p", "-x", squid.url,
                        f"http://{echo.hostport}/"], capture_output=True, timeout=20,
                       env=clean_env())
    assert c.returncode != 0, c
    assert b"403" in c.stderr, c.stderr
    assert echo.accepted == 0
    assert "TCP_DENIED/403" in squid.log() and "CONNECT" in squid.log()


def procs_with(marker):
    """Pids of processes whose command line contains marker."""
    out = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/cmdline", "rb") as f:
                    if marker.encode() in f.read():
                        out.append(int(entry))
            except OSError:
                pass
    return out


def test_ssh_through_squid(tunnel_bin, squid, make_proxy, tmp_path, netfiles):
    """ssh's ProxyCommand, as the README tells users to write it. ssh ends
    its ProxyCommand with SIGHUP when it is done: every tunnel process must
    be gone then (one left behind holds ssh's stderr, so `$(ssh host cmd
    2>&1)` never returns, and keeps the session alive)."""
    sshd = "/usr/sbin/sshd"
    if not (os.access(sshd, os.X_OK) and shutil.which("ssh") and shutil.which("ssh-keygen")):
        pytest.skip("sshd/ssh missing (Debian packages openssh-server, openssh-client)")
    keys = {}
    for name in ("host", "client"):
        keys[name] = tmp_path / f"{name}_key"
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(keys[name])],
                       check=True, capture_output=True, timeout=30)
    (tmp_path / "authorized_keys").write_bytes((tmp_path / "client_key.pub").read_bytes())
    port = free_port()
    conf = tmp_path / "sshd_config"
    conf.write_text(f"""\
Port {port}
ListenAddress 127.0.0.1
HostKey {keys['host']}
PidFile {tmp_path}/sshd.pid
AuthorizedKeysFile {tmp_path}/authorized_keys
StrictModes no
UsePAM no
PasswordAuthentication no
KbdInteractiveAuthentication no
PermitRootLogin prohibit-password
UseDNS no
LogLevel ERROR
""")
    os.makedirs("/run/sshd", mode=0o755, exist_ok=True)      # privilege separation
    log = open(tmp_path / "sshd.log", "wb")
    proc = subprocess.Popen(netns_wrap([sshd, "-D", "-e", "-f", str(conf)], netfiles),
                            stdin=subprocess.DEVNULL, stdout=log, stderr=log, env=clean_env())
    p = make_proxy("inetd", tunnel=PATH)
    out, err = tmp_path / "ssh.out", tmp_path / "ssh.err"
    try:
        assert wait_until(lambda: listening(port) or proc.poll() is not None, 10) \
            and proc.poll() is None, (tmp_path / "sshd.log").read_text()
        with open(out, "wb") as o, open(err, "wb") as e:
            r = subprocess.run(["ssh", "-F", "/dev/null", "-i", str(keys["client"]),
                                "-o", "IdentitiesOnly=yes", "-o", "BatchMode=yes",
                                "-o", "StrictHostKeyChecking=no",
                                "-o", "UserKnownHostsFile=/dev/null", "-o", "LogLevel=ERROR",
                                "-o", f"ProxyCommand={tunnel_bin} -x {squid.url} {p.url} %h:%p",
                                "-p", str(port), f"{getpass.getuser()}@127.0.0.1",
                                "echo", "hello through squid"],
                               stdout=o, stderr=e, stdin=subprocess.DEVNULL, timeout=60,
                               env=clean_env())
        assert r.returncode == 0, (r.returncode, err.read_text(),
                                   (tmp_path / "sshd.log").read_text())
        assert out.read_bytes() == b"hello through squid\n"
        left = wait_until(lambda: not procs_with(p.url), 5) or procs_with(p.url)
        assert left is True, f"tunnel processes left after ssh ended: {left}"
    finally:
        for pid in procs_with(p.url):
            kill_pid(pid)
        proc.terminate()
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)
        log.close()


@pytest.mark.parametrize("sig", ["SIGHUP", "SIGTERM"])
def test_signal_ends_every_tunnel_process(tunnel_bin, make_proxy, mode, echo, sig):
    """ssh ends a ProxyCommand with SIGHUP: the whole client goes, and the
    session expires (no leftover poller keeps it alive)."""
    server = make_proxy(mode, args=["--session-timeout", "2"], tunnel=PATH)
    proc = subprocess.Popen([tunnel_bin, server.url, echo.hostport], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=env_with())
    pids = []
    try:
        proc.stdin.write(b"ping")
        proc.stdin.flush()
        assert proc.stdout.read(4) == b"ping"
        pids = [proc.pid] + descendants(proc.pid)
        kill_pid(proc.pid, getattr(signal, sig))
        proc.wait(5)
        left = wait_until(lambda: not [q for q in pids if alive(q)], 5) or \
            [q for q in pids if alive(q)]
        assert left is True, f"processes of tunnel left after {sig}: {left}"
        assert echo.wait_results(1, timeout=10) in (["eof"], ["reset"]), \
            "the session outlived the client"
    finally:
        for q in pids:
            kill_pid(q)
        if proc.poll() is None:
            proc.kill()
            proc.wait(5)


# --------------------------------------------------------------------------
# --listen: many local connections at once

def keyed_source_sink(size):
    """Target: read an 8-byte connection number, send that connection's own
    size bytes, half-close, read to EOF; record (number, sha256 of what came)."""
    def handler(conn, server):
        key = b""
        while len(key) < 8:
            chunk = conn.recv(8 - len(key))
            if not chunk:
                server.results.append(("short", key))
                return
            key += chunk
        blob = random.Random(key).randbytes(size)
        sender = threading.Thread(target=lambda: (conn.sendall(blob),
                                                  conn.shutdown(socket.SHUT_WR)), daemon=True)
        sender.start()
        data, how = recv_all(conn)
        sender.join(30)
        server.results.append((key, hashlib.sha256(data).hexdigest(), how))
    return handler


def test_listen_bare_port_is_loopback_only(tunnel_bin, make_proxy, echo):
    """--listen PORT listens on 127.0.0.1 alone, as ssh -L does: another
    address of this host (127.0.0.2 here) is refused."""
    server = make_proxy("listen", tunnel=PATH)
    port = free_port()
    proc = subprocess.Popen([tunnel_bin, "--listen", str(port), server.url, echo.hostport],
                            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, env=env_with())
    try:
        assert wait_until(lambda: listening(port) or proc.poll() is not None, 5) \
            and proc.poll() is None, proc.stderr.read() if proc.poll() is not None else b""
        with socket.create_connection(("127.0.0.1", port), timeout=10) as c:
            c.sendall(b"ping")
            assert c.recv(4) == b"ping"
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection(("127.0.0.2", port), timeout=5).close()
    finally:
        kill_pid(proc.pid)
        proc.wait(5)


@pytest.mark.parametrize("via", ["direct", "squid"])
def test_listen_10_concurrent(tunnel_bin, tproxy, make_target, request, via):
    """Ten sessions at once; through squid they share its pooled connections
    to tunneld."""
    n, size = 10, 256 * KiB
    target = make_target(keyed_source_sink(size))
    port = free_port()
    opts = ["-x", request.getfixturevalue("squid").url] if via == "squid" else []
    proc = subprocess.Popen([tunnel_bin, *opts, "--listen", f"127.0.0.1:{port}", tproxy.url,
                             target.hostport], stdin=subprocess.DEVNULL,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env_with())
    try:
        assert wait_until(lambda: listening(port) or proc.poll() is not None, 5) \
            and proc.poll() is None, proc.stderr.read() if proc.poll() is not None else b""
        ups = [os.urandom(size) for _ in range(n)]

        def one(i, barrier):
            key = b"conn%04d" % i
            s = socket.create_connection(("127.0.0.1", port), timeout=30)
            barrier.wait()
            sender = threading.Thread(target=lambda: (s.sendall(key + ups[i]),
                                                      s.shutdown(socket.SHUT_WR)),
                                      daemon=True)
            sender.start()
            got, how = recv_all(s, limit=2 * size)
            sender.join(30)
            s.close()
            want = random.Random(key).randbytes(size)
            return True if got == want else f"{len(got)} bytes ({how}), differ"
        results = at_once(n, one)
        assert results == [True] * n, results
        got = target.wait_results(n, 30)
        want = {(b"conn%04d" % i, hashlib.sha256(ups[i]).hexdigest(), "eof") for i in range(n)}
        assert set(got) == want, got
        assert proc.poll() is None, "tunnel --listen ended"
    finally:
        kill_pid(proc.pid, 15)
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            kill_pid(proc.pid)
            proc.wait(5)
        proc.stderr.close()


# --------------------------------------------------------------------------
# a proxy that loses answers and connections

FAULTS = {
    "drop-every-2nd-answer": dict(drop_every=2),
    "close-between-requests": dict(close_between=True),
    "502-every-7th": dict(error_every=7),
}


@pytest.mark.parametrize("fault", FAULTS.keys())
def test_faulty_proxy_1mib_each_way(tunnel_bin, tproxy, make_target, fault):
    fp = FaultProxy(**FAULTS[fault])
    try:
        two_way(tunnel_bin, make_target, tproxy.url, 1 * MiB, "-x", fp.url, timeout=90)
        counts = {"requests": fp.requests, "dropped": fp.dropped_methods,
                  "closed": fp.closed_between, "502s": fp.errors}
        assert fp.requests > 20, counts
        if fault.startswith("drop"):
            # lost answers to sends (a retried send) and to receives (asked again)
            assert {"GET", "POST"} <= set(fp.dropped_methods), counts
        elif fault.startswith("close"):
            assert fp.closed_between >= 20, counts
        else:
            assert fp.errors >= 3, counts
    finally:
        fp.stop()


# --------------------------------------------------------------------------
# TLS to tunneld

@pytest.fixture
def tls_server(make_proxy, mode, tls_files):
    return make_proxy(mode, tls=tls_files, tunnel=PATH)


@pytest.mark.needs("tls")
def test_tls_round_trip(tunnel_bin, tls_server, make_target):
    two_way(tunnel_bin, make_target, tls_server.url, 512 * KiB, "--cacert", tls_server.cafile)


@pytest.mark.needs("tls")
def test_tls_connect_mode_round_trip(tunnel_bin, tls_server, make_target):
    """CONNECT over TLS from stdin/stdout: two descriptors on the plain side,
    one TLS socket on the other, in one relay."""
    server = f"https://127.0.0.1:{tls_server.port}"
    two_way(tunnel_bin, make_target, server, 1 * MiB, "-m", "connect", "--cacert", tls_server.cafile)


@pytest.mark.needs("tls")
def test_tls_connect_mode_needs_no_helper_process(tunnel_bin, tls_server, echo):
    """The relay takes TLS on either side: while the stream flows the
    client is one process, with no child joining stdin and stdout."""
    server = f"https://127.0.0.1:{tls_server.port}"
    proc = subprocess.Popen([tunnel_bin, "-m", "connect", "--cacert", tls_server.cafile, server,
                             echo.hostport], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, env=clean_env())
    try:
        proc.stdin.write(b"ping\n")
        proc.stdin.flush()
        assert proc.stdout.read(5) == b"ping\n"   # the relay is running
        assert children(proc.pid) == []
        proc.stdin.close()
        assert proc.stdout.read() == b""
        assert proc.wait(timeout=20) == 0, proc.stderr.read()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


@pytest.mark.needs("tls")
def test_tls_wrong_ca_refused(tunnel_bin, tls_server, echo, tmp_path):
    other, _ = self_signed(tmp_path, ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1"])
    r = run_tunnel(tunnel_bin, "--cacert", str(other), tls_server.url, echo.hostport,
                   data=b"must not be sent\n")
    assert_exit(r, 69, "certificate")
    assert r.stdout == b""
    time.sleep(0.2)
    assert echo.accepted == 0, "the session was opened despite the wrong CA"


# --------------------------------------------------------------------------
# passwords, plain CONNECT mode

@pytest.fixture
def alice_users(make_users):
    return make_users(f"alice:{openssl_hash(ALICE[1], '-5')}\n")


@pytest.mark.needs("auth")
@pytest.mark.parametrize("how", ["env", "file", "pipe"])
@pytest.mark.parametrize("mmode", ["http", "connect"])
def test_user_password(tunnel_bin, make_proxy, mode, alice_users, echo, tmp_path, how, mmode):
    p = make_proxy(mode, users=alice_users, tunnel=PATH)
    server = p.url if mmode == "http" else f"http://127.0.0.1:{p.port}"
    fds = ()
    if how == "env":
        opts, env = [], env_with(TUNNEL_PASSWORD=ALICE[1])
    elif how == "pipe":     # a shell's --password-file <(command): a pipe, read to its end
        rfd, wfd = os.pipe()
        os.write(wfd, ALICE[1].encode() + b"\n")
        os.close(wfd)
        fds = (rfd,)
        opts, env = ["--password-file", f"/dev/fd/{rfd}"], env_with()
    else:
        pw = tmp_path / "pw"
        pw.write_text(ALICE[1] + "\nsecond line ignored\n")
        opts, env = ["--password-file", str(pw)], env_with()
    r = run_tunnel(tunnel_bin, "-m", mmode, "-u", "alice", *opts, server, echo.hostport,
                   data=PAYLOAD, env=env, pass_fds=fds)
    for fd in fds:
        os.close(fd)
    assert r.returncode == 0, r.stderr
    assert r.stdout == PAYLOAD
    line = p.wait_log(lambda f: f.get("target") == echo.hostport and f.get("status") == "200")
    assert line["user"] == "alice", line
    assert ALICE[1] not in p.log_text()


@pytest.mark.needs("auth")
@pytest.mark.parametrize("password", [None, "wrong"], ids=["no-password", "wrong-password"])
@pytest.mark.parametrize("mmode,status", [("http", "401"), ("connect", "407")])
def test_refused_credentials_exit_77(tunnel_bin, make_proxy, alice_users, echo, password,
                                     mmode, status):
    p = make_proxy("listen", users=alice_users, tunnel=PATH)
    server = p.url if mmode == "http" else f"http://127.0.0.1:{p.port}"
    opts, env = [], env_with()
    if password:
        opts, env = ["-u", "alice"], env_with(TUNNEL_PASSWORD=password)
    r = run_tunnel(tunnel_bin, "-m", mmode, *opts, server, echo.hostport, data=b"x", env=env)
    assert_exit(r, 77, status)
    assert echo.accepted == 0


def test_connect_mode_direct(tunnel_bin, tproxy, echo):
    r = run_tunnel(tunnel_bin, "--mode", "connect", f"http://127.0.0.1:{tproxy.port}",
                   echo.hostport, data=PAYLOAD)
    assert r.returncode == 0, r.stderr
    assert r.stdout == PAYLOAD


def test_connect_mode_through_outer_proxy(tunnel_bin, make_proxy, make_target):
    """-x reaches SERVER through a CONNECT-allowing proxy (another tunneld):
    CONNECT to the outer one for SERVER, then CONNECT to SERVER for TARGET."""
    outer = make_proxy("listen")
    inner = make_proxy("listen", tunnel=PATH)
    big = 2 * MiB
    two_way(tunnel_bin, make_target, f"http://127.0.0.1:{inner.port}", big,
            "-m", "connect", "-x", f"http://127.0.0.1:{outer.port}")
    o = outer.wait_log(lambda f: f.get("status") == "200", what="outer tunnel")
    assert o["target"] == f"127.0.0.1:{inner.port}", o
    i = inner.wait_log(lambda f: f.get("status") == "200", what="inner tunnel")
    assert int(i["up"]) == big and int(i["down"]) == big, i


def test_http_mode_through_connect_proxy_refused(tunnel_bin, make_proxy, echo):
    """tunneld is no forward proxy for GET/POST: -x tunneld in http mode fails
    with a clear error rather than hanging."""
    outer = make_proxy("listen")
    inner = make_proxy("listen", tunnel=PATH)
    r = run_tunnel(tunnel_bin, "-x", f"http://127.0.0.1:{outer.port}", inner.url,
                   echo.hostport, data=b"x")
    assert_exit(r, 76, "405")
    assert echo.accepted == 0


# --------------------------------------------------------------------------
# errors: exit codes and one line

@pytest.mark.parametrize("mmode", ["http", "connect"])
def test_unreachable_server_exit_69(tunnel_bin, echo, mmode):
    r = run_tunnel(tunnel_bin, "-m", mmode, f"http://127.0.0.1:{free_port()}{PATH}",
                   echo.hostport, data=b"x")
    assert_exit(r, 69)


@pytest.mark.parametrize("mmode", ["http", "connect"])
def test_unreachable_proxy_exit_69(tunnel_bin, tproxy, echo, mmode):
    r = run_tunnel(tunnel_bin, "-m", mmode, "-x", f"http://127.0.0.1:{free_port()}",
                   tproxy.url, echo.hostport, data=b"x")
    assert_exit(r, 69)


@pytest.mark.parametrize("mmode", ["http", "connect"])
def test_rules_refuse_exit_77(tunnel_bin, make_proxy, mode, make_target, mmode):
    target = make_target(echo_handler, host="127.0.0.2")
    p = make_proxy(mode, acl="deny to 127.0.0.2\n" + LOOPBACK_ACL, tunnel=PATH)
    server = p.url if mmode == "http" else f"http://127.0.0.1:{p.port}"
    r = run_tunnel(tunnel_bin, "-m", mmode, server, target.hostport, data=b"x")
    assert_exit(r, 77, "403")
    assert target.accepted == 0


@pytest.mark.parametrize("mmode", ["http", "connect"])
def test_target_refused_exit_69(tunnel_bin, tproxy, mmode):
    server = tproxy.url if mmode == "http" else f"http://127.0.0.1:{tproxy.port}"
    r = run_tunnel(tunnel_bin, "-m", mmode, server, f"127.0.0.1:{free_port()}", data=b"x")
    assert_exit(r, 69, "502")


def plain_web_server(conn, server):
    conn.recv(65536)
    body = b"<html>just a web page</html>\n"
    conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nContent-Length: %d\r\n"
                 b"Connection: close\r\n\r\n%s" % (len(body), body))


def ssh_banner(conn, server):
    conn.sendall(b"SSH-2.0-OpenSSH_9.2p1 Debian-2\r\n")
    conn.recv(65536)


@pytest.mark.parametrize("handler", [plain_web_server, ssh_banner], ids=["web-page", "ssh"])
def test_not_the_protocol_exit_76(tunnel_bin, make_target, echo, handler):
    server = make_target(handler)
    r = run_tunnel(tunnel_bin, f"http://{server.hostport}{PATH}", echo.hostport, data=b"x",
                   timeout=30)
    assert_exit(r, 76)


def test_wrong_path_fails(tunnel_bin, tproxy, echo):
    """SERVER's path is tunneld's PATH; another path is a 404 on the open:
    no tunnel endpoint there, 76."""
    r = run_tunnel(tunnel_bin, f"http://127.0.0.1:{tproxy.port}/elsewhere", echo.hostport,
                   data=b"x")
    assert_exit(r, 76, "404")
    assert echo.accepted == 0


def test_target_reset_after_open_exit_1(tunnel_bin, tproxy, echo):
    proc = subprocess.Popen([tunnel_bin, tproxy.url, echo.hostport], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env_with())
    try:
        proc.stdin.write(b"RESET-ME")
        proc.stdin.flush()
        out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(5)
    assert echo.wait_results(1) == ["reset-sent"]
    r = subprocess.CompletedProcess(proc.args, proc.returncode, out, err)
    assert_exit(r, 1)


USAGE = {
    "nothing": [],
    "no-target": ["http://127.0.0.1:1/t"],
    "extra": ["http://127.0.0.1:1/t", "127.0.0.1:2", "more"],
    "target-no-port": ["http://127.0.0.1:1/t", "127.0.0.1"],
    "target-port-word": ["http://127.0.0.1:1/t", "127.0.0.1:ssh"],
    "target-port-big": ["http://127.0.0.1:1/t", "127.0.0.1:65536"],
    "server-scheme": ["ftp://127.0.0.1:1/t", "127.0.0.1:2"],
    "server-no-scheme": ["127.0.0.1:1", "127.0.0.1:2"],
    "mode": ["-m", "udp", "http://127.0.0.1:1/t", "127.0.0.1:2"],
    "proxy-scheme": ["-x", "socks5://127.0.0.1:1", "http://127.0.0.1:1/t", "127.0.0.1:2"],
    "listen-port": ["--listen", "127.0.0.1:99999", "http://127.0.0.1:1/t", "127.0.0.1:2"],
    "unknown-option": ["--bogus", "http://127.0.0.1:1/t", "127.0.0.1:2"],
    "user-without-password": ["-u", "alice", "http://127.0.0.1:1/t", "127.0.0.1:2"],
    "https-without-cacert": ["https://127.0.0.1:1/t", "127.0.0.1:2"],     # never unverified
}


@pytest.mark.parametrize("args", USAGE.values(), ids=USAGE.keys())
def test_usage_exit_64(tunnel_bin, args):
    r = run_tunnel(tunnel_bin, *args)
    assert r.returncode == 64, (r.returncode, r.stderr)
    assert r.stderr.startswith(b"tunnel: "), r.stderr
    assert r.stdout == b""


def test_help_and_version(tunnel_bin):
    r = run_tunnel(tunnel_bin, "--help")
    assert r.returncode == 0, r.stderr
    for opt in (b"--mode", b"--proxy", b"--user", b"--password-file", b"--listen", b"--cacert"):
        assert opt in r.stdout, opt
    r = run_tunnel(tunnel_bin, "--version")
    assert r.returncode == 0 and r.stdout.startswith(b"tunnel "), r
