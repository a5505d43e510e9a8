"""make bench's counted costs: what one connection costs tunneld and the
anchors in system calls, minor page faults and user-space instructions.
Counts, not times: they do not move with the machine's load.

  syscalls  strace -f: the connection's process from execve (inetd mode)
            or from the fork (--listen: the child's own calls) to the
            write of the 200 (the reference relay: to its connect to the
            target, it has no request), and to its exit.
  faults    minor page faults (/proc/PID/stat) from exec or fork, read
            while the tunnel is open, after the first byte came back.
  instr     user-space instructions (valgrind --tool=lackey's "guest
            instrs"; perf's instructions:u is refused in most containers,
            and callgrind cannot write its file from inside tunneld's
            sandbox). inetd mode: from exec to exit. --listen: the child's
            count minus the listener's (a forked child inherits the
            counter), which leaves the listener's reaping and exit out.
  TLS       tunneld --cert in inetd mode, the client Python's ssl (TLS 1.3,
            X25519, a P-256 certificate): a whole connection's instructions
            with a full handshake, and with the session offered back
            (-sess_in's equivalent); "not resumed" when the server did not
            resume. Minus the plain connection's count: the handshake.
            Anchor: openssl s_server with the same certificate and key,
            the cost of its second connection (naccept 2 minus naccept 1):
            a mature TLS stack doing the same handshake.
Each count is one run: the numbers repeat to within a few instructions.
"""
import os
import re
import shutil
import socket
import ssl
import subprocess
import tempfile
import time

VALGRIND = shutil.which("valgrind")
STRACE = shutil.which("strace")
OPENSSL = shutil.which("openssl")


