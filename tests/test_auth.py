"""Basic authentication (DESIGN §5): --users, --realm, --hash-password; the
407 answer, the token's strict reading, the credential file's checks, the
log lines, `user` rules, and the build without the feature."""

import base64
import os
import re
import subprocess

import pytest

from conftest import (ALICE, HASH_KINDS, HTTPS_BODY, OK_REPLY, Client, assert_error_reply,
                      basic_auth, basic_token, binary, clean_env, connect_head, expect_error,
                      free_port,
                      htpasswd_hash, openssl_hash, parse_logfmt, run_tunneld, tunneld_hash,
                      wait_until)
from test_cli import finish, spawn_inetd

# Against a build without authentication (the all-off build runs the suite
# too) these are skipped; the all-off build's own refusals are tested at the
# end of this file, against tunneld-min.
pytestmark = pytest.mark.needs("auth")

# Users of the table tests, each with a password that tests something.
CAROL = ("carol", "pw:with:colon")           # a ':' in the password; padded token
DAVID = ("dävid", "pässwörd")                # UTF-8 name and password
ERIN = ("erin", "?ÿ>")                       # the token has '+' and '/'
FRANK = ("frank", b"sec\tret")               # a control character: never valid
GINA = ("gina", b"caf\xe9")                  # Latin-1, not UTF-8: never valid
BOB = ("bob", "hunter2-bob")


def users_text(*pairs, hasher=lambda pw: openssl_hash(pw, "-5")):
    return "".join(f"{u}:{hasher(pw)}\n" for u, pw in pairs)


@pytest.fixture(scope="module")
def table_users():
    """The credential file text of the table tests (SHA-256 crypt: quick)."""
    return users_text(ALICE, CAROL, DAVID, ERIN, FRANK, GINA, BOB)


def summary(proxy, port, timeout=5.0):
    """The connection's summary line (not its `auth failed` line)."""
    return proxy.wait_log(lambda f: f.get("client", "").endswith(f":{port}") and "status" in f,
                          timeout, f"summary for client port {port}")


def auth_failed_lines(proxy):
    return [line for line in proxy.log_text().split("\n") if "auth failed:" in line]


def challenge(realm="tunneld"):
    """The header expect_error wants on a 407 of the interface."""
    return {"Proxy-Authenticate": f'Basic realm="{realm}", charset="UTF-8"'}


CHALLENGE = challenge()


def expect_tunnel(proxy, head, payload=b"through"):
    c = Client(proxy.host, proxy.port)
    c.send(head)
    got = c.read_until(b"\r\n\r\n")
    assert got == OK_REPLY, got + bytes(c.buf)
    c.send(payload)
    assert c.read_exact(len(payload)) == payload
    c.close()
    return c.port


def curl(proxy_url, target, *extra, timeout=20):
    return subprocess.run(["curl", "-sS", "--max-time", "10", "-w", "\n%{http_connect}",
                           "--proxy", proxy_url, "--cacert", target.cafile, *extra,
                           f"https://good.test:{target.port}/"],
                          capture_output=True, timeout=timeout, env=clean_env())


# --------------------------------------------------------------------------
# 1. real clients, every kind of hash line

@pytest.mark.parametrize("kind", HASH_KINDS)
def test_curl_with_each_hash_kind(make_proxy, make_users, mode, https_target, alice_hashes,
                                  kind):
    p = make_proxy(mode, users=f"alice:{alice_hashes[kind]}\n")
    r = curl(f"http://127.0.0.1:{p.port}", https_target, "--proxy-user", "alice:secret")
    assert r.returncode == 0, r.stderr
    assert r.stdout == HTTPS_BODY + b"\n200", r.stdout
    line = p.wait_log(lambda f: f.get("status") == "200")
    assert line["user"] == "alice" and line["target"] == f"good.test:{https_target.port}", line
    assert "secret" not in p.log_text()


def test_curl_anyauth_reads_the_challenge(make_proxy, make_users, mode, https_target,
                                          alice_hashes):
    """curl --proxy-anyauth sends nothing first, reads Proxy-Authenticate,
    then retries with Basic: the challenge is one a client understands."""
    p = make_proxy(mode, users=f"alice:{alice_hashes['openssl-sha512']}\n")
    r = curl(f"http://127.0.0.1:{p.port}", https_target, "--proxy-user", "alice:secret",
             "--proxy-anyauth")
    assert r.returncode == 0, r.stderr
    assert r.stdout == HTTPS_BODY + b"\n200", r.stdout
    lines = p.log_lines()
    assert any(f.get("status") == "407" and f.get("reason") == "no-credentials" for f in lines), \
        p.log_text()
    p.wait_log(lambda f: f.get("status") == "200" and f.get("user") == "alice")


