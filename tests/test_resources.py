"""After a mix of good, bad and abandoned connections, nothing is left
behind: no child processes (zombies included) and, in listen mode, the
listener's file descriptors back to their count before (DESIGN §11)."""

import os
import pwd
import socket
import threading
import time

from conftest import (Client, connect_head, echo_handler, fd_count, hash_handler, open_tunnel,
                      wait_until)


def good_tunnel(proxy, target):
    c = open_tunnel(proxy, target.hostport)
    c.send(b"x" * 1000)
    c.sock.shutdown(socket.SHUT_WR)
    c.read_to_eof()
    c.close()


def bad_request(proxy, data):
    c = Client(proxy.host, proxy.port)
    c.send(data)
    c.end_state(3)
    c.close()


def abandoned(proxy, data):
    c = Client(proxy.host, proxy.port)
    if data:
        c.send(data)
    time.sleep(0.05)
    c.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\1\0\0\0\0\0\0\0")
    c.close()


def reset_tunnel(proxy, target, by_client):
    c = open_tunnel(proxy, target.hostport)
    c.send(b"ping")
    c.read_exact(4)
    if by_client:
        c.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\1\0\0\0\0\0\0\0")
    else:
        c.send(b"RESET-ME")
        c.end_state(3)
    c.close()


def workload(proxy, echo, hasher):
    refused = socket.socket()
    refused.bind(("127.0.0.1", 0))
    steps = [
        lambda: good_tunnel(proxy, echo),
        lambda: good_tunnel(proxy, hasher),
        lambda: bad_request(proxy, connect_head("good.test:0")),
        lambda: bad_request(proxy, b"GET / HTTP/1.1\r\n\r\n"),
        lambda: bad_request(proxy, connect_head("good.test:443", "X: " + "y" * 9000)),
        lambda: bad_request(proxy, connect_head(f"127.0.0.1:{proxy.port}")),
        lambda: bad_request(proxy, connect_head(f"127.0.0.1:{refused.getsockname()[1]}")),
        lambda: bad_request(proxy, connect_head("nx.test:443")),
        lambda: bad_request(proxy, b"CONNECT good.test:443 HTTP/1.1\r\n"),   # -> 408
        lambda: abandoned(proxy, b""),
        lambda: abandoned(proxy, b"CONNECT good.te"),
        lambda: abandoned(proxy, connect_head(echo.hostport) + b"optimistic"),
        lambda: reset_tunnel(proxy, echo, by_client=True),
        lambda: reset_tunnel(proxy, echo, by_client=False),
    ]
    errors = []

    def run(step):
        try:
            step()
        except Exception as e:              # collected and reported below
            errors.append(repr(e))
    threads = [threading.Thread(target=run, args=(step,), daemon=True) for step in steps * 2]
    for t in threads:
        t.start()
    for t in threads:
        t.join(15)
    refused.close()
    assert not any(t.is_alive() for t in threads)
    assert not errors, errors


def describe(pids):
    out = []
    for pid in pids:
        try:
            with open(f"/proc/{pid}/stat") as f:
                out.append(f.read().strip())
        except OSError:
            pass
    return out


def test_nothing_left_behind(make_proxy, any_mode, make_target):
    p = make_proxy(any_mode, args=["--header-timeout", "1", "--idle-timeout", "1"])
    echo, hasher = make_target(echo_handler), make_target(hash_handler)
    # systemd-socket-activate without --accept execs tunneld on the first
    # connection: measure the baseline after one finished tunnel
    good_tunnel(p, echo)
    assert wait_until(lambda: not p.workers(), 5)
    baseline = fd_count(p.pid)
    workload(p, echo, hasher)
    # an idle tunnel left open: the idle timeout must end it
    idle = open_tunnel(p, echo.hostport)
    assert wait_until(lambda: not p.workers(), 10), f"children left: {describe(p.workers())}"
    idle.close()
    if any_mode != "inetd":                 # the listener is tunneld itself
        assert wait_until(lambda: fd_count(p.pid) == baseline, 3), \
            f"fds {sorted(os.listdir(f'/proc/{p.pid}/fd'))} vs baseline {baseline}"
    assert p.proc.poll() is None, "listener died"


def uid_gid_groups(pid):
    with open(f"/proc/{pid}/status") as f:
        status = dict(line.split(":", 1) for line in f if ":" in line)
    return (int(status["Uid"].split()[0]), int(status["Gid"].split()[0]),
            status["Groups"].split())


def test_user_drops_privileges(make_proxy, echo):
    nobody = pwd.getpwnam("nobody")
    p = make_proxy("listen", args=["--user", "nobody"])
    expected = (nobody.pw_uid, nobody.pw_gid, [str(nobody.pw_gid)])
    assert uid_gid_groups(p.pid) in (expected, expected[:2] + ([],)), uid_gid_groups(p.pid)
    c = open_tunnel(p, echo.hostport)
    c.send(b"as nobody")
    assert c.read_exact(9) == b"as nobody"
    worker = p.workers()
    assert worker and uid_gid_groups(worker[0])[0] == nobody.pw_uid
