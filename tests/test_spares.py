"""Spares (tunneld.8 --spares): a listener's workers started ahead of their
clients by exec, seen from outside.

- every worker has random state of its own (AT_RANDOM, from which the C
  library draws the stack canary), where a fork of the listener shares the
  listener's;
- a spare executes a sealed copy of the binary that its uid may not read,
  so no process of that uid may read or attach to it, not even in the
  moments after its exec;
- spares end with their listener, however it ends, and a connection a spare
  took goes on;
- --max-conns holds with spares waiting; a killed spare is replaced, once
  logged;
- a TUNNELD_SPARE not from the parent ends the process, said so.
"""

import fcntl
import os
import pwd
import shutil
import signal
import socket
import struct
import subprocess
import tempfile
import threading

import pytest

from conftest import (REPO, Client, binary, clean_env, connect_head, idle_spares, kill_pid,
                      open_tunnel, wait_until)
from test_faults import own_user

AT_RANDOM = 25
needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="reads other processes' memory")


def at_random(pid):
    """The 16 random bytes the kernel gave process pid at exec."""
    raw = open(f"/proc/{pid}/auxv", "rb").read()
    words = struct.unpack(f"{len(raw) // 8}Q", raw[:len(raw) // 8 * 8])
    addr = dict(zip(words[::2], words[1::2]))[AT_RANDOM]
    with open(f"/proc/{pid}/mem", "rb") as f:
        f.seek(addr)
        return f.read(16)


def spares_of(p, n):
    assert wait_until(lambda: len(idle_spares(p.pid)) == n, 5), idle_spares(p.pid)
    return sorted(idle_spares(p.pid))


def serving(p):
    (pid,) = wait_until(lambda: p.workers(), 5)
    return pid


@needs_root
def test_every_worker_has_random_state_of_its_own(make_proxy, echo):
    p = make_proxy("listen")
    spares = spares_of(p, 4)
    c = open_tunnel(p, echo.hostport)
    worker = serving(p)                 # one of the spares, or one started since
    seen = {pid: at_random(pid) for pid in {p.pid, worker, *spares_of(p, 4), *spares}
            if os.path.exists(f"/proc/{pid}")}
    assert len(seen) >= 6 and len(set(seen.values())) == len(seen), seen
    c.close()


@needs_root
def test_a_spare_executes_a_sealed_copy_of_the_binary(make_proxy):
    p = make_proxy("listen")
    spare = spares_of(p, 4)[0]
    assert os.readlink(f"/proc/{spare}/exe").startswith("/memfd:tunneld ")
    fd = os.open(f"/proc/{spare}/exe", os.O_RDONLY)
    try:
        st = os.fstat(fd)
        assert st.st_mode & 0o7777 == 0o111, oct(st.st_mode)
        seals = fcntl.fcntl(fd, fcntl.F_GET_SEALS)
        want = fcntl.F_SEAL_SEAL | fcntl.F_SEAL_SHRINK | fcntl.F_SEAL_GROW | fcntl.F_SEAL_WRITE
        assert seals & want == want, seals
        with open(binary(), "rb") as f:
            assert os.pread(fd, st.st_size + 1, 0) == f.read()
    finally:
        os.close(fd)


@needs_root
def test_with_no_spares_a_worker_is_a_fork_of_the_listener(make_proxy, echo):
    """What --spares 0 keeps, and what spares are for."""
    p = make_proxy("listen", args=["--spares", "0"])
    assert not idle_spares(p.pid)
    c = open_tunnel(p, echo.hostport)
    assert at_random(serving(p)) == at_random(p.pid)
    c.close()


@needs_root
@pytest.mark.needs("tls")
def test_spare_is_closed_to_others_of_its_uid(make_proxy, tls_files, tmp_path):
    """--user nobody, a key only root reads: another process of uid nobody
    can neither read a spare's environment nor its descriptors (the
    snapshot holds the key) nor attach to it."""
    nobody = pwd.getpwnam("nobody")
    cert, key = tls_files
    own_key = tmp_path / "key.pem"
    own_key.write_bytes(key.read_bytes())
    own_key.chmod(0o600)
    p = make_proxy("listen", args=["--user", "nobody", "--cert", str(cert), "--key", str(own_key)])
    spare = spares_of(p, 4)[0]
    assert os.stat(f"/proc/{spare}/status").st_uid == 0     # not dumpable
    assert f"Uid:\t{nobody.pw_uid}\t" in open(f"/proc/{spare}/status").read()
    as_nobody = ["setpriv", f"--reuid={nobody.pw_uid}", f"--regid={nobody.pw_gid}",
                 "--clear-groups", "--"]
    for cmd in (["cat", f"/proc/{spare}/environ"], ["cat", f"/proc/{spare}/maps"],
                ["ls", f"/proc/{spare}/fd"]):
        r = subprocess.run([*as_nobody, *cmd], capture_output=True, timeout=10)
        assert r.returncode != 0 and not r.stdout, r
    probe = ("import ctypes, sys; libc = ctypes.CDLL(None, use_errno=True); "
             "sys.exit(0 if libc.ptrace(16, int(sys.argv[1]), 0, 0) == 0 else 3)")
    r = subprocess.run([*as_nobody, "/usr/bin/python3", "-c", probe, str(spare)],
                       capture_output=True, timeout=10)
    assert r.returncode == 3, r             # PTRACE_ATTACH refused
    assert "ended before a client came" not in p.log_text()


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL])
def test_spares_end_with_the_listener_a_tunnel_goes_on(make_proxy, echo, sig):
    p = make_proxy("listen")
    c = open_tunnel(p, echo.hostport)
    worker = serving(p)
    spares = spares_of(p, 4)
    os.kill(p.pid, sig)
    p.proc.wait(5)
    assert wait_until(lambda: not any(os.path.exists(f"/proc/{s}") for s in spares), 3), \
        "spares outlived their listener"
    with pytest.raises(OSError):
        socket.create_connection((p.host, p.port), timeout=2).close()
    c.send(b"after")
    assert c.read_exact(5) == b"after"
    c.close()
    assert wait_until(lambda: not os.path.exists(f"/proc/{worker}"), 5)