@pytest.mark.parametrize("creds", ["alice:wrong", "mallory:secret", None],
                         ids=["wrong-password", "unknown-user", "no-credentials"])
def test_curl_refused(make_proxy, make_users, mode, https_target, alice_hashes, creds):
    p = make_proxy(mode, users=f"alice:{alice_hashes['htpasswd-bcrypt-2y']}\n")
    extra = ["--proxy-user", creds] if creds else []
    r = curl(f"http://127.0.0.1:{p.port}", https_target, *extra)
    assert r.returncode != 0 and r.stdout.endswith(b"\n407"), (r.returncode, r.stdout, r.stderr)
    p.wait_log(lambda f: f.get("status") == "407")
    assert all(f.get("status") != "200" for f in p.log_lines()), p.log_text()


def test_credential_file_format(make_proxy, make_users, mode, echo, alice_hashes):
    """Comments, blank lines, CRLF, htpasswd's extra fields after the hash;
    several users each with their own hash kind."""
    text = (b"# tunneld users\r\n\r\n\n"
            + f"alice:{alice_hashes['htpasswd-bcrypt-2y']}\r\n".encode()
            + b"# carol below has two more fields, as htpasswd tools write\n"
            + f"carol:{openssl_hash(CAROL[1], '-6')}:Carol C:extra\n".encode()
            + f"{DAVID[0]}:{openssl_hash(DAVID[1], '-5')}\r\n".encode()
            + f"bob:{alice_hashes['tunneld-hash-password']}".encode())  # no final EOL
    p = make_proxy(mode, users=text)
    for user, pw in (ALICE, CAROL, DAVID, ("bob", "secret")):
        port = expect_tunnel(p, connect_head(echo.hostport, basic_auth(user, pw)))
        assert summary(p, port)["status"] == "200"
    # A comment line is not a user
    expect_error(p, connect_head(echo.hostport, basic_auth("# tunneld users", "secret")), 407,
                 CHALLENGE)


def test_whitespace_only_line_is_blank(make_proxy, make_users, echo, alice_hashes):
    """A line of spaces and tabs is a blank line, not a broken entry."""
    p = make_proxy("listen", users=f"alice:{alice_hashes['openssl-sha256']}\n   \n\t\n \r\n")
    expect_tunnel(p, connect_head(echo.hostport, basic_auth(*ALICE)))


def test_hash_password_output():
    r = tunneld_hash(b"secret\n")
    assert r.returncode == 0, r.stderr
    m = re.fullmatch(rb"\$5\$rounds=5000\$([./0-9A-Za-z]{16})\$([./0-9A-Za-z]{43})\n", r.stdout)
    assert m, r.stdout
    # the same hash by another implementation: SHA-256 crypt of "secret"
    r2 = subprocess.run(["openssl", "passwd", "-5", "-salt", m.group(1).decode(), "secret"],
                        capture_output=True, timeout=30, check=True)
    assert r2.stdout.strip().split(b"$")[-1] == m.group(2), (r.stdout, r2.stdout)
    assert b"secret" not in r.stdout + r.stderr
    # a new salt each time; no newline and CRLF read the same password
    others = [tunneld_hash(pw) for pw in (b"secret\n", b"secret", b"secret\r\n")]
    salts = {m.group(1)} | {o.stdout.split(b"$")[3] for o in others}
    assert len(salts) == 4, [o.stdout for o in others]
    for o in others:
        salt = o.stdout.split(b"$")[3].decode()
        r3 = subprocess.run(["openssl", "passwd", "-5", "-salt", salt, "secret"],
                            capture_output=True, timeout=30, check=True)
        assert o.stdout.strip().split(b"$")[-1] == r3.stdout.strip().split(b"$")[-1], o.stdout


@pytest.mark.parametrize("stdin", [b"", b"\n", b"\r\n"], ids=["nothing", "newline", "crlf"])
def test_hash_password_empty_exit_64(stdin):
    r = tunneld_hash(stdin)
    assert r.returncode == 64, (r.returncode, r.stdout, r.stderr)
    assert r.stdout == b"" and r.stderr.strip(), r


def test_hash_password_refuses_a_password_no_client_can_send():
    """A control character is never accepted in a Basic token (RFC 7617):
    hashing one would make a line that can never log in."""
    r = tunneld_hash(b"sec\tret\n")
    assert r.returncode == 64 and r.stdout == b"", (r.returncode, r.stdout, r.stderr)


