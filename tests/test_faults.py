"""Faults: descriptor and process limits, a listener told to stop, floods of
slow and garbled clients. Each ends with a normal request served (where a
listener is left to serve it) and nothing left behind. Resets, vanishing
clients, DNS failures and connect timeouts are in test_errors.py,
test_relay.py and test_resources.py."""

import os
import random
import shlex
import signal
import socket
import subprocess
import threading
import time

import pytest

import dnsserver
from conftest import (Client, OK_REPLY, connect_head, fd_count, idle_spares, listening,
                      open_tunnel, wait_until)


def served(p, echo, data=b"still serving"):
    c = open_tunnel(p, echo.hostport)
    c.send(data)
    assert c.read_exact(len(data)) == data
    c.close()


def settles(p, baseline=None):
    """No worker left, and the listener's descriptors back to baseline."""
    assert wait_until(lambda: not p.workers(), 10), f"workers left: {p.workers()}"
    if baseline is not None:
        assert wait_until(lambda: fd_count(p.pid) == baseline, 3), \
            f"fds {sorted(os.listdir(f'/proc/{p.pid}/fd'))}, baseline {baseline}"
    assert p.proc.poll() is None, "listener died"


@pytest.mark.parametrize("nofile", [5, 6, 8])
def test_tiny_descriptor_limit(make_proxy, echo, nofile):
    # 5 is the least a listener can serve with: 0-2, its socket and one
    # accepted connection. A worker then has the client on 0/1 and the
    # target socket, and no room for splice pipes: it copies instead.
    p = make_proxy("listen", wrap=["prlimit", f"--nofile={nofile}:{nofile}", "--"])
    for i in range(12):
        served(p, echo, b"tunnel %d" % i)
    settles(p)


def cpu_ticks(pid):
    """User and system time of pid and of its children it reaped."""
    return sum(int(x) for x in open(f"/proc/{pid}/stat").read().split()[13:17])


@pytest.mark.parametrize("spares", ["0", "2"])
def test_listener_out_of_descriptors_waits_and_recovers(make_proxy, echo, spares):
    # With no descriptor to accept with, connections wait in the backlog:
    # no busy loop, no crash, and they are served once descriptors return.
    # The spares run out too: each one a client wakes ends, and the ones
    # started after it inherit the listener's limit.
    p = make_proxy("listen", args=["--spares", spares])
    assert wait_until(lambda: len(idle_spares(p.pid)) == int(spares), 5)
    # 3: a spare needs 4 (0-2 and the client, a copying relay's target
    # in the place of the listening socket it closed).
    for pid in [p.pid, *idle_spares(p.pid)]:
        subprocess.run(["prlimit", "--pid", str(pid), "--nofile=3:64"], check=True)
    c = Client(p.host, p.port)
    c.send(connect_head(echo.hostport))
    t0 = cpu_ticks(p.pid)
    assert c.end_state(1) == "open" and c.buf == b"", p.log_text()
    assert cpu_ticks(p.pid) - t0 < 20, "the listener or its spares spin out of descriptors"
    subprocess.run(["prlimit", "--pid", str(p.pid), "--nofile=64:64"], check=True)
    assert c.read_until(b"\r\n\r\n", timeout=5) == OK_REPLY
    c.send(b"late")
    assert c.read_exact(4) == b"late"
    c.close()
    served(p, echo)
    settles(p)


def own_user(tmp_path):
    """A user of this test alone, for RLIMIT_NPROC (which counts every
    process of a uid, so other tests' "nobody" must not count): a uid no
    other run or worker uses (one per test DNS address), named in a passwd
    file bound over /etc/passwd in tunneld's mount namespace only. The name,
    and the wrap that binds the file."""
    a = [int(x) for x in dnsserver.HOST.split(".")]
    uid = 60000 + a[1] * 256 + a[3]
    name = f"tdnproc{uid}"
    passwd = tmp_path / "passwd"
    passwd.write_text(open("/etc/passwd").read() +
                      f"{name}:x:{uid}:{uid}::/nonexistent:/usr/sbin/nologin\n")
    script = f"mount --bind {shlex.quote(str(passwd))} /etc/passwd && exec \"$@\""
    return name, ["sh", "-c", script, "sh"]


