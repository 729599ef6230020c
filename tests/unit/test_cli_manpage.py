"""man/hamon.8 is written by hand; this keeps it honest: every command and option of the
parser is documented, the exit codes match, and groff renders it without a warning."""
from __future__ import annotations

import argparse
import shutil
import subprocess
from pathlib import Path

from hamon import cli

MAN = Path(__file__).resolve().parents[2] / "man" / "hamon.8"


def man_text() -> str:
    return MAN.read_text().replace("\\-", "-").replace("\\e", "\\")


def subparsers() -> dict[str, argparse.ArgumentParser]:
    p = cli.build_parser()
    (action,) = [a for a in p._actions if isinstance(a, argparse._SubParsersAction)]
    return dict(action.choices)


def documented_commands(text: str) -> set[str]:
    """First word of every .TP entry's header line in the COMMANDS section."""
    section = text.split(".SH COMMANDS", 1)[1].split(".SH ", 1)[0]
    lines = section.splitlines()
    heads = [lines[i + 1] for i, ln in enumerate(lines[:-1]) if ln.strip() == ".TP"]
    words = [h.split(None, 1)[1].strip('"').split()[0] for h in heads if " " in h]
    return {w for w in words if not w.startswith("-")}


def test_every_command_and_option_is_documented():
    text = man_text()
    commands = subparsers()
    assert set(commands) <= documented_commands(text)
    missing = [f"{name} {opt}" for name, sp in commands.items() for a in sp._actions
               for opt in a.option_strings if opt.startswith("--") and opt not in text]
    assert missing == []


def test_exit_codes_are_documented():
    text = man_text()
    section = text.split(".SH EXIT STATUS", 1)[1].split(".SH ", 1)[0]
    for code in (cli.EXIT_OK, cli.EXIT_FAILED, cli.EXIT_USAGE, cli.EXIT_REFUSED):
        assert f".B {code}\n" in section


def test_environment_and_files_are_documented():
    text = man_text()
    for word in ("HAMON_JOURNAL", "HAMON_DISKS_FILE", "HAMON_NODE", "HAMON_DEBUG",
                 "CIB_file", "/var/lib/hamon/journal", "/etc/hamon/disks", "HAMN953-W"):
        assert word in text


def test_groff_renders_without_warnings():
    assert shutil.which("groff"), "groff is needed (tools/apt/base.txt installs groff-base)"
    p = subprocess.run(["groff", "-man", "-ww", "-z", "-Tutf8", str(MAN)],
                       capture_output=True, text=True, timeout=30, check=False)
    assert p.returncode == 0 and p.stderr == ""
