"""Attacks on TLS session tickets (--ticket-key) and on the GET/POST
tunnel's large receives (max=, the 1 MiB read-ahead, answers written as the
connection takes them), as DESIGN §12's adversaries: a client without
credentials, an authenticated client, a proxy that pools connections, and
the operator's own mistakes with the key file.

- a key file replaced by a FIFO, a directory or a huge file: the listener
  never hangs or serves stale nonsense; it keeps the keys it had and says
  why once; a FIFO at start is refused, not waited on;
- a resumed TLS session skips no Proxy-Authorization: a CONNECT on it
  without credentials is 407, with them 200;
- hand-made TLS 1.2 ClientHellos carrying tickets that begin with the right
  key name but are cut short, stretched, emptied or enormous: a full
  handshake or a clean refusal, never a resumption, never a crash (the
  ASan build's log stays clean), and the next client is served;
- max= and o= spelt every odd way: leading zeros, repeated, negative,
  16 digits, empty, signs; the answer is exactly what PROTOCOL.md says;
- many sessions whose target floods them and whose client never reads:
  each holder's resident memory stays within the documented 1.12 MiB
  above an idle holder's;
- a receive whose reader never reads: the session's other requests are
  served meanwhile, the stuck answer is given up (WRITE_MS), and the bytes
  asked again are the stream's, none lost or doubled.
"""

import hashlib
import os
import socket
import struct
import subprocess
import threading
import time

import pytest

from conftest import OK_REPLY, connect_head, recv_all, run_tunneld, wait_until
from support.auth import ALICE, make_hash
from support.clients import basic_token
from support.servers import greet_shut_handler
from test_http_tunnel import ANSWER_MAX, PATH, RING, Conn, greeter, holder
from test_tls_tickets import Py, new_key, s_client, session_ticket, ticket_proxy, write_keys

KiB = 1 << 10


def needs_tickets(f):
    return pytest.mark.needs("tls")(pytest.mark.needs("tls-tickets")(f))


def tunnel_or_error(c, echo, sess=None, timeout=15):
    """c.tunnel in a thread, bounded: (its result, or the exception)."""
    out = []

    def run():
        try:
            out.append(c.tunnel(echo, sess))
        except Exception as e:  # noqa: BLE001 - reported by the caller
            out.append(e)
    t = threading.Thread(target=run, daemon=True)
    t.start()
    t.join(timeout)
    return out[0] if out else TimeoutError(f"no answer in {timeout} s: the listener hangs")


# --------------------------------------------------------------------------
# the key file

@needs_tickets
@pytest.mark.parametrize("kind", ["fifo", "directory", "huge"])
def test_key_file_replaced_by_something_else_keeps_the_listener_serving(
        make_proxy, tls_files, tmp_path, echo, kind):
    keyfile = write_keys(tmp_path / "tickets", new_key())
    p = ticket_proxy(make_proxy, "listen", tls_files, keyfile)
    c = Py(p)
    sess, _, _ = c.tunnel(echo)
    other = tmp_path / "other"
    if kind == "fifo":
        os.mkfifo(other, 0o600)
    elif kind == "directory":
        other.mkdir(mode=0o700)
    else:
        fd = os.open(other, os.O_WRONLY | os.O_CREAT, 0o600)
        os.write(fd, (new_key() + "\n").encode() * 40000)   # 2.6 MB of keys
        os.close(fd)
    if kind == "directory":
        keyfile.unlink()
    os.rename(other, keyfile)
    for _ in range(2):
        r = tunnel_or_error(c, echo, sess)
        assert not isinstance(r, Exception), (r, p.log_text())
        _, reused, line = r
        assert reused and line["tls"] == "resumed", line
    text = p.log_text()
    assert "the keys read before stay in use" in text, text
    assert text.count("the keys read before stay in use") == 1, text
    assert "AddressSanitizer" not in text and "runtime error" not in text, text


