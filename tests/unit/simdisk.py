"""Disks on the in-memory target, for unit tests."""
from __future__ import annotations

from hamon.lib.disk import Disk, DiskKind, Path
from hamon.lib.identity import default_initiator
from hamon.lib.sim import SimLun, SimTransport


def sim_disk(lun: SimLun, node: str, ports: int = 2, name: str | None = None) -> Disk:
    ini = default_initiator(node)
    paths = [Path(f"sim://{lun.name}/port{p}",
                  lambda p=p, u=f"sim://{lun.name}/port{p}": SimTransport(
                      path=u, lun=lun, initiator=ini, port=p))
             for p in range(1, ports + 1)]
    return Disk(name or f"sim:{lun.name}", DiskKind.ISCSI, paths, lun.wwid)
