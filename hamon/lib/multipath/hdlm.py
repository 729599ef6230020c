"""Hitachi Dynamic Link Manager: ``/dev/sddlmXX`` and its paths from ``dlnkmgr view -path``.

HDLM names a path ``HostPort.Bus.TargetID.HLU`` in hex: the SCSI address of the sd device
that is that path. hamon sends PR commands through each of those sd devices (SG_IO), so
every path holds the key, and reports HDLM's own status (Online, Offline(C), Offline(E),
Online(E)...) next to its own check. Failback is ``dlnkmgr online -pathid N``: each
path carries its PathID as data (``Path.path_id``); the state text shows it to people.
"""
from __future__ import annotations

import os
import shutil
import subprocess
from typing import TYPE_CHECKING, NamedTuple

from hamon.lib.disk import DeviceError, Disk, DiskKind, Path
from hamon.lib.multipath import sysfs

if TYPE_CHECKING:
    from hamon.lib.multipath.opener import PathOpener

DLNKMGR_TIMEOUT = 10.0
DLNKMGR = "/opt/DynamicLinkManager/bin/dlnkmgr"


class HdlmPath(NamedTuple):
    path_id: str
    path_name: str   # HostPort.Bus.TargetID.HLU, hex
    status: str      # Online, Offline(C), Offline(E), Online(E), ...
    hdev: str        # sddlmaa

    @property
    def hctl(self) -> str:
        return ":".join(str(int(x, 16)) for x in self.path_name.split("."))

    @property
    def online(self) -> bool:
        return self.status == "Online"


def parse_view_path(text: str) -> list[HdlmPath]:
    """Parse ``dlnkmgr view -path``. DskName may contain spaces (``HITACHI .OPEN-V .4100``),
    so fields are taken from both ends: 2 from the left, 8 from the right."""
    rows = []
    started = False
    for line in text.splitlines():
        tokens = line.split()
        if tokens[:2] == ["PathID", "PathName"]:
            started = True
            continue
        if not started or len(tokens) < 10 or not tokens[0].isdigit():
            continue
        path_name = tokens[1]
        status, hdev = tokens[-6], tokens[-1]
        if path_name.count(".") != 3:
            continue
        rows.append(HdlmPath(tokens[0], path_name, status, hdev))
    return rows


def dlnkmgr() -> str | None:
    return shutil.which("dlnkmgr") or (DLNKMGR if os.access(DLNKMGR, os.X_OK) else None)


def resolve(devnode: str, resolver: PathOpener) -> Disk:
    hdev = devnode.rsplit("/", 1)[-1].rstrip("0123456789")
    tool = dlnkmgr()
    if tool is None:
        raise DeviceError(f"{devnode}: an HDLM device, but dlnkmgr is not installed; "
                          "install HDLM or give the device as scsi_device/dmmp_device")
    try:
        out = subprocess.run([tool, "view", "-path", "-hdev", hdev], capture_output=True,
                             text=True, timeout=DLNKMGR_TIMEOUT, check=False)
    except subprocess.TimeoutExpired:
        raise DeviceError(f"{devnode}: dlnkmgr view -path did not answer within "
                          f"{DLNKMGR_TIMEOUT:g} s") from None
    rows = [r for r in parse_view_path(out.stdout) if r.hdev == hdev]
    if not rows:
        raise DeviceError(f"{devnode}: dlnkmgr view -path lists no path for {hdev} "
                          f"({(out.stderr or out.stdout).strip()[:200]})")
    paths = []
    for r in rows:
        dev = sysfs.block_for_hctl(r.hctl)
        label = dev or f"{r.path_name}"
        opener = (lambda d=dev: resolver.open_sgio(d)) if dev else _missing(devnode, r)
        paths.append(Path(label, opener, os_state=f"HDLM {r.status} (PathID {r.path_id})",
                          os_failed=not r.online, path_id=r.path_id))
    return Disk(devnode, DiskKind.HDLM, paths)


def _missing(devnode: str, r: HdlmPath):
    def opener():
        from hamon.lib.transport.base import PathError
        raise PathError(r.path_name, f"no SCSI device at {r.hctl} for {devnode}")
    return opener
