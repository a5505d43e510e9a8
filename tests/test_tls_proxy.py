"""Clients speaking TLS to tunneld itself (--cert/--key, DESIGN §7): curl
--proxy https:// (with proxy authentication), Python over a TLS socket
(TLS 1.2 and 1.3, ECDSA and RSA keys, weak offers refused), big transfers
both ways through the TLS layer, error replies over TLS, plain-text and
silent clients, bad key material, a certificate chain, the build without
TLS, and headless Chromium with --proxy-server=https://."""

import hashlib
import os
import select
import shutil
import socket
import ssl
import subprocess
import threading
import time
import warnings

import pytest

from conftest import (ALICE, HTTPS_BODY, OK_REPLY, Client, basic_auth, clean_env, connect_head,
                      free_port, kill_pid, netns_wrap, run_tunneld)
from test_cli import finish, spawn_inetd

MiB = 1 << 20
pytestmark = pytest.mark.needs("tls")


class TLSClient:
    """A TLS connection to the proxy with the same reading helpers as Client;
    ctx: an ssl.SSLContext of the caller's (default: verify proxy.cafile)."""

    def __init__(self, proxy, timeout=10, ctx=None):
        ctx = ctx or ssl.create_default_context(cafile=proxy.cafile)
        raw = socket.create_connection((proxy.host, proxy.port), timeout=timeout)
        self.port = raw.getsockname()[1]
        self.sock = ctx.wrap_socket(raw, server_hostname="127.0.0.1")
        self.buf = bytearray()

    def send(self, data):
        self.sock.sendall(data)

    def _fill(self):
        chunk = self.sock.recv(262144)
        self.buf += chunk
        return chunk

    def read_until(self, marker):
        for _ in range(10000):
            if marker in self.buf:
                break
            if not self._fill():
                raise AssertionError(f"EOF before {marker!r}: {bytes(self.buf[:300])!r}")
        i = self.buf.index(marker) + len(marker)
        out = bytes(self.buf[:i])
        del self.buf[:i]
        return out

    def read_exact(self, n):
        while len(self.buf) < n:
            if not self._fill():
                raise AssertionError(f"EOF after {len(self.buf)} of {n} bytes")
        out = bytes(self.buf[:n])
        del self.buf[:n]
        return out

    def read_to_eof(self):
        try:
            while self._fill():
                pass
        except (ssl.SSLEOFError, ConnectionResetError):
            pass
        out = bytes(self.buf)
        self.buf.clear()
        return out

    def close(self):
        self.sock.close()


def test_curl_https_proxy(tls_proxy, https_target):
    r = subprocess.run(["curl", "-sS", "--max-time", "10",
                        "--proxy", f"https://127.0.0.1:{tls_proxy.port}",
                        "--proxy-cacert", tls_proxy.cafile, "--cacert", https_target.cafile,
                        f"https://good.test:{https_target.port}/"],
                       capture_output=True, timeout=20, env=clean_env())
    assert r.returncode == 0, r.stderr
    assert r.stdout == HTTPS_BODY


def test_tls_optimistic_data_and_echo(tls_proxy, echo):
    c = TLSClient(tls_proxy)
    c.send(connect_head(echo.hostport) + b"early bytes")
    assert c.read_until(b"\r\n\r\n") == OK_REPLY
    assert c.read_exact(11) == b"early bytes"
    for size in (1, 1000, 100_000):
        data = os.urandom(size)
        c.send(data)
        assert c.read_exact(size) == data
    c.close()


def test_tls_early_data_beyond_head_buffer(tls_proxy, echo):
    """The head and 12 KB after it in one TLS record: tunneld's head buffer
    (8 KiB) takes part of the record and mbedTLS keeps the rest, which the
    socket's poll() cannot see. It must reach the target with nothing more
    sent by the client."""
    early = os.urandom(12000)
    c = TLSClient(tls_proxy, timeout=5)
    c.send(connect_head(echo.hostport) + early)
    assert c.read_until(b"\r\n\r\n") == OK_REPLY
    assert c.read_exact(len(early)) == early
    c.close()


def source_handler(blob):
    def handler(conn, server):
        conn.sendall(blob)
    return handler


