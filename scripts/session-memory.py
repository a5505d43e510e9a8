#!/usr/bin/python3
"""What N open GET/POST tunnel sessions cost: tunneld's processes and their
memory (PSS, and private dirty pages), with --listen and in inetd mode
(systemd-socket-activate --inetd), on loopback.

Each session is opened on a connection of its own, moves one 4-byte ping
each way through an echo server, and stays open (its holder keeps the
connection kept alive) while the processes are counted.

usage: scripts/session-memory.py [TUNNELD [N]]   (default ./tunneld-static 100)
"""
import os
import socket
import subprocess
import sys
import threading
import time

TUNNELD = os.path.abspath(sys.argv[1] if len(sys.argv) > 1 else "./tunneld-static")
N = int(sys.argv[2]) if len(sys.argv) > 2 else 100


def echo_server():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    s.listen(256)

    def serve(c):
        while (d := c.recv(65536)):
            c.sendall(d)
        c.close()

    def loop():
        while True:
            c, _ = s.accept()
            threading.Thread(target=serve, args=(c,), daemon=True).start()

    threading.Thread(target=loop, daemon=True).start()
    return s.getsockname()[1]


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def request(sock, head, body=b""):
    sock.sendall(head + body)
    buf = b""
    while b"\r\n\r\n" not in buf:
        d = sock.recv(65536)
        if not d:
            raise RuntimeError(f"closed: {buf!r}")
        buf += d
    h, rest = buf.split(b"\r\n\r\n", 1)
    clen = int(next(l.split(b":")[1] for l in h.split(b"\r\n") if l.lower().startswith(b"content-length")))
    while len(rest) < clen:
        rest += sock.recv(65536)
    return h, rest


def open_session(port, target):
    s = socket.create_connection(("127.0.0.1", port), timeout=30)
    body = f"127.0.0.1:{target}".encode()
    h, tok = request(s, f"POST /t HTTP/1.1\r\nHost: x\r\nContent-Length: {len(body)}\r\n\r\n".encode(), body)
    assert h.startswith(b"HTTP/1.1 200"), h
    tok = tok.strip().decode()
    request(s, f"POST /t?o=0 HTTP/1.1\r\nHost: x\r\nTunnel-Token: {tok}\r\nContent-Length: 4\r\n\r\n".encode(), b"ping")
    got = b""
    for _ in range(50):
        h, d = request(s, f"GET /t?o={len(got)} HTTP/1.1\r\nHost: x\r\nTunnel-Token: {tok}\r\n\r\n".encode())
        got += d
        if got == b"ping":
            break
    assert got == b"ping", got
    return s


def tunneld_pids(root):
    """root and its descendants that run tunneld."""
    kids = {}
    for e in os.listdir("/proc"):
        try:
            with open(f"/proc/{e}/stat") as f:
                ppid = int(f.read().rsplit(")", 1)[1].split()[1])
            kids.setdefault(ppid, []).append(int(e))
        except (OSError, ValueError):
            pass
    out, todo = [], [root]
    while todo:
        pid = todo.pop()
        todo += kids.get(pid, [])
        try:
            if os.readlink(f"/proc/{pid}/exe") == TUNNELD:
                out.append(pid)
        except OSError:
            pass
    return out


def memory(pids):
    pss = priv = 0
    for p in pids:
        with open(f"/proc/{p}/smaps_rollup") as f:
            for line in f:
                k, v = line.split(":", 1)
                if k == "Pss":
                    pss += int(v.split()[0])
                elif k == "Private_Dirty":
                    priv += int(v.split()[0])
    return pss, priv


def run(mode):
    target, port = echo_server(), free_port()
    args = ["--http-tunnel=/t", "--max-sessions", str(N), "--max-client-sessions", str(N),
            "--acl", "/dev/stdin", "--log", "stderr"]
    rules = "allow to 127.0.0.0/8\ndeny\n"
    rfd = os.open("/tmp", os.O_TMPFILE | os.O_RDWR)
    os.write(rfd, rules.encode())
    args[args.index("/dev/stdin")] = f"/proc/{os.getpid()}/fd/{rfd}"
    if mode == "listen":
        cmd = [TUNNELD, "--listen", f"127.0.0.1:{port}", "--max-conns", str(2 * N + 8), *args]
    else:
        cmd = ["systemd-socket-activate", "--inetd", "-a", "-l", f"127.0.0.1:{port}", TUNNELD, *args]
    p = subprocess.Popen(cmd, stderr=subprocess.DEVNULL, pass_fds=(rfd,))
    try:
        for _ in range(100):
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                time.sleep(0.05)
        base = [p.pid] if mode == "listen" else []   # the listener
        conns = [open_session(port, target) for _ in range(N)]
        time.sleep(0.5)
        pids = tunneld_pids(p.pid)
        pss, priv = memory(pids)
        bpss, bpriv = memory(base)
        print(f"{mode:7} {N} sessions: {len(pids) - len(base)} processes besides the listener, "
              f"PSS {pss - bpss} KiB ({(pss - bpss) / N:.0f} KiB a session), "
              f"private dirty {priv - bpriv} KiB ({(priv - bpriv) / N:.0f} KiB a session)")
        for c in conns:
            c.close()
    finally:
        for pid in tunneld_pids(p.pid):
            if pid != p.pid:
                os.kill(pid, 9)
        p.kill()
        p.wait()
        os.close(rfd)


if __name__ == "__main__":
    for m in ("listen", "inetd"):
        run(m)