def test_hash_password_long_password_whole(make_proxy, make_users, echo):
    """A 300-byte password: either refused (64), or the hash printed is the
    hash of all of it and logs in; never the hash of a cut-down password."""
    pw = "Long-" + "x" * 295
    r = tunneld_hash(pw.encode() + b"\n")
    if r.returncode == 64:
        return
    assert r.returncode == 0, r.stderr
    p = make_proxy("listen", users=f"alice:{r.stdout.decode().strip()}\n")
    c = Client(p.host, p.port)
    resp = c.request(connect_head(echo.hostport, basic_auth("alice", pw)))
    assert resp.status == 200, ("the printed hash does not accept the password it was given "
                                f"(cut short?): {resp}")
    c.close()


def test_long_password_logs_in(make_proxy, make_users, mode, echo):
    pw = "L" * 250      # `openssl passwd` itself cuts at 256
    p = make_proxy(mode, users=f"alice:{openssl_hash(pw, '-6')}\n")
    expect_tunnel(p, connect_head(echo.hostport, basic_auth("alice", pw)))
    expect_error(p, connect_head(echo.hostport, basic_auth("alice", pw[:-1])), 407, CHALLENGE)


# --------------------------------------------------------------------------
# 2. the token, byte by byte

TOKEN = basic_token(*ALICE)                    # YWxpY2U6c2VjcmV0: 16 chars, no padding
CAROL_TOKEN = basic_token(*CAROL)               # ends in "=="
ERIN_TOKEN = basic_token(*ERIN)
B64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"


def _noncanonical(token):
    """The same bytes with the bits the padding hides set: lenient decoders
    read it as the token itself."""
    body = token.rstrip("=")
    pad = len(token) - len(body)
    mask = {1: 3, 2: 15}[pad]
    last = B64.index(body[-1])
    assert last & mask == 0
    return body[:-1] + B64[last | 1] + "=" * pad


def _auth(value):
    return [f"Proxy-Authorization: {value}"]