def _minflt(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            st = f.read()
        return int(st[st.rindex(")") + 2:].split()[7])
    except (OSError, ValueError):
        return None


def _tree(pid):
    """pid and its live (not zombie) descendants."""
    found, todo = [pid], [pid]
    while todo:
        for k in _kids(todo.pop()):
            try:
                with open(f"/proc/{k}/stat") as f:
                    st = f.read()
            except OSError:
                continue
            if st[st.rindex(")") + 2] != "Z":
                found.append(k)
                todo.append(k)
    return found


def _desc(pid):
    return len(_tree(pid)) - 1


def _kids(pid):
    out = []
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                with open(f"/proc/{d}/stat") as f:
                    st = f.read()
            except OSError:
                continue
            if int(st[st.rindex(")") + 2:].split()[1]) == pid:
                out.append(int(d))
    return out


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def _dial(port, p):
    """A connection to 127.0.0.1:port once p listens there (60 s at most)."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and p.poll() is None:
        try:
            return socket.create_connection(("127.0.0.1", port), timeout=120)
        except OSError:
            time.sleep(0.1)
    return None


def _lackey_counts(tmp, clear=False):
    """{pid: guest instructions} from valgrind --tool=lackey's logs in tmp."""
    counts = {}
    for f in os.listdir(tmp):
        if not f.startswith("lackey."):
            continue
        path = os.path.join(tmp, f)
        if not clear:
            with open(path) as fh:
                m = re.search(r"guest instrs:\s+([\d,]+)", fh.read())
            if m:
                counts[int(f.split(".")[1])] = int(m.group(1).replace(",", ""))
        os.unlink(path)
    return counts


def _stop(p):
    if p.poll() is None:
        p.kill()
    p.wait()


def _plain(sock, tport, connect):
    """CONNECT (when connect), the 200, one byte there and back."""
    if connect:
        sock.sendall(f"CONNECT 127.0.0.1:{tport} HTTP/1.1\r\n\r\n".encode())
        head = b""
        while b"\r\n\r\n" not in head:
            d = sock.recv(1024)
            assert d, "closed before the 200"
            head += d
        assert head.split(b" ", 2)[1] == b"200", head
    sock.sendall(b"i")
    assert sock.recv(1) == b"i", "no echo"
    return sock


def _tls(ctx, session, seen):
    """A client through TLS; seen gets what was negotiated."""
    def client(sock, tport, connect):
        s = ctx.wrap_socket(sock, session=session)
        _plain(s, tport, True)
        seen.update(version=f"{s.version()} {s.cipher()[0]}", reused=s.session_reused,
                    session=s.session)
        return s
    return client


class Costs:
    def __init__(self, tport, tmp):
        self.tport, self.tmp = tport, tmp

    def _inetd(self, argv, client, wrap=()):
        """argv serving one connection on fd 0/1, as an inetd starts it.
        (the client's end, the process, its faults after the echo)"""
        lst = socket.socket()
        lst.bind(("127.0.0.1", 0))
        lst.listen(1)
        c = socket.create_connection(lst.getsockname(), timeout=120)
        a, _ = lst.accept()
        lst.close()
        p = subprocess.Popen(list(wrap) + argv, stdin=a, stdout=a, stderr=subprocess.DEVNULL)
        a.close()
        try:
            s = client(c, self.tport, "tunneld" in argv[0])
            flt = _minflt(p.pid)
            s.close()
            p.wait(120)
        finally:
            c.close()
            _stop(p)
        return s, flt

    def _listen(self, argv, client, wrap=()):
        """argv --listen PORT; one connection. (child's faults, listener pid)"""
        for _ in range(3):
            port = free_port()
            p = subprocess.Popen(list(wrap) + [a.replace("@PORT@", str(port)) for a in argv],
                                 stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                 stderr=subprocess.DEVNULL)
            c = _dial(port, p)
            if c:
                break
            _stop(p)
        else:
            raise RuntimeError(f"{argv[0]} did not listen")
        try:
            base = _desc(p.pid) - 1  # the child serving c is one
            s = client(c, self.tport, "tunneld" in argv[0])
            kids = _kids(p.pid)
            flt = _minflt(kids[0]) if len(kids) == 1 and not wrap else None
            s.close()
            c.close()
            deadline = time.monotonic() + 20  # until the child is gone
            while _desc(p.pid) > base and time.monotonic() < deadline:
                time.sleep(0.05)
        finally:
            # strace's listener outlives strace: each descendant is ended too
            # (its children have exited by now, or go with it)
            for pid in _tree(p.pid)[1:]:
                try:
                    os.kill(pid, 15)
                except OSError:
                    pass
            p.terminate()
            try:
                p.wait(60)
            except subprocess.TimeoutExpired:
                _stop(p)
        return flt, p.pid

    def syscalls(self, argv, listen, mark):
        """(calls to mark, calls in all) of the connection's process."""
        if not STRACE:
            return None, None
        out = os.path.join(self.tmp, "strace.out")
        wrap = [STRACE, "-f", "-qq", "-s", "16", "-o", out]
        if listen:
            self._listen(argv, _plain, wrap)
        else:
            self._inetd(argv, _plain, wrap)
        with open(out) as f:
            lines = [ln for ln in f if not re.match(r"\d+\s+(\+\+\+|---|<\.\.\. )", ln)]
        pids = []
        for ln in lines:
            pid = ln.split()[0]  # strace pads a short pid with spaces
            if pid not in pids:
                pids.append(pid)
        # inetd: the one process. --listen: the child that served, not the
        # listener (the first pid).
        mine = [ln for ln in lines if ln.split()[0] == pids[-1]] if listen else lines
        upto = next((i + 1 for i, ln in enumerate(mine) if re.search(mark, ln)), None)
        if upto is None:  # kept to be read: build/bench/strace-N.out
            os.makedirs("build/bench", exist_ok=True)
            shutil.copy(out, f"build/bench/strace-{len(os.listdir('build/bench'))}.out")
        return upto, len(mine)

    def faults(self, argv, listen):
        if listen:
            return self._listen(argv, _plain)[0]
        return self._inetd(argv, _plain)[1]

    def instructions(self, argv, listen=False, client=_plain):
        """(user-space instructions, the client's socket)"""
        if not VALGRIND:
            return None, None
        _lackey_counts(self.tmp, clear=True)
        wrap = [VALGRIND, "--tool=lackey", f"--log-file={self.tmp}/lackey.%p"]
        sock = None
        if listen:
            _, lpid = self._listen(argv, client, wrap)
        else:
            sock, _ = self._inetd(argv, client, wrap)
        counts = _lackey_counts(self.tmp)
        if listen:
            kids = [v for k, v in counts.items() if k != lpid]
            if lpid not in counts or len(kids) != 1:
                return None, None
            return kids[0] - counts[lpid], None
        return (next(iter(counts.values())) if len(counts) == 1 else None), sock

    def s_server(self, cert, key, ctx, resume):
        """openssl s_server's instructions for a second connection: full, or
        resuming the first's session. (count, resumed)"""
        if not (VALGRIND and OPENSSL):
            return None, None

        def run(n):
            _lackey_counts(self.tmp, clear=True)
            port = free_port()
            p = subprocess.Popen([VALGRIND, "--tool=lackey", f"--log-file={self.tmp}/lackey.%p",
                                  OPENSSL, "s_server", "-accept", f"127.0.0.1:{port}", "-cert",
                                  cert, "-key", key, "-naccept", str(n), "-rev", "-quiet"],
                                 stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                 stderr=subprocess.DEVNULL)
            sess, reused = None, None
            try:
                for _ in range(n):
                    c = _dial(port, p)
                    if c is None:
                        return None, None
                    s = ctx.wrap_socket(c, session=sess if resume else None)
                    s.sendall(b"abc\n")
                    got = b""
                    while b"\n" not in got:
                        d = s.recv(100)
                        if not d:
                            break
                        got += d
                    reused = s.session_reused
                    sess = s.session
                    s.close()
                p.wait(120)
            finally:
                _stop(p)
            counts = _lackey_counts(self.tmp)
            return (next(iter(counts.values())) if len(counts) == 1 else None), reused

        one, _ = run(1)
        two, reused = run(2)
        return (two - one if one and two else None), reused


def tls_files(tmp):
    cert, key = os.path.join(tmp, "cert.pem"), os.path.join(tmp, "key.pem")
    subprocess.run([OPENSSL, "req", "-x509", "-newkey", "ec", "-pkeyopt",
                    "ec_paramgen_curve:prime256v1", "-nodes", "-keyout", key, "-out", cert,
                    "-days", "2", "-subj", "/CN=127.0.0.1"], check=True, capture_output=True)
    return cert, key


def client_ctx(version):
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.minimum_version = ctx.maximum_version = version
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx


def measure(tunneld, counting, refrelay, rules, tport, ticket_key=None):
    """{row: {column: value}} and notes, for bench.py's table."""
    tmp = tempfile.mkdtemp(prefix="tunneld-costs-")
    try:
        return _measure(Costs(tport, tmp), tmp, tunneld, counting, refrelay, rules, tport,
                        ticket_key)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _measure(k, tmp, tunneld, counting, refrelay, rules, tport, ticket_key):
    t = str(tport)
    tun = [tunneld, "--acl", rules, "--log", "stderr"]
    rows = [
        ("reference inetd", [refrelay, "127.0.0.1", t], False, r"^\d+\s+connect\("),
        ("tunneld inetd", tun, False, r'^\d+\s+(write|sendto|writev)\(1, "HTTP/1.1 200'),
        ("reference --listen", [refrelay, "-l", "@PORT@", "127.0.0.1", t], True, r"^\d+\s+connect\("),
        # --spares 0: these counts follow a fork; a spare's exec and set-up,
        # which precede its client, are not on the client's path.
        ("tunneld --listen", tun + ["--listen", "127.0.0.1:@PORT@", "--spares", "0"], True,
         r'^\d+\s+(write|sendto|writev)\(1, "HTTP/1.1 200'),
    ]
    res, notes = {}, []
    for name, argv, listen, mark in rows:
        upto, total = k.syscalls(argv, listen, mark)
        # valgrind counts tunneld-static's code in counting (noprctl.c)
        ins, _ = k.instructions([counting if a == tunneld else a for a in argv], listen)
        res[name] = {"sys200": upto, "sys": total, "flt": k.faults(argv, listen), "ins": ins}
    if OPENSSL:
        cert, key = tls_files(tmp)
        targv = [counting] + tun[1:] + ["--cert", cert, "--key", key]
        if ticket_key:
            targv += ["--ticket-key", ticket_key]
        plain = res["tunneld inetd"]["ins"]
        for version in (ssl.TLSVersion.TLSv1_3, ssl.TLSVersion.TLSv1_2):
            ctx = client_ctx(version)
            first, again = {}, {}
            full, _ = k.instructions(targv, client=_tls(ctx, None, first))
            resumed, _ = k.instructions(targv, client=_tls(ctx, first.get("session"), again))
            name = first.get("version", "?").split(" ")[0]
            res[f"tunneld {name}"] = {
                "tls": full - plain if full and plain else None,
                "res": resumed - plain if again.get("reused") and resumed and plain
                else "not resumed"}
            sfull, _ = k.s_server(cert, key, ctx, False)
            sres, reused = k.s_server(cert, key, ctx, True)
            res[f"s_server {name}"] = {"tls": sfull, "res": sres if reused else "not resumed"}
            notes.append(f"{name}: {first.get('version', '?')}")
        notes.append(f"P-256 certificate; the client: Python's ssl ({ssl.OPENSSL_VERSION}); "
                     "tunneld's TLS: a TLS connection's count minus the plain one's"
                     + (f"; --ticket-key {ticket_key}" if ticket_key else "; no --ticket-key"))
    return res, notes


COLS = [("sys200", "sys to 200", 10), ("sys", "sys all", 7), ("flt", "faults", 6),
        ("ins", "instr", 8), ("tls", "instr TLS full", 14), ("res", "resumed", 12)]


def table(res, notes):
    w = 20
    lines = ["counted costs of one connection (not times: load does not move them)",
             f"{'':{w}}" + "".join(f" {h:>{wd}}" for _, h, wd in COLS)]
    for name, m in res.items():
        cells = []
        for c, _, wd in COLS:
            v = m.get(c)
            cells.append(f" {'-' if v is None else v:>{wd}}")
        lines.append(f"{name:{w}}" + "".join(cells))
    lines.append("")
    lines.append("ratios")
    pairs = [("tunneld inetd", "reference inetd"), ("tunneld --listen", "reference --listen")]
    for a, b in pairs:
        if a in res and b in res:
            cells = []
            for c, _, wd in COLS[:4]:
                x, y = res[a].get(c), res[b].get(c)
                cells.append(f" {x / y:{wd}.2f}" if isinstance(x, int) and isinstance(y, int)
                             and y else f" {'-':>{wd}}")
            lines.append(f"{a + ' / ref':{w}}" + "".join(cells))
    for name, m in res.items():
        f, r = m.get("tls"), m.get("res")
        if isinstance(f, int) and isinstance(r, int):
            lines.append(f"  {name}: resumed / full handshake = {r / f:.2f} (goal <= 0.25)")
        elif f:
            lines.append(f"  {name}: resumed / full handshake: {r}")
    for v in ("TLSv1.3", "TLSv1.2"):
        a, b = res.get(f"tunneld {v}", {}).get("tls"), res.get(f"s_server {v}", {}).get("tls")
        if isinstance(a, int) and isinstance(b, int):
            lines.append(f"  {v} full handshake, tunneld / openssl s_server = {a / b:.2f}")
    lines += [f"  {n}" for n in notes]
    return lines


if __name__ == "__main__":
    srv = subprocess.Popen(["tests/bench/blast", "serve"], stdin=subprocess.PIPE,
                           stdout=subprocess.PIPE)
    with tempfile.TemporaryDirectory() as d:
        rules = os.path.join(d, "rules")
        with open(rules, "w") as f:
            f.write("allow to 127.0.0.0/8\ndeny\n")
        print("\n".join(table(*measure("./tunneld-static", "build/bench/tunneld-count",
                                        "tests/bench/refrelay", rules,
                                        int(srv.stdout.readline())))))
    srv.stdin.close()
    srv.wait(10)
