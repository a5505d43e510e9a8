"""The README's option list is the binary's --help, line for line, and every
long option the code accepts is documented in --help and the man page."""

import re
import subprocess

from conftest import REPO, binary


def help_options(text):
    """The option lines of a --help text, from -l to -h."""
    lines = text.splitlines()
    start = next(i for i, l in enumerate(lines) if l.startswith("  -l, --listen"))
    end = next(i for i, l in enumerate(lines) if l.startswith("  -h, --help"))
    return lines[start:end + 1]


def test_readme_lists_the_help_options():
    out = subprocess.run([binary(), "--help"], capture_output=True, text=True, timeout=10)
    assert out.returncode == 0
    readme = (REPO / "README.md").read_text()
    block = readme.split("tunneld [OPTION]...\n", 1)[1].split("```", 1)[0]
    assert help_options(out.stdout) == help_options(block)


# An entry of tunneld.c's option table (opt.h): { "name", OPT_REQUIRED, 'x' }.
LONGOPT = r'\{ "([a-z-]+)", OPT_(?:REQUIRED|OPTIONAL|NONE)'


def test_every_long_option_is_in_the_man_page():
    source = (REPO / "tunneld.c").read_text()
    # mdoc writes --name as "Fl \-name", with "\-" for each further dash.
    page = (REPO / "tunneld.8").read_text().replace("Fl \\-", "Fl --").replace("\\-", "-")
    longopts = set(re.findall(LONGOPT, source))
    for name in sorted(longopts - {"help"}):
        assert f"Fl --{name}" in page, f"--{name} is not in tunneld.8"


def test_every_long_option_is_in_help():
    source = (REPO / "tunneld.c").read_text()
    longopts = set(re.findall(LONGOPT, source))
    out = subprocess.run([binary(), "--help"], capture_output=True, text=True, timeout=10).stdout
    assert longopts, "no long options found in tunneld.c"
    for name in sorted(longopts):
        assert f"--{name}" in out, f"--{name} is accepted but not in --help"
