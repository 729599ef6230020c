"""``make install`` / ``make uninstall``: where Pacemaker, man and Python look.

Two ways, neither touching the machine: a staged install (DESTDIR) checks the standard
layout and the substituted paths; a relocated install (every directory under a tmp dir)
checks that the installed command runs from there, man finds its page and Python
imports the package through hamon.pth. Uninstall must leave no file behind.
"""
from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
PY = "/usr/bin/python3"


def make(*args: str) -> subprocess.CompletedProcess[str]:
    assert shutil.which("make"), "make is needed (tools/apt/base.txt installs it)"
    p = subprocess.run(["make", "-s", "-C", str(REPO), *args], capture_output=True,
                       text=True, timeout=120, check=False)
    assert p.returncode == 0, p.stderr
    return p


def files(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*") if not p.is_dir()}


def test_staged_install_layout_and_uninstall(tmp_path: Path):
    d = tmp_path / "stage"
    make("install", f"DESTDIR={d}")
    got = files(d)
    assert "usr/sbin/hamon" in got
    assert "usr/sbin/monscsiclr" in got and "usr/share/man/man8/monscsiclr.8" in got
    assert "usr/share/man/man8/hamon.8" in got
    assert "usr/lib/hamon/hamon/cli/__init__.py" in got
    assert "usr/lib/hamon/hamon/lib/recovery/plan.py" in got
    assert (d / "usr/lib/python3/dist-packages/hamon.pth").read_text() == "/usr/lib/hamon\n"
    # both agents, where Pacemaker looks
    assert "usr/sbin/fence_hamon_scsi" in got
    assert "usr/lib/ocf/resource.d/hamon/hamon_disk" in got
    wrapper = (d / "usr/sbin/hamon").read_text()
    assert '_LIB = "/usr/lib/hamon"' in wrapper and "@HAMON_PYTHONPATH@" not in wrapper
    assert os.access(d / "usr/sbin/hamon", os.X_OK)
    make("uninstall", f"DESTDIR={d}")
    assert files(d) == set()


def test_relocated_install_runs_and_is_found(tmp_path: Path):
    t = tmp_path / "root"
    dirs = [f"PREFIX={t}/usr", f"LIBDIR={t}/lib/hamon", f"OCFDIR={t}/ocf/hamon",
            f"SHAREDIR={t}/share/hamon", f"PTHDIR={t}/pth", "DESTDIR="]
    make("install", *dirs)
    # the command runs, importing the installed copy (not this checkout)
    env = {"PATH": "/usr/bin:/bin", "HAMON_NODE": "node1"}
    p = subprocess.run([str(t / "usr/sbin/hamon"), "key", "--json"], capture_output=True,
                       text=True, env=env, cwd=tmp_path, timeout=60, check=False)
    assert p.returncode == 0, p.stderr
    assert '"node": "node1"' in p.stdout
    # HA Monitor's command name runs `hamon monscsiclr`
    empty = tmp_path / "disks"
    empty.write_text("")
    p = subprocess.run([str(t / "usr/sbin/monscsiclr"), "svc", "--no-cib", "--disks-file",
                        str(empty)], capture_output=True, text=True, env=env, cwd=tmp_path,
                       timeout=60, check=False)
    assert p.returncode == 2 and "no hamon_disk resource" in p.stderr, p.stderr
    # Python finds the package through hamon.pth
    code = (f"import site; site.addsitedir({str(t / 'pth')!r}); import hamon.cli; "
            "print(hamon.cli.__file__)")
    p = subprocess.run([PY, "-c", code], capture_output=True, text=True, env=env,
                       cwd=tmp_path, timeout=60, check=False)
    assert p.returncode == 0, p.stderr
    assert p.stdout.strip() == f"{t}/lib/hamon/hamon/cli/__init__.py"
    # man finds the page
    assert shutil.which("man"), "man is needed (tools/apt/base.txt installs man-db)"
    p = subprocess.run(["man", "-w", "hamon"], capture_output=True, text=True,
                       env={**env, "MANPATH": str(t / "usr/share/man")}, timeout=60,
                       check=False)
    assert p.stdout.strip() == f"{t}/usr/share/man/man8/hamon.8", p.stderr
    make("uninstall", *dirs)
    assert files(t) == set()
