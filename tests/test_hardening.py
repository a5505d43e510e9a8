"""Build hardening (the Makefile's HARDEN, issue 11) and TLS randomness.

Every binary the
Makefile made is a position-independent executable (a static PIE for the
static builds), with RELRO and BIND_NOW (a read-only GOT from the start), and
its own code has stack canaries; the glibc builds also call the checked
(_FORTIFY_SOURCE) string and memory functions. musl has no _FORTIFY_SOURCE.

The facts come from readelf and objdump on the files as built: the host
builds beside the Makefile, the static ones through their unstripped copy in
build/debug (the stripped file has no symbols left to look at), and the
cross builds of build/cross when they exist (their ARCH's binutils, which
come with the cross compiler): static PIEs on musl, and the dynamic ones
(NAME-dyn) PIEs whose interpreter is musl's /lib/ld-musl-ARCH.so.1, which
need libc.so and, with TLS, the shared mbedTLS; those run --version under
qemu-user through the musl built here. A binary that is not built is
skipped.

Randomness: each process forked from one that seeded the TLS library's
random generator (a `tunneld --listen` worker, each of `tunnel --listen`'s)
reseeds it before its first handshake, so the handshakes' randoms all
differ; and tls.c refuses, at build time, an mbedTLS older than 3.6.6 (the
first that can reseed on request: SYSTEM_MBEDTLS=1)."""

import hashlib
import os
import re
import shutil
import socket
import ssl
import subprocess
import threading
import time

import pytest

from conftest import REPO, clean_env, free_port, kill_pid, wait_until

# name: (C library, linked statically)
HOST = {
    "tunneld": ("glibc", False), "tunnel": ("glibc", False), "tunneld-min": ("glibc", False),
    "tunneld-noauth": ("glibc", False), "tunneld-notls": ("glibc", False),
    "tunneld-static": ("musl", True), "tunnel-static": ("musl", True),
    "tunneld-min-static": ("musl", True),
}
# ARCH: (binutils prefix, musl's name for its loader ld-musl-NAME.so.1, qemu-user)
CROSS = {"aarch64": ("aarch64-linux-gnu-", "aarch64", "qemu-aarch64-static"),
         "armhf": ("arm-linux-gnueabihf-", "armhf", "qemu-arm-static"),
         "mipsel": ("mipsel-linux-gnu-", "mipsel", "qemu-mipsel-static"),
         "mips": ("mips-linux-gnu-", "mips", "qemu-mips-static"),
         "x86_64": ("", "x86_64", None)}
CROSS_NAMES = ("tunneld-{}", "tunneld-{}-notls", "tunneld-{}-min", "tunnel-{}", "tunnel-{}-notls")
TLS_NAMES = ("tunneld-{}", "tunnel-{}")
MBEDTLS = ("libmbedtls.so", "libmbedx509.so", "libmbedcrypto.so")


def binaries():
    """(id, path, unstripped path or None, libc, static, binutils prefix)"""
    rows = []
    for name, (libc, static) in HOST.items():
        debug = REPO / "build/debug" / name if static else None
        rows.append((name, REPO / name, debug, libc, static, ""))
    for arch, (prefix, _, _) in CROSS.items():
        for pattern in CROSS_NAMES:
            for suffix, static in (("", True), ("-dyn", False)):
                name = pattern.format(arch) + suffix
                rows.append((f"cross/{name}", REPO / "build/cross" / name,
                             REPO / "build/cross/debug" / name, "musl", static, prefix))
    return [pytest.param(*row[1:], id=row[0]) for row in rows]


