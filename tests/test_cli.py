"""The command line (DESIGN §3): help, version, usage errors (64), config
errors (78, naming FILE:LINE), and inetd mode driven directly as tcpserver
would, with its exit status."""

import os
import socket
import subprocess

import pytest

from conftest import (Client, assert_error_reply, binary, clean_env, connect_head, free_port,
                      listening, netns_wrap, open_tunnel, run_tunneld, wait_until)


def test_help(netfiles):
    r = run_tunneld(["--help"], netfiles)
    assert r.returncode == 0, r.stderr
    assert b"--listen" in r.stdout


def test_version(netfiles):
    r = run_tunneld(["--version"], netfiles)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip()


USAGE_ERRORS = {
    "unknown-long": ["--bogus"],
    "unknown-short": ["-Z"],
    "missing-argument": ["--idle-timeout"],
    "positional": ["extra"],
    "timeout-zero": ["--idle-timeout", "0"],
    "timeout-word": ["--idle-timeout", "x"],
    "timeout-negative": ["--connect-timeout", "-1"],
    "timeout-suffix": ["--header-timeout", "1x"],
    "timeout-empty": ["--header-timeout", ""],
    "timeout-overflow": ["--idle-timeout", "99999999999999999999"],
    "max-conns-word": ["--max-conns", "abc"],
    "max-conns-zero": ["--max-conns", "0"],
    "listen-port-too-big": ["--listen", "127.0.0.1:99999"],
    "listen-port-word": ["--listen", "127.0.0.1:x"],
    "log-unknown-sink": ["--log", "nowhere"],
    "node-upper-case": ["--http-tunnel", "--node", "N1"],
    "node-dot": ["--http-tunnel", "--node", "n.1"],
    "node-empty": ["--http-tunnel", "--node", ""],
    "node-too-long": ["--http-tunnel", "--node", "n" * 33],
    "node-without-tunnel": ["--node", "n1"],
}


@pytest.mark.parametrize("args", USAGE_ERRORS.values(), ids=USAGE_ERRORS.keys())
def test_usage_error_exit_64(netfiles, args):
    log = [] if "--log" in args else ["--log", "stderr"]
    r = run_tunneld(log + args, netfiles)
    assert r.returncode == 64, (r.returncode, r.stderr)
    assert r.stderr.strip(), "no message on stderr"


BAD_RULES = {
    "unknown-condition": ("allow frm 10.0.0.1\n", 1),
    "unknown-action": ("allow to 127.0.0.1\nbogus\n", 2),
    "port-zero": ("# comment\n\nallow port 0\n", 3),
    "port-too-big": ("allow port 65536\n", 1),
    "port-range-junk": ("deny\nallow port 10-x\n", 2),
    "port-missing": ("deny port\n", 1),
    "to-missing": ("allow to\n", 1),
    "prefix-too-long-v4": ("allow to 10.0.0.0/33\n", 1),
    "prefix-too-long-v6": ("allow to ::1/129\n", 1),
    "from-double-prefix": ("allow from 10.0.0.0/8/8\n", 1),
    "from-name": ("allow from example.com\n", 1),
}


@pytest.mark.parametrize("text,line", BAD_RULES.values(), ids=BAD_RULES.keys())
def test_bad_rules_exit_78_names_file_and_line(tmp_path, netfiles, text, line):
    acl = tmp_path / "rules"
    acl.write_text(text)
    r = run_tunneld(["--log", "stderr", "--listen", f"127.0.0.1:{free_port()}",
                     "--acl", str(acl)], netfiles)
    assert r.returncode == 78, (r.returncode, r.stderr)
    assert f"{acl}:{line}".encode() in r.stderr, r.stderr


def test_missing_rules_file_exit_78(tmp_path, netfiles):
    acl = tmp_path / "absent"
    r = run_tunneld(["--log", "stderr", "--listen", f"127.0.0.1:{free_port()}",
                     "--acl", str(acl)], netfiles)
    assert r.returncode == 78, (r.returncode, r.stderr)
    assert str(acl).encode() in r.stderr


@pytest.mark.parametrize("opt", ["--acl", pytest.param("--users", marks=pytest.mark.needs("auth"))])
def test_a_fifo_for_a_file_is_refused_not_waited_on(tmp_path, netfiles, opt):
    """A FIFO with no writer named as a file: tunneld says so and exits 78
    instead of waiting in open() for a writer that never comes."""
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    r = run_tunneld(["--log", "stderr", "--listen", f"127.0.0.1:{free_port()}",
                     opt, str(fifo)], netfiles, timeout=20)
    assert r.returncode == 78, (r.returncode, r.stderr)
    assert str(fifo).encode() in r.stderr, r.stderr


