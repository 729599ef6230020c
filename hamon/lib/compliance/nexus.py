"""The two I_T nexuses of this node ``hamon check-disk`` sends through.

Nexus A is this node (every path hamon would register through); nexus B is "someone
else": a second I_T nexus that plays the other node. For ``iscsi://`` disks B is a second
initiator identity on the first path (this node's initiator name with ``.check``
appended, or ``second_initiator``); A logs in with its own ISID role ``check`` so that it
never reinstates (closes) a live agent's session on targets that do so (LIO). For
``/dev`` disks A is every path of the map but the last and B the last path: both are
this node's initiator, so a target that decides write access per initiator rather than
per I_T nexus (LIO) lets B write; that row is then *unproven*, not failed.
"""
from __future__ import annotations

import contextlib
from collections.abc import Callable
from dataclasses import dataclass

from hamon.lib.disk import Disk, DiskKind
from hamon.lib.transport.base import Transport

#: ISID role of the check's own sessions (see hamon.lib.transport.iscsi_url.derive_isid).
ISCSI_ROLE = "check"
SECOND_INITIATOR_SUFFIX = ".check"


class Refused(Exception):
    """The check will not run on this disk (registrations held, one nexus): why and fix."""


@dataclass
class Nexus:
    """One I_T nexus the check sends through; ``name`` is what the table calls it."""

    name: str
    transport: Transport


@dataclass
class Setup:
    """Nexus A (this node, every path) and B (the other node's stand-in) of one disk."""

    disk: str
    a: list[Nexus]
    b: Nexus | None
    same_initiator: bool
    wwid: str | None = None

    def everyone(self) -> list[Nexus]:
        return self.a + ([self.b] if self.b else [])

    def close(self) -> None:
        for n in self.everyone():
            with contextlib.suppress(Exception):  # closing is best effort
                n.transport.close()


def setup_for(disk: Disk, *, initiator: str | None, second_initiator: str | None,
              timeout: float,
              iscsi_opener: Callable[[str, str, str, float], Transport] | None = None,
              ) -> Setup:
    """Nexus A and B for one resolved disk (its paths are not opened yet)."""
    if disk.kind is DiskKind.ISCSI:
        if not initiator:
            raise Refused(f"{disk.name}: an iSCSI initiator name is needed (--initiator)")
        second = second_initiator or initiator + SECOND_INITIATOR_SUFFIX
        opener = iscsi_opener or open_iscsi
        a = [Nexus(f"{p.name} ({initiator})", opener(p.name, initiator, ISCSI_ROLE, timeout))
             for p in disk.paths]
        first = disk.paths[0].name
        b = Nexus(f"{first} ({second})", opener(first, second, ISCSI_ROLE, timeout))
        return Setup(disk.name, a, b, same_initiator=False, wwid=disk.wwid)
    nexuses = [Nexus(p.name, p.transport()) for p in disk.paths]
    if len(nexuses) < 2:
        return Setup(disk.name, nexuses, None, same_initiator=True, wwid=disk.wwid)
    return Setup(disk.name, nexuses[:-1], nexuses[-1], same_initiator=True, wwid=disk.wwid)


def open_iscsi(url: str, initiator: str, role: str, timeout: float) -> Transport:
    from hamon.lib.transport.iscsi import IscsiTransport
    return IscsiTransport(path=url, initiator=initiator, role=role, timeout=timeout)
