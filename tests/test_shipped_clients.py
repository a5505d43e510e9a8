"""The client snippets of contrib/clients/, each run as written (but for
the proxy's address, the target and the password) by its real client
through tunneld: ssh with every ProxyCommand, apt, git, curl, a PAC file in
Chromium, proxychains4, elinks. And the quirks the snippets warn about, shown where
they can be: proxytunnel cuts a password at its first space, `nc -X connect
-P` asks for the password on a terminal only, an https:// proxy URL to a
tunneld without TLS stalls until --header-timeout, elinks ignores user:pass@
in its proxy setting.

A client that is not installed skips its test, naming its Debian package
(`make deps` installs them). Every client runs in the tests' mount
namespace (their resolver), with a deadline, and what it leaves behind is
ended by pid."""

import base64
import fcntl
import functools
import getpass
import hashlib
import http.server
import os
import pty
import re
import selectors
import shutil
import ssl
import subprocess
import termios
import threading
import time
from email.utils import formatdate

import pytest

from conftest import (ALICE, HTTPS_BODY, REPO, clean_env, end_server, free_port, listening,
                      netns_wrap, openssl_hash, wait_until)
from test_tls_proxy import chromium, end_session

CLIENTS = REPO / "contrib" / "clients"
USER, PASSWORD = ALICE
PACKAGES = {"ssh": "openssh-client", "ssh-keygen": "openssh-client", "sshd": "openssh-server",
            "nc": "netcat-openbsd", "corkscrew": "corkscrew", "proxytunnel": "proxytunnel",
            "connect-proxy": "connect-proxy", "proxychains4": "proxychains4", "git": "git",
            "apt-get": "apt", "dpkg-deb": "dpkg", "curl": "curl", "squid": "squid",
            "elinks": "elinks"}
# CA settings of the environment override the snippets' (git reads
# GIT_SSL_CAINFO after its config files).
CA_VARIABLES = ("GIT_SSL_CAINFO", "GIT_SSL_CAPATH", "CURL_CA_BUNDLE", "SSL_CERT_FILE",
                "SSL_CERT_DIR")


def need(*commands):
    path = os.environ.get("PATH", "") + ":/usr/sbin"
    missing = [c for c in commands if not shutil.which(c, path=path)]
    if missing:
        pytest.skip("not installed: " + ", ".join(
            f"{c} (Debian package {PACKAGES.get(c, c)})" for c in missing))


def derive(name, subs):
    """The snippet contrib/clients/NAME with each placeholder replaced; every
    placeholder must be there, so a snippet that changes fails here instead
    of testing something else."""
    text = (CLIENTS / name).read_text()
    for old, new in subs.items():
        assert old in text, f"{old!r} is not in contrib/clients/{name}"
        text = text.replace(old, new)
    return text


def commented(text, prefix):
    """The alternative lines a snippet shows in its comments: each line that
    starts with PREFIX, without it."""
    return [line[len(prefix):] for line in text.splitlines() if line.startswith(prefix)]


def client_env(home, **extra):
    env = {k: v for k, v in clean_env().items() if k not in CA_VARIABLES}
    env.update(HOME=str(home), SHELL="/bin/sh", **extra)
    return env


def run(cmd, netfiles, env, timeout=30, data=b"", cwd=None):
    """Run a client in the tests' mount namespace to its end or timeout
    seconds; whatever it started is ended. CompletedProcess, or
    TimeoutExpired raised."""
    proc = subprocess.Popen(netns_wrap(cmd, netfiles), stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, cwd=cwd,
                            start_new_session=True)
    try:
        out, err = proc.communicate(data, timeout=timeout)
    finally:
        end_session(proc.pid)
        if proc.poll() is None:
            proc.kill()
            proc.wait(5)
    return subprocess.CompletedProcess(cmd, proc.returncode, out, err)


@pytest.fixture(scope="module")
def users_text():
    return f"{USER}:{openssl_hash(PASSWORD)}\n"


@pytest.fixture
def home(tmp_path):
    h = tmp_path / "home"
    (h / ".ssh").mkdir(parents=True)
    return h


def private(path, text):
    path.write_text(text)
    path.chmod(0o600)
    return path


