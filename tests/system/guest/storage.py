"""Python face of guest/storage.sh, for scenarios written in Python (run in the guest).

    import os, sys; sys.path.insert(0, os.environ["HAMON_GUEST"])
    import storage
    storage.sh("lio_setup 2", "node1_login", "node2_login", "multipath_setup")
    p = storage.paths()          # {"N1_L0_P0": "/dev/sda", "MP_L0": "/dev/mapper/mpatha", ...}
    storage.sh(f"fail_path {p['N1_L0_P0']}", f"wait_path {p['N1_L0_P0']} failed")
    storage.step("faulted")      # an event the host timestamps (VMResult.events)

Each sh() call is one `sh` that sources storage.sh and runs the commands with `set -e`;
storage.sh keeps its state in /run/hamon, so calls compose. Daemons it starts (iscsid,
systemd-udevd, multipathd, tgtd) outlive the call.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

GUEST = Path(os.environ.get("HAMON_GUEST", Path(__file__).resolve().parent))
RUN = Path("/run/hamon")


def sh(*commands: str, check: bool = True) -> subprocess.CompletedProcess:
    script = f'. "{GUEST}/storage.sh"; set -e; ' + "; ".join(commands)
    return subprocess.run(["sh", "-c", script], check=check)


def paths() -> dict[str, str]:
    """The variables of /run/hamon/paths.env (see storage.sh), as a dict."""
    out = {}
    f = RUN / "paths.env"
    if f.exists():
        for line in f.read_text().splitlines():
            k, _, v = line.removeprefix("export ").partition("=")
            out[k] = v
    return out


def table() -> list[dict[str, str]]:
    """/run/hamon/paths.tsv as rows: node kind lun portal dev mpath."""
    cols = ("node", "kind", "lun", "portal", "dev", "mpath")
    f = RUN / "paths.tsv"
    if not f.exists():
        return []
    return [dict(zip(cols, line.split(), strict=True)) for line in f.read_text().splitlines()]


def step(name: str) -> None:
    up = Path("/proc/uptime").read_text().split()[0]
    with open("/hamon/events", "a") as fh:
        fh.write(f"{name} {up}\n")
    with open("/dev/kmsg", "w") as fh:
        fh.write(f"hamon: step {name} at {up}\n")
