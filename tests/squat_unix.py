"""A hostile local user's squatter, for tests/test_session_attacks.py.

    squat_unix.py NAME SECONDS

Binds the abstract unix socket "\\0" + NAME (SOCK_SEQPACKET, as a session
holder does), listens, and for SECONDS records on stdout, one JSON object a
line, everything that comes: each connection, each message's length and
first bytes, each descriptor passed (SCM_RIGHTS; closed at once, so that a
client whose socket was stolen sees it end rather than wait). The first line
is {"event": "bound"} or {"event": "bind-failed", ...}; the last is
{"event": "end", ...} with the totals. Meant to run as another uid
(setpriv --reuid=65534 ...); it never answers anything.
"""

import array
import json
import os
import select
import socket
import sys
import time

MAX_FDS = 16


def say(**event):
    sys.stdout.write(json.dumps(event) + "\n")
    sys.stdout.flush()


def main():
    name, seconds = sys.argv[1], float(sys.argv[2])
    deadline = time.monotonic() + min(seconds, 30.0)
    lsock = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    try:
        lsock.bind("\0" + name)
        lsock.listen(16)
    except OSError as e:
        say(event="bind-failed", error=str(e), uid=os.getuid())
        return 1
    say(event="bound", name=name, uid=os.getuid())
    lsock.setblocking(False)
    conns, nbytes, nfds = 0, 0, 0
    for _ in range(1000):                       # bounded in count and in time
        left = deadline - time.monotonic()
        if left <= 0:
            break
        ready, _, _ = select.select([lsock], [], [], left)
        if not ready:
            continue
        try:
            conn, _ = lsock.accept()
        except BlockingIOError:
            continue
        conns += 1
        say(event="conn")
        conn.settimeout(1.0)
        for _ in range(16):
            try:
                data, anc, _flags, _addr = conn.recvmsg(
                    1 << 16, socket.CMSG_SPACE(MAX_FDS * array.array("i").itemsize))
            except (socket.timeout, TimeoutError, OSError):
                break
            fds = array.array("i")
            for level, kind, payload in anc:
                if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
                    fds.frombytes(payload[:len(payload) - len(payload) % fds.itemsize])
            for fd in fds:
                os.close(fd)
            if not data and not fds:
                break
            nbytes += len(data)
            nfds += len(fds)
            say(event="msg", len=len(data), fds=len(fds),
                head=data[:400].decode("latin-1"))
        conn.close()
    lsock.close()
    say(event="end", conns=conns, bytes=nbytes, fds=nfds)
    return 0


if __name__ == "__main__":
    sys.exit(main())