def tool(prefix, name, *args):
    exe = shutil.which(prefix + name)
    if not exe:
        pytest.skip(f"no {prefix}{name} (the cross binutils: make deps-cross)")
    r = subprocess.run([exe, *map(str, args)], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    return r.stdout


@pytest.mark.parametrize("path,debug,libc,static,prefix", binaries())
def test_hardened(path, debug, libc, static, prefix):
    if not path.exists():
        pytest.skip(f"{path.name} not built")
    header = tool("", "readelf", "-hW", path)
    dynamic = tool("", "readelf", "-dW", path)
    segments = tool("", "readelf", "-lW", path)

    assert re.search(r"Type:\s+DYN\b", header), f"{path.name}: not a PIE:\n{header}"
    assert re.search(r"FLAGS_1\).*\bPIE\b", dynamic), f"{path.name}: no PIE flag:\n{dynamic}"
    assert re.search(r"\bBIND_NOW\b|FLAGS\).*\bNOW\b", dynamic), \
        f"{path.name}: no BIND_NOW (-z now):\n{dynamic}"
    assert "GNU_RELRO" in segments, f"{path.name}: no RELRO segment:\n{segments}"
    if static:
        # A static PIE: no program interpreter, no shared library.
        assert "INTERP" not in segments, f"{path.name}: has a program interpreter"
        assert "(NEEDED)" not in dynamic, f"{path.name}: needs shared libraries"

    if not debug:
        syms = tool("", "readelf", "--dyn-syms", "-W", path)
    else:
        assert debug.exists(), f"{debug} missing: the unstripped copy of {path.name}"
        syms = tool(prefix, "nm", debug)
    assert "__stack_chk_fail" in syms, f"{path.name}: no stack protector"
    if libc == "glibc":
        checked = sorted(set(re.findall(r"\b__\w+_chk\b", syms)) - {"__stack_chk_fail"})
        assert checked, f"{path.name}: no _FORTIFY_SOURCE checked call"
    if debug:
        # musl always links __stack_chk_fail (its start-up sets the canary):
        # the proof is a check in our own code. main has arrays on its
        # stack in every build; on MIPS the call goes through the GOT and
        # the disassembly names no symbol, so the canary's load is looked for.
        code = tool(prefix, "objdump", "-d", "--disassemble=main", debug)
        want = "__stack_chk_guard" if "mips" in prefix else "__stack_chk_fail"
        if "mips" in prefix and want not in code:
            pytest.skip(f"{path.name}: MIPS PIC code names no canary symbol to look for")
        assert want in code, f"{path.name}: main has no stack check:\n{code[:2000]}"


def cross_dynamic():
    """(id, path, ARCH, with TLS) of each dynamic cross build."""
    return [pytest.param(REPO / "build/cross" / (p.format(a) + "-dyn"), a, p in TLS_NAMES,
                         id=p.format(a) + "-dyn") for a in CROSS for p in CROSS_NAMES]


@pytest.mark.parametrize("path,arch,tls", cross_dynamic())
def test_cross_dynamic(path, arch, tls):
    """A dynamic build is linked as OpenWrt links it: musl's loader for its
    CPU, libc.so, the three shared mbedTLS libraries when it has TLS (and
    none without), nothing else. It runs: --version through the loader of
    the musl built here, with the shared mbedTLS built here."""
    if not path.exists():
        pytest.skip(f"{path.name} not built (make cross)")
    prefix, loader, qemu = CROSS[arch]
    segments = tool("", "readelf", "-lW", path)
    interp = re.search(r"\[Requesting program interpreter: ([^]]+)\]", segments)
    assert interp and interp.group(1) == f"/lib/ld-musl-{loader}.so.1", segments
    needed = re.findall(r"\(NEEDED\).*\[(.+)\]", tool("", "readelf", "-dW", path))
    assert sorted(needed) == sorted(["libc.so", *(MBEDTLS if tls else ())]), needed

    libc = REPO / "build/cross" / f"musl-{arch}" / "lib/libc.so"
    cmd = [str(libc), str(path), "--version"]
    if qemu:
        if not shutil.which(qemu):
            pytest.skip(f"no {qemu} (make deps-cross)")
        cmd.insert(0, shutil.which(qemu))
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=60,
                       env={"LD_LIBRARY_PATH": str(REPO / "build/cross" / f"lib-{arch}")})
    assert r.returncode == 0, r.stderr
    name = path.name.split("-")[0]
    assert r.stdout.startswith(f"{name} "), r.stdout
    if name == "tunneld":
        assert ("+tls" in r.stdout) == tls, r.stdout


