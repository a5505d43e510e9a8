"""Credentials (DESIGN §5): the test user, and hash lines made by each
tool the README names."""

import shutil
import subprocess

import pytest

from support.clients import _bytes
from support.procs import binary, clean_env

ALICE = ("alice", "secret")
# ALICE's hash line made each way the README names; the kind is the test id.
HASH_KINDS = ["htpasswd-bcrypt-2y", "bcrypt-2b", "openssl-sha512", "openssl-sha256",
              "tunneld-hash-password"]


def openssl_hash(password, flag="-6"):
    """crypt(3) hash of password (str or bytes, any bytes but NUL and
    newline) by `openssl passwd FLAG -stdin`."""
    r = subprocess.run(["openssl", "passwd", flag, "-stdin"], input=_bytes(password) + b"\n",
                       capture_output=True, timeout=30, check=True)
    return r.stdout.decode().strip()


def htpasswd_hash(user, password, *flags):
    """The hash part of `htpasswd -nb FLAGS user password` (bcrypt with -B)."""
    if not shutil.which("htpasswd"):
        pytest.fail("htpasswd missing (Debian package apache2-utils)")
    r = subprocess.run(["htpasswd", "-nb", *flags, user, password], capture_output=True,
                       timeout=30, check=True)
    line = r.stdout.decode().strip()
    assert line.startswith(user + ":"), line
    return line[len(user) + 1:]


def tunneld_hash(password, tunneld=None):
    """`tunneld --hash-password` with password on stdin: CompletedProcess."""
    return subprocess.run([tunneld or binary(), "--hash-password"], input=_bytes(password),
                          capture_output=True, timeout=30, env=clean_env())


def make_hash(kind, password):
    if kind == "htpasswd-bcrypt-2y":
        return htpasswd_hash("x", password, "-B")
    if kind == "bcrypt-2b":        # the same hash spelt $2b$, as other tools write it
        h = htpasswd_hash("x", password, "-B")
        assert h.startswith("$2y$"), h
        return "$2b$" + h[4:]
    if kind == "openssl-sha512":
        return openssl_hash(password, "-6")
    if kind == "openssl-sha256":
        return openssl_hash(password, "-5")
    if kind == "tunneld-hash-password":
        r = tunneld_hash(_bytes(password) + b"\n")
        assert r.returncode == 0, r.stderr
        return r.stdout.decode().strip()
    raise ValueError(kind)
