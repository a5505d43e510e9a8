#!/usr/bin/python3
"""The GET/POST tunnel against CONNECT, on loopback, in one run.

Both go through the same client program (tunnel, and tunnel --mode connect)
to the same tunneld --listen, so the difference is the encapsulation. For
each: throughput each way (every byte hashed), the round trip of one byte
through an echo server, and the memory of tunneld's processes for one open
tunnel (PSS, and the private dirty pages: the cost of one more). Rows are interleaved over ROUNDS rounds; medians printed.

usage: scripts/bench-tunnel.py [TUNNELD [TUNNEL]]   (default ./tunneld-static ./tunnel-static)
"""
import hashlib
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time

ROUNDS = 3
MIB = 1 << 20
SIZE = 64 * MIB
PINGS = 200
TUNNELD = sys.argv[1] if len(sys.argv) > 1 else "./tunneld-static"
TUNNEL = sys.argv[2] if len(sys.argv) > 2 else "./tunnel-static"
BLOCK = bytes(range(256)) * 256  # 64 KiB


def server(handler):
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    s.listen(64)

    def loop():
        while True:
            c, _ = s.accept()
            threading.Thread(target=handler, args=(c,), daemon=True).start()

    threading.Thread(target=loop, daemon=True).start()
    return s.getsockname()[1]


def sink(c):
    """Hash what arrives; at its end answer the hash."""
    h = hashlib.sha256()
    while True:
        d = c.recv(1 << 17)
        if not d:
            break
        h.update(d)
    c.sendall(h.hexdigest().encode())
    c.close()


def source(c):
    """Send SIZE bytes, then end."""
    for _ in range(SIZE // len(BLOCK)):
        c.sendall(BLOCK)
    c.shutdown(socket.SHUT_WR)
    while c.recv(65536):
        pass
    c.close()


def echo(c):
    while True:
        d = c.recv(65536)
        if not d:
            break
        c.sendall(d)
    c.close()


def expected_hash():
    h = hashlib.sha256()
    for _ in range(SIZE // len(BLOCK)):
        h.update(BLOCK)
    return h.hexdigest()


def client(args, target):
    return subprocess.Popen([TUNNEL] + args + [target], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, bufsize=0)


def upload(args, port, want):
    p = client(args, f"127.0.0.1:{port}")
    t = time.monotonic()
    for _ in range(SIZE // len(BLOCK)):
        p.stdin.write(BLOCK)
    p.stdin.close()
    got = p.stdout.read().decode()
    dt = time.monotonic() - t
    p.wait(timeout=30)
    assert got == want, f"upload hash {got!r}"
    return SIZE / dt / MIB


def download(args, port, want):
    p = client(args, f"127.0.0.1:{port}")
    t = time.monotonic()
    h, n = hashlib.sha256(), 0
    while True:
        d = p.stdout.read(1 << 17)
        if not d:
            break
        h.update(d)
        n += len(d)
    dt = time.monotonic() - t
    p.stdin.close()
    p.wait(timeout=30)
    assert n == SIZE and h.hexdigest() == want, "download bytes differ"
    return SIZE / dt / MIB


def memory_kib(pids):
    """PSS, and the private (dirty) part: what one more tunnel costs."""
    pss = private = 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/smaps_rollup") as f:
                for line in f:
                    if line.startswith("Pss:"):
                        pss += int(line.split()[1])
                    elif line.startswith("Private_Dirty:"):
                        private += int(line.split()[1])
        except OSError:
            pass
    return pss, private


def descendants(pid):
    out = subprocess.run(["ps", "-e", "-o", "pid=,ppid="], capture_output=True, text=True).stdout
    pairs = [tuple(map(int, l.split())) for l in out.strip().splitlines()]
    found, todo = [], [pid]
    while todo:
        p = todo.pop()
        for c, pp in pairs:
            if pp == p:
                found.append(c)
                todo.append(c)
    return found


def ping(args, port, listener):
    """Median round trip of one byte, and the PSS of tunneld's processes
    (the listener's descendants) while the tunnel is open."""
    p = client(args, f"127.0.0.1:{port}")
    rtts = []
    for i in range(PINGS):
        t = time.monotonic()
        p.stdin.write(b"x")
        assert p.stdout.read(1) == b"x"
        rtts.append(time.monotonic() - t)
    time.sleep(0.3)
    mem = memory_kib(descendants(listener))
    p.stdin.close()
    p.stdout.read()
    p.wait(timeout=30)
    return statistics.median(rtts) * 1e6, mem


def main():
    want = expected_hash()
    ports = {"sink": server(sink), "source": server(source), "echo": server(echo)}
    tmp = tempfile.mkdtemp()
    with open(os.path.join(tmp, "rules"), "w") as f:
        f.write("allow to 127.0.0.0/8\ndeny\n")
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    d = subprocess.Popen([TUNNELD, "--listen", f"127.0.0.1:{port}", "--http-tunnel=/t",
                          "--acl", os.path.join(tmp, "rules"), "--log", "stderr"],
                         stderr=subprocess.DEVNULL)
    time.sleep(0.3)
    kinds = {"CONNECT": ["--mode", "connect", f"http://127.0.0.1:{port}"],
             "GET/POST": [f"http://127.0.0.1:{port}/t"]}
    res = {k: {"up": [], "down": [], "rtt": [], "pss": [], "priv": []} for k in kinds}
    try:
        for _ in range(ROUNDS):
            for k, args in kinds.items():
                res[k]["up"].append(upload(args, ports["sink"], want))
                res[k]["down"].append(download(args, ports["source"], want))
                rtt, mem = ping(args, ports["echo"], d.pid)
                res[k]["rtt"].append(rtt)
                res[k]["pss"].append(mem[0])
                res[k]["priv"].append(mem[1])
    finally:
        d.terminate()
        d.wait(timeout=10)
    med = {k: {m: statistics.median(v) for m, v in r.items()} for k, r in res.items()}
    print(f"{TUNNELD} / {TUNNEL}, {SIZE // MIB} MiB each way, {PINGS} pings, "
          f"median of {ROUNDS} rounds")
    print("memory: tunneld's processes for one open tunnel (not the listener)")
    print(f"{'':10} {'up MiB/s':>10} {'down MiB/s':>11} {'rtt us':>8} {'PSS KiB':>8} {'private KiB':>12}")
    for k, m in med.items():
        print(f"{k:10} {m['up']:10.0f} {m['down']:11.0f} {m['rtt']:8.0f} {m['pss']:8.0f} {m['priv']:12.0f}")
    c, g = med["CONNECT"], med["GET/POST"]
    print(f"{'ratio':10} {g['up'] / c['up']:10.2f} {g['down'] / c['down']:11.2f} "
          f"{g['rtt'] / c['rtt']:8.2f} {g['pss'] / c['pss']:8.2f} {g['priv'] / c['priv']:12.2f}")


if __name__ == "__main__":
    main()