def tunneld_line(proxy, target, status="200"):
    return proxy.wait_log(lambda f: f.get("target") == target and f.get("status") == status,
                          what=f"{target} status={status}")


# --------------------------------------------------------------------------
# ssh: every ProxyCommand of ssh_config, to a throwaway sshd on loopback

class Sshd:
    def __init__(self, d, netfiles):
        need("sshd", "ssh", "ssh-keygen")
        self.key = d / "client_key"
        for key in (d / "host_key", self.key):
            subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)],
                           check=True, capture_output=True, timeout=30)
        (d / "authorized_keys").write_bytes((d / "client_key.pub").read_bytes())
        self.port = free_port()
        conf = d / "sshd_config"
        conf.write_text(f"Port {self.port}\nListenAddress 127.0.0.1\nHostKey {d}/host_key\n"
                        f"PidFile {d}/sshd.pid\nAuthorizedKeysFile {d}/authorized_keys\n"
                        "StrictModes no\nUsePAM no\nPasswordAuthentication no\n"
                        "KbdInteractiveAuthentication no\nPermitRootLogin prohibit-password\n"
                        "UseDNS no\nLogLevel ERROR\n")
        os.makedirs("/run/sshd", mode=0o755, exist_ok=True)      # privilege separation
        self.log = open(d / "sshd.log", "wb")
        self.proc = subprocess.Popen(netns_wrap(["/usr/sbin/sshd", "-D", "-e", "-f", str(conf)],
                                                netfiles),
                                     stdin=subprocess.DEVNULL, stdout=self.log, stderr=self.log,
                                     env=clean_env())
        if not wait_until(lambda: listening(self.port) or self.proc.poll() is not None, 10) \
                or self.proc.poll() is not None:
            self.stop()
            pytest.fail("sshd did not start: " + (d / "sshd.log").read_text())

    def stop(self):
        end_server(self.proc, 5)
        self.log.close()


@pytest.fixture(scope="module")
def sshd(tmp_path_factory, netfiles):
    s = Sshd(tmp_path_factory.mktemp("sshd"), netfiles)
    yield s
    s.stop()


def ssh_block(host):
    """The Host block HOST of ssh_config, as text."""
    text = (CLIENTS / "ssh_config").read_text()
    m = re.search(rf"^Host {re.escape(host)}\n(?:    .*\n)+", text, re.M)
    assert m, f"no Host {host} in contrib/clients/ssh_config"
    return m.group(0)


# Host block -> (the programs it runs, whether tunneld asks for a password)
SSH_HOSTS = {
    "work-tunnel": ((), True),
    "work-http": (("squid",), True),
    "work-nc": (("nc",), False),
    "work-corkscrew": (("corkscrew",), True),
    "work-proxytunnel": (("proxytunnel",), True),
    "work-connect-proxy": (("connect-proxy",), True),
}


def ssh_params():
    """The Host blocks, each marked with the features of tunneld it needs."""
    for host, (_, auth) in SSH_HOSTS.items():
        marks = [pytest.mark.needs("auth")] if auth else []
        if host == "work-http":
            marks.append(pytest.mark.needs("http-tunnel"))
        yield pytest.param(host, marks=marks)


# http: the snippet's own lines; https: its commented lines for a TLS tunneld
SCHEMES = ["http", pytest.param("https", marks=pytest.mark.needs("tls"))]


