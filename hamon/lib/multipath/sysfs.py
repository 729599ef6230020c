"""What the kernel says about a device node, through pyudev (sysfs + udev database)."""
from __future__ import annotations

import os
import stat
from typing import NamedTuple

from hamon.lib.disk import DeviceError


class NodeInfo(NamedTuple):
    devnode: str          # as given
    sys_path: str         # /sys/devices/...
    sys_name: str         # sdc, dm-3, sg2
    subsystem: str        # block | scsi_generic
    dm_uuid: str | None   # "mpath-<wwid>" for DMMP maps
    dm_name: str | None   # mpatha
    scsi_state: str | None  # running | offline | blocked | transport-offline
    is_scsi: bool


def _context():  # pyudev is imported lazily: the iscsi-only code paths never need it
    import pyudev

    return pyudev, pyudev.Context()


def inspect(devnode: str) -> NodeInfo:
    """Validate a device node and describe it; DeviceError names the problem and fix."""
    try:
        st = os.stat(devnode)
    except FileNotFoundError:
        raise DeviceError(f"{devnode}: no such device; check the name "
                          "(ls -l /dev/disk/by-id, multipath -ll)") from None
    except OSError as err:
        raise DeviceError(f"{devnode}: cannot stat: {err.strerror}") from None
    if not (stat.S_ISBLK(st.st_mode) or stat.S_ISCHR(st.st_mode)):
        raise DeviceError(f"{devnode}: not a block device; give the disk's device node")
    pyudev, ctx = _context()
    kind = "block" if stat.S_ISBLK(st.st_mode) else "char"
    try:
        dev = pyudev.Devices.from_device_number(ctx, kind, st.st_rdev)
    except (pyudev.DeviceNotFoundError, ValueError, OSError):
        raise DeviceError(f"{devnode}: the kernel has no sysfs entry for it "
                          "(is /sys mounted?)") from None
    if kind == "block" and dev.device_type == "partition":
        raise DeviceError(f"{devnode}: a partition; reservations apply to the whole disk, "
                          f"give /dev/{dev.find_parent('block').sys_name}")
    dm_uuid = dm_name = None
    dm_dir = os.path.join(dev.sys_path, "dm")
    if os.path.isdir(dm_dir):
        dm_uuid = _read(os.path.join(dm_dir, "uuid"))
        dm_name = _read(os.path.join(dm_dir, "name"))
    scsi_parent = dev.find_parent("scsi", "scsi_device")
    scsi_state = None
    if scsi_parent is not None:
        scsi_state = _read(os.path.join(scsi_parent.sys_path, "state"))
    return NodeInfo(devnode, dev.sys_path, dev.sys_name, dev.subsystem, dm_uuid, dm_name,
                    scsi_state, scsi_parent is not None)


def slaves(info: NodeInfo) -> list[str]:
    """The block devices under a device-mapper map, as /dev/NAME, sorted."""
    d = os.path.join(info.sys_path, "slaves")
    try:
        return sorted(f"/dev/{n}" for n in os.listdir(d))
    except OSError:
        return []


def scsi_state(block_name: str) -> str | None:
    """sysfs SCSI device state of /dev/sdX (``running``, ``offline``, ...)."""
    return _read(f"/sys/block/{block_name}/device/state")


def block_for_hctl(hctl: str) -> str | None:
    """The /dev/sdX of SCSI address ``H:C:T:L`` (HDLM names paths by it)."""
    d = f"/sys/class/scsi_device/{hctl}/device/block"
    try:
        names = os.listdir(d)
    except OSError:
        return None
    return f"/dev/{names[0]}" if names else None


def _read(p: str) -> str | None:
    try:
        with open(p) as f:
            return f.read().strip()
    except OSError:
        return None
