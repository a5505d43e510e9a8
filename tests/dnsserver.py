"""A tiny authoritative DNS server for the end-to-end tests (stdlib only).

It answers A and AAAA queries from a fixed table over UDP and TCP, so that
tunneld, started in a private mount namespace whose /etc/resolv.conf names
this server, never asks the machine's real resolver.

Run standalone for debugging:  python3 tests/dnsserver.py [HOST [PORT]]
Two test runs at once need two addresses: TUNNELD_TEST_DNS=127.0.0.78.
Under pytest-xdist, worker gwN adds N to the address's second byte
(127.0.0.77: gw0 127.0.0.77, gw1 127.1.0.77), so the workers of one run,
and runs with different addresses, never share one.
"""

import ipaddress
import os
import socket
import socketserver
import struct
import sys
import threading

def _host():
    base = ipaddress.IPv4Address(os.environ.get("TUNNELD_TEST_DNS", "127.0.0.77"))
    worker = os.environ.get("PYTEST_XDIST_WORKER", "gw0")
    return str(base + (int(worker[2:]) << 16))


HOST = _host()
PORT = 53

NXDOMAIN = "NXDOMAIN"   # answer "no such name"
DROP = "DROP"           # never answer (a resolver timeout)

# name -> {"A": [...], "AAAA": [...]} or NXDOMAIN / DROP.  Names not listed
# get NXDOMAIN.  Names are matched case-insensitively, without trailing dot.
ZONE = {
    "good.test": {"A": ["127.0.0.1"]},
    "sub.good.test": {"A": ["127.0.0.1"]},
    "notgood.test": {"A": ["127.0.0.1"]},
    "other.test": {"A": ["127.0.0.1"]},
    "v6.test": {"AAAA": ["::1"]},
    "mapped.test": {"AAAA": ["::ffff:127.0.0.1"]},
    "rebind.test": {"A": ["127.0.0.1"]},
    # one address a rule denies, one it allows
    "mixed.test": {"A": ["127.0.0.2", "127.0.0.1"]},
    # what a real resolver answers for "localhost." (RFC 6761)
    "localhost": {"A": ["127.0.0.1"], "AAAA": ["::1"]},
    # test_connect.py: ::1 sorts first; sixteen addresses for one name
    "v6-first.test": {"AAAA": ["::1"], "A": ["127.0.0.1"]},
    "silent16.test": {"A": [f"127.0.0.{i}" for i in range(10, 26)]},
    # over UDP only the TC bit: the answer comes over TCP
    "tcp.test": {"A": ["127.0.0.1"], "truncate": True},
    # over UDP a forged answer (wrong id, 127.0.0.3) comes first
    "forged.test": {"A": ["127.0.0.1"], "forge": True},
    "nx.test": NXDOMAIN,
    "slow.test": DROP,
}

QTYPES = {1: ("A", socket.AF_INET), 28: ("AAAA", socket.AF_INET6)}
MAX_MESSAGE = 4096


def parse_question(msg):
    """Return (qname, qtype, end offset of the question) or None if malformed."""
    if len(msg) < 12 or struct.unpack("!H", msg[4:6])[0] != 1:
        return None
    labels, off = [], 12
    for _ in range(128):                      # bounded: at most 127 labels
        if off >= len(msg):
            return None
        n = msg[off]
        off += 1
        if n == 0:
            break
        if n > 63 or off + n > len(msg):      # no compression in a question
            return None
        labels.append(msg[off:off + n].decode("ascii", "replace"))
        off += n
    else:
        return None
    if off + 4 > len(msg):
        return None
    qtype = struct.unpack("!H", msg[off:off + 2])[0]
    return ".".join(labels).lower(), qtype, off + 4


