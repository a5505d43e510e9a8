"""TLS session tickets (--ticket-key FILE, Kconfig TLS_TICKETS): a session
sealed by one tunneld process resumes in another, in inetd mode (a process
per connection, each reading the file) and in --listen mode (forked
workers, the listener reading the file again when it changes). openssl
s_client carries the session from one process to the next in a file
(-sess_out, -sess_in), Python's ssl in an SSLSession, curl in its own
session cache between two CONNECTs of one run, headless Chromium between a
page's tunnel and its image's; each resumption is seen by
the client (Reused, session_reused) and by tunneld (tls=resumed in the
log line). Tickets of another key, of a key no longer listed, past their
lifetime or corrupted get a full handshake, and the tunnel works."""

import os
import socket
import ssl
import subprocess
import time
from pathlib import Path

import pytest

from conftest import OK_REPLY, clean_env, connect_head, run_tunneld, wait_until
from support.servers import TargetServer, greet_shut_handler, https_handler, read_head

pytestmark = [pytest.mark.needs("tls"), pytest.mark.needs("tls-tickets")]

GREETING = b"hello, then EOF\n"


def write_keys(path, *keys):
    """The key file, as the documented rotation makes it: written beside,
    mode 600, then moved into place."""
    tmp = path.with_name(path.name + ".new")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write("".join(k + "\n" for k in keys))
    os.replace(tmp, path)
    return path


def new_key():
    return subprocess.run(["openssl", "rand", "-hex", "32"], capture_output=True, text=True,
                          check=True, timeout=10).stdout.strip()


@pytest.fixture
def greeter(make_target):
    return make_target(greet_shut_handler)


def ticket_proxy(make_proxy, mode, tls_files, keyfile, *args):
    return make_proxy(mode, tls=tls_files, args=["--ticket-key", str(keyfile), *args])


def s_client(proxy, target, sess_out=None, sess_in=None, tls12=False):
    """One CONNECT to target over openssl s_client; (its output, the log
    line of its connection)."""
    cmd = ["openssl", "s_client", "-connect", f"127.0.0.1:{proxy.port}", "-CAfile",
           proxy.cafile, "-verify_return_error", "-ign_eof"]
    cmd += ["-tls1_2"] if tls12 else ["-tls1_3"]
    cmd += ["-sess_out", str(sess_out)] if sess_out else []
    cmd += ["-sess_in", str(sess_in)] if sess_in else []
    before = len(proxy.log_lines())
    r = subprocess.run(cmd, input=connect_head(target.hostport), capture_output=True,
                       timeout=20, env=clean_env())
    out = r.stdout.decode(errors="replace")
    assert GREETING.decode() in out, out + r.stderr.decode(errors="replace")
    assert wait_until(lambda: len(proxy.log_lines()) > before, 5), proxy.log_text()
    return out, proxy.log_lines()[before]


def session_line(out):
    """s_client's 'New, ...' or 'Reused, ...' line."""
    return next(x for x in out.splitlines() if x.startswith(("New,", "Reused,")))


class Py:
    """Python's ssl as the client: sessions kept in memory, one context."""

    def __init__(self, proxy, version=None):
        self.proxy = proxy
        self.ctx = ssl.create_default_context(cafile=proxy.cafile)
        if version:
            self.ctx.minimum_version = self.ctx.maximum_version = version

    def tunnel(self, echo_target, session=None, proxy=None):
        """A tunnel to the echo target that carries bytes both ways; (the
        session to resume next, whether this one resumed, its log line)."""
        p = proxy or self.proxy
        raw = socket.create_connection((p.host, p.port), timeout=10)
        port = raw.getsockname()[1]
        s = self.ctx.wrap_socket(raw, server_hostname="127.0.0.1", session=session)
        s.sendall(connect_head(echo_target.hostport))
        got = b""
        while not got.endswith(b"\r\n\r\n"):
            chunk = s.recv(4096)
            assert chunk, got
            got += chunk
        assert got == OK_REPLY
        data = os.urandom(3000)
        s.sendall(data)
        back = b""
        while len(back) < len(data):
            chunk = s.recv(65536)
            assert chunk, len(back)
            back += chunk
        assert back == data
        reused, sess = s.session_reused, s.session
        s.close()
        return sess, reused, p.log_for(port)