@needs_tickets
def test_fifo_key_file_at_start_is_refused_not_waited_on(tmp_path, netfiles, tls_files):
    f = tmp_path / "tickets"
    os.mkfifo(f, 0o600)
    args = ["--log", "stderr", "--cert", str(tls_files[0]), "--key", str(tls_files[1]),
            "--ticket-key", str(f), "--listen", "127.0.0.1:0"]
    try:
        r = run_tunneld(args, netfiles, timeout=10)
    except subprocess.TimeoutExpired:
        pytest.fail("tunneld waits on a FIFO given as --ticket-key")
    assert r.returncode == 78, r
    assert f"{f}: not a regular file" in r.stderr.decode(), r.stderr


@needs_tickets
def test_no_key_byte_in_log_argv_or_environment(make_proxy, tls_files, tmp_path, echo):
    """The key is in the file only: never in the log (not even when a line
    next to it is bad), argv or the environment of any tunneld process."""
    k = new_key()
    keyfile = write_keys(tmp_path / "tickets", k)
    p = ticket_proxy(make_proxy, "listen", tls_files, keyfile)
    c = Py(p)
    c.tunnel(echo)
    write_keys(keyfile, k, k[:-1] + "x")          # the second line is bad
    c.tunnel(echo)
    assert f"{keyfile}:2: not a key" in p.log_text()
    for pid in [p.pid, *p.procs()]:
        for what in ("cmdline", "environ"):
            try:
                blob = open(f"/proc/{pid}/{what}", "rb").read()
            except OSError:
                continue
            assert k.encode() not in blob.lower() and k[:16].encode() not in blob.lower()
    text = p.log_text().lower()
    for i in range(0, 64 - 8, 8):                 # no 8 hex digits of the key in a row
        assert k[i:i + 8] not in text, k[i:i + 8]


# --------------------------------------------------------------------------
# a resumed session is no credential

@needs_tickets
@pytest.mark.needs("auth")
@pytest.mark.parametrize("version", ["tls1.3", "tls1.2"])
def test_resumed_tls_still_needs_proxy_authorization(make_proxy, mode, tls_files, tmp_path,
                                                     echo, version):
    import ssl
    v = ssl.TLSVersion.TLSv1_3 if version == "tls1.3" else ssl.TLSVersion.TLSv1_2
    users = f"alice:{make_hash('openssl-sha256', ALICE[1])}\n"
    keyfile = write_keys(tmp_path / "tickets", new_key())
    p = make_proxy(mode, tls=tls_files, users=users, args=["--ticket-key", str(keyfile)])
    ctx = ssl.create_default_context(cafile=p.cafile)
    ctx.minimum_version = ctx.maximum_version = v

    def connect(session, creds):
        raw = socket.create_connection((p.host, p.port), timeout=10)
        s = ctx.wrap_socket(raw, server_hostname="127.0.0.1", session=session)
        head = connect_head(echo.hostport, *([f"Proxy-Authorization: Basic {basic_token(*ALICE)}"]
                                             if creds else []))
        s.sendall(head + b"ping")
        got = b""
        for _ in range(1000):          # the head, and the echo of a tunnel
            chunk = s.recv(4096)
            if not chunk:
                break
            got += chunk
            if b"\r\n\r\n" in got and (not got.startswith(OK_REPLY) or got.endswith(b"ping")):
                break
        reused, sess = s.session_reused, s.session
        s.close()
        return got, reused, sess

    got, reused, sess = connect(None, True)
    assert got == OK_REPLY + b"ping" and not reused
    for _ in range(2):
        got, reused, _ = connect(sess, False)
        assert reused, "the ticket did not resume: the attack is not tried"
        assert got.startswith(b"HTTP/1.1 407 "), got
    got, reused, _ = connect(sess, True)
    assert reused and got == OK_REPLY + b"ping", got


# --------------------------------------------------------------------------
# hand-made tickets

SUITES = [0xc02b, 0xc02c, 0xc02f, 0xc030, 0xcca9, 0xcca8, 0xc009, 0xc013, 0xc023, 0xc027]


def ext(kind, body):
    return struct.pack("!HH", kind, len(body)) + body