def answer(msg, zone, tcp=False):
    """Build the reply to the query msg, or None to stay silent."""
    q = parse_question(msg)
    if q is None:
        if len(msg) < 12:
            return None
        # FORMERR, echoing the id and no question
        return msg[:2] + struct.pack("!HHHHH", 0x8001, 0, 0, 0, 0)
    qname, qtype, qend = q
    entry = zone.get(qname.rstrip("."), NXDOMAIN)
    if entry == DROP:
        return None
    rd = struct.unpack("!H", msg[2:4])[0] & 0x0100
    rcode, answers = 0, []
    if entry == NXDOMAIN:
        rcode = 3
    elif entry.get("truncate") and not tcp:
        flags = 0x8000 | 0x0400 | 0x0200 | rd | 0x0080     # QR AA TC RD RA
        return msg[:2] + struct.pack("!HHHHH", flags, 1, 0, 0, 0) + msg[12:qend]
    elif qtype in QTYPES:
        kind, family = QTYPES[qtype]
        for addr in entry.get(kind, []):
            rdata = socket.inet_pton(family, str(ipaddress.ip_address(addr)))
            answers.append(struct.pack("!HHHIH", 0xC00C, qtype, 1, 5, len(rdata)) + rdata)
    flags = 0x8000 | 0x0400 | rd | 0x0080 | rcode   # QR AA RD RA rcode
    header = msg[:2] + struct.pack("!HHHHH", flags, 1, len(answers), 0, 0)
    return header + msg[12:qend] + b"".join(answers)


class _Reuse:
    # No SO_REUSEPORT: two runs on one address would share its queries,
    # each answering from its own table; the second run fails to bind.
    allow_reuse_address = True
    daemon_threads = True


class _UDPServer(_Reuse, socketserver.ThreadingUDPServer):
    pass


class _TCPServer(_Reuse, socketserver.ThreadingTCPServer):
    pass


class DNSServer:
    """UDP and TCP DNS server on HOST:PORT answering from zone."""

    def __init__(self, host=HOST, port=PORT, zone=None):
        self.zone = dict(ZONE if zone is None else zone)
        self.queries = []           # (qname, qtype) seen, for debugging
        server = self

        class UDPHandler(socketserver.BaseRequestHandler):
            def handle(self):
                data, sock = self.request
                reply = server._reply(data, tcp=False)
                forged = server._forged(data)
                if reply is not None and forged is not None:
                    sock.sendto(forged, self.client_address)
                if reply is not None:
                    sock.sendto(reply, self.client_address)

        class TCPHandler(socketserver.BaseRequestHandler):
            def handle(self):
                self.request.settimeout(5)
                for _ in range(100):            # bounded queries per connection
                    try:
                        size = self._read(2)
                        if size is None:
                            return
                        data = self._read(struct.unpack("!H", size)[0])
                        if data is None:
                            return
                    except OSError:
                        return
                    reply = server._reply(data, tcp=True)
                    if reply is None:
                        return
                    self.request.sendall(struct.pack("!H", len(reply)) + reply)

            def _read(self, n):
                buf = b""
                while len(buf) < n:
                    chunk = self.request.recv(n - len(buf))
                    if not chunk:
                        return None
                    buf += chunk
                return buf

        self.udp = _UDPServer((host, port), UDPHandler)
        self.tcp = _TCPServer((host, port), TCPHandler)
        self.threads = []

    def _reply(self, data, tcp):
        q = parse_question(data[:MAX_MESSAGE])
        if q:
            self.queries.append(q[:2] + (tcp,))
        return answer(data[:MAX_MESSAGE], self.zone, tcp)

    def _forged(self, data):
        """For a "forge" name: the answer to a query of another id, naming
        127.0.0.3; else None."""
        q = parse_question(data[:MAX_MESSAGE])
        entry = self.zone.get(q[0].rstrip("."), {}) if q else {}
        if not isinstance(entry, dict) or not entry.get("forge"):
            return None
        other = bytes([data[0] ^ 0xff]) + data[1:MAX_MESSAGE]
        return answer(other, {q[0].rstrip("."): {"A": ["127.0.0.3"]}})

    def start(self):
        for srv in (self.udp, self.tcp):
            t = threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.1},
                                 daemon=True)
            t.start()
            self.threads.append(t)
        return self

    def stop(self):
        for srv in (self.udp, self.tcp):
            srv.shutdown()
            srv.server_close()
        for t in self.threads:
            t.join(timeout=5)


def main(argv):
    host = argv[1] if len(argv) > 1 else HOST
    port = int(argv[2]) if len(argv) > 2 else PORT
    srv = DNSServer(host, port).start()
    print(f"serving DNS on {host}:{port}", flush=True)
    try:
        for t in srv.threads:
            t.join()
    except KeyboardInterrupt:
        srv.stop()


if __name__ == "__main__":
    main(sys.argv)