# id -> (header lines, expected status, expected reason for a 407 or None)
ACCEPTED = {
    "basic": (_auth(f"Basic {TOKEN}"), 200),
    "scheme-lowercase": (_auth(f"basic {TOKEN}"), 200),
    "scheme-uppercase": (_auth(f"BASIC {TOKEN}"), 200),
    "scheme-mixed-case": (_auth(f"bAsIc {TOKEN}"), 200),
    "two-spaces": (_auth(f"Basic  {TOKEN}"), 200),
    "leading-and-trailing-ows": ([f"Proxy-Authorization: \t Basic {TOKEN} \t"], 200),
    "field-name-lowercase": ([f"proxy-authorization: Basic {TOKEN}"], 200),
    "field-name-uppercase": ([f"PROXY-AUTHORIZATION: Basic {TOKEN}"], 200),
    "password-with-colons": (_auth(f"Basic {CAROL_TOKEN}"), 200),
    "utf8-user-and-password": (_auth(f"Basic {basic_token(*DAVID)}"), 200),
    "token-with-plus-and-slash": (_auth(f"Basic {ERIN_TOKEN}"), 200),
    "among-other-fields": (["User-Agent: x", f"Proxy-Authorization: Basic {TOKEN}",
                            "Proxy-Connection: keep-alive"], 200),
}
REFUSED = {
    "wrong-password": (_auth(f"Basic {basic_token('alice', 'secreT')}"), "bad-credentials"),
    "password-prefix": (_auth(f"Basic {basic_token('alice', 'secre')}"), "bad-credentials"),
    "password-plus-byte": (_auth(f"Basic {basic_token('alice', 'secret!')}"),
                           "bad-credentials"),
    "empty-password": (_auth(f"Basic {basic_token('alice', '')}"), "bad-credentials"),
    "unknown-user": (_auth(f"Basic {basic_token('mallory', 'secret')}"), "bad-credentials"),
    "user-case-differs": (_auth(f"Basic {basic_token('Alice', 'secret')}"), "bad-credentials"),
    "empty-user": (_auth(f"Basic {basic_token('', 'secret')}"), "bad-credentials"),
    "no-colon": (_auth(f"Basic {base64.b64encode(b'alicesecret').decode()}"),
                 "bad-credentials"),
    "missing-header": ([], "no-credentials"),
    "authorization-not-proxy": ([f"Authorization: Basic {TOKEN}"], "no-credentials"),
    "empty-field": (["Proxy-Authorization:"], None),
    "scheme-only": (_auth("Basic"), "bad-credentials"),
    "scheme-and-space": (_auth("Basic "), "bad-credentials"),
    "no-space": (_auth(f"Basic{TOKEN}"), "bad-credentials"),
    "tab-not-space": (_auth(f"Basic\t{TOKEN}"), "bad-credentials"),
    "bearer": (_auth("Bearer x"), "bad-credentials"),
    "bearer-with-token": (_auth(f"Bearer {TOKEN}"), "bad-credentials"),
    "digest": (_auth('Digest username="alice", realm="tunneld"'), "bad-credentials"),
    "basicx-scheme": (_auth(f"Basicx {TOKEN}"), "bad-credentials"),
    "token-only": (_auth(TOKEN), "bad-credentials"),
    "token+=": (_auth(f"Basic {TOKEN}="), "bad-credentials"),
    "token+==": (_auth(f"Basic {TOKEN}=="), "bad-credentials"),
    "token+A": (_auth(f"Basic {TOKEN}A"), "bad-credentials"),
    "token+AA==": (_auth(f"Basic {TOKEN}AA=="), "bad-credentials"),   # decodes to a NUL
    "token+AAAA": (_auth(f"Basic {TOKEN}AAAA"), "bad-credentials"),
    "token+space+junk": (_auth(f"Basic {TOKEN} x"), "bad-credentials"),
    "token-twice-comma": (_auth(f"Basic {TOKEN}, Basic {TOKEN}"), "bad-credentials"),
    "space-inside-token": (_auth(f"Basic {TOKEN[:8]} {TOKEN[8:]}"), "bad-credentials"),
    "padding-inside": (_auth(f"Basic {TOKEN[:8]}=={TOKEN[8:]}"), "bad-credentials"),
    "padded-token-unpadded": (_auth(f"Basic {CAROL_TOKEN.rstrip('=')}"), "bad-credentials"),
    "padded-token-one-pad": (_auth(f"Basic {CAROL_TOKEN[:-1]}"), "bad-credentials"),
    "padded-token-extra-pad": (_auth(f"Basic {CAROL_TOKEN}="), "bad-credentials"),
    "padded-token-noncanonical": (_auth(f"Basic {_noncanonical(CAROL_TOKEN)}"),
                                  "bad-credentials"),
    "urlsafe-alphabet": (_auth(f"Basic {ERIN_TOKEN.replace('+', '-').replace('/', '_')}"),
                         "bad-credentials"),
    "control-char-in-password": (_auth(f"Basic {basic_token(*FRANK)}"), "bad-credentials"),
    "latin1-password": (_auth(f"Basic {basic_token(*GINA)}"), "bad-credentials"),
    "del-in-password": (_auth(f"Basic {basic_token('alice', 'secret' + chr(127))}"),
                        "bad-credentials"),
    "overlong-utf8-user": (_auth("Basic " + base64.b64encode(b"\xc0\xe1lice:secret").decode()),
                           "bad-credentials"),
    "nul-in-user": (_auth("Basic " + base64.b64encode(b"alice\0:secret").decode()),
                    "bad-credentials"),
}
for n in range(len(TOKEN)):                     # every proper prefix
    REFUSED[f"prefix-{n}"] = (_auth(f"Basic {TOKEN[:n]}"), None if n == 0 else "bad-credentials")
assert TOKEN.endswith("V0") and "=" not in TOKEN and CAROL_TOKEN.endswith("==")
assert "+" in ERIN_TOKEN and "/" in ERIN_TOKEN


@pytest.mark.parametrize("lines,status", ACCEPTED.values(), ids=ACCEPTED.keys())
def test_token_accepted(make_proxy, make_users, mode, echo, table_users, lines, status):
    p = make_proxy(mode, users=table_users)
    port = expect_tunnel(p, connect_head(echo.hostport, *lines))
    f = summary(p, port)
    assert f["status"] == "200" and f["user"] not in ("", "-"), f
    assert auth_failed_lines(p) == []


@pytest.mark.parametrize("lines,reason", REFUSED.values(), ids=REFUSED.keys())
def test_token_refused_407(make_proxy, make_users, mode, echo, table_users, lines, reason):
    p = make_proxy(mode, users=table_users)
    port = expect_error(p, connect_head(echo.hostport, *lines), 407, CHALLENGE, echo).port
    f = summary(p, port)
    assert f["status"] == "407", f
    if reason:
        assert f.get("reason") == reason, f
    assert f.get("addr") == "-", f"a refused client was connected somewhere: {f}"


def test_two_proxy_authorization_fields_400(make_proxy, make_users, mode, echo, table_users):
    p = make_proxy(mode, users=table_users)
    for lines in ([f"Proxy-Authorization: Basic {TOKEN}"] * 2,
                  [f"Proxy-Authorization: Basic {TOKEN}", "proxy-authorization: Bearer x"],
                  ["Proxy-Authorization: Bearer x", f"PROXY-Authorization: Basic {TOKEN}"]):
        c = Client(p.host, p.port)
        resp = c.request(connect_head(echo.hostport, *lines))
        port = c.port
        assert_error_reply(c, resp, 400)
        assert summary(p, port)["status"] == "400"
    assert echo.accepted == 0