@pytest.mark.parametrize("host", ssh_params())
def test_ssh_proxycommand(host, sshd, make_proxy, make_users, users_text, home, tunnel_bin,
                          netfiles, request):
    """ssh -F with the snippet's Host block, running a remote echo."""
    programs, auth = SSH_HOSTS[host]
    need(*programs)
    args = ["--users", str(make_users(users_text))] if auth else []
    if host == "work-http":
        args.append("--http-tunnel=/t")
    proxy = make_proxy("listen", args=args)
    at = f"127.0.0.1:{proxy.port}"
    subs = {"router.lan:3128": at, "router.lan 3128": f"127.0.0.1 {proxy.port}",
            "server.example:8080": at}
    if host == "work-http":
        squid = request.getfixturevalue("squid")
        subs["proxy.corp:8080"] = f"127.0.0.1:{squid.port}"
    block = ssh_block(host).replace("ProxyCommand tunnel ", f"ProxyCommand {tunnel_bin} ")
    for old, new in subs.items():
        block = block.replace(old, new)
    assert not re.search(r"router\.lan|proxy\.corp|server\.example:", block), block
    config = home / "ssh_config"
    config.write_text(block)
    private(home / ".ssh" / "tunneld-password", PASSWORD + "\n")
    private(home / ".ssh" / "tunneld-auth", f"{USER}:{PASSWORD}\n")
    private(home / ".ssh" / "tunneld-wgetrc", f"proxy_user = {USER}\nproxy_passwd = {PASSWORD}\n")
    words = f"hello through {host}"
    r = run(["ssh", "-F", str(config), "-i", str(sshd.key), "-o", "IdentitiesOnly=yes",
             "-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=no",
             "-o", "UserKnownHostsFile=/dev/null", "-o", "LogLevel=ERROR",
             "-o", "HostName=127.0.0.1", "-p", str(sshd.port), "-l", getpass.getuser(),
             host, "echo", words], netfiles, client_env(home), timeout=30)
    assert r.returncode == 0, (r.returncode, r.stderr, proxy.log_text())
    assert r.stdout == words.encode() + b"\n"
    line = tunneld_line(proxy, f"127.0.0.1:{sshd.port}")
    assert line["user"] == (USER if auth else "-"), line


def converse(cmd, payload, env, timeout=10, on_start=None, **popen):
    """Start cmd, write payload to its stdin and read as many bytes back from
    its stdout (a client relaying to the echo target), then close its stdin;
    on_start(proc) runs first.
    (returncode, bytes read, stderr); every wait ends by the deadline."""
    proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, env=env, **popen)
    deadline = time.monotonic() + timeout
    got = b""
    try:
        if on_start:
            on_start(proc)
        proc.stdin.write(payload)
        proc.stdin.flush()
        with selectors.DefaultSelector() as sel:
            sel.register(proc.stdout, selectors.EVENT_READ)
            while len(got) < len(payload) and sel.select(max(0, deadline - time.monotonic())):
                chunk = os.read(proc.stdout.fileno(), 65536)
                if not chunk:
                    break
                got += chunk
        proc.stdin.close()
        proc.wait(max(0.1, deadline - time.monotonic()))
    except (subprocess.TimeoutExpired, BrokenPipeError):
        pass
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(5)
    return proc.returncode, got, proc.stderr.read()


@pytest.mark.needs("auth")
def test_proxytunnel_cuts_the_password_at_a_space(make_proxy, make_users, echo, home):
    """The snippet's -F file with a password holding a space sends only what
    comes before it (407); $PROXYPASS sends it whole."""
    need("proxytunnel")
    secret = "two words"
    proxy = make_proxy("listen", args=["--users", str(make_users(
        f"{USER}:{openssl_hash(secret)}\n"))])
    wgetrc = private(home / "wgetrc", f"proxy_user = {USER}\nproxy_passwd = {secret}\n")
    cmd = ["proxytunnel", "-q", "-p", f"127.0.0.1:{proxy.port}", "-d", echo.hostport]
    rc, got, err = converse([*cmd, "-F", str(wgetrc)], b"ping\n", client_env(home))
    assert got == b"" and rc != 0, (rc, got, err)
    line = tunneld_line(proxy, echo.hostport, "407")
    assert line["user"] == USER and line["reason"] == "bad-credentials", line
    rc, got, err = converse([*cmd, "-P", USER], b"ping\n", client_env(home, PROXYPASS=secret))
    assert got == b"ping\n", (rc, got, err)
    tunneld_line(proxy, echo.hostport, "200")


def controlling_tty(fd):
    def become_session_leader_on_it():
        os.setsid()
        fcntl.ioctl(fd, termios.TIOCSCTTY, 0)
    return become_session_leader_on_it