# --------------------------------------------------------------------------
# TLS randomness after fork

# A TLS 1.3 HelloRetryRequest carries this fixed "random" instead.
HRR_RANDOM = hashlib.sha256(b"HelloRetryRequest").digest()
HANDSHAKES = 8


def client_hello(tls12=False):
    """The bytes of a ClientHello from Python's TLS client."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname, ctx.verify_mode = False, ssl.CERT_NONE
    if tls12:
        ctx.maximum_version = ssl.TLSVersion.TLSv1_2
    out = ssl.MemoryBIO()
    obj = ctx.wrap_bio(ssl.MemoryBIO(), out, server_hostname="good.test")
    with pytest.raises(ssl.SSLWantReadError):
        obj.do_handshake()
    return out.read()


def first_handshake(sock, want_type):
    """The body of the first handshake message read from sock (a record of
    type 22 holding message want_type: 1 ClientHello, 2 ServerHello)."""
    buf, deadline = b"", time.monotonic() + 5
    for _ in range(100):
        if len(buf) >= 9 and len(buf) >= 5 + int.from_bytes(buf[3:5], "big"):
            break
        sock.settimeout(max(0.1, deadline - time.monotonic()))
        chunk = sock.recv(16384)
        assert chunk, f"EOF after {buf!r}"
        buf += chunk
    assert buf[0] == 22 and buf[5] == want_type, f"not a handshake message {want_type}: {buf[:16]!r}"
    return buf[9:5 + int.from_bytes(buf[3:5], "big")]


def random_of(hello):
    """The 32-byte random of a ClientHello or ServerHello body (after the
    2-byte version); a TLS 1.2 server's may start with 4 bytes of time."""
    rnd = hello[2:34]
    assert rnd != HRR_RANDOM, "a HelloRetryRequest: not what this test compares"
    return rnd[4:]


@pytest.mark.needs("tls")
@pytest.mark.parametrize("tls12", [False, True], ids=["tls13", "tls12"])
def test_listen_workers_reseed(make_proxy, tls_files, tls12):
    """One --listen tunneld seeds once at start; each handshake is in a fresh
    fork of it. Their ServerHello randoms (and with them the key shares
    drawn from the same generator) all differ."""
    cert, key = tls_files
    proxy = make_proxy("listen", args=["--cert", str(cert), "--key", str(key)])
    hello, seen = client_hello(tls12), set()
    for _ in range(HANDSHAKES):
        with socket.create_connection((proxy.host, proxy.port), timeout=5) as s:
            s.sendall(hello)
            seen.add(random_of(first_handshake(s, 2)))
    assert len(seen) == HANDSHAKES, f"{HANDSHAKES - len(seen) + 1} handshakes shared a random"