def test_407_before_the_rules(make_proxy, make_users, mode, echo, table_users):
    """Without valid credentials a client learns nothing about the rules:
    a denied target is answered 407 too, and only then 403."""
    p = make_proxy(mode, users=table_users, acl="deny\n")
    expect_error(p, connect_head(echo.hostport), 407, CHALLENGE, echo)
    expect_error(p, connect_head(echo.hostport, basic_auth("alice", "nope")), 407, CHALLENGE, echo)
    c = Client(p.host, p.port)
    resp = c.request(connect_head(echo.hostport, basic_auth(*ALICE)))
    assert_error_reply(c, resp, 403)


def children_cpu(pid):
    """CPU seconds of pid's children that it has reaped (cutime + cstime)."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[13]) + int(fields[14])) / os.sysconf("SC_CLK_TCK")


def refusals_cpu(p, echo, user, rounds=4):
    """CPU seconds of the connection processes that refuse `rounds` wrong
    passwords for user (each reaped before the next request)."""
    t0 = children_cpu(p.pid)
    for _ in range(rounds):
        expect_error(p, connect_head(echo.hostport, basic_auth(user, "wrong")), 407, CHALLENGE)
        assert wait_until(lambda: not p.workers(), 10), "a connection process did not end"
    return children_cpu(p.pid) - t0


def test_unknown_user_costs_the_same_hash_work(make_proxy, make_users, echo):
    """A bcrypt cost-10 hash takes tens of milliseconds: an unknown user must
    cost no less work than a known one with a wrong password. Counted in CPU
    time of the connection processes (the listener reaps each one before the
    next request), which a busy machine does not inflate as it does the
    wall clock."""
    p = make_proxy("listen", users=f"alice:{htpasswd_hash('alice', 'secret', '-B', '-C', '10')}\n")
    known = refusals_cpu(p, echo, "alice")
    unknown = refusals_cpu(p, echo, "nobody-here")
    assert known > 0.04, f"4 bcrypt cost-10 checks took {known:.3f} s of CPU: is the hash checked?"
    assert unknown > known * 0.6, f"unknown user {unknown:.3f} s of CPU, known user {known:.3f} s"


def test_unknown_user_costs_the_costliest_hash(make_proxy, make_users, echo):
    """With hashes of mixed cost (a SHA-256 crypt line first, a bcrypt
    cost-10 one after), an unknown user costs what the costliest known one
    does, not the first line's: no timing tells a real name from another."""
    p = make_proxy("listen", users=f"fast:{openssl_hash('secret', '-5')}\n"
                   f"slow:{htpasswd_hash('slow', 'secret', '-B', '-C', '10')}\n")
    slow, fast, unknown = (refusals_cpu(p, echo, u) for u in ("slow", "fast", "nobody-here"))
    assert slow > 0.04 and slow > 3 * fast, f"slow {slow:.3f} s, fast {fast:.3f} s of CPU"
    assert unknown > slow * 0.6, f"unknown user {unknown:.3f} s of CPU, the costliest " \
                                 f"known one {slow:.3f} s"


# --------------------------------------------------------------------------
# the credential file's checks

def start_listen(users_path, netfiles, *extra):
    return run_tunneld(["--log", "stderr", "--listen", f"127.0.0.1:{free_port()}",
                        "--users", str(users_path), *extra], netfiles)


BAD_FILES = {
    # id -> (file text with {good} for a valid hash line of alice, bad line number)
    "des-htpasswd-d": ("# c\n\nalice:{des}\n", 3),
    "md5-crypt": ("alice:{md5}\n", 1),
    "apr1-htpasswd-m": ("bob:{good}\nalice:{apr1}\n", 2),
    "sha1-htpasswd-s": ("alice:{sha1}\n", 1),
    "clear-text": ("alice:secret\n", 1),
    "empty-hash": ("alice:\n", 1),
    "truncated-hash": ("alice:$6$abc\n", 1),
    "no-colon": ("alice:{good}\nbob\n", 2),
    "empty-user": (":{good}\n", 1),
    "user-listed-twice": ("alice:{good}\nbob:{good}\nalice:{good}\n", 3),
    "user-65-bytes": ("u" * 65 + ":{good}\n", 1),
    "control-char-in-user": ("al\x01ice:{good}\n", 1),
    "crlf-then-bad": ("# x\r\nalice:{good}\r\nbob:{md5}\r\n", 3),
}


