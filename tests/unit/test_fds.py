"""RLIMIT_NOFILE raised to what the paths need; a clear sentence when the hard limit is
not enough (issue 14, item 5). Run in child processes: limits are per process."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

TOP = Path(__file__).resolve().parents[2]


def child(code: str) -> str:
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                       timeout=60, check=False, cwd=TOP)
    assert p.returncode == 0, p.stderr
    return p.stdout.strip()


def test_the_soft_limit_is_raised_to_the_need_up_to_the_hard_limit():
    out = child("import resource; from hamon.lib.transport import fds\n"
                "resource.setrlimit(resource.RLIMIT_NOFILE, (1024, 8192))\n"
                "print(fds.ensure(2048), resource.getrlimit(resource.RLIMIT_NOFILE))")
    assert out == f"None ({2048 * 2 + 64}, 8192)"


def test_beyond_the_hard_limit_it_says_what_is_needed_and_how_to_raise_it():
    out = child("import resource; from hamon.lib.transport import fds\n"
                "resource.setrlimit(resource.RLIMIT_NOFILE, (256, 1024))\n"
                "print(fds.ensure(2048)); print(resource.getrlimit(resource.RLIMIT_NOFILE))")
    why, limits = out.splitlines()
    assert "2048 paths need about 4160 open files" in why and "1024" in why
    assert "LimitNOFILE=" in why and "ulimit -Hn" in why
    assert limits == "(1024, 1024)"


def test_the_resolver_raises_the_limit_before_opening_paths():
    code = ("import resource; from hamon.lib.multipath.resolve import Resolver\n"
            "resource.setrlimit(resource.RLIMIT_NOFILE, (1024, 4096))\n"
            "r = Resolver(initiator='iqn.2026-11.org.hamon:x', iscsi_opener=lambda *a: 1/0)\n"
            "urls = [f'iscsi://127.0.0.1:1/iqn.2026-11.org.hamon:t/{i}' for i in range(1500)]\n"
            "r.one_path_per_lun = True\n"
            "try:\n    r.resolve(urls)\nexcept Exception:\n    pass\n"
            "print(resource.getrlimit(resource.RLIMIT_NOFILE)[0], r.fd_warning is None)")
    assert child(code) == "3064 True"