@pytest.mark.needs("auth")
def test_nc_password_from_a_terminal_only(make_proxy, make_users, users_text, echo, home):
    """`nc -X connect -P alice` sends the CONNECT without a password, and
    after the 407 asks for it on the terminal: without one it gives up; with
    one (a pty here) it works."""
    need("nc")
    proxy = make_proxy("listen", args=["--users", str(make_users(users_text))])
    cmd = ["nc", "-N", "-X", "connect", "-x", f"127.0.0.1:{proxy.port}", "-P", USER,
           "127.0.0.1", str(echo.port)]
    # TUNNEL_PASSWORD, a password file: nc has no way to be given one
    rc, got, err = converse(cmd, b"ping\n", client_env(home), start_new_session=True)
    assert rc != 0 and got == b"" and b"passphrase" in err, (rc, got, err)
    assert tunneld_line(proxy, echo.hostport, "407")["reason"] == "no-credentials"

    master, slave = pty.openpty()

    def answer_the_prompt(proc):
        os.close(slave)
        prompt = b""
        for _ in range(100):
            if b":" in prompt or not select_read(master, 10):
                break
            prompt += os.read(master, 1024)
        assert b":" in prompt, f"no password prompt on the terminal: {prompt!r}"
        os.write(master, PASSWORD.encode() + b"\n")
    try:
        rc, got, err = converse(cmd, b"ping\n", client_env(home), on_start=answer_the_prompt,
                                pass_fds=(slave,), preexec_fn=controlling_tty(slave))
    finally:
        os.close(master)
    assert got == b"ping\n" and rc == 0, (rc, got, err)
    assert tunneld_line(proxy, echo.hostport, "200")["user"] == USER


def select_read(fd, timeout):
    with selectors.DefaultSelector() as sel:
        sel.register(fd, selectors.EVENT_READ)
        return bool(sel.select(timeout))


# --------------------------------------------------------------------------
# apt and git: an HTTPS file server for good.test on loopback

class FileServer:
    """Files of a directory over HTTPS (the tests' good.test certificate),
    on 127.0.0.1, in a thread."""

    def __init__(self, root, cert, key):
        handler = functools.partial(QuietHandler, directory=str(root))
        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(cert, key)
        self.httpd.socket = ctx.wrap_socket(self.httpd.socket, server_side=True)
        self.port = self.httpd.server_address[1]
        self.url = f"https://good.test:{self.port}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, args=(0.1,), daemon=True)
        self.thread.start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(5)


class QuietHandler(http.server.SimpleHTTPRequestHandler):
    timeout = 10

    def log_message(self, *args):
        pass


@pytest.fixture
def file_server(tmp_path, tls_files):
    root = tmp_path / "www"
    root.mkdir()
    srv = FileServer(root, *tls_files)
    srv.root = root
    yield srv
    srv.close()


@pytest.fixture
def snippet_proxy(make_proxy, make_users, users_text, tls_files):
    """start(scheme, name, ca_placeholder, ca, more={}) -> (tunneld, text):
    for http a tunneld with --users and the snippet NAME for it
    (router.lan:3128); for https one with --cert too, and the snippet for it
    (router.lan:3129, the CA file's placeholder, the substitutions more)."""
    def start(scheme, name, ca_placeholder, ca, more=()):
        args = ["--users", str(make_users(users_text))]
        subs = {"PASSWORD": PASSWORD}
        if scheme == "https":
            args += ["--cert", str(tls_files[0]), "--key", str(tls_files[1])]
            subs.update({ca_placeholder: str(ca), **dict(more)})
        proxy = make_proxy("listen", args=args)
        subs[f"router.lan:{3128 if scheme == 'http' else 3129}"] = f"127.0.0.1:{proxy.port}"
        return proxy, derive(name, subs)
    return start


def apt_repository(root):
    """A flat repository in root/repo with one package, tunneld-hello."""
    repo, pkg = root / "repo", root / "pkg"
    (pkg / "DEBIAN").mkdir(parents=True)
    (pkg / "DEBIAN" / "control").write_text(
        "Package: tunneld-hello\nVersion: 1.0\nArchitecture: all\n"
        "Maintainer: tunneld tests <tests@example.invalid>\nDescription: a test package\n")
    repo.mkdir()
    deb = repo / "tunneld-hello_1.0_all.deb"
    subprocess.run(["dpkg-deb", "--root-owner-group", "-Zgzip", "--build", str(pkg), str(deb)],
                   check=True, capture_output=True, timeout=30)
    data = deb.read_bytes()
    packages = ((pkg / "DEBIAN" / "control").read_text().replace(
        "Description", f"Filename: ./{deb.name}\nSize: {len(data)}\n"
        f"SHA256: {hashlib.sha256(data).hexdigest()}\nDescription") + "\n").encode()
    (repo / "Packages").write_bytes(packages)
    (repo / "Release").write_text(
        f"Origin: tunneld-tests\nLabel: tunneld-tests\nDate: {formatdate(usegmt=True)}\n"
        f"SHA256:\n {hashlib.sha256(packages).hexdigest()} {len(packages)} Packages\n")