@pytest.fixture(scope="module")
def refused_hashes():
    return {"des": htpasswd_hash("alice", "secret", "-d"),
            "md5": openssl_hash("secret", "-1"),
            "apr1": htpasswd_hash("alice", "secret", "-m"),
            "sha1": htpasswd_hash("alice", "secret", "-s"),
            "good": openssl_hash("secret", "-5")}


@pytest.mark.parametrize("text,line", BAD_FILES.values(), ids=BAD_FILES.keys())
def test_bad_credential_file_exit_78(make_users, netfiles, refused_hashes, text, line):
    hashes = refused_hashes
    assert not hashes["des"].startswith("$") and hashes["md5"].startswith("$1$")
    assert hashes["apr1"].startswith("$apr1$") and hashes["sha1"].startswith("{SHA}")
    path = make_users(text.format(**hashes))
    r = start_listen(path, netfiles)
    assert r.returncode == 78, (r.returncode, r.stderr)
    assert re.search(rb"%s:%d: \S" % (re.escape(str(path).encode()), line), r.stderr), r.stderr


@pytest.mark.parametrize("kind", ["missing", "nul-byte", "over-32k"])
def test_unreadable_or_oversized_file_exit_78(make_users, netfiles, refused_hashes, kind):
    good = refused_hashes["good"]
    if kind == "missing":
        path = make_users("")
        path.unlink()
    elif kind == "nul-byte":
        path = make_users(f"alice:{good}\n\0\n")
    else:
        path = make_users(f"alice:{good}\n" + "#" * 40000 + "\n")
    r = start_listen(path, netfiles)
    assert r.returncode == 78, (r.returncode, r.stderr)
    assert str(path).encode() in r.stderr, r.stderr


def test_limits_that_fit(make_proxy, make_users, echo, refused_hashes):
    """512 users, a 64-byte user name, a file just under 32 KiB: all read,
    and the last user of the file logs in."""
    good = refused_hashes["good"]
    long_name = "n" * 64
    filler = "".join(f"u{i}:$5$fakefakefake$fakefakefakefakefake\n" for i in range(510))
    head = f"{long_name}:{openssl_hash('pw-long', '-5')}\n"
    tail = f"last:{good}\n"
    text = head + filler + tail
    pad = 32 * 1024 - 200 - len(text)
    assert pad > 0
    text = head + filler + "#" * pad + "\n" + tail
    assert 32 * 1024 - 300 < len(text.encode()) < 32 * 1024 and text.count("\n") - 1 == 512
    p = make_proxy("listen", users=text)
    expect_tunnel(p, connect_head(echo.hostport, basic_auth("last", "secret")))
    port = expect_tunnel(p, connect_head(echo.hostport, basic_auth(long_name, "pw-long")))
    assert summary(p, port)["user"] == long_name


def test_513_users_refused(make_users, netfiles):
    text = "".join(f"u{i}:$5$fakefakefake$fakefakefakefakefake\n" for i in range(513))
    path = make_users(text)
    r = start_listen(path, netfiles)
    assert r.returncode == 78, (r.returncode, r.stderr)
    assert f"{path}:513:".encode() in r.stderr, r.stderr


def test_inetd_bad_file_500_and_exit_78(make_users, netfiles, refused_hashes):
    path = make_users(f"alice:{refused_hashes['good']}\nbob:{refused_hashes['md5']}\n")
    client, proc = spawn_inetd(netfiles, ["--users", str(path)])
    resp = client.request(connect_head("good.test:443", basic_auth(*ALICE)))
    assert_error_reply(client, resp, 500)
    rc, err = finish(proc)
    assert rc == 78, err
    assert f"{path}:2:".encode() in err, err


def test_inetd_mode_bad_file_answers_500(make_proxy, make_users, refused_hashes, echo):
    p = make_proxy("inetd", users=f"alice:{refused_hashes['des']}\n")
    c = Client(p.host, p.port)
    resp = c.request(connect_head(echo.hostport, basic_auth(*ALICE)))
    assert_error_reply(c, resp, 500)
    assert echo.accepted == 0


def test_inetd_reads_the_file_per_connection(make_proxy, make_users, echo, refused_hashes):
    path = make_users(f"alice:{refused_hashes['good']}\n")
    p = make_proxy("inetd", users=path)
    expect_error(p, connect_head(echo.hostport, basic_auth(*BOB)), 407, CHALLENGE)
    with open(path, "a") as f:
        f.write(f"bob:{openssl_hash(BOB[1], '-6')}\n")
    expect_tunnel(p, connect_head(echo.hostport, basic_auth(*BOB)))