@pytest.mark.parametrize("tls12", [False, True], ids=["tls1.3", "tls1.2"])
def test_s_client_resumes_in_another_process(make_proxy, any_mode, tls_files, tmp_path, greeter,
                                             tls12):
    """In each serving mode: inetd, --listen and systemd's Accept=no."""
    keyfile = write_keys(tmp_path / "tickets", new_key())
    p = ticket_proxy(make_proxy, any_mode, tls_files, keyfile)
    sess = tmp_path / "sess.pem"
    out, first = s_client(p, greeter, sess_out=sess, tls12=tls12)
    assert session_line(out).startswith("New,") and first["tls"] == "full"
    assert "TLS session ticket" in subprocess.run(
        ["openssl", "sess_id", "-in", str(sess), "-noout", "-text"], capture_output=True,
        text=True, timeout=10).stdout
    out, second = s_client(p, greeter, sess_in=sess, tls12=tls12)
    assert session_line(out).startswith("Reused,"), out
    assert second["tls"] == "resumed" and second["status"] == "200"
    assert first["_raw"].split("]")[0] != second["_raw"].split("]")[0]  # two processes


def test_curl_resumes_its_second_connect(make_proxy, mode, tls_files, tmp_path):
    """Two URLs on two targets: two CONNECTs, two proxy connections, two
    processes; curl offers the first one's ticket to the second."""
    keyfile = write_keys(tmp_path / "tickets", new_key())
    p = ticket_proxy(make_proxy, mode, tls_files, keyfile)
    cert, key = tls_files
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(cert, key)
    targets = [TargetServer(https_handler(ctx)) for _ in range(2)]
    try:
        r = subprocess.run(["curl", "-sS", "--max-time", "10", "--proxy",
                            f"https://127.0.0.1:{p.port}", "--proxy-cacert", str(cert),
                            "--cacert", str(cert),
                            *[f"https://good.test:{t.port}/" for t in targets]],
                           capture_output=True, timeout=30, env=clean_env())
    finally:
        for t in targets:
            t.close()
    assert r.returncode == 0, r.stderr
    assert r.stdout.count(b"hello from the https target") == 2
    lines = [f for f in p.log_lines() if f.get("status") == "200"]
    assert [f["tls"] for f in lines] == ["full", "resumed"], p.log_text()


def test_python_resumes_and_chains(make_proxy, mode, tls_files, tmp_path, echo):
    """A resumed connection hands out a new ticket that resumes in turn."""
    keyfile = write_keys(tmp_path / "tickets", new_key())
    p = ticket_proxy(make_proxy, mode, tls_files, keyfile)
    c = Py(p)
    sess, reused, line = c.tunnel(echo)
    assert not reused and line["tls"] == "full"
    for _ in range(3):
        sess, reused, line = c.tunnel(echo, sess)
        assert reused and line["tls"] == "resumed"


@pytest.mark.parametrize("version", [ssl.TLSVersion.TLSv1_3, ssl.TLSVersion.TLSv1_2],
                         ids=["tls1.3", "tls1.2"])
def test_ticket_of_another_key_gets_a_full_handshake(make_proxy, mode, tls_files, tmp_path, echo,
                                                     version):
    a = ticket_proxy(make_proxy, mode, tls_files, write_keys(tmp_path / "a", new_key()))
    b = ticket_proxy(make_proxy, mode, tls_files, write_keys(tmp_path / "b", new_key()))
    c = Py(a, version)
    sess, _, _ = c.tunnel(echo)
    _, reused, line = c.tunnel(echo, sess, proxy=b)
    assert not reused and line["tls"] == "full" and line["status"] == "200"
    _, reused, line = c.tunnel(echo, sess, proxy=a)
    assert reused and line["tls"] == "resumed"


@pytest.mark.parametrize("version", [ssl.TLSVersion.TLSv1_3, ssl.TLSVersion.TLSv1_2],
                         ids=["tls1.3", "tls1.2"])