def test_fork_failure_answers_503_and_recovers(make_proxy, echo, tmp_path):
    # RLIMIT_NPROC binds once tunneld runs as its own user: the listener and
    # two workers may exist, a third fork fails.
    user, wrap = own_user(tmp_path)
    p = make_proxy("listen", args=["--user", user],
                   wrap=[*wrap, "prlimit", "--nproc=3:3", "--"])
    held = [open_tunnel(p, echo.hostport) for _ in range(2)]
    c = Client(p.host, p.port)
    c.send(connect_head(echo.hostport))
    head = c.read_until(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 503 "), head
    c.end_state(3)                      # a reset may follow: the request went unread
    assert c.buf == b"The proxy is busy; try again.\n"
    c.close()
    for h in held:
        h.close()
    assert wait_until(lambda: not p.workers(), 5)
    time.sleep(0.2)                     # the listener's pause after a failed fork
    served(p, echo)
    settles(p)


def test_sigterm_listener_stops_accepting_tunnels_finish(make_proxy, echo):
    p = make_proxy("listen")
    c = open_tunnel(p, echo.hostport)
    worker = p.workers()
    os.kill(p.pid, signal.SIGTERM)
    p.proc.wait(5)
    assert not listening(p.port), "still accepting after SIGTERM"
    with pytest.raises(OSError):
        socket.create_connection((p.host, p.port), timeout=2).close()
    for i in range(3):                  # the open tunnel goes on
        c.send(b"after %d" % i)
        assert c.read_exact(7) == b"after %d" % i
    c.sock.shutdown(socket.SHUT_WR)
    assert c.read_to_eof() == b""
    c.close()
    assert wait_until(lambda: not any(os.path.exists(f"/proc/{w}") for w in worker), 5)


def test_200_slow_header_clients(make_proxy, echo):
    p = make_proxy("listen", args=["--header-timeout", "2"])
    slow = []
    for _ in range(200):
        c = Client(p.host, p.port, timeout=10)
        c.send(b"CONNECT ")
        slow.append(c)
    served(p, echo)                     # not starved by them
    for c in slow[:100]:                # half drip another byte
        c.send(b"1")
    answered = 0
    for c in slow:
        head = c.read_until(b"\r\n\r\n", timeout=10)
        answered += head.startswith(b"HTTP/1.1 408 ")
        c.close()
    assert answered == 200
    settles(p)
    served(p, echo)


@pytest.mark.parametrize("mode_", ["listen", "inetd"])
def test_1000_connections_of_random_bytes(make_proxy, echo, mode_):
    p = make_proxy(mode_, args=["--header-timeout", "2"])
    served(p, echo)
    baseline = fd_count(p.pid) if mode_ == "listen" else None
    n = 1000 if mode_ == "listen" else 300
    rng = random.Random(1000)
    blobs = [rng.randbytes(rng.randrange(1, 3000)) + (b"\r\n\r\n" if i % 2 else b"")
             for i in range(n)]
    errors = []

    def worker(part):
        for blob in part:
            try:
                c = Client(p.host, p.port, timeout=5)
                try:
                    c.send(blob)
                    c.sock.shutdown(socket.SHUT_WR)
                except OSError:
                    pass                # answered and closed before all was sent
                c.end_state(5)
                if c.buf and not c.buf.startswith(b"HTTP/1.1 4"):
                    errors.append(c.buf[:80])
                c.close()
            except Exception as e:      # collected and reported below
                errors.append(repr(e))
    threads = [threading.Thread(target=worker, args=(blobs[i::20],), daemon=True)
               for i in range(20)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not errors, errors[:5]
    served(p, echo)
    settles(p, baseline)
