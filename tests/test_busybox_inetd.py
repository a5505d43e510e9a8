"""busybox inetd running contrib/inetd.conf, as on a router whose busybox has
inetd, with busybox syslogd receiving tunneld's log lines.

busybox is built from Debian's source package with only these two applets
(busybox.mk: `make check` builds it first; the fixture here runs `make -s
build/busybox/busybox` too, for a test run alone). None of Debian's busybox
builds has inetd.

inetd.conf is contrib's, changed as test_launchers changes it for
openbsd-inetd and nothing else: the binary, the rules file and the port
(3128 -> 127.0.0.1:PORT). busybox inetd runs each tunneld as the line's
user, nobody, with the client's socket on fds 0, 1 and 2, so tunneld logs
to syslog: the two connections' lines must arrive in busybox syslogd's
file, and the clients must get the target's bytes and nothing else.

Both daemons run in the foreground (inetd -f, syslogd -n -O FILE), each in
a private mount namespace with a private /run and /dev (test_launchers'
private_ns), where /dev/log is a link to a socket path in the shared
directory: busybox syslogd follows the link, binds its socket there and
makes it writable by all, and the machine's /dev/log is never touched.
"""

import os
import stat
import subprocess

import pytest

from conftest import REPO, end_server, free_port, wait_until
from test_launchers import (CONTRIB, common_subst, drive, launch, private_ns,  # noqa: F401
                            share, sub_once, tunneld_lines)

BUSYBOX = REPO / "build" / "busybox" / "busybox"


@pytest.fixture(scope="module")
def busybox():
    """build/busybox/busybox, made (or brought up to date) by busybox.mk."""
    # Not the flags of a make that runs this test (make check -j4: its
    # jobserver is not ours).
    env = {k: v for k, v in os.environ.items() if k not in ("MAKEFLAGS", "MFLAGS", "MAKELEVEL")}
    r = subprocess.run(["make", "-s", "-C", str(REPO), "build/busybox/busybox"],
                       stdin=subprocess.DEVNULL, capture_output=True, timeout=600, env=env)
    if r.returncode != 0 or not os.access(BUSYBOX, os.X_OK):
        pytest.fail(f"`make build/busybox/busybox` failed (rc={r.returncode}):\n"
                    f"{r.stdout.decode(errors='replace')}{r.stderr.decode(errors='replace')}")
    return str(BUSYBOX)


class Syslogd:
    """busybox syslogd -n -O FILE in a private namespace whose /dev/log
    links to share.log_path, where it binds its socket."""

    def __init__(self, busybox, share, netfiles):
        # Not the test's own datagram socket, which Share binds: busybox
        # syslogd removes whatever is at the path and binds its own.
        share.log_path = share.dir / "busybox-log.sock"
        self.path = share.dir / "messages"
        self.out_path = share.dir / "syslogd.out"
        self.outf = open(self.out_path, "ab")
        self.proc = subprocess.Popen(
            private_ns([busybox, "syslogd", "-n", "-O", str(self.path)], share, netfiles),
            stdin=subprocess.DEVNULL, stdout=self.outf, stderr=subprocess.STDOUT)

        def bound():
            try:
                return stat.S_ISSOCK(os.stat(share.log_path).st_mode)
            except FileNotFoundError:
                return False
        up = wait_until(lambda: bound() or self.proc.poll() is not None, 10)
        if not up or self.proc.poll() is not None:
            self.stop()
            pytest.fail(f"busybox syslogd did not start: rc={self.proc.returncode} "
                        f"{self.out_path.read_text(errors='replace')}")

    def text(self):
        try:
            return self.path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def stop(self):
        end_server(self.proc, grace=5)
        self.outf.close()


@pytest.fixture
def syslogd(busybox, share, netfiles):
    s = Syslogd(busybox, share, netfiles)
    yield s
    s.stop()


def test_busybox_inetd(busybox, syslogd, launch, share, make_target):
    port = free_port()
    conf = (CONTRIB / "inetd.conf").read_text()
    conf = sub_once(r"^3128(?=\s)", f"127.0.0.1:{port}", conf, "inetd.conf")
    conf = common_subst(conf, share, "inetd.conf")
    (share.dir / "inetd.conf").write_text(conf)
    # -f: foreground; inetd's own messages go to syslog, as on a router
    launcher = launch("busybox-inetd", [busybox, "inetd", "-f", str(share.dir / "inetd.conf")],
                      port)
    pid1, pid2 = drive(launcher, make_target, syslogd.text)

    # Two lines of tunneld and no other (a warning would be a third), each
    # whole at LOG_DAEMON/LOG_INFO: drive() read the byte counts at their
    # ends, which busybox syslogd's 256-byte read buffer would cut.
    lines = [line for line in syslogd.text().splitlines() if "tunneld[" in line]
    assert len(lines) == 2, lines
    assert [pid for pid, _ in tunneld_lines("\n".join(lines))] == [pid1, pid2], lines
    for line in lines:
        assert " daemon.info tunneld[" in line, line
    # busybox inetd complained of nothing (a server it could not start, a
    # user it could not find).
    assert "inetd[" not in syslogd.text(), syslogd.text()
    assert launcher.output() == "", launcher.output()