def test_rotation(make_proxy, any_mode, tls_files, tmp_path, echo, version):
    """A new first key: old tickets still resume, new ones are sealed with
    the new key; the old key dropped: its tickets get a full handshake,
    the new key's still resume. The file is replaced under a running
    tunneld, never restarted."""
    mode = any_mode
    k1, k2 = new_key(), new_key()
    keyfile = write_keys(tmp_path / "tickets", k1)
    p = ticket_proxy(make_proxy, mode, tls_files, keyfile)
    c = Py(p, version)
    old, _, line = c.tunnel(echo)
    assert line["tls"] == "full"
    write_keys(keyfile, k2, k1)
    _, reused, line = c.tunnel(echo, old)
    assert reused and line["tls"] == "resumed"
    new, reused, line = c.tunnel(echo)
    assert not reused and line["tls"] == "full"
    # The new ticket is the new key's: a tunneld that knows only k2 resumes it.
    only2 = ticket_proxy(make_proxy, mode, tls_files, write_keys(tmp_path / "only2", k2))
    _, reused, line = c.tunnel(echo, new, proxy=only2)
    assert reused and line["tls"] == "resumed"
    write_keys(keyfile, k2)
    _, reused, line = c.tunnel(echo, old)
    assert not reused and line["tls"] == "full" and line["status"] == "200"
    _, reused, line = c.tunnel(echo, new)
    assert reused and line["tls"] == "resumed"
    if mode != "inetd":   # a listener of its own: it read the file again
        assert p.log_text().count("ticket keys read again") == 2, p.log_text()


def test_expired_ticket_gets_a_full_handshake(make_proxy, mode, tls_files, tmp_path, echo):
    """The server that is offered the ticket judges its age by its own
    --ticket-lifetime: the ticket says an hour to the client, which offers
    it; the other tunneld allows one second, and two have passed."""
    keyfile = write_keys(tmp_path / "tickets", new_key())
    long = ticket_proxy(make_proxy, mode, tls_files, keyfile, "--ticket-lifetime", "3600")
    short = ticket_proxy(make_proxy, mode, tls_files, keyfile, "--ticket-lifetime", "1")
    for version in (ssl.TLSVersion.TLSv1_3, ssl.TLSVersion.TLSv1_2):
        c = Py(long, version)
        sess, _, _ = c.tunnel(echo)
        _, reused, line = c.tunnel(echo, sess, proxy=short)
        assert reused and line["tls"] == "resumed", version   # young enough yet
        time.sleep(2.5)
        _, reused, line = c.tunnel(echo, sess, proxy=short)
        assert not reused and line["tls"] == "full" and line["status"] == "200", version
        _, reused, line = c.tunnel(echo, sess)
        assert reused and line["tls"] == "resumed", version


def der_item(der, at):
    """The DER item at offset at: (tag, where its content starts, its end)."""
    tag, n = der[at], der[at + 1]
    start = at + 2
    if n & 0x80:
        count = n & 0x7f
        n = int.from_bytes(der[start:start + count], "big")
        start += count
    return tag, start, start + n


def session_ticket(sess_pem):
    """s_client's session file as DER, and where its ticket starts and
    ends: the OCTET STRING in the session's [10] field (OpenSSL's
    SSL_SESSION_ASN1)."""
    der = subprocess.run(["openssl", "sess_id", "-in", str(sess_pem), "-outform", "DER"],
                         capture_output=True, check=True, timeout=10).stdout
    _, at, end = der_item(der, 0)
    while at < end:
        tag, start, stop = der_item(der, at)
        if tag == 0xaa:
            _, ticket, ticket_end = der_item(der, start)
            return der, ticket, ticket_end
        at = stop
    raise AssertionError("no ticket in the session")


def corrupt_ticket(sess_pem, out_pem):
    """A copy of s_client's session file with one byte of its ticket's
    sealed part flipped (past the key name and the IV)."""
    der, ticket, ticket_end = session_ticket(sess_pem)
    assert ticket_end - ticket > 40
    bad = bytearray(der)
    bad[ticket + 24] ^= 0x40
    subprocess.run(["openssl", "sess_id", "-inform", "DER", "-out", str(out_pem)],
                   input=bytes(bad), check=True, capture_output=True, timeout=10)


@pytest.mark.parametrize("tls12", [False, True], ids=["tls1.3", "tls1.2"])
def test_corrupted_ticket_gets_a_full_handshake(make_proxy, mode, tls_files, tmp_path, greeter,
                                                tls12):
    keyfile = write_keys(tmp_path / "tickets", new_key())
    p = ticket_proxy(make_proxy, mode, tls_files, keyfile)
    sess, bad = tmp_path / "sess.pem", tmp_path / "bad.pem"
    s_client(p, greeter, sess_out=sess, tls12=tls12)
    corrupt_ticket(sess, bad)
    out, line = s_client(p, greeter, sess_in=bad, tls12=tls12)
    assert session_line(out).startswith("New,") and line["tls"] == "full"
    out, line = s_client(p, greeter, sess_in=sess, tls12=tls12)
    assert session_line(out).startswith("Reused,") and line["tls"] == "resumed"