def hash_n_handler(n):
    """Read exactly n bytes, answer their sha256 hex."""
    def handler(conn, server):
        h, got = hashlib.sha256(), 0
        while got < n:
            chunk = conn.recv(min(65536, n - got))
            if not chunk:
                break
            h.update(chunk)
            got += len(chunk)
        conn.sendall(h.hexdigest().encode())
    return handler


def test_tls_download_4mib(tls_proxy, make_target):
    blob = os.urandom(4 * MiB)
    target = make_target(source_handler(blob))
    c = TLSClient(tls_proxy)
    c.send(connect_head(target.hostport))
    assert c.read_until(b"\r\n\r\n") == OK_REPLY
    got = c.read_to_eof()
    assert len(got) == len(blob) and got == blob


def test_tls_upload_4mib(tls_proxy, make_target):
    """Many TLS records arrive at once: the bytes mbedTLS holds must be relayed
    without waiting for the socket to turn readable again."""
    blob = os.urandom(4 * MiB)
    target = make_target(hash_n_handler(len(blob)))
    c = TLSClient(tls_proxy)
    c.send(connect_head(target.hostport))
    assert c.read_until(b"\r\n\r\n") == OK_REPLY
    c.send(blob)
    assert c.read_exact(64).decode() == hashlib.sha256(blob).hexdigest()