def test_max_conns_holds_with_spares_waiting(make_proxy, echo):
    """--max-conns 3 with 4 spares wanted: three tunnels open, a fourth
    waits (never served beside them) until one ends."""
    p = make_proxy("listen", args=["--max-conns", "3", "--spares", "4"])
    spares_of(p, 3)
    held = [open_tunnel(p, echo.hostport) for _ in range(3)]
    late = Client(p.host, p.port)
    late.send(connect_head(echo.hostport))
    assert late.end_state(1) == "open" and late.buf == b""
    assert len(p.workers()) == 3 and not idle_spares(p.pid)
    held.pop().close()
    assert late.read_until(b"\r\n\r\n", timeout=5).startswith(b"HTTP/1.1 200 ")
    late.send(b"late")
    assert late.read_exact(4) == b"late"
    for c in [late, *held]:
        c.close()
    assert wait_until(lambda: not p.workers(), 5)
    assert len(spares_of(p, 3)) == 3


def test_killed_spare_is_replaced_and_told_once(make_proxy, echo):
    p = make_proxy("listen", args=["--spares", "2"])
    for victim in spares_of(p, 2):
        kill_pid(victim)
    assert wait_until(lambda: len(idle_spares(p.pid)) == 2, 5)
    c = open_tunnel(p, echo.hostport)
    c.send(b"ok")
    assert c.read_exact(2) == b"ok"
    c.close()
    assert p.log_text().count("ended before a client came") == 1, p.log_text()


def sleeps(pid):
    """(voluntary context switches, whether it sleeps in poll or epoll) of pid."""
    with open(f"/proc/{pid}/status") as f:
        st = dict(line.rstrip("\n").split(":\t", 1) for line in f if ":\t" in line)
    with open(f"/proc/{pid}/wchan") as f:
        wchan = f.read()
    return int(st["voluntary_ctxt_switches"]), st["State"].startswith("S") and "poll" in wchan


def test_a_client_wakes_one_spare(make_proxy, echo):
    """A client wakes one waiting spare, not all of them (whose accept()
    would find nothing, a cost every connection would pay for each spare):
    of the spares that go on waiting through three tunnels, where each
    woke for every client before, at most two woke once (epoll(7): an
    exclusive wake-up reaches "one or more")."""
    p = make_proxy("listen", args=["--spares", "8"])
    assert wait_until(lambda: len(idle_spares(p.pid)) == 8 and
                      all(sleeps(pid)[1] for pid in idle_spares(p.pid)), 5)
    before = {pid: sleeps(pid)[0] for pid in idle_spares(p.pid)}
    for _ in range(3):
        c = open_tunnel(p, echo.hostport)
        c.close()
    spares_of(p, 8)
    woke = {pid: sleeps(pid)[0] - n for pid, n in before.items() if pid in idle_spares(p.pid)}
    assert len(woke) >= 5 and sum(woke.values()) <= 2, woke