def apt_dirs(tmp_path, repo_url, cafile, snippet):
    """An APT_CONFIG that keeps apt to tmp_path, with the snippet as its one
    apt.conf.d file; the environment to run apt-get with."""
    d = tmp_path / "apt"
    for sub in ("conf.d", "lists/partial", "cache/archives/partial", "state"):
        (d / sub).mkdir(parents=True, exist_ok=True)
    (d / "status").write_text("")
    (d / "sources.list").write_text(f"deb [trusted=yes] {repo_url}/repo/ ./\n")
    (d / "conf.d" / "80tunneld").write_text(snippet)
    (d / "apt.conf").write_text(f"""\
Dir::Etc::main "/dev/null";
Dir::Etc::parts "{d}/conf.d";
Dir::Etc::sourcelist "{d}/sources.list";
Dir::Etc::sourceparts "{d}/no-sources.list.d";
Dir::State "{d}/state";
Dir::State::lists "{d}/lists";
Dir::State::status "{d}/status";
Dir::Cache "{d}/cache";
Acquire::https::good.test::CAInfo "{cafile}";
Acquire::Retries "0";
Acquire::Languages "none";
APT::Sandbox::User "root";
""")
    return client_env(tmp_path, APT_CONFIG=str(d / "apt.conf"))


@pytest.mark.needs("auth")
@pytest.mark.parametrize("scheme", SCHEMES)
def test_apt_through_tunneld(scheme, snippet_proxy, tls_files, file_server, tmp_path, netfiles):
    """apt-get update and apt-get download of an https:// source through the
    snippet's proxy URL; https: the commented lines, to a tunneld with
    --cert, the proxy's CA named for its host."""
    need("apt-get", "dpkg-deb")
    apt_repository(file_server.root)
    proxy, snippet = snippet_proxy(scheme, "apt.conf", "/etc/apt/router.pem", tls_files[0],
                                   {"router.lan::": "127.0.0.1::"})
    if scheme == "https":
        snippet = "\n".join(commented(snippet, "//   ")) + "\n"
        assert "https://" in snippet and "CAInfo" in snippet, snippet
    env = apt_dirs(tmp_path, file_server.url, tls_files[0], snippet)
    for args in (["update"], ["download", "tunneld-hello"]):
        r = run(["apt-get", "-q", *args], netfiles, env, timeout=20, cwd=tmp_path)
        assert r.returncode == 0 and b"W:" not in r.stderr and b"E:" not in r.stderr, \
            (args, r.stdout, r.stderr, proxy.log_text())
    assert (tmp_path / "tunneld-hello_1.0_all.deb").read_bytes() == \
        (file_server.root / "repo" / "tunneld-hello_1.0_all.deb").read_bytes()
    assert tunneld_line(proxy, f"good.test:{file_server.port}")["user"] == USER


def bare_repository(root):
    """root/r.git, a repository with one commit, for the dumb HTTP protocol."""
    src = root.parent / "src"
    git = ["git", "-c", "user.name=tests", "-c", "user.email=tests@example.invalid"]
    subprocess.run(["git", "init", "-q", str(src)], check=True, timeout=30)
    (src / "hello").write_text("hello through tunneld\n")
    subprocess.run([*git, "-C", str(src), "add", "hello"], check=True, timeout=30)
    subprocess.run([*git, "-C", str(src), "commit", "-q", "-m", "hello"], check=True, timeout=30)
    subprocess.run(["git", "clone", "-q", "--bare", str(src), str(root / "r.git")], check=True,
                   timeout=30)
    subprocess.run(["git", "-C", str(root / "r.git"), "update-server-info"], check=True,
                   timeout=30)


