"""hamon's Debian package, built once per test session and shared by the tiers that use it.

``deb()`` runs tools/build-deb (a copy of the tree outside the checkout, dpkg-buildpackage
-us -uc -b) into a temporary directory the first time it is called and returns the same
.deb afterwards: the integration tier lints it and the VM tier installs it, at the cost of
one build (~15 s here).
"""
from __future__ import annotations

import atexit
import shutil
import subprocess
import tempfile
import threading
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
_LOCK = threading.Lock()
_BUILT: list[Path] = []
NEEDS = ("dpkg-buildpackage", "dh", "dh_python3", "lintian")


def missing_tools() -> list[str]:
    return [t for t in NEEDS if shutil.which(t) is None]


def deb() -> Path:
    """The path of hamon_<version>_all.deb built from this checkout (AssertionError with
    the build log's tail when the build fails)."""
    with _LOCK:
        if not _BUILT:
            out = Path(tempfile.mkdtemp(prefix="hamon-deb-"))
            atexit.register(shutil.rmtree, out, True)
            p = subprocess.run([str(REPO / "tools" / "build-deb"), str(out)],
                               capture_output=True, text=True, timeout=600, check=False)
            assert p.returncode == 0, f"tools/build-deb failed:\n{p.stderr[-3000:]}"
            _BUILT.append(Path(p.stdout.strip().splitlines()[-1]))
        return _BUILT[0]


def version() -> str:
    for line in (REPO / "setup.cfg").read_text().splitlines():
        if line.replace(" ", "").startswith("version="):
            return line.split("=", 1)[1].strip()
    raise AssertionError("setup.cfg has no version")
