"""A hostile local user's flooder, for tests/test_session_attacks.py.

    squat_flood.py NAME SECONDS

Connects, non-blocking and without pause, to the abstract unix socket
"\\0" + NAME (SOCK_SEQPACKET, a session holder's name) for SECONDS (at most
30), or until SIGTERM, keeping up to 200 of the connections open, so that the holder's
backlog is as full as another user can make it: a connect that finds it
full is tried again at once on the same socket, so that a place the holder
frees is taken the next moment. It sends nothing. Records
on stdout, one JSON object a line: first {"event": "start", "uid": ...},
last {"event": "end", "ok": N, "eagain": N, "other": N, "error": "..."}
(connects that succeeded, that found the backlog full, that failed
otherwise, and the first such failure). Meant to run as another uid
(setpriv --reuid=65534 ...).
"""

import os
import signal
import socket
import sys
import time

from squat_unix import say

HELD = 200
stopping = False


def on_term(sig, frame):
    global stopping
    stopping = True


def main():
    name, seconds = sys.argv[1], float(sys.argv[2])
    deadline = time.monotonic() + min(seconds, 30.0)
    signal.signal(signal.SIGTERM, on_term)
    say(event="start", name=name, uid=os.getuid())
    held, ok, eagain, other, error = [], 0, 0, 0, None
    s = None
    for i in range(10 ** 7):                    # bounded in count and in time
        if stopping or (i % 64 == 0 and time.monotonic() >= deadline):
            break
        if s is None:
            s = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
            s.setblocking(False)
        try:
            s.connect("\0" + name)
        except BlockingIOError:
            eagain += 1                         # the same socket again, at once
            continue
        except OSError as e:
            other += 1
            error = error or str(e)
            s.close()
            s = None
            continue
        ok += 1
        held.append(s)
        s = None
        if len(held) > HELD:
            held.pop(0).close()
    for s in held + ([s] if s else []):
        s.close()
    say(event="end", ok=ok, eagain=eagain, other=other, error=error)
    return 0


if __name__ == "__main__":
    sys.exit(main())