def git_clone(file_server, home, netfiles, timeout=20):
    return run(["git", "-c", f"http.sslCAInfo={home / 'ca.pem'}", "clone", "-q",
                f"{file_server.url}/r.git", str(home / "clone")], netfiles, client_env(home),
               timeout=timeout)


@pytest.mark.needs("auth")
@pytest.mark.parametrize("scheme", SCHEMES)
def test_git_clone_through_tunneld(scheme, snippet_proxy, tls_files, file_server, home, netfiles):
    """git clone of an https:// remote with the snippet as ~/.gitconfig;
    https: its commented lines, to a tunneld with --cert."""
    need("git")
    bare_repository(file_server.root)
    shutil.copy(tls_files[0], home / "ca.pem")
    proxy, config = snippet_proxy(scheme, "gitconfig", "/home/alice/.config/router.pem",
                                  home / "ca.pem")
    if scheme == "https":
        config = "[http]\n" + "".join(f"\t{line}\n" for line in commented(config, "#   "))
        assert "https://" in config and "proxySSLCAInfo" in config, config
    (home / ".gitconfig").write_text(config)
    r = git_clone(file_server, home, netfiles)
    assert r.returncode == 0, (r.stderr, proxy.log_text())
    assert (home / "clone" / "hello").read_text() == "hello through tunneld\n"
    assert tunneld_line(proxy, f"good.test:{file_server.port}")["user"] == USER


@pytest.mark.needs("auth")
def test_https_proxy_url_to_a_plain_tunneld_fails_at_once(make_proxy, make_users, users_text,
                                                          tls_files, file_server, home, netfiles):
    """The mistake the apt and git snippets warn of: an https:// proxy URL
    for a tunneld without --cert. The ClientHello's first byte cannot begin a
    request line, so tunneld answers 400 at once instead of waiting out
    --header-timeout (60 s here: git would hang that long before)."""
    need("git")
    bare_repository(file_server.root)
    shutil.copy(tls_files[0], home / "ca.pem")
    proxy = make_proxy("listen", args=["--users", str(make_users(users_text)),
                                       "--header-timeout", "60"])
    (home / ".gitconfig").write_text(
        f"[http]\n\tproxy = https://{USER}:{PASSWORD}@127.0.0.1:{proxy.port}\n")
    start = time.monotonic()
    r = git_clone(file_server, home, netfiles, timeout=90)
    took = time.monotonic() - start
    assert r.returncode != 0 and took < 30, (took, r.stderr)
    line = proxy.wait_log(lambda f: f.get("reason") == "tls-on-plain-port", what="tls-on-plain-port")
    assert line["status"] == "400", line


# --------------------------------------------------------------------------
# curl, proxychains4, a PAC file in Chromium

@pytest.mark.needs("auth")
@pytest.mark.parametrize("scheme", SCHEMES)
def test_curlrc(scheme, snippet_proxy, tls_files, https_target, home, netfiles):
    """curl with the snippet as ~/.curlrc; https: its commented lines
    uncommented, to a tunneld with --cert."""
    need("curl")
    proxy, rc = snippet_proxy(scheme, "curlrc", "/home/alice/.config/router.pem", tls_files[0])
    if scheme == "https":
        rc = "\n".join(line for line in rc.splitlines() if not line.startswith("proxy = ")) \
            .replace("\n#proxy", "\nproxy") + "\n"
    (home / ".curlrc").write_text(rc)
    r = run(["curl", "-sS", "--max-time", "10", "--cacert", https_target.cafile,
             f"https://good.test:{https_target.port}/"], netfiles, client_env(home))
    assert r.returncode == 0, (r.stderr, proxy.log_text())
    assert r.stdout == HTTPS_BODY
    assert tunneld_line(proxy, f"good.test:{https_target.port}")["user"] == USER


