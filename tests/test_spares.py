"""Spares (tunneld.8 --spares): a listener's workers started ahead of their
clients by exec, seen from outside.

- every worker has random state of its own (AT_RANDOM, from which the C
  library draws the stack canary), where a fork of the listener shares the
  listener's;
- a spare is no process another process of its uid may read or attach to;
- spares end with their listener, however it ends, and a connection a spare
  took goes on;
- --max-conns holds with spares waiting; a killed spare is replaced, once
  logged;
- a TUNNELD_SPARE some other process left in the environment is no spare's.
"""

import os
import pwd
import signal
import socket
import struct
import subprocess
import threading

import pytest

from conftest import (Client, binary, clean_env, connect_head, idle_spares, kill_pid,
                      open_tunnel, wait_until)

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
    assert os.path.realpath(f"/proc/{worker}/exe") == os.path.realpath(binary())
    c.close()


@needs_root
def test_with_no_spares_a_worker_is_a_fork_of_the_listener(make_proxy, echo):
    """What --spares 0 keeps, and what spares are for."""
    p = make_proxy("listen", args=["--spares", "0"])
    assert not idle_spares(p.pid)
    c = open_tunnel(p, echo.hostport)
    assert at_random(serving(p)) == at_random(p.pid)
    c.close()


@needs_root
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


def test_stray_spare_environment_is_ignored(echo, tmp_path):
    """TUNNELD_SPARE naming another parent (pid 1): an inetd-mode tunneld
    serves its connection as ever, reading its files itself."""
    rules = tmp_path / "rules"
    rules.write_text("deny\n")
    env = dict(clean_env(), TUNNELD_SPARE="1 3 4 -1 lfake 0")
    a, b = socket.socketpair()
    r = subprocess.Popen([binary(), "--log", "stderr", "--acl", str(rules)], stdin=b,
                         stdout=b, stderr=subprocess.PIPE, env=env)
    b.close()
    a.sendall(connect_head(echo.hostport))
    a.settimeout(5)
    head = a.recv(4096)
    a.close()
    r.wait(5)
    assert head.startswith(b"HTTP/1.1 403 "), (head, r.stderr.read())
