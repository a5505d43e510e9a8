"""Fixtures and hooks for the tunneld end-to-end tests; the helpers live in
support/ by concern (procs, servers, clients, auth) and dnsserver.py, and
are re-exported here for `from conftest import ...`.

Every tunneld runs inside a private mount namespace whose /etc/resolv.conf
points at tests/dnsserver.py on 127.0.0.77, so no test ever asks the
machine's resolver.  Servers listen on 127.0.0.0/8 and ::1 only; every wait
has a deadline; every process started here is ended by its pid.
"""

import os
import shutil
import ssl
import tempfile
from pathlib import Path

import pytest

import dnsserver
from support.auth import ALICE, HASH_KINDS, htpasswd_hash, make_hash, openssl_hash, tunneld_hash
from support.clients import (OK_REPLY, Client, Response, _bytes, assert_error_reply, at_once,
                             basic_auth, basic_token, connect_head, expect_error, open_tunnel)
from support.procs import (ALL_MODES, EXIT_USAGE, LOOPBACK_ACL, MODES, REPO, TESTS, TUNNEL_PATH,
                           Proxy, alive, binary, binary_features, binary_problem, children,
                           clean_env, descendants, end_server, ended_after, fd_count, free_port,
                           hostport, idle_spares, kill_pid, listening, runs_tunneld, needs_v6, netns_wrap, parse_logfmt,
                           procs_with_stderr, run_tunneld, wait_until)
from support.servers import (HTTPS_BODY, MiB, Squid, TargetServer, accept_loop, echo_handler,
                             greet_shut_handler, hash_handler, https_handler, ok_answer,
                             read_head, read_request, recv_all, self_signed, source_sink)

# Re-exported for the test files' `from conftest import ...`.
__all__ = ["ALICE", "HASH_KINDS", "htpasswd_hash", "make_hash", "openssl_hash", "tunneld_hash",
           "OK_REPLY", "Client", "Response", "_bytes", "assert_error_reply", "at_once",
           "basic_auth", "basic_token", "connect_head", "expect_error", "open_tunnel",
           "ALL_MODES", "EXIT_USAGE", "LOOPBACK_ACL", "MODES", "REPO", "TESTS", "TUNNEL_PATH",
           "Proxy", "alive", "binary", "ended_after", "binary_features", "binary_problem",
           "children", "clean_env", "descendants", "end_server", "fd_count", "free_port",
           "hostport", "kill_pid", "listening", "needs_v6", "netns_wrap", "parse_logfmt",
           "procs_with_stderr", "idle_spares", "runs_tunneld", "run_tunneld", "wait_until", "HTTPS_BODY", "MiB", "Squid",
           "TargetServer", "echo_handler", "greet_shut_handler", "hash_handler", "https_handler",
           "ok_answer", "read_head", "read_request", "accept_loop", "recv_all", "self_signed", "source_sink"]


# --------------------------------------------------------------------------
# hooks: no binary, no run; a test marked needs("tls") is skipped against a
# binary built without TLS (the all-off build runs the suite too).

def pytest_sessionstart(session):
    """No binary: stop at once with a failure, not a wall of errors or skips."""
    problem = binary_problem()
    if problem:
        pytest.exit("FAILED: " + problem, returncode=1)


def pytest_configure(config):
    config.addinivalue_line("markers", "needs(feature): skip unless the binary has it")
    # A make the tests run is a build of its own, not a job of the make
    # that runs the tests (make check): no jobserver, no inherited flags.
    for k in ("MAKEFLAGS", "MFLAGS", "MAKELEVEL", "MAKEOVERRIDES"):
        os.environ.pop(k, None)


def pytest_runtest_setup(item):
    for mark in item.iter_markers("needs"):
        if mark.args[0] not in binary_features():
            pytest.skip(f"built without {mark.args[0]}")


# --------------------------------------------------------------------------
# the test resolver and tunneld processes

@pytest.fixture(scope="session", autouse=True)
def dns():
    try:
        srv = dnsserver.DNSServer().start()
    except OSError as e:
        pytest.exit(f"FAILED: the test DNS server cannot bind {dnsserver.HOST}:53 ({e}): "
                    "another test run uses it; give this one TUNNELD_TEST_DNS=127.0.0.N",
                    returncode=1)
    yield srv
    srv.stop()


@pytest.fixture(scope="session")
def netfiles(tmp_path_factory):
    d = tmp_path_factory.mktemp("net")
    resolv, hosts = d / "resolv.conf", d / "hosts"
    resolv.write_text(f"nameserver {dnsserver.HOST}\noptions timeout:1 attempts:1\n")
    hosts.write_text("127.0.0.1 localhost\n::1 localhost ip6-localhost\n")
    return resolv, hosts