def test_without_ticket_key_no_ticket(make_proxy, mode, tls_files, echo):
    p = make_proxy(mode, tls=tls_files)
    for version in (ssl.TLSVersion.TLSv1_3, ssl.TLSVersion.TLSv1_2):
        c = Py(p, version)
        sess, reused, line = c.tunnel(echo)
        assert not sess.has_ticket and not reused and line["tls"] == "full"
        _, reused, line = c.tunnel(echo, sess)
        assert not reused and line["tls"] == "full"


@pytest.mark.parametrize("text, why", [
    ("", "{f}: no key in it"),
    ("# only a comment\n\n", "{f}: no key in it"),
    ("{k}\nnot hex\n", "{f}:2: not a key: 64 hex digits (openssl rand -hex 32)"),
    ("{k}00\n", "{f}:1: not a key"),
    ("{k8}", "{f}:9: more than 8 keys"),
], ids=["empty", "comments-only", "bad-line", "long-key", "nine-keys"])
def test_bad_key_file_refused(tmp_path, netfiles, tls_files, mode, text, why):
    k = new_key()
    f = tmp_path / "tickets"
    fd = os.open(f, os.O_WRONLY | os.O_CREAT, 0o600)
    os.write(fd, text.format(k=k, k8="".join(k + "\n" for _ in range(9))).encode())
    os.close(fd)
    check_refused(netfiles, tls_files, mode, f, why.format(f=f))


@pytest.mark.parametrize("perm", [0o640, 0o604])
def test_key_file_readable_by_others_refused(tmp_path, netfiles, tls_files, mode, perm):
    f = write_keys(tmp_path / "tickets", new_key())
    os.chmod(f, perm)
    check_refused(netfiles, tls_files, mode, f, f"{f}: readable by others than its owner")


def check_refused(netfiles, tls_files, mode, keyfile, why):
    """--listen exits 78 before it listens; in inetd mode the connection's
    process exits 78 and the client gets no byte."""
    args = ["--log", "stderr", "--cert", str(tls_files[0]), "--key", str(tls_files[1]),
            "--ticket-key", str(keyfile)]
    if mode == "listen":
        args = ["--listen", "127.0.0.1:0", *args]
    r = run_tunneld(args, netfiles)
    assert r.returncode == 78, r
    assert why in r.stderr.decode(), r.stderr
    assert r.stdout == b""


def test_listener_keeps_its_keys_when_the_new_file_is_bad(make_proxy, tls_files, tmp_path, echo):
    keyfile = write_keys(tmp_path / "tickets", new_key())
    p = ticket_proxy(make_proxy, "listen", tls_files, keyfile)
    c = Py(p)
    sess, _, _ = c.tunnel(echo)
    keyfile.with_name("x").write_text("not a key\n")
    os.chmod(keyfile.with_name("x"), 0o600)
    os.replace(keyfile.with_name("x"), keyfile)
    _, reused, line = c.tunnel(echo, sess)
    assert reused and line["tls"] == "resumed"
    assert f"{keyfile}:1: not a key" in p.log_text()
    assert "the keys read before stay in use" in p.log_text()
    # Gone: told once, not for every connection; the keys still serve.
    keyfile.unlink()
    for _ in range(2):
        _, reused, line = c.tunnel(echo, sess)
        assert reused and line["tls"] == "resumed"
    assert p.log_text().count(f"{keyfile}: No such file or directory") == 1, p.log_text()
    assert p.log_text().count(f"{keyfile}:1: not a key") == 1, p.log_text()


def test_options_checked(netfiles, tls_files, tmp_path):
    f = write_keys(tmp_path / "tickets", new_key())
    r = run_tunneld(["--ticket-key", str(f)], netfiles)
    assert r.returncode == 64 and b"--ticket-key needs --cert and --key" in r.stderr
    for bad in ("0", "604801", "1d"):
        r = run_tunneld(["--cert", str(tls_files[0]), "--key", str(tls_files[1]),
                         "--ticket-key", str(f), "--ticket-lifetime", bad], netfiles)
        assert r.returncode == 64, bad
        assert b"--ticket-lifetime: '" + bad.encode() + b"' is not a number from 1 to 604800" \
            in r.stderr