@pytest.mark.needs("tls")
def test_tunnel_children_reseed(tunnel_bin, tls_files):
    """tunnel --listen reads --cacert (and seeds) once, then forks one process
    per local connection, which does its own handshake with SERVER: their
    ClientHello randoms all differ. SERVER here only reads the ClientHello."""
    cert, _ = tls_files
    if "+tls" not in subprocess.run([tunnel_bin, "--version"], capture_output=True,
                                    text=True, timeout=10).stdout:
        pytest.skip("tunnel built without TLS")
    srv = socket.create_server(("127.0.0.1", 0))
    srv.settimeout(10)
    randoms, errors = [], []

    def serve():
        try:
            for _ in range(HANDSHAKES):
                conn, _ = srv.accept()
                with conn:
                    randoms.append(random_of(first_handshake(conn, 1)))
        except (OSError, AssertionError) as e:
            errors.append(e)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    lport = free_port()
    proc = subprocess.Popen([tunnel_bin, "-m", "connect", "--cacert", str(cert), "--listen",
                             f"127.0.0.1:{lport}", f"https://127.0.0.1:{srv.getsockname()[1]}",
                             "127.0.0.1:9"], stdin=subprocess.DEVNULL,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=clean_env())
    try:
        assert wait_until(lambda: proc.poll() is not None or _connects(lport), 5), "no --listen"
        for _ in range(HANDSHAKES):
            with socket.create_connection(("127.0.0.1", lport), timeout=5) as c:
                c.settimeout(5)
                try:
                    c.recv(1)   # the child ends when SERVER closes
                except OSError:
                    pass
        thread.join(15)
    finally:
        kill_pid(proc.pid)
        proc.wait(5)
        srv.close()
    assert not errors, errors
    assert len(randoms) == HANDSHAKES, randoms
    assert len(set(randoms)) == HANDSHAKES, "two of tunnel's handshakes shared a random"


def _connects(port):
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
        return True
    except OSError:
        return False


# --------------------------------------------------------------------------
# SYSTEM_MBEDTLS=1: an mbedTLS too old is refused by tls.c at build time

def fake_mbedtls(tmp_path, version):
    """An include dir whose mbedTLS headers say version (x.y.z) and nothing more."""
    major, minor, patch = map(int, version.split("."))
    inc = tmp_path / f"mbedtls-{version}" / "mbedtls"
    inc.mkdir(parents=True)
    (inc / "build_info.h").write_text(
        f"#define MBEDTLS_VERSION_MAJOR {major}\n#define MBEDTLS_VERSION_MINOR {minor}\n"
        f"#define MBEDTLS_VERSION_PATCH {patch}\n"
        f"#define MBEDTLS_VERSION_NUMBER 0x{major:02x}{minor:02x}{patch:02x}00\n"
        f"#define MBEDTLS_VERSION_STRING \"{version}\"\n")
    (inc / "version.h").write_text("#include \"mbedtls/build_info.h\"\n")
    return inc.parent


def compile_tls(*flags):
    """tls.c through the compiler's front end only, as a SYSTEM_MBEDTLS=1
    build compiles it (Makefile: -DTUNNELD_SYSTEM_MBEDTLS); nothing written."""
    if not (REPO / "config.h").exists():
        pytest.fail("no config.h: run `make` first")
    cc = os.environ.get("CC") or "cc"
    return subprocess.run([cc, "-std=c11", "-D_GNU_SOURCE", "-fsyntax-only", f"-I{REPO}",
                           "-DCONFIG_TLS=1", *flags, str(REPO / "tls.c")],
                          capture_output=True, text=True, timeout=60)


@pytest.mark.parametrize("version", ["2.28.3", "3.5.0", "3.6.5"])
def test_old_mbedtls_refused(tmp_path, version):
    """2.28 is Debian 12's libmbedtls-dev; 3.6.5 the last without a reseed call."""
    r = compile_tls(f"-I{fake_mbedtls(tmp_path, version)}", "-DTUNNELD_SYSTEM_MBEDTLS")
    assert r.returncode != 0
    first = next(line for line in r.stderr.splitlines() if "error" in line)
    assert "tunneld needs mbedTLS 3.6.6 or newer" in first, r.stderr
    assert f"found mbedTLS {version}" in r.stderr, r.stderr


def test_bundled_mbedtls_accepted():
    """The tree mbedtls.mk builds passes the same check."""
    src = REPO / "build/mbedtls-src/include"
    if not (src / "mbedtls/build_info.h").exists():
        pytest.skip("no build/mbedtls-src (make fetches it)")
    r = compile_tls(f"-I{REPO}", f"-I{src}", "-DMBEDTLS_CONFIG_FILE=<mbedtls_config.h>")
    assert r.returncode == 0, r.stderr
