"""`make install` (DESIGN §10): PREFIX and DESTDIR honoured; tunneld in sbin/,
tunnel in bin/ (with Kconfig's CLIENT), their man pages, and every file of
contrib/ under share/doc/tunneld/examples/, naming the installed binary."""

import os
import re
import subprocess

import pytest

from conftest import REPO, clean_env

CONTRIB = REPO / "contrib"
DEFAULT_BIN = "/usr/local/sbin/tunneld"


def make_install(destdir, *args):
    """`make install DESTDIR=destdir ARGS` at the repository root. The built
    binaries are taken as they are (make -o): the suite runs after `make`,
    and a test must not start a build beside other test runs."""
    built = [f"-o{name}" for name in ("tunneld", "tunnel") if (REPO / name).exists()]
    if "-otunneld" not in built:
        pytest.fail("no ./tunneld: run `make` first")
    r = subprocess.run(["make", "-s", "-C", str(REPO), *built, "install", f"DESTDIR={destdir}",
                        *args], capture_output=True, timeout=120, env=clean_env())
    assert r.returncode == 0, r.stderr.decode(errors="replace")


def client_built():
    mk = (REPO / "config.mk").read_text()
    return re.search(r"^(override )?CONFIG_CLIENT := 1$", mk, re.M) is not None


def tree(root):
    """Every file under root, as paths relative to it."""
    return {str(p.relative_to(root)) for p in root.rglob("*") if p.is_file()}


def contrib_files():
    return {str(p.relative_to(CONTRIB)) for p in CONTRIB.rglob("*") if p.is_file()}


def mode(path):
    return os.stat(path).st_mode & 0o7777


@pytest.mark.parametrize("prefix", ["/usr", None], ids=["prefix-usr", "prefix-default"])
def test_make_install(tmp_path, prefix):
    dest = tmp_path / "dest"
    make_install(dest, *([f"PREFIX={prefix}"] if prefix else []))
    prefix = prefix or "/usr/local"
    root = dest / prefix.lstrip("/")
    examples = "share/doc/tunneld/examples"

    want = {"sbin/tunneld", "share/man/man8/tunneld.8"}
    if client_built():
        want |= {"bin/tunnel", "share/man/man1/tunnel.1"}
    want |= {f"{examples}/{name}" for name in contrib_files()}
    assert tree(dest) == {f"{prefix.lstrip('/')}/{p}" for p in want}

    for name, src, m in [("sbin/tunneld", "tunneld", 0o755),
                         ("share/man/man8/tunneld.8", "tunneld.8", 0o644),
                         ("bin/tunnel", "tunnel", 0o755),
                         ("share/man/man1/tunnel.1", "tunnel.1", 0o644)]:
        if name in want:
            assert (root / name).read_bytes() == (REPO / src).read_bytes(), name
            assert mode(root / name) == m, (name, oct(mode(root / name)))

    # the examples as in contrib/, but naming the binary just installed
    installed_bin = f"{prefix}/sbin/tunneld"
    for name in contrib_files():
        text = (CONTRIB / name).read_text()
        got = (root / examples / name).read_text()
        assert got == text.replace(DEFAULT_BIN, installed_bin), name
        if DEFAULT_BIN in text:
            assert (dest / installed_bin.lstrip("/")).is_file(), name
        executable = os.access(CONTRIB / name, os.X_OK)
        assert mode(root / examples / name) == (0o755 if executable else 0o644), name