def hello_records(suites, exts):
    """A ClientHello with cipher suites and extensions (encoded), as records
    of at most 16384 bytes."""
    body = (b"\x03\x03" + os.urandom(32) + b"\x20" + os.urandom(32) +
            struct.pack("!H", len(suites)) + suites + b"\x01\x00" +
            struct.pack("!H", len(exts)) + exts)
    hs = b"\x01" + len(body).to_bytes(3, "big") + body
    return b"".join(b"\x16\x03\x01" + struct.pack("!H", len(hs[i:i + 16384])) + hs[i:i + 16384]
                    for i in range(0, len(hs), 16384))


def client_hello12(ticket):
    """A TLS 1.2 ClientHello offering ticket (RFC 5077), as records of at
    most 16384 bytes."""
    suites = b"".join(struct.pack("!H", x) for x in SUITES)
    groups = b"\x00\x1d\x00\x17\x00\x18"
    sigs = b"\x04\x03\x05\x03\x06\x03\x08\x04\x08\x05\x08\x06\x04\x01\x05\x01\x06\x01"
    exts = (ext(10, struct.pack("!H", len(groups)) + groups) + ext(11, b"\x01\x00") +
            ext(13, struct.pack("!H", len(sigs)) + sigs) + ext(23, b"") + ext(35, ticket))
    return hello_records(suites, exts)


def read_record(sock, buf):
    """buf and what more sock sends until buf starts with a whole TLS
    record; None when the connection ends (or stays silent) first."""
    for _ in range(1000):
        if len(buf) >= 5 and len(buf) >= 5 + struct.unpack("!H", buf[3:5])[0]:
            return buf
        try:
            chunk = sock.recv(65536)
        except (ConnectionResetError, socket.timeout):
            chunk = b""
        if not chunk:
            return None
        buf += chunk
    return None


def server_flight(sock):
    """Read the server's first flight: ('full' when a Certificate came,
    'resumed' when a ChangeCipherSpec came right after the ServerHello,
    'alert' or 'closed')."""
    buf, hs = b"", b""
    sock.settimeout(10)
    for _ in range(200):
        buf = read_record(sock, buf)
        if buf is None:
            return "closed"
        kind, n = buf[0], struct.unpack("!H", buf[3:5])[0]
        rec, buf = buf[5:5 + n], buf[5 + n:]
        if kind == 21:
            return "alert"
        if kind == 20:
            return "resumed"
        if kind == 22:
            hs += rec
            while len(hs) >= 4 and len(hs) >= 4 + int.from_bytes(hs[1:4], "big"):
                t, hs = hs[0], hs[4 + int.from_bytes(hs[1:4], "big"):]
                if t == 11:
                    return "full"
                if t == 14:
                    return "full"
    return "closed"


def real_ticket(tmp_path, p, greeter):
    """A ticket p sealed, out of s_client's session file."""
    sess = tmp_path / "sess.pem"
    s_client(p, greeter, sess_out=sess, tls12=True)
    der, start, end = session_ticket(sess)
    return der[start:end]


