"""Transient node attributes: what ``crm_mon -A`` shows of each disk's paths.

``attrd_updater`` writes them through the one bounded runner of :mod:`hamon.lib.cluster`.
A node without attrd (the agent run by hand, ``ocf-tester``) is not an error: the
attribute is only a display, so a failure is remembered (:attr:`Attributes.errors`), never
raised into a start, stop or monitor.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field

from hamon.lib import cluster
from hamon.lib.cluster import TIMEOUT, Runner

_ATTR_UNSAFE = re.compile(r"[^A-Za-z0-9_.-]+")


def path_attribute_names(disk_names: list[str]) -> list[str]:
    """``hamon-paths-<disk>`` per disk, short and unique.

    ``/dev/mapper/mpatha`` -> ``hamon-paths-mpatha``; ``/dev/sdb`` -> ``hamon-paths-sdb``;
    ``iscsi://h:p/iqn.2026-11.org.example:disk1/1`` -> ``hamon-paths-disk1-1`` (the
    target's own name and the LUN: what an administrator recognises). Two disks that
    would get one name get ``-2``, ``-3`` suffixes in the order given.
    """
    names: list[str] = []
    for d in disk_names:
        if d.startswith("iscsi://"):
            parts = d[len("iscsi://"):].split("/")
            target = parts[1] if len(parts) > 1 else parts[0]
            lun = parts[2] if len(parts) > 2 else ""
            short = f"{target.rsplit(':', 1)[-1]}-{lun}" if lun else target
        else:
            short = d.rstrip("/").rsplit("/", 1)[-1]
        base = "hamon-paths-" + (_ATTR_UNSAFE.sub("-", short).strip("-") or "disk")
        name, n = base, 1
        while name in names:
            n += 1
            name = f"{base}-{n}"
        names.append(name)
    return names


@dataclass
class Attributes:
    """Transient node attributes through ``attrd_updater``; failures are remembered, not
    raised: a missing attrd must never fail a start, stop or monitor."""

    node: str | None = None
    timeout: float = TIMEOUT
    runner: Runner = cluster.run
    errors: list[str] = field(default_factory=list)

    def _node_args(self) -> list[str]:
        return ["-N", self.node] if self.node else []

    def set(self, name: str, value: str) -> bool:
        rc, _, err = self.runner(["attrd_updater", "-n", name, "-U", value,
                                  *self._node_args()], self.timeout)
        if rc != 0:
            self.errors.append(f"attrd_updater -n {name}: {err.strip() or f'exit {rc}'}")
        return rc == 0

    def delete(self, name: str) -> bool:
        rc, _, err = self.runner(["attrd_updater", "-n", name, "-D", *self._node_args()],
                                 self.timeout)
        if rc != 0:
            self.errors.append(f"attrd_updater -n {name} -D: {err.strip() or f'exit {rc}'}")
        return rc == 0