def spawn_inetd(netfiles, args, stderr_is_client=False):
    """Accept one connection and hand it to tunneld on fd 0/1, as tcpserver
    does (or on fd 0/1/2 with the default syslog, as busybox inetd does);
    return (client, Popen)."""
    lsock = socket.create_server(("127.0.0.1", 0))
    client = Client("127.0.0.1", lsock.getsockname()[1])
    conn, _ = lsock.accept()
    lsock.close()
    log = [] if stderr_is_client else ["--log", "stderr"]
    proc = subprocess.Popen(netns_wrap([binary(), *log, *args], netfiles),
                            stdin=conn.fileno(), stdout=conn.fileno(),
                            stderr=conn.fileno() if stderr_is_client else subprocess.PIPE,
                            env=clean_env())
    conn.close()
    return client, proc


def finish(proc):
    try:
        _, err = proc.communicate(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(3)
    return proc.returncode, err


def test_inetd_broken_rules_500_and_exit_78(tmp_path, netfiles):
    acl = tmp_path / "rules"
    acl.write_text("allow to 127.0.0.0/8\nallow frm 10.0.0.1\n")
    client, proc = spawn_inetd(netfiles, ["--acl", str(acl)])
    resp = client.request(connect_head("good.test:443"))
    assert_error_reply(client, resp, 500)
    rc, err = finish(proc)
    assert rc == 78, err
    assert f"{acl}:2".encode() in err


def test_inetd_session_exit_0(tmp_path, netfiles, echo):
    acl = tmp_path / "rules"
    acl.write_text("allow to 127.0.0.0/8\ndeny\n")
    client, proc = spawn_inetd(netfiles, ["--acl", str(acl)])
    client.send(connect_head(echo.hostport))
    assert client.read_until(b"\r\n\r\n") == b"HTTP/1.1 200 Connection established\r\n\r\n"
    client.send(b"inetd")
    assert client.read_exact(5) == b"inetd"
    client.sock.shutdown(socket.SHUT_WR)
    assert client.read_to_eof() == b""
    rc, err = finish(proc)
    assert rc == 0, err
    assert b"status=200" in err and b"up=5 down=5" in err, err


@pytest.mark.parametrize("kind", ["long-file", "many-rules"])
def test_oversized_rules_refused_or_applied_whole(tmp_path, netfiles, echo, kind):
    """A rules file beyond tunneld's limits is refused at start (78, naming
    the file) or applied whole: never cut short so that its last rule vanishes."""
    if kind == "long-file":
        filler = "".join(f"# comment line {i:05d} ................................\n"
                         for i in range(1000))
    else:
        filler = "".join(f"deny to 10.{i // 256}.{i % 256}.0/24\n" for i in range(1000))
    acl = tmp_path / "rules"
    acl.write_text(filler + "allow to 127.0.0.1\ndeny\n")
    port = free_port()
    proc = subprocess.Popen(netns_wrap([binary(), "--log", "stderr", "--listen",
                                        f"127.0.0.1:{port}", "--acl", str(acl)], netfiles),
                            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, env=clean_env())
    try:
        wait_until(lambda: listening(port) or proc.poll() is not None, 5)
        if proc.poll() is not None:
            err = proc.stderr.read()
            assert proc.returncode == 78 and str(acl).encode() in err, (proc.returncode, err)
        else:
            open_tunnel(None, echo.hostport, via=("127.0.0.1", port)).close()
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(3)


@pytest.mark.parametrize("log", [[], ["--log", "stderr"]], ids=["syslog", "log-stderr"])
@pytest.mark.parametrize("case", ["tunnel", "bad-request", "broken-rules"])
def test_inetd_stderr_on_socket_only_protocol_reaches_client(tmp_path, netfiles, echo, case, log):
    """Under busybox inetd fd 2 is the client too: with the default --log
    syslog (and no syslog daemon here), and even when told --log stderr, no
    diagnostic may reach the client."""
    acl = tmp_path / "rules"
    acl.write_text("allow to 127.0.0.0/8\ndeny\n" if case != "broken-rules" else "allow frm x\n")
    client, proc = spawn_inetd(netfiles, [*log, "-v", "--acl", str(acl)], stderr_is_client=True)
    if case == "tunnel":
        client.send(connect_head(echo.hostport) + b"only this")
        client.sock.shutdown(socket.SHUT_WR)
        assert client.read_to_eof() == b"HTTP/1.1 200 Connection established\r\n\r\nonly this"
    else:
        head = connect_head("good.test:0" if case == "bad-request" else "good.test:443")
        resp = client.request(head)
        assert_error_reply(client, resp, 400 if case == "bad-request" else 500)
    rc, _ = finish(proc)
    assert rc == (78 if case == "broken-rules" else 0)