@needs_tickets
def test_handmade_tickets_never_resume_nor_crash(make_proxy, mode, tls_files, tmp_path,
                                                 make_target):
    greeter = make_target(greet_shut_handler)
    k = new_key()
    keyfile = write_keys(tmp_path / "tickets", k)
    p = ticket_proxy(make_proxy, mode, tls_files, keyfile)
    name = hashlib.sha256(bytes.fromhex(k) + b"tunneld ticket").digest()[:4]
    good = real_ticket(tmp_path, p, greeter)
    assert good[:4] == name, "the key name is not what tls.c says: the attack misses"
    # The real ticket itself resumes: the hand-made ClientHello is sound.
    with socket.create_connection((p.host, p.port), timeout=10) as sock:
        sock.sendall(client_hello12(good))
        assert server_flight(sock) == "resumed"
    cases = {
        "empty": b"",
        "name-only": name,
        "name-and-iv": name + os.urandom(12),
        "name-iv-length-nothing": name + os.urandom(12) + b"\x03\xe8",
        "name-iv-huge-length": name + os.urandom(12) + b"\xff\xff" + os.urandom(40),
        "garbage-100": name + os.urandom(96),
        "cut-by-one": good[:-1],
        "cut-to-half": good[:len(good) // 2],
        "one-more": good + b"\x00",
        "tag-flipped": good[:-1] + bytes([good[-1] ^ 1]),
        "large-16000": name + os.urandom(15996 - 300),
        "huge-65000": name + os.urandom(64996 - 300),
    }
    for label, ticket in cases.items():
        with socket.create_connection((p.host, p.port), timeout=10) as sock:
            try:
                sock.sendall(client_hello12(ticket))
            except (BrokenPipeError, ConnectionResetError):
                pass
            got = server_flight(sock)
        assert got in ("full", "alert", "closed"), (label, got)
        if len(ticket) < 16000:
            assert got == "full", (label, got)
    # Each connection ended with its log line, the service going on.
    assert wait_until(lambda: len(p.log_lines()) == 2 + len(cases), 10), p.log_text()
    text = p.log_text()
    assert "AddressSanitizer" not in text and "runtime error" not in text, text
    assert all(x.get("tls") != "resumed" for x in p.log_lines()[2:]), text
    out, line = s_client(p, greeter, tls12=True)
    assert line["status"] == "200"


# --------------------------------------------------------------------------
# GET/POST: the query

@pytest.mark.needs("http-tunnel")
def test_max_and_offset_spelt_oddly(tproxy, make_target):
    blob = os.urandom(600 * KiB)
    target = make_target(holder(blob))
    c = Conn(tproxy)
    token = c.open_ok(target.hostport)
    for _ in range(400):
        r = c.recv_ok(token, 0, most=ANSWER_MAX)
        if len(r.body) == ANSWER_MAX:
            break
        time.sleep(0.05)

    def get(query):
        return Conn(tproxy).request("GET", query, [f"Tunnel-Token: {token}"])

    for q, n in [("?o=0&max=0001", 1), ("?o=000&max=7", 7), ("?max=3&o=0", 3),
                 ("?o=0&max=1&max=5", 5), ("?o=5&o=0&max=2", 2),
                 ("?o=0&max=999999999999999", ANSWER_MAX), ("?o=0&max=524289", ANSWER_MAX),
                 ("?o=0&maxx=1", 65536), ("?o=0&max", 65536), ("?o=0&&max=4&", 4)]:
        r = get(q)
        assert r.status == 200, (q, r)
        assert r.header("Tunnel-Offset") == "0", (q, r)
        assert r.body == blob[:n], (q, len(r.body))
    for q in ["?o=0&max=0", "?o=0&max=-1", "?o=0&max=+1", "?o=0&max=1e3", "?o=0&max=0x10",
              "?o=0&max=9999999999999999", "?o=0&max=%31", "?o=-0", "?o=0&max= 1",
              "?o=18446744073709551616", "?o=0&max=1&max=0"]:
        r = get(q)
        assert r.status == 400, (q, r)
        assert r.header("Tunnel-Offset") is None, (q, r)
    # Nothing of all that acknowledged anything past 0, or moved the stream.
    data, _ = c.recv_until(token, 0, len(blob), most=ANSWER_MAX)
    assert data == blob


# --------------------------------------------------------------------------
# GET/POST: memory

def vm_rss_kib(pid):
    """Resident anonymous memory: the ring and buffers are; code pages, whose
    count differs between exec'd processes by what each ran, are not."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("RssAnon:"):
                return int(line.split()[1])
    raise AssertionError(f"no RssAnon for {pid}")


def flood(conn, server):
    """Write as much as the session takes (8 MiB at most), then hold."""
    chunk = os.urandom(64 * KiB)
    try:
        for _ in range(128):
            conn.sendall(chunk)
    except OSError:
        pass
    recv_all(conn)


@pytest.mark.needs("http-tunnel")
def test_flooded_sessions_hold_bounded_memory(make_proxy, make_target):
    """Eight sessions each read 1 MiB ahead and then stop reading their
    target: each holder's resident set grows by at most the ring and the
    send buffer (PROTOCOL.md: 1.12 MiB a session), measured against an
    idle holder's; and the target is made to wait (back-pressure)."""
    from test_session_attacks import holder_pids
    if os.environ.get("TUNNELD", "").endswith("-asan"):
        pytest.skip("ASan's shadow and quarantine are not the holder's memory")
    p = make_proxy("listen", tunnel=PATH, args=["--max-sessions", "16", "--max-client-sessions", "16",
                                                "--max-conns", "64"])

    def recv(t, off, most=None):
        c = Conn(p)
        try:
            return c.recv(t, off, most=most)
        finally:
            c.close()
    quiet = make_target(holder(b"x"))
    c = Conn(p)
    idle_token = c.open_ok(quiet.hostport)
    assert c.recv_until(idle_token, 0, 1)[0] == b"x"
    (idle_pid,) = holder_pids(p, idle_token)
    idle = vm_rss_kib(idle_pid)
    target = make_target(flood)
    tokens = []
    for _ in range(8):
        o = Conn(p)
        tokens.append(o.open_ok(target.hostport))
        o.close()
    pids = [next(iter(holder_pids(p, t))) for t in tokens]
    # The ring is full when a receive at RING is answered (not 409).
    # The ring has been full when a receive at RING is answered; it
    # acknowledges the first RING bytes, and the holder reads the next.
    for t in tokens:
        for _ in range(400):
            r = recv(t, RING, most=1)
            if r.status == 200:
                break
            time.sleep(0.05)
        assert r.status == 200, r
    for t in tokens:
        for _ in range(400):
            r = recv(t, 2 * RING, most=1)
            if r.status == 200:
                break
            time.sleep(0.05)
        assert r.status == 200, r
    grown = [vm_rss_kib(pid) - idle for pid in pids]
    print(f"idle holder RssAnon {idle} KiB; flooded holders grew by {grown} KiB")
    assert max(grown) <= 1150 + 64, grown
    assert min(grown) >= 900, f"{grown}: the ring was not filled, nothing was measured"
    # Back-pressure: each target connection is still open, unread beyond
    # what the ring and the socket buffers take (8 MiB was offered).
    for t in tokens:
        r = recv(t, 2 * RING, most=1)
        assert r.status == 200 and len(r.body) == 1
        assert recv(t, 3 * RING + 1).status == 409


# --------------------------------------------------------------------------
# GET/POST: a reader that never reads

TCP_ESTABLISHED = 1


def server_state(server_port, client_port):
    """The TCP state of tunneld's end of the connection from client_port,
    from /proc/net/tcp (None: gone)."""
    with open("/proc/net/tcp") as f:
        next(f)
        for line in f:
            fields = line.split()
            local, remote = fields[1].split(":"), fields[2].split(":")
            if int(local[1], 16) == server_port and int(remote[1], 16) == client_port:
                return int(fields[3], 16)
    return None

@pytest.mark.needs("http-tunnel")
@pytest.mark.parametrize("reader", ["never", "trickle"])
def test_stuck_reader_leaves_the_session_served_and_its_bytes_whole(tproxy, make_target, reader):
    """A reader that never reads, or reads a byte every half second (the
    kernel then opens no window the holder can write into): the session's
    sends are served meanwhile, the answers are given up, and every byte
    the reader got, and every byte asked again, is the stream's."""
    blob = os.urandom(RING + ANSWER_MAX)
    target = make_target(greeter(blob))
    c = Conn(tproxy)
    token = c.open_ok(target.hostport)
    for _ in range(400):
        if len(c.recv_ok(token, 0, most=ANSWER_MAX).body) == ANSWER_MAX:
            break
        time.sleep(0.05)
    stuck = socket.socket()
    stuck.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    stuck.settimeout(30)
    stuck.connect((tproxy.host, tproxy.port))
    # Forty answers asked at once: more than the kernel buffers between.
    stuck.sendall((f"GET {PATH}?o=0&max={ANSWER_MAX} HTTP/1.1\r\nHost: x\r\n"
                   f"Tunnel-Token: {token}\r\n\r\n").encode() * 40)
    assert stuck.recv(1, socket.MSG_PEEK)
    # Meanwhile the session's sends are served, on other connections.
    for i in range(5):
        c.send_ok(token, i * 1000, os.urandom(1000))
    # The stuck answer is given up after 5 s without a byte taken: the
    # holder closes the connection (its FIN waits behind the unread bytes:
    # the holder's end of it leaves ESTABLISHED).
    port = stuck.getsockname()[1]
    assert server_state(tproxy.port, port) == TCP_ESTABLISHED
    trickled = b""
    for _ in range(120):                     # at most 60 s
        if server_state(tproxy.port, port) != TCP_ESTABLISHED:
            break
        time.sleep(0.5)
        if reader == "trickle":
            trickled += stuck.recv(1)
    assert server_state(tproxy.port, port) != TCP_ESTABLISHED, "never given up"
    got, how = recv_all(stuck)
    got = trickled + got
    stuck.close()
    answers = 0
    while got:                               # whole answers, then at most a part of one
        head, sep, rest = got.partition(b"\r\n\r\n")
        assert sep and head.startswith(b"HTTP/1.1 200 "), got[:200]
        assert rest[:ANSWER_MAX] == blob[:len(rest[:ANSWER_MAX])], f"answer {answers} differs"
        got = rest[ANSWER_MAX:]
        answers += 1
    assert answers < 40, "the stuck answers were not given up"
    # Every byte is still there, once, in order.
    data, eof = c.recv_until(token, 0, len(blob), want_eof=True, most=ANSWER_MAX)
    assert data == blob and eof


# --------------------------------------------------------------------------
# GET/POST: a pooling proxy mixes two sessions' large answers

def read_answer(sock, buf):
    """One answer off sock (buf: bytes already read): (status, headers,
    body, the bytes after it)."""
    for _ in range(100000):
        if b"\r\n\r\n" in buf:
            break
        chunk = sock.recv(65536)
        assert chunk, buf[:200]
        buf += chunk
    head, _, buf = buf.partition(b"\r\n\r\n")
    lines = head.decode().split("\r\n")
    fields = {k.lower(): v.strip() for k, _, v in (x.partition(":") for x in lines[1:])}
    n = int(fields["content-length"])
    for _ in range(100000):
        if len(buf) >= n:
            break
        chunk = sock.recv(1 << 20)
        assert chunk, f"{len(buf)} of {n} body bytes"
        buf += chunk
    return int(lines[0].split()[1]), fields, buf[:n], buf[n:]


@pytest.mark.needs("http-tunnel")
def test_pooled_connection_mixing_two_sessions_large_answers(tproxy, make_target):
    """One connection carries both sessions' 512 KiB receives, one after
    the other and pipelined in pairs (A's answer still being written when
    B's request is read): each stream arrives whole, in order, and never a
    byte of the other's."""
    blobs = {"a": os.urandom(3 * ANSWER_MAX + 1234), "b": os.urandom(2 * ANSWER_MAX + 99)}
    tokens = {k: Conn(tproxy).open_ok(make_target(greeter(v)).hostport) for k, v in blobs.items()}
    got = {"a": b"", "b": b""}
    eof = {"a": False, "b": False}
    sock = socket.create_connection((tproxy.host, tproxy.port), timeout=30)
    rest = b""
    for _ in range(400):
        if all(eof.values()):
            break
        order = [k for k in ("a", "b") if not eof[k]]
        sock.sendall(b"".join(
            (f"GET {PATH}?o={len(got[k])}&max={ANSWER_MAX} HTTP/1.1\r\nHost: x\r\n"
             f"Tunnel-Token: {tokens[k]}\r\n\r\n").encode() for k in order))
        for k in order:
            status, fields, body, rest = read_answer(sock, rest)
            assert status == 200, (k, status, fields)
            assert fields["tunnel-offset"] == str(len(got[k])), (k, fields)
            got[k] += body
            eof[k] = fields.get("tunnel-eof") == "1"
            assert blobs[k].startswith(got[k]), f"session {k} got bytes not of its stream"
    sock.close()
    assert got == blobs and all(eof.values())


@needs_tickets
def test_ticket_of_another_service_with_another_cert_gets_its_full_handshake(
        make_proxy, tls_files, rsa_tls_files, tmp_path, echo):
    """A ticket sealed by service A (its key, its certificate) offered to
    service B (another key, another certificate): B does a full handshake
    and shows its own certificate, in TLS 1.2 and 1.3."""
    import ssl
    a = ticket_proxy(make_proxy, "listen", tls_files, write_keys(tmp_path / "a", new_key()))
    b = ticket_proxy(make_proxy, "listen", rsa_tls_files, write_keys(tmp_path / "b", new_key()))
    for v in (ssl.TLSVersion.TLSv1_3, ssl.TLSVersion.TLSv1_2):
        c = Py(a, v)
        sess, _, _ = c.tunnel(echo)
        c.ctx.load_verify_locations(cafile=b.cafile)
        raw = socket.create_connection((b.host, b.port), timeout=10)
        s = c.ctx.wrap_socket(raw, server_hostname="127.0.0.1", session=sess)
        der = s.getpeercert(binary_form=True)
        reused = s.session_reused
        s.sendall(connect_head(echo.hostport))
        assert s.recv(4096).startswith(b"HTTP/1.1 200 ")
        s.close()
        want = ssl.PEM_cert_to_DER_cert(open(b.cafile).read())
        assert not reused and der == want, v


def client_hello13(identity, binder=None):
    """A TLS 1.3 ClientHello offering identity as a resumption PSK (RFC
    8446 §4.2.11) with a binder that is not the ticket's (random bytes)."""
    sigs = b"\x04\x03\x05\x03\x06\x03\x08\x04\x08\x05\x08\x06"
    binder = os.urandom(32) if binder is None else binder
    ids = struct.pack("!H", len(identity)) + identity + os.urandom(4)
    psk = (struct.pack("!H", len(ids)) + ids +
           struct.pack("!H", 1 + len(binder)) + bytes([len(binder)]) + binder)
    share = b"\x00\x1d\x00\x20" + os.urandom(32)
    exts = (ext(43, b"\x02\x03\x04") + ext(10, b"\x00\x02\x00\x1d") +
            ext(51, struct.pack("!H", len(share)) + share) +
            ext(13, struct.pack("!H", len(sigs)) + sigs) + ext(45, b"\x01\x01") + ext(41, psk))
    suites = b"\x13\x01\x13\x02\x13\x03"
    return hello_records(suites, exts)


def server_hello13(sock):
    """'psk' when the ServerHello took the PSK (its pre_shared_key
    extension), 'full' when it did not, 'alert' or 'closed'."""
    sock.settimeout(10)
    buf = read_record(sock, b"")
    if buf is None:
        return "closed"
    if buf[0] == 21:
        return "alert"
    assert buf[0] == 22 and buf[5] == 2, buf[:20]
    sh = buf[9:]
    at = 2 + 32
    at += 1 + sh[at]                        # legacy_session_id_echo
    at += 2 + 1                             # cipher_suite, compression
    end = at + 2 + struct.unpack("!H", sh[at:at + 2])[0]
    at += 2
    while at < end:
        kind, n = struct.unpack("!HH", sh[at:at + 4])
        if kind == 41:
            return "psk"
        at += 4 + n
    return "full"


@needs_tickets
def test_handmade_tls13_psk_identities_never_resume_nor_crash(make_proxy, mode, tls_files,
                                                              tmp_path, make_target):
    """The PSK identity is the ticket: the right key name followed by junk,
    cut, stretched or huge; and the real ticket with a binder that is not
    its own. Never a resumption, never a crash; the next client is served."""
    greeter = make_target(greet_shut_handler)
    k = new_key()
    p = ticket_proxy(make_proxy, mode, tls_files, write_keys(tmp_path / "tickets", k))
    name = hashlib.sha256(bytes.fromhex(k) + b"tunneld ticket").digest()[:4]
    sess = tmp_path / "sess13.pem"
    s_client(p, greeter, sess_out=sess)
    der, start, end = session_ticket(sess)
    good = der[start:end]
    assert good[:4] == name
    cases = {"name-only": name, "one-byte": b"\x00", "name-and-iv": name + os.urandom(12),
             "cut-by-one": good[:-1], "one-more": good + b"\x00",
             "tag-flipped": good[:-1] + bytes([good[-1] ^ 1]),
             "garbage": name + os.urandom(200), "large": name + os.urandom(15000),
             "real-ticket-wrong-binder": good}
    for label, identity in cases.items():
        with socket.create_connection((p.host, p.port), timeout=10) as sock:
            sock.sendall(client_hello13(identity))
            got = server_hello13(sock)
        assert got in ("full", "alert"), (label, got)
        if label != "real-ticket-wrong-binder":
            assert got == "full", (label, got)
    assert wait_until(lambda: len(p.log_lines()) == 1 + len(cases), 10), p.log_text()
    text = p.log_text()
    assert "AddressSanitizer" not in text and "runtime error" not in text, text
    assert all(x.get("tls") != "resumed" for x in p.log_lines()[1:]), text
    out, line = s_client(p, greeter, sess_in=sess)
    assert line["status"] == "200" and line["tls"] == "resumed"


PEEK = """import sys
for pid in sys.argv[1:]:
    for what in ("mem", "environ"):
        try:
            open(f"/proc/{pid}/{what}", "rb").read(1)
            print("read", pid, what)
        except OSError as e:
            print("refused", pid, what, e.errno)
"""


@needs_tickets
@pytest.mark.skipif(os.geteuid() != 0, reason="dropping privileges needs root")
@pytest.mark.parametrize("mode", ["listen", "inetd"])
def test_other_process_of_the_user_cannot_read_the_keys_from_memory(make_proxy, mode,
                                                                    tls_files, tmp_path, echo):
    """--user nobody: the listener and a live connection's process hold
    the ticket keys in memory; another process of uid nobody (any daemon
    run as nobody) can open neither's /proc/PID/mem nor environ: setuid
    made them undumpable and nothing made them dumpable again."""
    import ssl
    p = ticket_proxy(make_proxy, mode, tls_files, write_keys(tmp_path / "tickets", new_key()),
                     "--user", "nobody")
    ctx = ssl.create_default_context(cafile=p.cafile)
    raw = socket.create_connection((p.host, p.port), timeout=10)
    s = ctx.wrap_socket(raw, server_hostname="127.0.0.1")
    s.sendall(connect_head(echo.hostport))
    assert s.recv(4096) == OK_REPLY
    try:
        pids = [x for x in ([p.pid] if mode == "listen" else []) + list(p.procs())
                if os.stat(f"/proc/{x}").st_uid == 65534]
        assert pids, "no tunneld process runs as nobody: nothing is tried"
        r = subprocess.run(["/usr/bin/python3", "-c", PEEK, *map(str, pids)], capture_output=True,
                           text=True, timeout=10, user=65534, group=65534, extra_groups=[])
        assert r.returncode == 0, r.stderr
        lines = r.stdout.splitlines()
        assert len(lines) == 2 * len(pids) and all(x.startswith("refused") for x in lines), lines
    finally:
        s.close()


@needs_tickets
def test_key_file_opened_to_others_after_start_is_told(make_proxy, tls_files, tmp_path, echo):
    """chmod 644 under a running listener: the rule tunneld enforced at
    start is checked again and the change logged (the keys read before
    stay, as for any bad new file); chmod 600 again: read again."""
    keyfile = write_keys(tmp_path / "tickets", new_key())
    p = ticket_proxy(make_proxy, "listen", tls_files, keyfile)
    c = Py(p)
    sess, _, _ = c.tunnel(echo)
    os.chmod(keyfile, 0o644)
    _, reused, _ = c.tunnel(echo, sess)
    assert reused
    assert f"{keyfile}: readable by others than its owner" in p.log_text(), p.log_text()
    os.chmod(keyfile, 0o600)
    _, reused, _ = c.tunnel(echo, sess)
    assert reused and f"{keyfile}: ticket keys read again" in p.log_text(), p.log_text()