def test_a_burst_beyond_the_spares_is_served(make_proxy, echo):
    """32 clients at once with 2 spares: every one served, byte-exact."""
    p = make_proxy("listen", args=["--spares", "2"])
    spares_of(p, 2)
    results = []

    def one(i):
        try:
            c = open_tunnel(p, echo.hostport, timeout=10)
            c.send(b"%04d" % i)
            results.append(c.read_exact(4) == b"%04d" % i)
            c.close()
        except OSError as e:
            results.append(repr(e))
    threads = [threading.Thread(target=one, args=(i,), daemon=True) for i in range(32)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(20)
    assert results == [True] * 32, results


@needs_root
def test_a_spare_has_the_listeners_environment(make_proxy, monkeypatch):
    """A spare's environment is the listener's and its TUNNELD_SPARE, once
    (tunneld builds it for the exec: setenv() would link the C library's
    malloc into a build that allocates nothing)."""
    monkeypatch.setenv("TUNNELD_TEST_MARK", "kept")
    p = make_proxy("listen")
    with open(f"/proc/{spares_of(p, 4)[0]}/environ", "rb") as f:
        env = f.read().split(b"\0")
    assert b"TUNNELD_TEST_MARK=kept" in env, env
    assert len([v for v in env if v.startswith(b"TUNNELD_SPARE=")]) == 1, env


def test_too_many_environment_variables_fork_instead(make_proxy, echo, monkeypatch):
    """More than 256 environment variables: no spares, said so, a fork per
    connection, which serves as before."""
    for i in range(300):
        monkeypatch.setenv(f"TUNNELD_TEST_V{i}", "x")
    p = make_proxy("listen")
    c = open_tunnel(p, echo.hostport)
    c.send(b"ping")
    assert c.read_exact(4) == b"ping"
    c.close()
    assert "spares: more than 256 environment variables; a fork per connection" in p.log_text()
    assert not idle_spares(p.pid)


def test_spare_environment_not_from_the_parent_ends_it(echo, tmp_path):
    """TUNNELD_SPARE naming another parent (pid 1), as a spare whose
    listener ended before it started sees it: it ends, logged, and serves
    nothing with what it inherited."""
    rules = tmp_path / "rules"
    rules.write_text("deny\n")
    env = dict(clean_env(), TUNNELD_SPARE="1 3 4 -1 lfake 0")
    a, b = socket.socketpair()
    r = subprocess.Popen([binary(), "--log", "stderr", "--acl", str(rules)], stdin=b,
                         stdout=b, stderr=subprocess.PIPE, env=env)
    b.close()
    assert r.wait(5) == 1
    assert b"TUNNELD_SPARE: not a spare of its parent" in r.stderr.read()
    a.settimeout(5)
    assert a.recv(4096) == b""          # closed, not a byte
    a.close()


@needs_root
@pytest.mark.needs("tls")
def test_its_own_uid_cannot_race_a_new_spare(make_proxy, tls_files, tmp_path):
    """The attack: a process of tunneld's own uid connects, so that a new
    spare starts, and races to open that spare's file snapshot (a key only
    root may read is in it) through /proc in the moments after its exec
    (tests/spare_race.c, ten rounds). With the spare executing a binary its
    uid may not read, it is non-dumpable from the start: nothing opens."""
    if not (shutil.which("cc") and shutil.which("setpriv")):
        pytest.skip("cc or setpriv missing")
    user, wrap = own_user(tmp_path)
    uid = int(user[len("tdnproc"):])
    where = tempfile.mkdtemp(prefix="tunneld-race-")   # one the uid may enter
    os.chmod(where, 0o711)
    racer = os.path.join(where, "spare_race")
    try:
        subprocess.run(["cc", "-O2", "-o", racer, str(REPO / "tests" / "spare_race.c")],
                       check=True, timeout=60)
        race(make_proxy, tls_files, tmp_path, user, wrap, uid, racer)
    finally:
        shutil.rmtree(where, ignore_errors=True)


def race(make_proxy, tls_files, tmp_path, user, wrap, uid, racer):
    cert, key = tls_files
    own_key = tmp_path / "key.pem"
    own_key.write_bytes(key.read_bytes())
    own_key.chmod(0o600)
    p = make_proxy("listen", args=["--user", user, "--cert", str(cert), "--key", str(own_key)],
                   wrap=wrap)
    spares_of(p, 4)
    r = subprocess.run(["setpriv", f"--reuid={uid}", f"--regid={uid}", "--clear-groups",
                        racer, str(p.port), "10"], capture_output=True, text=True,
                       timeout=60)
    assert r.returncode == 1, r.stdout + r.stderr
