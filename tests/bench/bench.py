#!/usr/bin/python3
"""make bench: tunneld against tinyproxy, squid, a reference splice relay
and a direct connection, side by side on loopback in one run.

Every server is started once, on an OS-chosen port, and every measurement
goes through all of them in turn, round after round (ROUNDS), so that the
load of whatever else runs on the machine falls on all rows alike; the
table shows medians. The load generator and the target are a C program
(tests/bench/blast), which checks every byte; the "direct" row (no proxy)
shows its ceiling on this machine.

Rows:
  direct              the client talks straight to the target
  reference --listen  tests/bench/refrelay: accept, fork, connect to a fixed
                      target, splice both ways; no request, no rules, no log.
                      The best any relay can do here.
  reference inetd     the same program under systemd-socket-activate --inetd -a
  tunneld --listen    ./tunneld-static --listen (the static musl build)
  tunneld inetd       ./tunneld-static under systemd-socket-activate --inetd -a
  tinyproxy           Debian's, with its own config (threads)
  squid               Debian's, with its own config (one event-driven process)
  tunnel GET/POST     ./tunnel-static --listen in front of its own
                      ./tunneld-static --listen --http-tunnel: the GET/POST
                      session tunnel (PROTOCOL.md), throughput only
  tunnel connect      the same with tunnel --mode connect: CONNECT through
                      the same client program, throughput only
For the proxies the client sends CONNECT 127.0.0.1:TPORT and waits for the
200; for the reference relay, direct and the tunnel rows it just connects.

A second table (tests/bench/costs.py) counts instead of timing: system
calls, minor page faults and user-space instructions of one connection,
for tunneld and the reference relay in both modes, and the instructions of
a full and a resumed TLS handshake, tunneld's and openssl s_server's.

usage: tests/bench/bench.py   (from the top of the tree, after make bench's
                               builds; ROUNDS=N in the environment overrides)
"""
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import costs  # noqa: E402  (beside this file)

ROUNDS = int(os.environ.get("ROUNDS", "5"))
MIB = 1 << 20
SIZE = 256 * MIB        # per direction, per row, per round
SEQ = 2000              # sequential connections for the setup latency
PAR, PAR_COUNT = 8, 2000
IDLE = 200              # idle tunnels for the memory per tunnel
WARMUP = 5              # connections to a restarted server before measuring
TUNNELD = "./tunneld-static"
TUNNEL = "./tunnel-static"
COUNTING = "build/bench/tunneld-count"  # tunneld-static's code, for valgrind (noprctl.c)
TICKET_KEY = os.environ.get("TICKET_KEY")  # --ticket-key FILE, once tunneld has it
BLAST = "tests/bench/blast"
REFRELAY = "tests/bench/refrelay"
SSA = shutil.which("systemd-socket-activate") or "/usr/bin/systemd-socket-activate"
TINYPROXY = shutil.which("tinyproxy") or "/usr/bin/tinyproxy"
SQUID = shutil.which("squid") or "/usr/sbin/squid"


free_port = costs.free_port


def wait_listening(port, proc, seconds):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return True
        except OSError:
            time.sleep(0.05)
    return False


def children_map():
    """{ppid: [pid, ...]} of every process, from /proc."""
    kids = {}
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open(f"/proc/{d}/stat") as f:
                st = f.read()
        except OSError:
            continue
        ppid = int(st[st.rindex(")") + 2:].split()[1])
        kids.setdefault(ppid, []).append(int(d))
    return kids


def tree(pid):
    """pid and all its descendants."""
    kids, found, todo = children_map(), [], [pid]
    while todo:
        p = todo.pop()
        found.append(p)
        todo.extend(kids.get(p, []))
    return found


def pss_kib(pids):
    total = 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/smaps_rollup") as f:
                for line in f:
                    if line.startswith("Pss:"):
                        total += int(line.split()[1])
                        break
        except OSError:
            pass
    return total