def test_tls_error_reply(tls_proxy):
    c = TLSClient(tls_proxy)
    c.send(connect_head("good.test:0"))
    head = c.read_until(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 400 Bad Request\r\n"), head
    length = int(head.lower().split(b"content-length:")[1].split(b"\r\n")[0])
    assert c.read_exact(length).endswith(b"\n")
    assert c.read_to_eof() == b""
    c.close()
    assert tls_proxy.log_for(c.port)["status"] == "400"


def test_plain_client_to_tls_listener_gets_no_tunnel(tls_proxy, echo):
    c = Client(tls_proxy.host, tls_proxy.port)
    c.send(connect_head(echo.hostport))
    assert c.end_state(3) in ("eof", "reset")
    assert not c.buf.startswith(b"HTTP/1.1 200"), c.buf
    assert echo.accepted == 0


def test_bad_key_material(tmp_path, netfiles, tls_files):
    cert, key = tls_files
    junk = tmp_path / "junk.pem"
    junk.write_text("-----BEGIN PRIVATE KEY-----\nnot base64\n-----END PRIVATE KEY-----\n")
    port = f"127.0.0.1:{free_port()}"
    r = run_tunneld(["--log", "stderr", "--listen", port, "--cert", str(cert),
                     "--key", str(junk)], netfiles)
    assert r.returncode == 78 and str(junk).encode() in r.stderr, (r.returncode, r.stderr)
    r = run_tunneld(["--log", "stderr", "--listen", port, "--cert", str(cert)], netfiles)
    assert r.returncode == 64, (r.returncode, r.stderr)


# --------------------------------------------------------------------------
# TLS with authentication, versions, key kinds, timeouts, key material

@pytest.mark.needs("auth")
def test_curl_https_proxy_with_auth(make_proxy, mode, tls_files, https_target, make_users,
                                    alice_hashes):
    """The point of the TLS proxy: the password crosses the network encrypted."""
    cert, key = tls_files
    users = make_users(f"alice:{alice_hashes['htpasswd-bcrypt-2y']}\n")
    p = make_proxy(mode, args=["--cert", str(cert), "--key", str(key), "--users", str(users)])

    def run(*creds):
        return subprocess.run(["curl", "-sS", "--max-time", "10", "-w", "\n%{http_connect}",
                               "--proxy", f"https://127.0.0.1:{p.port}", "--proxy-cacert",
                               str(cert), *creds, "--cacert", https_target.cafile,
                               f"https://good.test:{https_target.port}/"],
                              capture_output=True, timeout=20, env=clean_env())
    r = run("--proxy-user", "alice:secret")
    assert r.returncode == 0, r.stderr
    assert r.stdout == HTTPS_BODY + b"\n200", r.stdout
    p.wait_log(lambda f: f.get("status") == "200" and f.get("user") == "alice")
    for creds in (["--proxy-user", "alice:Secret"], []):
        r = run(*creds)
        assert r.returncode != 0 and r.stdout.endswith(b"\n407"), (r.stdout, r.stderr)
    assert "secret" not in p.log_text().lower()


@pytest.mark.needs("auth")
def test_tls_407_reply(make_proxy, mode, tls_files, make_users, alice_hashes, echo):
    cert, key = tls_files
    users = make_users(f"alice:{alice_hashes['openssl-sha256']}\n")
    p = make_proxy(mode, args=["-c", str(cert), "-k", str(key), "-u", str(users),
                               "-r", "tls realm"])
    p.cafile = str(cert)
    c = TLSClient(p)
    c.send(connect_head(echo.hostport))
    head = c.read_until(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 407 Proxy Authentication Required\r\n"), head
    assert b'\r\nProxy-Authenticate: Basic realm="tls realm", charset="UTF-8"\r\n' in head, head
    length = int(head.lower().split(b"content-length:")[1].split(b"\r\n")[0])
    assert c.read_exact(length).endswith(b"\n")
    assert c.read_to_eof() == b""
    c.close()
    c = TLSClient(p)
    c.send(connect_head(echo.hostport, basic_auth(*ALICE)) + b"ping")
    assert c.read_until(b"\r\n\r\n") == OK_REPLY
    assert c.read_exact(4) == b"ping"
    c.close()


@pytest.fixture(params=["ecdsa", "rsa"])
def kind_tls_proxy(request, make_proxy, mode, tls_files, rsa_tls_files):
    p = make_proxy(mode, tls=tls_files if request.param == "ecdsa" else rsa_tls_files)
    p.kind = request.param
    return p


def client_ctx(cafile, version=None, ciphers=None):
    ctx = ssl.create_default_context(cafile=cafile)
    if version == "TLSv1.2":
        ctx.maximum_version = ssl.TLSVersion.TLSv1_2
    elif version == "TLSv1.3":
        ctx.minimum_version = ssl.TLSVersion.TLSv1_3
    elif version:
        ctx.set_ciphers("DEFAULT:@SECLEVEL=0")      # let OpenSSL 3 offer the old versions
        with warnings.catch_warnings():             # "TLSv1_1 is deprecated": that's the point
            warnings.simplefilter("ignore", DeprecationWarning)
            old = getattr(ssl.TLSVersion, version.replace(".", "_"))
            ctx.minimum_version = ctx.maximum_version = old
    if ciphers:
        ctx.set_ciphers(ciphers)
    return ctx


@pytest.mark.parametrize("version", ["TLSv1.2", "TLSv1.3"])
def test_tls_version_and_key_kind(kind_tls_proxy, echo, version):
    c = TLSClient(kind_tls_proxy, ctx=client_ctx(kind_tls_proxy.cafile, version))
    assert c.sock.version() == version
    cipher = c.sock.cipher()[0]
    assert "GCM" in cipher or "CHACHA20" in cipher, cipher
    if version == "TLSv1.2":
        assert cipher.startswith(f"ECDHE-{kind_tls_proxy.kind.upper()}-"), cipher
    c.send(connect_head(echo.hostport) + b"v")
    assert c.read_until(b"\r\n\r\n") == OK_REPLY
    assert c.read_exact(1) == b"v"
    c.send(b"x" * 70000)
    assert c.read_exact(70000) == b"x" * 70000
    c.close()
    assert kind_tls_proxy.log_for(c.port)["status"] == "200"


@pytest.mark.parametrize("version,ciphers", [
    ("TLSv1.1", None), ("TLSv1", None),
    ("TLSv1.2", "AES128-GCM-SHA256:AES256-GCM-SHA384"),           # no forward secrecy
    ("TLSv1.2", "ECDHE-ECDSA-AES128-SHA256:ECDHE-RSA-AES128-SHA256:"
                "ECDHE-ECDSA-AES128-SHA:ECDHE-RSA-AES128-SHA"),     # CBC
], ids=["tls1.1", "tls1.0", "static-rsa", "cbc"])
def test_tls_weak_offers_refused(kind_tls_proxy, echo, version, ciphers):
    """DESIGN §7: TLS 1.3/1.2 only, ECDHE with AES-GCM or ChaCha20-Poly1305."""
    try:
        ctx = client_ctx(kind_tls_proxy.cafile, version, ciphers)
    except ssl.SSLError as e:
        pytest.fail(f"this OpenSSL cannot offer {version} {ciphers}: {e}")
    with pytest.raises((ssl.SSLError, ConnectionResetError)) as info:
        c = TLSClient(kind_tls_proxy, ctx=ctx)
        c.close()
    # the server's alert, not this client giving up on its own
    assert "ALERT" in str(getattr(info.value, "reason", "")), repr(info.value)
    kind_tls_proxy.wait_log(lambda f: f.get("reason") == "tls-handshake")
    assert echo.accepted == 0


def test_tls_8mib_each_way_at_once(tls_proxy, make_target):
    """Both directions full at the same time through the TLS layer: neither
    may wait for the other, and every byte arrives (sha256)."""
    up, down = os.urandom(8 * MiB), os.urandom(8 * MiB)

    def handler(conn, server):
        sender = threading.Thread(target=conn.sendall, args=(down,), daemon=True)
        sender.start()
        h, got = hashlib.sha256(), 0
        while got < len(up):
            chunk = conn.recv(min(262144, len(up) - got))
            if not chunk:
                break
            h.update(chunk)
            got += len(chunk)
        sender.join(60)
        conn.sendall(h.hexdigest().encode())
    target = make_target(handler)
    c = TLSClient(tls_proxy)
    c.send(connect_head(target.hostport))
    assert c.read_until(b"\r\n\r\n") == OK_REPLY
    sock, got, sent, want = c.sock, bytearray(c.buf), 0, len(down) + 64
    view = memoryview(up)
    sock.setblocking(False)
    deadline = time.monotonic() + 60
    while len(got) < want:
        assert time.monotonic() < deadline, f"sent {sent}, received {len(got)} of {want}"
        if sent < len(up):
            try:
                sent += sock.send(view[sent:sent + 65536])
            except (ssl.SSLWantWriteError, ssl.SSLWantReadError):
                pass
        try:
            while len(got) < want:
                chunk = sock.recv(262144)
                assert chunk, f"EOF after {len(got)} of {want} bytes"
                got += chunk
        except (ssl.SSLWantReadError, ssl.SSLWantWriteError):
            pass
        select.select([sock], [sock] if sent < len(up) else [], [], 0.2)
    assert sent == len(up)
    assert hashlib.sha256(got[:len(down)]).digest() == hashlib.sha256(down).digest(), \
        "download corrupted"
    assert got[len(down):].decode() == hashlib.sha256(up).hexdigest(), "upload corrupted"
    c.close()
    f = tls_proxy.log_for(c.port, timeout=10)
    assert (f["status"], f["up"], f["down"]) == ("200", str(len(up)), str(want)), f


def test_plain_client_dropped_then_tls_client_served(tls_proxy, echo):
    c = Client(tls_proxy.host, tls_proxy.port)
    c.send(connect_head(echo.hostport) + b"plain bytes")
    assert c.end_state(5) in ("eof", "reset")
    assert b"HTTP/1.1" not in c.buf and b"plain bytes" not in c.buf, c.buf
    plain_port = c.port
    c.close()
    f = tls_proxy.log_for(plain_port)
    assert f.get("reason") == "tls-handshake" and f["target"] == "-", f["_raw"]
    t = TLSClient(tls_proxy)
    t.send(connect_head(echo.hostport) + b"after")
    assert t.read_until(b"\r\n\r\n") == OK_REPLY
    assert t.read_exact(5) == b"after"
    t.close()
    assert echo.accepted == 1


@pytest.fixture
def quick_tls_proxy(make_proxy, mode, tls_files):
    return make_proxy(mode, tls=tls_files, args=["--header-timeout", "1"])


def test_silent_client_dropped_after_header_timeout(quick_tls_proxy):
    c = Client(quick_tls_proxy.host, quick_tls_proxy.port)
    t0 = time.monotonic()
    state = c.end_state(12)
    elapsed = time.monotonic() - t0
    assert state in ("eof", "reset") and c.buf == b"", (state, c.buf)
    assert 0.7 < elapsed < 10, f"dropped after {elapsed:.2f}s with --header-timeout 1"
    c.close()
    f = quick_tls_proxy.log_for(c.port)
    assert f.get("reason") == "tls-handshake-timeout", f["_raw"]


def test_half_clienthello_dropped_after_header_timeout(quick_tls_proxy):
    """A client that stops in the middle of its ClientHello is a silent one."""
    c = Client(quick_tls_proxy.host, quick_tls_proxy.port)
    c.send(bytes.fromhex("160301020001"))       # a record header and a little more
    t0 = time.monotonic()
    assert c.end_state(12) in ("eof", "reset")
    assert 0.7 < time.monotonic() - t0 < 10
    c.close()
    assert quick_tls_proxy.log_for(c.port).get("reason") == "tls-handshake-timeout"


def test_tls_client_without_request_gets_408(quick_tls_proxy):
    c = TLSClient(quick_tls_proxy)
    t0 = time.monotonic()
    head = c.read_until(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 408 Request Timeout\r\n"), head
    assert time.monotonic() - t0 < 10
    c.close()
    assert quick_tls_proxy.log_for(c.port).get("reason") == "header-timeout"


@pytest.fixture(scope="module")
def bad_tls_files(tmp_path_factory, tls_files, rsa_tls_files):
    d = tmp_path_factory.mktemp("bad-tls")
    files = {"ec-cert": tls_files[0], "ec-key": tls_files[1],
             "rsa-cert": rsa_tls_files[0], "rsa-key": rsa_tls_files[1],
             "missing": d / "missing.pem", "empty": d / "empty.pem",
             "garbage": d / "garbage.pem", "encrypted-key": d / "encrypted.pem"}
    files["empty"].write_text("")
    files["garbage"].write_text("-----BEGIN CERTIFICATE-----\nbm90IGEgY2VydA==\n"
                                "-----END CERTIFICATE-----\n")
    subprocess.run(["openssl", "pkey", "-in", str(tls_files[1]), "-aes256", "-passout",
                    "pass:secret", "-out", str(files["encrypted-key"])],
                   check=True, capture_output=True, timeout=30)
    files["other-ec-key"] = d / "other.pem"  # the certificate's kind and size, not its key
    subprocess.run(["openssl", "genpkey", "-algorithm", "EC", "-pkeyopt",
                    "ec_paramgen_curve:P-256", "-out", str(files["other-ec-key"])],
                   check=True, capture_output=True, timeout=30)
    return files


# id -> (cert, key, the file the message must name)
BAD_TLS = {
    "cert-missing": ("missing", "ec-key", "missing"),
    "key-missing": ("ec-cert", "missing", "missing"),
    "cert-empty": ("empty", "ec-key", "empty"),
    "cert-garbage": ("garbage", "ec-key", "garbage"),
    "key-garbage": ("ec-cert", "garbage", "garbage"),
    "cert-is-a-key": ("ec-key", "ec-key", "ec-key"),
    "key-is-a-cert": ("ec-cert", "ec-cert", "ec-cert"),
    "key-encrypted": ("ec-cert", "encrypted-key", "encrypted-key"),
    "rsa-key-for-ec-cert": ("ec-cert", "rsa-key", "rsa-key"),
    "ec-key-for-rsa-cert": ("rsa-cert", "ec-key", "ec-key"),
    "key-of-another-cert": ("ec-cert", "other-ec-key", "other-ec-key"),
}


@pytest.mark.parametrize("cert,key,named", BAD_TLS.values(), ids=BAD_TLS.keys())
def test_bad_tls_files_exit_78(netfiles, bad_tls_files, cert, key, named):
    port = f"127.0.0.1:{free_port()}"
    r = run_tunneld(["--log", "stderr", "--listen", port, "--cert", str(bad_tls_files[cert]),
                     "--key", str(bad_tls_files[key])], netfiles)
    assert r.returncode == 78, (r.returncode, r.stderr)
    assert str(bad_tls_files[named]).encode() in r.stderr, r.stderr


@pytest.mark.parametrize("case", ["key-garbage", "rsa-key-for-ec-cert", "cert-missing"])
def test_inetd_bad_tls_files_exit_78_closed(netfiles, bad_tls_files, case):
    cert, key, named = BAD_TLS[case]
    client, proc = spawn_inetd(netfiles, ["--cert", str(bad_tls_files[cert]),
                                          "--key", str(bad_tls_files[key])])
    client.send(b"\x16\x03\x01\x00\x05hello")
    assert client.end_state(5) in ("eof", "reset")
    assert client.buf == b"", client.buf
    client.close()
    rc, err = finish(proc)
    assert rc == 78, err
    assert str(bad_tls_files[named]).encode() in err, err


@pytest.mark.parametrize("version", [ssl.TLSVersion.TLSv1_3, ssl.TLSVersion.TLSv1_2])
def test_inetd_key_of_another_cert_named_once_a_client_finds_the_signature_bad(
        netfiles, bad_tls_files, version):
    """In inetd mode every connection reads the files, and checking that the
    key belongs to the certificate costs as much as the handshake's own
    signature: a key of another kind or size is refused at once (above),
    one of another certificate when the client finds the signature bad. The
    handshake fails, tunneld names the key and exits 78."""
    key = bad_tls_files["other-ec-key"]
    client, proc = spawn_inetd(netfiles, ["--cert", str(bad_tls_files["ec-cert"]),
                                          "--key", str(key)])
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.minimum_version = ctx.maximum_version = version
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE  # the signature is checked all the same
    with pytest.raises(ssl.SSLError):
        ctx.wrap_socket(client.sock).close()
    client.close()
    rc, err = finish(proc)
    assert rc == 78, err
    assert f"{key}: the key does not belong to the certificate".encode() in err, err
    assert b"reason=tls-key-mismatch" in err, err


def test_inetd_handshake_a_client_refuses_is_no_key_mismatch(netfiles, tls_files):
    """A client that does not trust the certificate ends the handshake with
    an alert too: the pair is checked, found to belong, and the log says
    only that the handshake failed."""
    cert, key = tls_files
    client, proc = spawn_inetd(netfiles, ["--cert", str(cert), "--key", str(key)])
    ctx = ssl.create_default_context()  # no CA of ours: an unknown_ca alert
    ctx.check_hostname = False
    with pytest.raises(ssl.SSLError):
        ctx.wrap_socket(client.sock).close()
    client.close()
    rc, err = finish(proc)
    assert rc == 0, err
    assert b"reason=tls-handshake" in err and b"does not belong" not in err, err


def test_key_without_cert_64(netfiles, tls_files):
    r = run_tunneld(["--log", "stderr", "--listen", f"127.0.0.1:{free_port()}",
                     "--key", str(tls_files[1])], netfiles)
    assert r.returncode == 64, (r.returncode, r.stderr)


@pytest.fixture(scope="module")
def chain_files(tmp_path_factory):
    """A root CA, an intermediate CA and a leaf for good.test/127.0.0.1;
    fullchain.pem holds the leaf and the intermediate, as ACME clients write."""
    d = tmp_path_factory.mktemp("chain")

    def run(*args):
        subprocess.run(["openssl", *args], check=True, capture_output=True, timeout=60,
                       cwd=d)
    ca_ext, leaf_ext = d / "ca.ext", d / "leaf.ext"
    ca_ext.write_text("basicConstraints=critical,CA:TRUE\nkeyUsage=critical,keyCertSign\n"
                      "subjectKeyIdentifier=hash\nauthorityKeyIdentifier=keyid\n")
    leaf_ext.write_text("basicConstraints=CA:FALSE\nsubjectAltName=DNS:good.test,IP:127.0.0.1\n"
                        "extendedKeyUsage=serverAuth\n")
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    run("req", "-x509", *ec, "-keyout", "root.key", "-out", "root.pem", "-days", "2",
        "-subj", "/CN=tunneld test root", "-addext", "basicConstraints=critical,CA:TRUE",
        "-addext", "keyUsage=critical,keyCertSign")
    run("req", *ec, "-keyout", "int.key", "-out", "int.csr", "-subj", "/CN=tunneld test int")
    run("x509", "-req", "-in", "int.csr", "-CA", "root.pem", "-CAkey", "root.key",
        "-set_serial", "2", "-days", "2", "-extfile", "ca.ext", "-out", "int.pem")
    run("req", *ec, "-keyout", "leaf.key", "-out", "leaf.csr", "-subj", "/CN=good.test")
    run("x509", "-req", "-in", "leaf.csr", "-CA", "int.pem", "-CAkey", "int.key",
        "-set_serial", "3", "-days", "2", "-extfile", "leaf.ext", "-out", "leaf.pem")
    (d / "fullchain.pem").write_bytes((d / "leaf.pem").read_bytes() + (d / "int.pem").read_bytes())
    return d


def test_certificate_chain_is_sent(make_proxy, mode, chain_files, echo):
    """--cert is a chain: a client that trusts only the root verifies the
    leaf through the intermediate tunneld sends."""
    p = make_proxy(mode, args=["--cert", str(chain_files / "fullchain.pem"),
                               "--key", str(chain_files / "leaf.key")])
    p.cafile = str(chain_files / "root.pem")
    c = TLSClient(p)
    c.send(connect_head(echo.hostport) + b"chain")
    assert c.read_until(b"\r\n\r\n") == OK_REPLY
    assert c.read_exact(5) == b"chain"
    c.close()


@pytest.mark.parametrize("args", [["--cert", "{cert}", "--key", "{key}"],
                                  ["-c", "{cert}", "-k", "{key}"],
                                  ["--listen", "{listen}", "--cert", "{cert}", "--key", "{key}"]],
                         ids=["long", "short", "with-listen"])
def test_min_build_refuses_tls(tunneld_min, tls_files, args):
    args = [a.format(cert=tls_files[0], key=tls_files[1], listen=f"127.0.0.1:{free_port()}")
            for a in args]
    r = subprocess.run([tunneld_min, "--log", "stderr", *args], stdin=subprocess.DEVNULL,
                       capture_output=True, timeout=10, env=clean_env())
    assert r.returncode == 64, (r.returncode, r.stderr)
    assert b"without" in r.stderr and b"TLS" in r.stderr, r.stderr


# --------------------------------------------------------------------------
# Chromium's HTTPS proxy support

def chromium():
    for name in ("chromium", "chromium-browser"):
        path = shutil.which(name)
        if path:
            return path
    pytest.fail("chromium missing (Debian package chromium)")


def end_session(leader):
    """Kill, by pid, what is left of the process session we started."""
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                if os.getsid(int(entry)) == leader:
                    kill_pid(int(entry))
            except OSError:
                pass


def dump_dom(proxy, url, tmp_path, netfiles):
    """Headless Chromium through the https:// proxy: the DOM of url once it
    loaded (stdout), and its stderr."""
    cmd = [chromium(), f"--proxy-server=https://127.0.0.1:{proxy.port}",
           "--ignore-certificate-errors", "--headless", "--no-sandbox", "--disable-gpu",
           "--disable-quic", "--no-first-run", "--disable-background-networking",
           "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage",
           f"--user-data-dir={tmp_path / 'chromium'}", "--dump-dom", url]
    env = dict(clean_env(), HOME=str(tmp_path), XDG_CONFIG_HOME=str(tmp_path / "config"),
               XDG_CACHE_HOME=str(tmp_path / "cache"))
    proc = subprocess.Popen(netns_wrap(cmd, netfiles), stdin=subprocess.DEVNULL,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env,
                            start_new_session=True)
    try:
        out, err = proc.communicate(timeout=60)
    except subprocess.TimeoutExpired:
        end_session(proc.pid)
        out, err = proc.communicate(timeout=10)
        pytest.fail(f"chromium did not finish in 60 s: {err[-2000:]!r}")
    finally:
        end_session(proc.pid)
    assert proc.returncode == 0, err[-3000:]
    return out, err


def test_chromium_https_proxy(tls_proxy, https_target, tmp_path, netfiles):
    """Headless Chromium with --proxy-server=https://: it speaks TLS to
    tunneld, sends CONNECT good.test:PORT, and shows the page."""
    out, err = dump_dom(tls_proxy, f"https://good.test:{https_target.port}/", tmp_path, netfiles)
    assert HTTPS_BODY.rstrip(b"\n") in out and b"<pre" in out, (out, err[-3000:])
    f = tls_proxy.wait_log(lambda f: f.get("target") == f"good.test:{https_target.port}"
                           and f.get("status") == "200")
    assert f["addr"] == f"127.0.0.1:{https_target.port}", f
    assert any(isinstance(h, bytes) and h.startswith(b"GET / HTTP/1.1\r\n")
               and f"good.test:{https_target.port}".encode() in h
               for h in https_target.results), "the page request did not reach the target"