# --------------------------------------------------------------------------
# --realm

@pytest.mark.parametrize("realm", ["My Proxy", "r" * 64, "x!#$%&'()*+,-./:;<=>?@[]^_`{|}~"],
                         ids=["space", "64-chars", "punctuation"])
def test_realm_in_challenge(make_proxy, make_users, mode, echo, refused_hashes, realm):
    p = make_proxy(mode, users=f"alice:{refused_hashes['good']}\n", args=["--realm", realm])
    expect_error(p, connect_head(echo.hostport), 407, challenge(realm), echo)


def test_short_options(make_proxy, make_users, echo, refused_hashes):
    path = make_users(f"alice:{refused_hashes['good']}\n")
    p = make_proxy("listen", args=["-u", str(path), "-r", "short"])
    expect_error(p, connect_head(echo.hostport), 407, challenge("short"), echo)
    expect_tunnel(p, connect_head(echo.hostport, basic_auth(*ALICE)))


@pytest.mark.parametrize("realm", ['a"b', "a\\b", "r" * 65, "caf\u00e9", "tab\there",
                                   "new\nline", "del\x7f"],
                         ids=["quote", "backslash", "65-chars", "non-ascii", "tab", "newline",
                              "del"])
def test_bad_realm_exit_64(make_users, netfiles, refused_hashes, realm):
    path = make_users(f"alice:{refused_hashes['good']}\n")
    r = start_listen(path, netfiles, "--realm", realm)
    assert r.returncode == 64, (r.returncode, r.stderr)
    assert b"--realm" in r.stderr, r.stderr


# --------------------------------------------------------------------------
# 3. the log

AUTH_FAILED = re.compile(r"auth failed: client=127\.0\.0\.1:(\d+) user=(\S*)$")


def test_log_success_and_failures(make_proxy, make_users, mode, echo, table_users):
    p = make_proxy(mode, users=table_users, args=["-v"])
    port_ok = expect_tunnel(p, connect_head(echo.hostport, basic_auth(*ALICE)))
    attempts = {  # client port -> (user logged, what the password was)
        expect_error(p, connect_head(echo.hostport, basic_auth("alice", "W4ong-pass:1")),
                     407, CHALLENGE).port:
            "alice",
        expect_error(p, connect_head(echo.hostport, basic_auth("carol", "W4ong-pass:2")),
                     407, CHALLENGE).port:
            "carol",
        expect_error(p, connect_head(echo.hostport, basic_auth("mallory", "W4ong-pass:3")),
                     407, CHALLENGE).port:
            "mallory",
    }
    port_none = expect_error(p, connect_head(echo.hostport), 407, CHALLENGE).port
    ok = summary(p, port_ok)
    assert ok["user"] == "alice" and ok["status"] == "200", ok
    for port, user in attempts.items():
        f = summary(p, port)
        assert (f["user"], f["status"], f.get("reason")) == (user, "407", "bad-credentials"), f
    f = summary(p, port_none)
    assert (f["user"], f["status"], f.get("reason")) == ("-", "407", "no-credentials"), f
    failed = [AUTH_FAILED.search(line) for line in auth_failed_lines(p)]
    assert all(failed), auth_failed_lines(p)
    assert {(int(m.group(1)), m.group(2)) for m in failed} == set(attempts.items()), \
        auth_failed_lines(p)
    assert len(failed) == len(attempts), "one `auth failed` line per failure, none without " \
        "credentials: " + repr(auth_failed_lines(p))
    log = p.log_text()
    for secret in ["secret", "W4ong", "pass:", basic_token(*ALICE),
                   basic_token("alice", "W4ong-pass:1")]:
        assert secret not in log, f"{secret!r} in the log:\n{log}"


@pytest.mark.parametrize("name,logged", [
    ('a b"c', "a%20b%22c"),
    ("x status=200", "x%20status%3D200"),
    ("dävid", "d%C3%A4vid"),
    ("o'neil\\", "o%27neil%5C"),
    ("Plain.name-1_2+3@example.org", "Plain.name-1_2+3@example.org"),
    ('"' * 64, "%22" * 64),
], ids=["space-quote", "forged-field", "utf8", "apostrophe-backslash", "allowed-set",
        "64-quotes"])
