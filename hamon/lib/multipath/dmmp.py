"""Device-mapper multipath: a map's paths from sysfs, their states from sysfs/multipathd.

The paths are the map's slaves (``/sys/block/dm-N/slaves``), exactly what the kernel
multipath target sends I/O through. Reservations are registered through each path
separately (every I_T nexus must hold the key, or I/O failed over to an unregistered
path gets RESERVATION CONFLICT). ``multipathd show paths`` adds the daemon's view (dm
state, checker state) when the daemon answers within a bound; it is optional.
"""
from __future__ import annotations

import shutil
import subprocess
from typing import TYPE_CHECKING

from hamon.lib.disk import DeviceError, Disk, DiskKind, Path
from hamon.lib.multipath import single, sysfs

if TYPE_CHECKING:
    from hamon.lib.multipath.opener import PathOpener

MULTIPATHD_TIMEOUT = 5.0


def resolve(devnode: str, resolver: PathOpener) -> Disk:
    info = sysfs.inspect(devnode)
    if info.dm_uuid is None:
        raise DeviceError(f"{devnode}: not a device-mapper device; give a single-path "
                          "disk as scsi_device")
    if not info.dm_uuid.startswith("mpath-"):
        raise DeviceError(f"{devnode}: device-mapper device {info.dm_name} is not a "
                          f"multipath map (uuid {info.dm_uuid!r})")
    wwid = info.dm_uuid[len("mpath-"):]
    daemon = resolver.multipathd_view()
    paths = []
    for dev in sysfs.slaves(info):
        name = dev.rsplit("/", 1)[-1]
        state = sysfs.scsi_state(name)
        dm_state, checker = daemon.get(name, (None, None))
        shown = ", ".join(s for s in (state, dm_state and f"dm {dm_state}",
                                      checker and f"checker {checker}") if s)
        failed = (state in single.FAILED_STATES or dm_state == "failed"
                  or checker in ("faulty", "shaky"))
        paths.append(Path(dev, lambda d=dev: resolver.open_sgio(d), os_state=shown or None,
                          os_failed=failed))
    if not paths:
        raise DeviceError(f"{devnode}: multipath map {info.dm_name} has no paths "
                          "(multipath -ll shows it empty); restore its paths first")
    return Disk(devnode, DiskKind.DMMP, paths, wwid)


def multipathd_paths() -> dict[str, tuple[str, str]]:
    """{sdX: (dm state, checker state)} from multipathd, or {} when it cannot say."""
    if not shutil.which("multipathd"):
        return {}
    try:
        out = subprocess.run(["multipathd", "show", "paths", "raw", "format", "%d %t %T"],
                             capture_output=True, text=True, timeout=MULTIPATHD_TIMEOUT,
                             check=False)
    except (OSError, subprocess.TimeoutExpired):
        return {}
    return parse_show_paths(out.stdout) if out.returncode == 0 else {}


def parse_show_paths(text: str) -> dict[str, tuple[str, str]]:
    result = {}
    for line in text.splitlines():
        parts = line.split()
        if len(parts) >= 3 and parts[0] != "dev":
            result[parts[0]] = (parts[1], parts[2])
    return result