def kernel_kib():
    """The kernel's own memory, machine-wide: slab objects (sockets, files,
    inodes and dentries of sockets and pipes, pipe_inode_info and its
    buffer array, task_struct, mm_struct, VMAs, ...), kernel stacks and
    page tables. An idle tunnel's socket buffers and pipes hold no data
    pages, so this is what a tunnel costs the kernel. The figure is global:
    the median over the rounds, of a delta taken within a second, is what
    keeps the noise of other work on the machine out of it."""
    want = ("Slab:", "KernelStack:", "PageTables:", "SecPageTables:")
    total = 0
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith(want):
                total += int(line.split()[1])
    return total


class Row:
    bulk_only = False  # throughput only: no setup latency, no idle memory

    def __init__(self, name, argv=None, connect=True, exe=None, tmp=None, setup=None):
        self.name, self.argv, self.connect, self.exe = name, argv, connect, exe
        self.tmp, self.setup = tmp, setup
        self.proc = None
        self.port = None
        self.res = {k: [] for k in ("up", "down", "p50", "p99", "seq", "par", "pss", "kern")}

    def start(self, target_port):
        if self.argv is None:  # direct
            self.port = target_port
            return
        for attempt in range(3):
            self.port = free_port()
            argv = [a.replace("@PORT@", str(self.port)) for a in self.argv]
            if self.setup:
                self.setup(self)
            self.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL,
                                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            if wait_listening(self.port, self.proc, 20):
                self.base_procs = len(tree(self.proc.pid))
                return
            self.stop()
        sys.exit(f"bench: {self.name} did not start: {' '.join(argv)}")

    def stop(self):
        if not self.proc:
            return
        pids = tree(self.proc.pid)
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        for pid in pids[1:]:  # anything of ours left behind
            try:
                os.kill(pid, 9)
            except OSError:
                pass
        self.proc = None

    def target(self, tport):
        return f"127.0.0.1:{tport}" if self.connect else "-"

    def settle(self, seconds=10):
        """Until the connections of the last test are gone (bounded)."""
        if not self.proc:
            return
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline and len(tree(self.proc.pid)) > self.base_procs:
            time.sleep(0.05)


