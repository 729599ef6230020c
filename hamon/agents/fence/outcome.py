"""What the disks said, and how it reads: per-disk states, reports, one-line reasons.

The fencer (:mod:`.fencer`) decides; this module only turns what the target answered
into values (:class:`DiskState`, :class:`Report`) and into the clauses an administrator
reads (``lun3: key 0x... of node2 is still registered``). Kept apart so the fencer reads
as the sequence of decisions it is, and so every message that ends up in an error line
is written in one place. Plain classes, not dataclasses (a fence's room; why:
docs/architecture.md, "What a fence loads").
"""
from __future__ import annotations

from collections.abc import Iterable

from hamon.agents.fence.errors import FenceError
from hamon.agents.fence.settings import Node
from hamon.lib import reservation as rsv
from hamon.lib.disk import Disk
from hamon.lib.scsi.pr import ReservationType, format_key


class DiskState:
    """What one READ KEYS + READ RESERVATION said about one disk (or why it did not)."""

    __slots__ = ("disk", "error", "holder", "keys", "rtype")

    def __init__(self, disk: Disk, keys: tuple[int, ...] = (), holder: int | None = None,
                 rtype: ReservationType | None = None, error: str | None = None) -> None:
        self.disk = disk
        self.keys = keys
        self.holder = holder
        self.rtype = rtype
        self.error = error

    def __repr__(self) -> str:
        return (f"DiskState(disk={self.disk.name!r}, keys={self.keys!r}, "
                f"holder={self.holder!r}, rtype={self.rtype!r}, error={self.error!r})")

    @classmethod
    def of(cls, disk: Disk, st: rsv.LunStatus) -> DiskState:
        """From the library's read-back of one LUN."""
        res = st.reservation
        return cls(disk, st.keys, res.key if res.held else None,
                   res.type if res.held else None)

    @property
    def readable(self) -> bool:
        return self.error is None

    @property
    def reserved(self) -> bool:
        return self.rtype is not None


class Report:
    """The outcome of an action: a summary line, and warnings worth a log line each."""

    __slots__ = ("notes", "summary", "warnings")

    def __init__(self, summary: str, warnings: list[str] | None = None,
                 notes: list[str] | None = None) -> None:
        self.summary = summary
        self.warnings: list[str] = [] if warnings is None else warnings
        self.notes: list[str] = [] if notes is None else notes

    def __repr__(self) -> str:
        return (f"Report(summary={self.summary!r}, warnings={self.warnings!r}, "
                f"notes={self.notes!r})")


def unreachable(d: Disk) -> str:
    """``name (path: reason, ...)``: why a disk gave no answer, path by path."""
    why = ", ".join(f"{p.name}: {p.reason}" if p.name != d.name else p.reason
                    for p in d.paths if p.reason)
    return f"{d.name} ({why})" if why else d.name


def fence_problems(st: DiskState, me: Node, victim: Node) -> list[str]:
    """Why ``victim`` may still write this disk after a fence; [] when it cannot."""
    name = st.disk.name
    if not st.readable:
        return [f"{name}: {st.error}"]
    out = []
    if victim.key in st.keys:
        out.append(f"{name}: key {format_key(victim.key)} of {victim.name} is still "
                   "registered")
    if me.key not in st.keys:
        out.append(f"{name}: the key {format_key(me.key)} of this node {me.name} is not "
                   "registered (this node may have been fenced)")
    if not st.reserved:
        out.append(f"{name}: no reservation is held, so unregistered nodes may still write")
    return out


def why(r: rsv.DiskResult) -> str:
    """A DiskResult's failure, as one clause (what the target or the path said)."""
    if r.path_failure:
        return f"no path answered ({r.error})"
    err = str(r.error) if r.error else r.detail
    return err.replace(f"{r.disk.name}: ", "", 1) if err.startswith(r.disk.name) else err


def raise_unreadable(states: list[DiskState], when: str) -> None:
    """FenceError naming every disk whose registrations could not be read."""
    bad = [f"{st.disk.name}: {st.error}" for st in states if not st.readable]
    if bad:
        raise FenceError(f"cannot read the registrations {when}: " + join(bad))


def path_warnings(out: rsv.Outcome) -> list[str]:
    """One warning per path that did not take the key (KAMN725-W in syslog too)."""
    warnings = []
    for r in out.results:
        if not r.ok:
            continue  # the disk as a whole failed: that is the error, not a warning
        for p in r.paths:
            if p.ok:
                continue
            path = next((x for x in r.disk.paths if x.name == p.path), None)
            label = r.disk.path_label(path) if path else p.path
            warnings.append(f"{label}: {p.detail}: {p.error}; the key is missing on this "
                            "path, register again (unfence) once it is back")
    return warnings


def join(items: Iterable[str]) -> str:
    """Several clauses as one error line."""
    return "; ".join(items)