@pytest.fixture(params=MODES)
def mode(request):
    return request.param


@pytest.fixture
def make_proxy(tmp_path, netfiles, make_users):
    """Factory: make_proxy(mode, acl=..., args=[...], host=..., wrap=[...],
    port=..., tls=(cert, key), tunnel=PATH, users=text or path) -> Proxy;
    each is stopped at the end."""
    def start(mode="listen", acl=LOOPBACK_ACL, args=(), host="127.0.0.1", wrap=(), port=None,
              users=None, **kw):
        if isinstance(users, (str, bytes)):
            users = make_users(users)
        return Proxy(tmp_path, netfiles, mode, acl, args, host, wrap, port, users=users, **kw)
    with ended_after(start) as make:
        yield make


@pytest.fixture
def proxy(make_proxy, mode):
    """A tunneld in listen and inetd mode with the loopback rules."""
    return make_proxy(mode)


@pytest.fixture(params=ALL_MODES)
def any_mode(request):
    return request.param


@pytest.fixture
def any_proxy(make_proxy, any_mode):
    """A tunneld in each of the three ways it is started, loopback rules."""
    return make_proxy(any_mode)


@pytest.fixture
def tproxy(make_proxy, mode):
    """tunneld with --http-tunnel=/t, listen and inetd mode, loopback rules."""
    return make_proxy(mode, tunnel=TUNNEL_PATH)


@pytest.fixture
def tls_proxy(make_proxy, mode, tls_files):
    """tunneld with --cert/--key (tls_files), listen and inetd mode."""
    return make_proxy(mode, tls=tls_files)


@pytest.fixture(scope="session")
def tunneld_min():
    """The build with every feature off ($TUNNELD_MIN or <repo>/tunneld-min)."""
    path = Path(os.environ.get("TUNNELD_MIN") or REPO / "tunneld-min").resolve()
    if not (path.is_file() and os.access(path, os.X_OK)):
        pytest.fail(f"{path} missing: run `make tunneld-min` at the repository root "
                    "(or set TUNNELD_MIN)")
    return str(path)


# --------------------------------------------------------------------------
# target servers and TLS key material

@pytest.fixture
def make_target():
    """Factory: make_target(handler=echo_handler, host=..., port=...) ->
    TargetServer; each is closed at the end."""
    with ended_after(TargetServer, TargetServer.close) as make:
        yield make


@pytest.fixture
def echo(make_target):
    return make_target(echo_handler)


@pytest.fixture(scope="session")
def tls_files(tmp_path_factory):
    """A self-signed P-256 certificate for good.test and 127.0.0.1: (cert, key)."""
    return self_signed(tmp_path_factory.mktemp("tls"),
                       ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1"])


@pytest.fixture(scope="session")
def rsa_tls_files(tmp_path_factory):
    """Like tls_files, with an RSA 2048 key."""
    return self_signed(tmp_path_factory.mktemp("tls-rsa"), ["-newkey", "rsa:2048"])


@pytest.fixture(scope="session")
def https_target(tls_files):
    cert, key = tls_files
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(cert, key)
    srv = TargetServer(https_handler(ctx))
    srv.cafile = str(cert)
    yield srv
    srv.close()


# --------------------------------------------------------------------------
# authentication (DESIGN §5)

@pytest.fixture(scope="session")
def alice_hashes():
    """kind -> a hash of ALICE's password, for each of HASH_KINDS."""
    return {kind: make_hash(kind, ALICE[1]) for kind in HASH_KINDS}


@pytest.fixture
def make_users(tmp_path):
    """Factory: make_users(text or bytes) -> path of a new credential file."""
    n = [0]

    def make(content):
        n[0] += 1
        path = tmp_path / f"users-{n[0]}"
        path.write_bytes(_bytes(content))
        return path
    return make


# --------------------------------------------------------------------------
# the GET/POST tunnel (DESIGN §8): the client binary and squid, the proxy
# between that forbids CONNECT

@pytest.fixture(scope="session")
def tunnel_bin():
    """The client ($TUNNEL or <repo>/tunnel)."""
    path = Path(os.environ.get("TUNNEL") or REPO / "tunnel").resolve()
    if not (path.is_file() and os.access(path, os.X_OK)):
        pytest.fail(f"{path} missing: run `make tunnel` at the repository root (or set TUNNEL)")
    return str(path)


@pytest.fixture(scope="module")
def squid(netfiles):
    # Not under pytest's tmp dir: its parents are closed to user proxy.
    d = Path(tempfile.mkdtemp(prefix="tunneld-squid-"))
    try:
        s = Squid(d, netfiles)
        yield s
        s.stop()
    finally:
        shutil.rmtree(d, ignore_errors=True)
