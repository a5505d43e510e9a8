"""Kconfig is read by the real kconfig front end, and scripts/config.awk turns
its .config into the same config.h, refusing values out of range."""

import os
import subprocess

from conftest import REPO

AWK = ["awk", "-f", str(REPO / "scripts/config.awk"), str(REPO / "Kconfig")]


def kconfig(tmp_path, *args):
    env = dict(os.environ, KCONFIG_CONFIG=str(tmp_path / ".config"))
    r = subprocess.run(["kconfig-conf", *args, str(REPO / "Kconfig")], cwd=tmp_path, env=env,
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 0, r.stdout + r.stderr
    return (tmp_path / ".config").read_text()


def config_h(dotconfig=None):
    r = subprocess.run(AWK + ([str(dotconfig)] if dotconfig else []), capture_output=True,
                       text=True, timeout=10)
    return r


def test_defconfig_is_the_builtin_defaults(tmp_path):
    text = kconfig(tmp_path, "--alldefconfig")
    assert "CONFIG_TLS=y" in text and "CONFIG_HEADER_MAX=8192" in text
    assert config_h(tmp_path / ".config").stdout == config_h().stdout


def test_a_feature_turned_off_reaches_config_h(tmp_path):
    kconfig(tmp_path, "--alldefconfig")
    dot = tmp_path / ".config"
    dot.write_text(dot.read_text().replace("CONFIG_TLS=y", "# CONFIG_TLS is not set")
                   .replace("CONFIG_RELAY_BUF=16384", "CONFIG_RELAY_BUF=4096"))
    kconfig(tmp_path, "--olddefconfig")
    out = config_h(dot).stdout
    assert "#define CONFIG_TLS 0\n" in out and "#define CONFIG_RELAY_BUF 4096\n" in out
    assert "#define CONFIG_AUTH 1\n" in out


def test_out_of_range_values_are_refused(tmp_path):
    for line, symbol in [("CONFIG_RELAY_BUF=999999", "RELAY_BUF"),
                         ("CONFIG_HEADER_MAX=abc", "HEADER_MAX"),
                         ("CONFIG_HEADER_COUNT=7", "HEADER_COUNT")]:
        dot = tmp_path / ".config"
        dot.write_text(line + "\n")
        r = config_h(dot)
        assert r.returncode != 0, line
        assert f"CONFIG_{symbol}=" in r.stderr and "is not a number from" in r.stderr, r.stderr
