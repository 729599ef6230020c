"""The shared disks as hamon reads them now, as plain data for the recovery steps.

Why plain data: :mod:`hamon.lib.recovery.steps` decides over these values without opening
a device, so each branch of the procedure is tested with values written by hand;
:func:`disk_now` is the one adapter from a checked :class:`~hamon.lib.disk.Disk`.
:func:`describe_key` names the owner of a key read there, as every report shows it.
"""
from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

from hamon.lib import keys as keymod
from hamon.lib.disk import PathState
from hamon.lib.scsi.pr import format_key

if TYPE_CHECKING:
    from hamon.lib.disk import Disk
    from hamon.lib.reservation import DiskResult


@dataclass(frozen=True)
class PathNow:
    """One path as hamon's check and the multipath software see it now."""

    name: str
    state: str                  # up | failed | unknown: hamon's TEST UNIT READY
    reason: str = ""
    os_state: str | None = None  # sysfs / multipathd / HDLM
    os_failed: bool = False
    path_id: str | None = None   # the multipath software's id of it (HDLM PathID)

    @property
    def answers(self) -> bool:
        return self.state == PathState.UP


@dataclass(frozen=True)
class ReservationNow:
    """The reservation of one disk as read now: holder, type and registered keys."""

    held: bool
    key: int | None
    type: str | None
    keys: tuple[int, ...] = ()


@dataclass(frozen=True)
class DiskNow:
    """One shared disk now. ``error``: it could not even be resolved into paths."""

    disk: str
    kind: str | None
    wwid: str | None = None
    paths: tuple[PathNow, ...] = ()
    error: str | None = None
    reservation: ReservationNow | None = None
    reservation_error: str | None = None

    def as_dict(self) -> dict[str, Any]:
        d = asdict(self)
        if self.reservation is not None:
            d["reservation"] = {**d["reservation"],
                                "key": _fmt(self.reservation.key),
                                "keys": [format_key(k) for k in self.reservation.keys]}
        return d


def _fmt(key: int | None) -> str | None:
    return format_key(key) if key is not None else None


def disk_now(disk: Disk, status: DiskResult | None = None) -> DiskNow:
    """Adapter from a checked :class:`~hamon.lib.disk.Disk` and its read_status result."""
    paths = tuple(PathNow(p.name, str(p.state), p.reason, p.os_state, p.os_failed,
                          p.path_id) for p in disk.paths)
    res = err = None
    if status is not None:
        if status.ok:
            r = status.value.reservation
            res = ReservationNow(r.held, r.key, r.type.short if r.type else None,
                                 tuple(status.value.keys))
        else:
            err = str(status.error or status.detail)
    return DiskNow(disk.name, str(disk.kind), disk.wwid, paths, None, res, err)



def describe_key(key: int | None, nodes: Iterable[str],
                 explicit: Mapping[int, str] | None = None,
                 cluster: str | None = None) -> str:
    """``0x686d... (node2)``: a key with its owner, as far as hamon can name it
    (``explicit``: configured keys, e.g. the fence device's node_keys; ``cluster``: the
    cluster name keys are derived with, default as hamon.lib.keys.cluster_name finds it)."""
    if key is None:
        return "-"
    if key == 0:
        return "0x0 (all registrants)"
    who = (explicit or {}).get(key) or keymod.owner_label(key, list(nodes), cluster)
    if who:
        return f"{format_key(key)} ({who})"
    if keymod.is_hamon_key(key, cluster):
        return f"{format_key(key)} (a hamon key of a node not named here)"
    return f"{format_key(key)} (not a hamon-derived key)"
