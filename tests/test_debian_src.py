"""scripts/debian-src.sh takes the Debian mirror from the machine's own apt
sources (one-line and deb822), and no mirror's host name is in the tree."""
import os
import re
import subprocess

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPT = os.path.join(ROOT, "scripts", "debian-src.sh")


def mirror_of(tmp_path, files, codename="bookworm"):
    apt = tmp_path / "apt"
    (apt / "sources.list.d").mkdir(parents=True)
    for name, text in files.items():
        (apt / name).write_text(text)
    osr = tmp_path / "os-release"
    osr.write_text('ID=debian\nVERSION_CODENAME=%s\n' % codename)
    env = dict(os.environ, DEBIAN_SRC_APT_DIR=str(apt), DEBIAN_SRC_OS_RELEASE=str(osr))
    return subprocess.run(["sh", SCRIPT, "--mirror"], env=env, capture_output=True,
                          text=True, timeout=30)


def test_one_line_source_with_options(tmp_path):
    r = mirror_of(tmp_path, {"sources.list": (
        "# deb http://commented.example/debian bookworm main\n"
        "deb-src http://src.example/debian bookworm main\n"
        "deb http://sec.example/debian-security bookworm-security main\n"
        "deb [arch=amd64 signed-by=/k.gpg] http://one.example/debian bookworm main contrib\n")})
    assert r.returncode == 0, r.stderr
    assert r.stdout == "http://one.example/debian\n"


def test_deb822_skips_other_suites_and_disabled_entries(tmp_path):
    r = mirror_of(tmp_path, {"sources.list.d/debian.sources": (
        "Types: deb\nURIs: http://sec.example/debian-security\n"
        "Suites: bookworm-security\nComponents: main\n\n"
        "Types: deb\nURIs: http://off.example/debian\nSuites: bookworm\n"
        "Components: main\nEnabled: no\n\n"
        "Types: deb-src\nURIs: http://src.example/debian\nSuites: bookworm\nComponents: main\n\n"
        "# the machine's own\n"
        "Types: deb\nURIs: http://mine.example/debian\n"
        "Suites: bookworm bookworm-updates\nComponents: main contrib\n")})
    assert r.returncode == 0, r.stderr
    assert r.stdout == "http://mine.example/debian\n"


def test_no_source_for_the_release_is_a_clear_error(tmp_path):
    r = mirror_of(tmp_path, {"sources.list": "deb http://one.example/debian bullseye main\n"})
    assert r.returncode == 1
    assert "no enabled apt source serves bookworm main" in r.stderr
    assert r.stdout == ""


def test_the_tree_names_no_package_mirror():
    try:
        files = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True,
                               text=True, timeout=30, check=True).stdout.split()
    except (OSError, subprocess.CalledProcessError):
        pytest.skip("not a git checkout")
    # Spelt in parts, so that this file does not match itself.
    hosts = re.compile(r"\b(deb|ftp[.a-z0-9]*|security|snapshot|archive)\." + "debian" + r"\.org\b")
    found = []
    for name in files:
        path = os.path.join(ROOT, name)
        if not os.path.isfile(path):
            continue
        with open(path, "rb") as f:
            text = f.read().decode("utf-8", "replace")
        found += ["%s: %s" % (name, m.group(0)) for m in hosts.finditer(text)]
    assert not found