@pytest.mark.needs("auth")
def test_proxychains4(make_proxy, make_users, users_text, https_target, home, netfiles):
    """curl under proxychains4 with the snippet: its connect() to good.test
    (a 224.x address from proxy_dns) becomes a CONNECT good.test:PORT."""
    need("proxychains4", "curl")
    proxy = make_proxy("listen", args=["--users", str(make_users(users_text))])
    conf = home / "proxychains4.conf"
    conf.write_text(derive("proxychains4.conf", {"192.168.1.1 3128": f"127.0.0.1 {proxy.port}",
                                                 "PASSWORD": PASSWORD}))
    r = run(["proxychains4", "-f", str(conf), "curl", "-q", "-sS", "--max-time", "10",
             "--cacert", https_target.cafile, f"https://good.test:{https_target.port}/"],
            netfiles, client_env(home))
    assert r.returncode == 0, (r.stderr, proxy.log_text())
    assert r.stdout == HTTPS_BODY
    assert tunneld_line(proxy, f"good.test:{https_target.port}")["user"] == USER


@pytest.mark.parametrize("host", ["good.test", "127.0.0.1"])
def test_pac_file_in_chromium(host, make_proxy, https_target, tmp_path, netfiles):
    """Headless Chromium evaluates proxy.pac (as a data: URL) and loads an
    https:// page through the tunneld it names; a loopback page it loads
    directly, without asking the PAC file (the quirk proxy.pac states)."""
    proxy = make_proxy("listen")
    pac = derive("proxy.pac", {"router.lan:3128": f"127.0.0.1:{proxy.port}"})
    url = "data:application/x-ns-proxy-autoconfig;base64," + base64.b64encode(pac.encode()).decode()
    cmd = [chromium(), f"--proxy-pac-url={url}", "--ignore-certificate-errors", "--headless",
           "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
           "--disable-background-networking", "--disable-component-update", "--disable-sync",
           "--disable-dev-shm-usage", f"--user-data-dir={tmp_path / 'chromium'}", "--dump-dom",
           f"https://{host}:{https_target.port}/"]
    env = dict(client_env(tmp_path), XDG_CONFIG_HOME=str(tmp_path / "config"),
               XDG_CACHE_HOME=str(tmp_path / "cache"))
    r = run(cmd, netfiles, env, timeout=60)
    assert r.returncode == 0, r.stderr[-3000:]
    assert HTTPS_BODY.rstrip(b"\n") in r.stdout, (r.stdout, r.stderr[-3000:])
    if host == "good.test":
        tunneld_line(proxy, f"good.test:{https_target.port}")
    else:
        time.sleep(0.5)     # a tunnel's line is written as it ends, and chromium has ended
        # (Chromium's own background requests to Google names do reach it.)
        assert not [f for f in proxy.log_lines() if f.get("target", "").startswith("127.")], \
            proxy.log_text()


@pytest.mark.needs("auth")
@pytest.mark.parametrize("where", ["user-options", "in-host"])
def test_elinks(where, make_proxy, make_users, users_text, https_target, home, netfiles):
    """elinks with the snippet as ~/.elinks/elinks.conf gets the page; with
    the credentials as user:pass@ in the host setting instead it sends none
    (tunneld logs a 407) and shows the 407 page."""
    need("elinks")
    proxy = make_proxy("listen", args=["--users", str(make_users(users_text))])
    at = f"127.0.0.1:{proxy.port}"
    conf = derive("elinks.conf", {"router.lan:3128": at, "PASSWORD": PASSWORD})
    if where == "in-host":
        conf = "".join(line + "\n" for line in conf.splitlines() if "proxy.user" not in line
                       and "proxy.passwd" not in line)
        conf = conf.replace(f'"{at}"', f'"{USER}:{PASSWORD}@{at}"')
    (home / ".elinks").mkdir()
    (home / ".elinks" / "elinks.conf").write_text(conf)
    r = run(["elinks", "-eval", "set connection.ssl.cert_verify = 0", "-dump",
             f"https://good.test:{https_target.port}/"], netfiles, client_env(home), timeout=20)
    target = f"good.test:{https_target.port}"
    if where == "in-host":
        assert b"Proxy authentication required" in r.stdout, (r.stdout, r.stderr)
        assert tunneld_line(proxy, target, "407")["reason"] == "no-credentials"
    else:
        assert r.returncode == 0 and HTTPS_BODY.strip() in r.stdout, (r.stdout, r.stderr)
        assert tunneld_line(proxy, target)["user"] == USER
