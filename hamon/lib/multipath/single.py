"""A single-path SCSI disk: ``/dev/sdX`` (SG_IO through the block device) or ``/dev/sgN``."""
from __future__ import annotations

from typing import TYPE_CHECKING

from hamon.lib.disk import DeviceError, Disk, DiskKind, Path
from hamon.lib.multipath import sysfs

if TYPE_CHECKING:
    from hamon.lib.multipath.opener import PathOpener

FAILED_STATES = {"offline", "blocked", "transport-offline", "cancel", "deleted"}


def resolve(devnode: str, resolver: PathOpener) -> Disk:
    info = sysfs.inspect(devnode)
    if info.dm_uuid is not None:
        if info.dm_uuid.startswith("mpath-"):
            raise DeviceError(f"{devnode}: a device-mapper multipath map; give it as "
                              "dmmp_device (or /dev/mapper/NAME), not scsi_device")
        raise DeviceError(f"{devnode}: a device-mapper device that is not multipath "
                          f"({info.dm_uuid or 'no uuid'}); give the SCSI disk under it")
    if not info.is_scsi:
        raise DeviceError(f"{devnode}: not a SCSI device, so it has no SCSI persistent "
                          "reservations; give a /dev/sdX, /dev/sgN or multipath device")
    path = Path(devnode, lambda: resolver.open_sgio(devnode), os_state=info.scsi_state,
                os_failed=info.scsi_state in FAILED_STATES)
    return Disk(devnode, DiskKind.SCSI, [path])
