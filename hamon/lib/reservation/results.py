"""What a reservation step returns: per path, per disk, per action, and what a LUN
showed when read. Plain values; the operations beside this module fill them.

No dataclass here (docs/architecture.md, "What a fence loads"). The results an action fills in are
plain classes (compared by identity: nothing compares two results by value), what a LUN
showed is a ``NamedTuple``.
"""
from __future__ import annotations

from enum import StrEnum
from typing import Any, Generic, NamedTuple, TypeVar

from hamon.lib.disk import Disk
from hamon.lib.scsi import pr as prm
from hamon.lib.transport.base import PathError

#: What a one-path step returns per disk (a LunStatus, a fence's Preempted, ...).
V = TypeVar("V")


class PathResult:
    """One path's result of a step."""

    def __init__(self, path: str, ok: bool, detail: str = "",
                 error: Exception | None = None,
                 unit_attentions: list[str] | None = None) -> None:
        self.path = path
        self.ok = ok
        self.detail = detail
        self.error = error
        self.unit_attentions = [] if unit_attentions is None else unit_attentions

    def __repr__(self) -> str:
        return (f"PathResult(path={self.path!r}, ok={self.ok!r}, detail={self.detail!r}, "
                f"error={self.error!r}, unit_attentions={self.unit_attentions!r})")

    def as_dict(self) -> dict[str, Any]:
        return {"path": self.path, "ok": self.ok, "detail": self.detail,
                "error": str(self.error) if self.error else None,
                "unit_attentions": self.unit_attentions}


class DiskResult(Generic[V]):
    """One disk's result of a step; ``value`` is the step's typed answer when ``ok``."""

    def __init__(self, disk: Disk, ok: bool, detail: str = "",
                 error: Exception | None = None, paths: list[PathResult] | None = None,
                 value: V | None = None) -> None:
        self.disk = disk
        self.ok = ok
        self.detail = detail
        self.error = error
        self.paths: list[PathResult] = [] if paths is None else paths
        self.value = value

    def __repr__(self) -> str:
        return (f"DiskResult(disk={getattr(self.disk, 'name', self.disk)!r}, ok={self.ok!r}, "
                f"detail={self.detail!r}, error={self.error!r}, paths={self.paths!r}, "
                f"value={self.value!r})")

    @property
    def path_failure(self) -> bool:
        """True when no path could carry the step (every path faulted), as opposed to an
        answer of the PR protocol (a refusal)."""
        return isinstance(self.error, PathError)

    def as_dict(self) -> dict[str, Any]:
        return {"disk": self.disk.name, "wwid": self.disk.wwid, "ok": self.ok,
                "detail": self.detail, "error": str(self.error) if self.error else None,
                "paths": [p.as_dict() for p in self.paths]}


class Outcome(Generic[V]):
    """One action's results, a :class:`DiskResult` per disk."""

    def __init__(self, action: str, results: list[DiskResult[V]]) -> None:
        self.action = action
        self.results = results

    def __repr__(self) -> str:
        return f"Outcome(action={self.action!r}, results={self.results!r})"

    @property
    def ok(self) -> bool:
        return all(r.ok for r in self.results)

    def failed(self) -> list[DiskResult[V]]:
        return [r for r in self.results if not r.ok]

    def as_dict(self) -> dict[str, Any]:
        return {"action": self.action, "ok": self.ok,
                "disks": [r.as_dict() for r in self.results]}


class Preemption(StrEnum):
    """How a victim left a LUN (the journal and the fence report say it)."""

    PREEMPT_AND_ABORT = "preempt-and-abort"
    PREEMPT = "preempt"
    ABSENT = "absent"  # it held no registration: already off the LUN


class LunStatus(NamedTuple):
    keys: tuple[int, ...]
    generation: int
    reservation: prm.Reservation
    full: prm.FullStatus | None = None
    #: The reservation was read just before the PREEMPT that could not change it, and
    #: the keys read afterwards show no other registration change (see fence).
    reservation_read_before: bool = False
