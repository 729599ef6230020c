"""Is a ``/dev`` operand a shared SCSI disk on this node? validate-all's device check.

The resolver (:mod:`hamon.lib.multipath`) opens devices to find their paths; validate-all
must answer earlier and without I/O whether a name can be a shared disk at all, because
what it answers decides what Pacemaker does: a device that is missing on this node, or
is something else here (a directory, a FIFO, a regular file left by a mistyped ``dd``,
``/dev/null``, a loop device, a partition), is a fault of this node, OCF_ERR_INSTALLED,
as resource-agents' Filesystem answers for "not a block device": the resource may run on
another node whose ``/dev/sdb`` is the disk. A value that cannot name a disk anywhere is
the caller's OCF_ERR_CONFIGURED (:class:`hamon.agents.disk.settings.ConfigError`), not ours.

What counts as a shared SCSI disk: a block device that sysfs shows under a SCSI device
(``/dev/sdX``), a device-mapper map (``/dev/mapper/NAME``, ``/dev/dm-N``; the resolver
then checks it is a multipath map), an HDLM device (``/dev/sddlm*``), or a SCSI generic
character device (``/dev/sgN``, major 21).
"""
from __future__ import annotations

import os
import stat

from hamon.lib.disk import DeviceError

SG_MAJOR = 21
LOOP_MAJOR = 7


class NoDevice(DeviceError):
    """The name does not exist on this node."""


class NotADisk(DeviceError):
    """The name exists on this node but is not a shared SCSI disk."""


def _what(mode: int) -> str | None:
    for test, name in ((stat.S_ISDIR, "a directory"), (stat.S_ISFIFO, "a FIFO"),
                       (stat.S_ISREG, "a regular file"), (stat.S_ISSOCK, "a socket")):
        if test(mode):
            return name
    return None


#: Where sysfs is mounted; tests give a tree of their own.
SYSFS = "/sys"


def _is_scsi_block(sys_dir: str) -> bool:
    device = os.path.join(sys_dir, "device")
    return (os.path.isdir(os.path.join(device, "scsi_device"))
            or os.path.isdir(os.path.join(device, "scsi_disk"))
            or os.path.realpath(os.path.join(device, "subsystem")).endswith("/bus/scsi"))


FIX = "give the shared disk's device node: /dev/sdX, /dev/sgN, /dev/mapper/NAME, " \
      "/dev/dm-N or /dev/sddlmXX"


def check_device(op: str, node: str = "this node", sysfs: str | None = None) -> None:
    """Return when ``op`` can be a shared SCSI disk here; NoDevice / NotADisk otherwise.

    ``iscsi://`` URLs and other non-``/dev`` names are not this function's business.
    """
    if not op.startswith("/dev/"):
        return
    try:
        st = os.stat(op)
    except FileNotFoundError:
        raise NoDevice(f"{op}: no such device on {node}; check the name "
                       "(ls -l /dev/disk/by-id, multipath -ll)") from None
    except OSError as err:
        raise NoDevice(f"{op}: cannot be examined on {node}: {err.strerror}") from None
    kind = _what(st.st_mode)
    if kind:
        raise NotADisk(f"{op}: {kind} on {node}, not a shared SCSI disk; {FIX}")
    major, minor = os.major(st.st_rdev), os.minor(st.st_rdev)
    if stat.S_ISCHR(st.st_mode):
        if major == SG_MAJOR:
            return
        raise NotADisk(f"{op}: a character device ({major}:{minor}) on {node} that is not "
                       f"a SCSI generic device (/dev/sgN); {FIX}")
    sys_dir = f"{sysfs or SYSFS}/dev/block/{major}:{minor}"
    if major == LOOP_MAJOR or os.path.basename(os.path.realpath(op)).startswith("loop"):
        raise NotADisk(f"{op}: a loop device on {node}, not a shared SCSI disk (it has no "
                       f"SCSI-3 persistent reservations); {FIX}")
    if os.path.exists(os.path.join(sys_dir, "partition")):
        raise NotADisk(f"{op}: a partition on {node}; reservations apply to the whole "
                       f"disk: {FIX}")
    if os.path.isdir(os.path.join(sys_dir, "dm")) or _is_scsi_block(sys_dir):
        return
    if os.path.basename(os.path.realpath(op)).startswith("sddlm"):
        return  # HDLM: the resolver asks dlnkmgr for its paths
    raise NotADisk(f"{op}: a block device ({major}:{minor}) on {node} that is not a SCSI "
                   f"disk (sysfs shows no SCSI device under it); {FIX}")