def test_log_escapes_user_name(make_proxy, make_users, mode, echo, table_users, name, logged):
    p = make_proxy(mode, users=table_users)
    port = expect_error(p, connect_head(echo.hostport, basic_auth(name, "pw")), 407,
                        CHALLENGE).port
    f = summary(p, port)
    assert f["user"] == logged, f["_raw"]
    assert f["status"] == "407" and f.get("reason") == "bad-credentials", f["_raw"]
    [line] = auth_failed_lines(p)
    assert AUTH_FAILED.search(line) and line.endswith(f" user={logged}"), line
    assert set(parse_logfmt(f["_raw"])) >= {"client", "user", "status"}
    assert name.encode() not in p.log_path.read_bytes() or name == logged


def test_log_name_with_control_char_cannot_forge_a_line(make_proxy, make_users, mode, echo,
                                                        table_users):
    """A name with a newline is no valid token (407); it must not appear as
    a log line of its own."""
    p = make_proxy(mode, users=table_users)
    port = expect_error(p, connect_head(
        echo.hostport, basic_auth("x\nclient=6.6.6.6:1 user=root status=200", "pw")), 407,
        CHALLENGE).port
    assert summary(p, port)["user"] == "-"
    assert "6.6.6.6" not in p.log_text(), p.log_text()


# --------------------------------------------------------------------------
# 4. `user` rules

def test_user_rule(make_proxy, make_users, mode, echo, table_users):
    acl = "allow user alice,carol to 127.0.0.0/8\ndeny\n"
    p = make_proxy(mode, users=table_users, acl=acl)
    for who in (ALICE, CAROL):
        port = expect_tunnel(p, connect_head(echo.hostport, basic_auth(*who)))
        assert summary(p, port)["user"] == who[0]
    accepted = echo.accepted
    c = Client(p.host, p.port)
    resp = c.request(connect_head(echo.hostport, basic_auth(*BOB)))
    port = c.port
    assert_error_reply(c, resp, 403)
    f = summary(p, port)
    assert (f["user"], f["status"], f.get("reason")) == ("bob", "403", "denied"), f
    assert echo.accepted == accepted
    assert auth_failed_lines(p) == [], "a valid password denied by a rule is no auth failure"


def test_user_rule_deny_one(make_proxy, make_users, mode, echo, table_users):
    acl = "deny user bob\nallow to 127.0.0.0/8\ndeny\n"
    p = make_proxy(mode, users=table_users, acl=acl)
    expect_tunnel(p, connect_head(echo.hostport, basic_auth(*ALICE)))
    c = Client(p.host, p.port)
    assert_error_reply(c, c.request(connect_head(echo.hostport, basic_auth(*BOB))), 403)


def test_user_rule_is_case_sensitive(make_proxy, make_users, echo, table_users):
    p = make_proxy("listen", users=table_users,
                   acl="allow user Alice,ALICE to 127.0.0.0/8\ndeny\n")
    c = Client(p.host, p.port)
    assert_error_reply(c, c.request(connect_head(echo.hostport, basic_auth(*ALICE))), 403)


def test_user_rule_never_holds_without_users(make_proxy, mode, echo):
    p = make_proxy(mode, acl="allow user alice to 127.0.0.0/8\ndeny\n")
    c = Client(p.host, p.port)
    assert_error_reply(c, c.request(connect_head(echo.hostport, basic_auth(*ALICE))), 403)


# --------------------------------------------------------------------------
# 7. the build without the feature

@pytest.mark.parametrize("args", [["--users", "{users}"], ["-u", "{users}"],
                                  ["--listen", "{listen}", "--users", "{users}"]],
                         ids=["users", "short", "with-listen"])
def test_min_build_refuses_users(tunneld_min, make_users, args):
    users = make_users("alice:" + openssl_hash("secret", "-5") + "\n")
    args = [a.format(users=users, listen=f"127.0.0.1:{free_port()}") for a in args]
    r = subprocess.run([tunneld_min, "--log", "stderr", *args], stdin=subprocess.DEVNULL,
                       capture_output=True, timeout=10, env=clean_env())
    assert r.returncode == 64, (r.returncode, r.stderr)
    assert b"without" in r.stderr and b"auth" in r.stderr.lower(), r.stderr


def test_min_build_refuses_hash_password(tunneld_min):
    r = tunneld_hash(b"secret\n", tunneld=tunneld_min)
    assert r.returncode == 64, (r.returncode, r.stdout, r.stderr)
    assert r.stdout == b"" and b"without" in r.stderr and b"auth" in r.stderr.lower(), r.stderr


@pytest.mark.needs("tls")
def test_full_build_has_the_options():
    """The help of the full build lists what tunneld-min refuses."""
    r = subprocess.run([binary(), "--help"], capture_output=True, timeout=10, env=clean_env())
    for opt in (b"--users", b"--realm", b"--hash-password", b"--cert", b"--key"):
        assert opt in r.stdout, opt