def test_build_without_tickets_refuses_the_option(tunneld_min, tls_files, tmp_path):
    """CONFIG_TLS_TICKETS=n (and every build without TLS, as tunneld-min):
    --ticket-key is a usage error naming the build option."""
    f = write_keys(tmp_path / "tickets", new_key())
    r = subprocess.run([tunneld_min, "--log", "stderr", "--ticket-key", str(f)],
                       stdin=subprocess.DEVNULL, capture_output=True, timeout=10, env=clean_env())
    assert r.returncode == 64, r
    assert b"--ticket-key: this tunneld was built without tickets (CONFIG_TLS_TICKETS)" \
        in r.stderr, r.stderr
    out = subprocess.run([tunneld_min, "--version"], capture_output=True, text=True,
                         timeout=10).stdout
    assert "-tls-tickets" in out, out


@pytest.mark.skipif(os.geteuid() != 0, reason="dropping privileges needs root")
def test_listener_with_user_rereads_as_that_user(make_proxy, tls_files, echo):
    """--user: the listener has dropped root when it reads the file again.
    A root-only new file is refused (logged, the keys read before stay);
    one that user owns is read. inetd mode reads it before dropping root."""
    import pwd
    import shutil
    import tempfile
    nobody = pwd.getpwnam("nobody")
    d = Path(tempfile.mkdtemp(prefix="tunneld-tickets-"))
    try:
        d.chmod(0o711)            # nobody may reach the file, not list the directory
        k1, k2 = new_key(), new_key()
        keyfile = write_keys(d / "tickets", k1)   # root's, mode 600
        p = ticket_proxy(make_proxy, "listen", tls_files, keyfile, "--user", "nobody")
        c = Py(p)
        old, _, line = c.tunnel(echo)
        assert line["tls"] == "full"
        write_keys(keyfile, k2)
        _, reused, line = c.tunnel(echo, old)
        assert reused and line["tls"] == "resumed"            # k1 still in use
        assert f"{keyfile}: Permission denied; the keys read before stay in use" in p.log_text()
        write_keys(keyfile, k2)
        os.chown(keyfile, nobody.pw_uid, nobody.pw_gid)
        _, reused, line = c.tunnel(echo, old)
        assert not reused and line["tls"] == "full"           # k2 only, now read
        assert f"{keyfile}: ticket keys read again" in p.log_text()
        q = ticket_proxy(make_proxy, "inetd", tls_files, write_keys(d / "root-only", k1),
                         "--user", "nobody")
        _, reused, line = c.tunnel(echo, old, proxy=q)
        assert reused and line["tls"] == "resumed"
    finally:
        shutil.rmtree(d)


def page_handler(ctx, body, ctype):
    """An HTTPS target answering every request with body (Content-Type
    ctype); each request's head goes to server.results."""
    def handler(conn, server):
        try:
            tls = ctx.wrap_socket(conn, server_side=True)
            server.results.append(read_head(tls))
            tls.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: %s\r\nContent-Length: %d\r\n"
                        b"Connection: close\r\n\r\n%s" % (ctype, len(body), body))
            tls.unwrap()
        except (ssl.SSLError, OSError):
            pass
        conn.close()
    return handler


def test_chromium_resumes_its_next_tunnel(make_proxy, mode, tls_files, tmp_path, netfiles):
    """A browser: headless Chromium with --proxy-server=https:// loads a page
    from one target whose image is on another. The second tunnel is a second
    proxy connection, served by another process, and resumes."""
    from test_tls_proxy import dump_dom
    keyfile = write_keys(tmp_path / "tickets", new_key())
    p = ticket_proxy(make_proxy, mode, tls_files, keyfile)
    cert, key = tls_files
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(cert, key)
    image = TargetServer(page_handler(ctx, b"GIF89a", b"image/gif"))
    html = (b"<html><body><p>the page</p><img src='https://good.test:%d/pic.gif'></body></html>"
            % image.port)
    page = TargetServer(page_handler(ctx, html, b"text/html"))
    try:
        out, err = dump_dom(p, f"https://good.test:{page.port}/", tmp_path, netfiles)
    finally:
        page.close()
        image.close()
    assert b"the page" in out, (out, err[-3000:])
    assert any(h.startswith(b"GET /pic.gif ") for h in image.results), image.results
    first = p.wait_log(lambda f: f.get("target") == f"good.test:{page.port}")
    second = p.wait_log(lambda f: f.get("target") == f"good.test:{image.port}")
    assert first["tls"] == "full" and second["tls"] == "resumed", p.log_text()