class TunnelRow(Row):
    """tunnel --listen (self.proc) in front of its own tunneld (self.server):
    the row's port is tunnel's, which opens a session (or a CONNECT) to the
    target for each connection. Throughput only: 200 idle tunnels would be
    200 sessions, above --max-sessions."""
    bulk_only = True

    def __init__(self, name, tunnel_args, rules):
        super().__init__(name, None, connect=False, exe=TUNNEL)
        self.tunnel_args, self.rules = tunnel_args, rules
        self.server = None

    def start(self, target_port):
        sport = free_port()
        server = [TUNNELD, "--acl", self.rules, "--log", "stderr", "--http-tunnel",
                  "--listen", f"127.0.0.1:{sport}", "--max-conns", "4096"]
        self.server = subprocess.Popen(server, stdin=subprocess.DEVNULL,
                                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        if not wait_listening(sport, self.server, 20):
            sys.exit(f"bench: {self.name}: tunneld did not start: {' '.join(server)}")
        self.server_procs = len(tree(self.server.pid))
        self.argv = [TUNNEL, *self.tunnel_args, "-l", "127.0.0.1:@PORT@",
                     f"http://127.0.0.1:{sport}/", f"127.0.0.1:{target_port}"]
        super().start(target_port)

    def stop(self):
        super().stop()
        if self.server:
            proc, self.proc = self.proc, self.server
            super().stop()
            self.proc, self.server = proc, None

    def settle(self, seconds=10):
        super().settle(seconds)
        deadline = time.monotonic() + seconds
        while self.server and time.monotonic() < deadline and \
                len(tree(self.server.pid)) > self.server_procs:
            time.sleep(0.05)


def blast(*args, timeout=180):
    r = subprocess.run([BLAST] + [str(a) for a in args], capture_output=True, text=True,
                       timeout=timeout)
    if r.returncode:
        sys.exit(f"bench: blast {' '.join(map(str, args))}: {r.stderr.strip()}")
    return [float(x) for x in r.stdout.split()]


def open_tunnel(row, tport):
    s = socket.create_connection(("127.0.0.1", row.port), timeout=20)
    if row.connect:
        s.sendall(f"CONNECT 127.0.0.1:{tport} HTTP/1.1\r\n\r\n".encode())
        head = b""
        while b"\r\n\r\n" not in head:
            d = s.recv(1024)
            assert d, f"{row.name}: closed before the 200"
            head += d
        assert head.split(b" ", 2)[1] == b"200", f"{row.name}: {head!r}"
    s.sendall(b"i")
    assert s.recv(1) == b"i", f"{row.name}: no echo"
    return s


def idle_memory(row, tport):
    """PSS of the server's process tree and the kernel's memory, each with
    IDLE idle tunnels open minus without, per tunnel (KiB). The server is
    restarted first: a long-lived one keeps the memory of earlier tests
    (malloc's free lists, glibc's cached thread stacks, squid's pools) and
    would hand it to these tunnels unseen. A few connections, one at a
    time, then warm it up (lazy initialisation is not a tunnel's cost)."""
    if row.proc:
        row.stop()
        row.start(tport)
        for _ in range(WARMUP):
            open_tunnel(row, tport).close()
    row.settle()
    time.sleep(0.2)
    pss0 = pss_kib(tree(row.proc.pid)) if row.proc else 0
    k0 = kernel_kib()
    socks = []
    try:
        for _ in range(IDLE):
            socks.append(open_tunnel(row, tport))
        time.sleep(0.3)
        pss1 = pss_kib(tree(row.proc.pid)) if row.proc else 0
        k1 = kernel_kib()
    finally:
        for s in socks:
            s.close()
    return (pss1 - pss0) / IDLE, (k1 - k0) / IDLE


def binary_size(path):
    """Bytes of the stripped binary (a stripped copy when it is not)."""
    if not path:
        return None
    with tempfile.NamedTemporaryFile() as t:
        if subprocess.run(["strip", "-o", t.name, path], capture_output=True).returncode == 0:
            return os.path.getsize(t.name)
    return os.path.getsize(path)


def linkage(path):
    if not path:
        return ""
    with open(path, "rb") as f:
        return "dynamic" if b"ld-linux" in f.read(4096) else "static"


def versions():
    def first(argv):
        try:
            r = subprocess.run(argv, capture_output=True, text=True, timeout=10)
            return (r.stdout or r.stderr).strip().splitlines()[0]
        except (OSError, IndexError, subprocess.TimeoutExpired):
            return "?"
    return [first([TUNNELD, "--version"]), first([TINYPROXY, "-v"]), first([SQUID, "-v"]),
            first([SSA, "--version"]).split(" (")[0] or "systemd-socket-activate",
            "Linux " + os.uname().release, f"{os.cpu_count()} CPUs"]


def rows_for(tmp, tport):
    rules = os.path.join(tmp, "rules")
    with open(rules, "w") as f:
        f.write("allow to 127.0.0.0/8\ndeny\n")

    def tinyproxy_conf(row):
        with open(os.path.join(tmp, "tinyproxy.conf"), "w") as f:
            f.write(f"Port {row.port}\nListen 127.0.0.1\nTimeout 600\nAllow 127.0.0.1\n"
                    f"ConnectPort {tport}\nMaxClients 1024\nLogLevel Critical\n")

    # Debian's squid drops to user proxy when started as root: its dir must
    # be writable for it (conftest.py's Squid does the same).
    sqdir = os.path.join(tmp, "squid")
    os.mkdir(sqdir)
    os.chmod(sqdir, 0o777)
    os.chmod(tmp, 0o755)

    def squid_conf(row):
        with open(os.path.join(sqdir, "squid.conf"), "w") as f:
            f.write(f"""\
http_port 127.0.0.1:{row.port}
pid_filename {sqdir}/squid.pid
cache_log {sqdir}/cache.log
access_log none
cache_store_log none
netdb_filename none
coredump_dir {sqdir}
cache deny all
cache_mem 8 MB
icp_port 0
htcp_port 0
pinger_enable off
visible_hostname tunneld-bench
dns_nameservers 127.0.0.1
shutdown_lifetime 0 seconds
max_filedescriptors 4096
acl to_loopback dst 127.0.0.0/8
acl bench_port port {tport}
http_access allow localhost to_loopback bench_port
http_access deny all
""")

    inetd = [SSA, "--inetd", "-a", "-l", "127.0.0.1:@PORT@"]
    tunneld = [TUNNELD, "--acl", rules, "--log", "stderr"]
    return [
        Row("direct", None, connect=False),
        Row("reference --listen", [REFRELAY, "-l", "@PORT@", "127.0.0.1", str(tport)],
            connect=False, exe=REFRELAY),
        Row("reference inetd", inetd + [REFRELAY, "127.0.0.1", str(tport)],
            connect=False, exe=REFRELAY),
        Row("tunneld --listen", tunneld + ["--listen", "127.0.0.1:@PORT@", "--max-conns", "4096"],
            exe=TUNNELD),
        Row("tunneld inetd", inetd + tunneld, exe=TUNNELD),
        Row("tinyproxy", [TINYPROXY, "-d", "-c", os.path.join(tmp, "tinyproxy.conf")],
            exe=TINYPROXY, setup=tinyproxy_conf),
        Row("squid", [SQUID, "-N", "-f", os.path.join(sqdir, "squid.conf")],
            exe=SQUID, setup=squid_conf),
        TunnelRow("tunnel GET/POST", [], rules),
        TunnelRow("tunnel connect", ["--mode", "connect"], rules),
    ]


def fmt(v, width, digits=0):
    return f"{'-':>{width}}" if v is None else f"{v:{width}.{digits}f}"


COLS = [("up", "up MiB/s", 9, 0), ("down", "down MiB/s", 10, 0), ("p50", "p50 us", 7, 0),
        ("p99", "p99 us", 7, 0), ("seq", "conn/s", 7, 0), ("par", f"conn/s x{PAR}", 10, 0),
        ("pss", "PSS KiB", 8, 1), ("kern", "kern KiB", 9, 1), ("size", "bytes", 9, 0)]


def report(rows, t_total, counted=None):
    med = {}
    for r in rows:
        m = {k: (statistics.median(v) if v else None) for k, v in r.res.items()}
        if r.name == "direct":
            m["pss"] = None
        m["size"] = binary_size(r.exe)
        med[r.name] = m
    # The kernel column is what the proxy adds: its two sockets, pipes,
    # processes or threads. Direct's own figure (the client's and the
    # target's sockets, present in every row) is taken off the others.
    kdirect = med["direct"]["kern"]
    for r in rows:
        if r.name != "direct" and med[r.name]["kern"] is not None:
            med[r.name]["kern"] -= kdirect

    w = 20
    head = f"{'':{w}}" + "".join(f" {h:>{wd}}" for _, h, wd, _ in COLS)
    lines = [f"tunneld bench: loopback, medians of {ROUNDS} rounds, rows interleaved; "
             f"{SIZE // MIB} MiB each way; {SEQ} sequential connections; "
             f"{PAR_COUNT} with {PAR} in parallel; {IDLE} idle tunnels",
             "versions: " + "; ".join(versions()), "", head]
    for r in rows:
        m = med[r.name]
        lines.append(f"{r.name:{w}}" + "".join(f" {fmt(m[k], wd, dg)}" for k, _, wd, dg in COLS)
                     + (f"  {linkage(r.exe)}" if r.exe else ""))

    def ratio_block(title, base_of):
        lines.append("")
        lines.append(title)
        for r in rows:
            b = base_of(r)
            if b is None or b == r.name:
                continue
            cells = []
            for k, _, wd, _ in COLS:
                x, y = med[r.name][k], med[b][k]
                cells.append(f" {fmt(x / y if x is not None and y else None, wd, 2)}")
            lines.append(f"{r.name:{w}}" + "".join(cells))

    ratio_block("ratio to direct", lambda r: "direct")
    ratio_block("ratio to the reference relay (inetd rows to reference inetd)",
                lambda r: None if r.name == "direct" else
                "reference inetd" if "inetd" in r.name else "reference --listen")
    ratio_block("ratio to tinyproxy", lambda r: None if r.name == "direct" else "tinyproxy")
    g, c, tc = (med[n]["down"] for n in ("tunnel GET/POST", "tunneld --listen", "tunnel connect"))
    lines += ["", f"GET/POST down / CONNECT down: {g / c:.2f} (tunnel GET/POST {g:.0f} MiB/s, "
                  f"tunneld --listen {c:.0f}); / tunnel connect ({tc:.0f}): {g / tc:.2f}"]

    def goal(text, ok):
        lines.append(f"  [{'yes' if ok else 'NO '}] {text}")

    lines.append("")
    lines.append("goals:")
    for t, ref in (("tunneld --listen", "reference --listen"), ("tunneld inetd", "reference inetd")):
        for d in ("up", "down"):
            x = med[t][d]
            goal(f"{t} {d} >= 0.9 x {ref} ({x / med[ref][d]:.2f}), >= 2.5 x tinyproxy "
                 f"({x / med['tinyproxy'][d]:.2f}), >= 1.2 x squid ({x / med['squid'][d]:.2f})",
                 x >= 0.9 * med[ref][d] and x >= 2.5 * med["tinyproxy"][d]
                 and x >= 1.2 * med["squid"][d])
    a, b = med["tunneld --listen"]["p50"], med["tinyproxy"]["p50"]
    r = med["reference --listen"]["p50"]
    goal(f"tunneld --listen setup p50 <= 0.6 x tinyproxy's ({a / b:.2f}) and <= 0.8 x "
         f"reference --listen's ({a / r:.2f}) ({a:.0f} vs {b:.0f} and {r:.0f} us)",
         a <= 0.6 * b and a <= 0.8 * r)
    for k in ("seq", "par"):
        x, y = med["tunneld --listen"][k], med["tinyproxy"][k]
        goal(f"tunneld --listen conn/s {'sequential' if k == 'seq' else f'x{PAR}'} >= "
             f"tinyproxy's ({x:.0f} vs {y:.0f})", x >= y)
    a, b = med["tunneld inetd"]["p50"], med["reference inetd"]["p50"]
    goal(f"tunneld inetd setup p50 <= 1.1 x reference inetd's ({a:.0f} vs {b:.0f} us, "
         f"{a / b:.2f})", a <= 1.1 * b)
    goal(f"tunnel GET/POST down >= 0.8 x tunneld --listen CONNECT down ({g / c:.2f})",
         g >= 0.8 * c)
    for t in ("tunneld --listen", "tunneld inetd"):
        p = med[t]["pss"]
        goal(f"{t} PSS per idle tunnel <= 12 KiB ({p:.1f})", p <= 12)
    if counted:
        res = counted[0]
        lines.append("")
        lines += costs.table(*counted)
        lines.append("")
        lines.append("goals (counted):")
        for v in ("TLSv1.3", "TLSv1.2"):
            t = res.get(f"tunneld {v}", {})
            full, again = t.get("tls"), t.get("res")
            ratio = f"{again / full:.2f}" if isinstance(again, int) and full else again
            goal(f"tunneld {v}: a resumed TLS handshake <= 0.25 x a full one ({ratio})",
                 isinstance(again, int) and bool(full) and again <= 0.25 * full)
    lines += ["", LEGEND.strip(), "", f"run time {t_total:.0f} s"]
    print("\n".join(lines))


LEGEND = f"""
up/down MiB/s  one tunnel, {SIZE // MIB} MiB of the client->target (up) or target->client
               (down) stream, every byte checked; timed from the request to the last byte
               (up: to the target's "OK" after checking all of it).
p50/p99 us     one connection at a time: connect -> CONNECT -> 200 -> one byte echoed
               by the target (reference and direct: connect -> byte echoed).
conn/s         the same, sequentially, closes included; x{PAR}: {PAR} clients at once.
PSS KiB        per idle tunnel: PSS (smaps_rollup) of the server's process tree with
               {IDLE} idle tunnels open, minus without, / {IDLE}; each server freshly
               restarted and warmed up by {WARMUP} connections first. inetd rows count
               the launcher's tree (systemd-socket-activate and its children).
kern KiB       per idle tunnel: the change in /proc/meminfo Slab + KernelStack +
               PageTables over the same {IDLE} tunnels (machine-wide, so noisy), minus
               direct's (the client's and target's own sockets, which every row has);
               direct's row shows that baseline itself.
bytes          the stripped executable; dynamic ones without their shared libraries.
counted        (tests/bench/costs.py; counts do not move with the machine's load)
  sys to 200   system calls (strace -f) of the connection's process from execve
               (inetd) or from the fork (--listen: the child's own) to the write of
               the 200; the reference relay's to its connect to the target.
  sys all      the same to its exit (one byte each way, then both ends close).
  faults       minor page faults of that process from exec or fork to the first
               echoed byte (/proc/PID/stat, read while the tunnel is open).
  instr        user-space instructions, exec to exit (valgrind --tool=lackey);
               --listen: the child's count minus the listener's (a fork inherits it).
  TLS full     rows "tunneld TLSv1.x": tunneld --cert in inetd mode, a TLS connection's
               instructions minus the plain one's; "s_server TLSv1.x": openssl s_server,
               its second connection's (-naccept 2 minus 1); the same P-256 certificate
               and key, the client (Python's ssl) held to TLS 1.3, then to TLS 1.2.
  resumed      the same with the first connection's session offered back;
               "not resumed" when the server did not resume it.
"""


def main():
    if not all(os.path.exists(p) for p in (TUNNELD, TUNNEL, COUNTING, BLAST, REFRELAY)):
        sys.exit("bench: build first (make bench)")
    t0 = time.monotonic()
    srv = subprocess.Popen([BLAST, "serve"], stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    tport = int(srv.stdout.readline())
    tmp = tempfile.mkdtemp(prefix="tunneld-bench-")
    rows = rows_for(tmp, tport)
    try:
        for r in rows:
            r.start(tport)
        for rnd in range(ROUNDS):
            print(f"round {rnd + 1}/{ROUNDS} ({time.monotonic() - t0:.0f} s)", flush=True)
            # Each round starts with another row: none is always first.
            order = rows[rnd % len(rows):] + rows[:rnd % len(rows)]
            for r in order:
                r.settle()
                r.res["up"].append(blast("up", r.port, r.target(tport), SIZE)[0])
            for r in order:
                r.settle()
                r.res["down"].append(blast("down", r.port, r.target(tport), SIZE)[0])
            order = [r for r in order if not r.bulk_only]
            for r in order:
                r.settle()
                p50, p99, rate = blast("lat", r.port, r.target(tport), SEQ, 1)
                r.res["p50"].append(p50)
                r.res["p99"].append(p99)
                r.res["seq"].append(rate)
            for r in order:
                r.settle()
                r.res["par"].append(blast("lat", r.port, r.target(tport), PAR_COUNT, PAR)[2])
            for r in order:
                pss, kern = idle_memory(r, tport)
                r.res["pss"].append(pss)
                r.res["kern"].append(kern)
        for r in rows:  # the counts run alone: no server of the table's is busy
            r.stop()
        print(f"counting ({time.monotonic() - t0:.0f} s)", flush=True)
        counted = costs.measure(TUNNELD, COUNTING, REFRELAY, os.path.join(tmp, "rules"), tport,
                                TICKET_KEY)
    finally:
        for r in rows:
            r.stop()
        srv.stdin.close()
        srv.wait(10)
        shutil.rmtree(tmp, ignore_errors=True)
    report(rows, time.monotonic() - t0, counted)


if __name__ == "__main__":
    main()
