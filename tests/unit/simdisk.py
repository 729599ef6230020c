"""The in-memory world of the unit tests: its nodes' keys and its disks.

One copy here, not one per test file: the keys are derived as the agents derive them
(from the node names and the cluster name tests/conftest.py sets), so a test that
compares with K1 compares with what node1's agent really registers.
"""
from __future__ import annotations

from hamon.lib import keys as keymod
from hamon.lib.disk import Disk, DiskKind, Path
from hamon.lib.identity import default_initiator
from hamon.lib.sim import SimLun, SimTransport

#: the keys of node1, node2 and node3
K1, K2, K3 = (keymod.key_for_node(n) for n in ("node1", "node2", "node3"))


def sim_disk(lun: SimLun, node: str, ports: int = 2, name: str | None = None) -> Disk:
    ini = default_initiator(node)
    paths = [Path(f"sim://{lun.name}/port{p}",
                  lambda p=p, u=f"sim://{lun.name}/port{p}": SimTransport(
                      path=u, lun=lun, initiator=ini, port=p))
             for p in range(1, ports + 1)]
    return Disk(name or f"sim:{lun.name}", DiskKind.ISCSI, paths, lun.wwid)
