"""What a reservation step returns: per path, per disk, per action, and what a LUN
showed when read. Plain values; the operations beside this module fill them.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Generic, TypeVar

from hamon.lib.disk import Disk
from hamon.lib.scsi import pr as prm
from hamon.lib.transport.base import PathError

#: What a one-path step returns per disk (a LunStatus, a fence's Preempted, ...).
V = TypeVar("V")


@dataclass
class PathResult:
    path: str
    ok: bool
    detail: str = ""
    error: Exception | None = None
    unit_attentions: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {"path": self.path, "ok": self.ok, "detail": self.detail,
                "error": str(self.error) if self.error else None,
                "unit_attentions": self.unit_attentions}


@dataclass
class DiskResult(Generic[V]):
    """One disk's result of a step; ``value`` is the step's typed answer when ``ok``."""

    disk: Disk
    ok: bool
    detail: str = ""
    error: Exception | None = None
    paths: list[PathResult] = field(default_factory=list)
    value: V | None = None

    @property
    def path_failure(self) -> bool:
        """True when no path could carry the step (every path faulted), as opposed to an
        answer of the PR protocol (a refusal)."""
        return isinstance(self.error, PathError)

    def as_dict(self) -> dict[str, Any]:
        return {"disk": self.disk.name, "wwid": self.disk.wwid, "ok": self.ok,
                "detail": self.detail, "error": str(self.error) if self.error else None,
                "paths": [p.as_dict() for p in self.paths]}


@dataclass
class Outcome(Generic[V]):
    action: str
    results: list[DiskResult[V]]

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


@dataclass(frozen=True)
class LunStatus:
    keys: tuple[int, ...]
    generation: int
    reservation: prm.Reservation
    full: prm.FullStatus | None = None
    #: The reservation was read just before the PREEMPT that could not change it, and
    #: the keys read afterwards show no other registration change (see fence).
    reservation_read_before: bool = False
