"""Which journal entry a recovery is about, read as plain data.

Pure: the records come from :meth:`hamon.lib.journal.Journal.read`, nothing here opens a
file or a device. A torn or damaged line is never read as an entry; the lines that are
torn are carried along (:class:`Selection`) because step 4 must know whether one of them
is newer than the entry it relies on.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from hamon.lib.disk import split_operands
from hamon.lib.journal import Record
from hamon.lib.termination import Verdict


@dataclass(frozen=True)
class Selection:
    """The failure entry a recovery is about, and what the journal says around it."""

    entry: dict[str, Any] | None
    line: int | None
    torn: tuple[Record, ...] = ()        # every torn/damaged line
    newer_torn: tuple[Record, ...] = ()  # of those, the ones after ``entry`` (or all)
    later: tuple[dict[str, Any], ...] = ()  # intact entries after it, about its disks


def entry_disks(entry: dict[str, Any]) -> list[dict[str, Any]]:
    """A journalled entry's disks; a malformed ``disks`` field reads as none."""
    disks = entry.get("disks")
    return [d for d in disks if isinstance(d, dict)] if isinstance(disks, list) else []


def failed_paths(disk: dict[str, Any]) -> list[dict[str, Any]]:
    """A journalled disk's failed paths; whatever else is there is ignored, not trusted."""
    failed = disk.get("failed")
    return [p for p in failed if isinstance(p, dict)] if isinstance(failed, list) else []


def concerns(entry: dict[str, Any], device: str | None, wwid: str | None = None) -> bool:
    """Does ``entry`` name ``device`` (by operand or LUN identity)? None: any device.

    ``device`` may be an operand list as the agents take it (``url-A,url-B``: one LUN by
    two portals): any of its operands naming the journalled disk or one of its failed
    paths is a match. That matters exactly when recovery needs it, with every path down:
    the LUN identity cannot be read then, and the operand is all there is to go on.
    """
    if device is None and wwid is None:
        return True
    operands = set(split_operands(device)) if device is not None else set()
    for d in entry_disks(entry):
        if d.get("disk") in operands:
            return True
        if wwid and d.get("wwid") == wwid:
            return True
        if any(p.get("path") in operands for p in failed_paths(d)):
            return True
    return False


def select(records: Sequence[Record], device: str | None = None,
           wwid: str | None = None) -> Selection:
    """The failure a recovery is about (for ``device`` when given).

    That is the newest intact entry whose verdict was an OS termination, when there is
    one, else the newest failure entry. Why not simply the newest: after the node comes
    back, Pacemaker's probe (phase standby) or a monitor run by hand journals the paths
    that still fail, and that later entry must not hide the termination kind of the
    failure that took the OS down; step 4 depends on it. Later entries stay visible
    (``later``) and are listed in step 1.
    """
    torn = tuple(r for r in records if not r.valid)
    failures = [r for r in records if r.valid and r.entry and
                r.entry.get("kind") == "failure" and concerns(r.entry, device, wwid)]
    os_terminations = [r for r in failures
                       if r.entry and r.entry.get("verdict") == Verdict.TERMINATE_OS]
    chosen = (os_terminations or failures or [None])[-1]
    if chosen is None or chosen.entry is None:
        return Selection(None, None, torn, torn)
    names = {d.get("disk") for d in entry_disks(chosen.entry)}
    wwids = {d.get("wwid") for d in entry_disks(chosen.entry) if d.get("wwid")}
    later = tuple(r.entry for r in records
                  if r.valid and r.entry and r.line > chosen.line
                  and any(d.get("disk") in names or (d.get("wwid") in wwids)
                          for d in entry_disks(r.entry)))
    newer = tuple(r for r in torn if r.line > chosen.line)
    return Selection(chosen.entry, chosen.line, torn, newer, later)


def last_entry(records: Sequence[Record], device: str,
               wwid: str | None = None) -> dict[str, Any] | None:
    """The newest intact entry of any kind about ``device`` (for ``hamon status``)."""
    for r in reversed(records):
        if r.valid and r.entry and (concerns(r.entry, device, wwid)
                                    if r.entry.get("disks") else False):
            return r.entry
    return None


def _count(value: object) -> int | None:
    """A journalled count, or None when the entry does not hold a number there."""
    if isinstance(value, bool):
        return None
    try:
        return int(value)  # type: ignore[call-overload]
    except (TypeError, ValueError):
        return None


def summarize(entry: dict[str, Any]) -> str:
    """One line for an entry: what, when, where."""
    kind = entry.get("kind", "?")
    when = entry.get("time", "?")
    if kind == "failure":
        disks = entry_disks(entry)
        failed = sum(len(failed_paths(d)) for d in disks)
        totals = [_count(d.get("paths_total")) for d in disks]
        # A total that was not recorded is shown as unknown, never guessed as 0.
        total = (str(sum(t for t in totals if t is not None))
                 if disks and None not in totals else "?")
        return (f"{when} failure on {entry.get('node') or '?'} while "
                f"{entry.get('phase', '?')} ({entry.get('termination', 'unknown')} "
                f"termination): {failed}/{total} path(s) failed, verdict "
                f"{entry.get('verdict', '?')}")
    if kind == "cancel":
        holders = ", ".join(str(d.get("holder")) for d in entry_disks(entry))
        overrides = entry.get("overrides") or (["--force"] if entry.get("forced") else [])
        forced = f" with {', '.join(map(str, overrides))}" if overrides else ""
        return f"{when} reservation cancelled by {entry.get('node') or '?'}{forced} " \
               f"(previous holder {holders or '-'})"
    return f"{when} {kind}"


def operands_of(entry: dict[str, Any], device: str | None = None) -> list[list[str]]:
    """What to resolve to see the entry's disks now: per disk, its operand and, for
    ``iscsi://`` disks, every recorded path URL (a URL disk's name is its first path)."""
    out = []
    for d in entry_disks(entry):
        if device is not None and not concerns({"disks": [d]}, device):
            continue
        name = str(d.get("disk"))
        ops = [name]
        if name.startswith("iscsi://"):
            ops += [str(p.get("path")) for p in failed_paths(d)
                    if str(p.get("path")).startswith("iscsi://")]
        out.append(list(dict.fromkeys(ops)))
    return out
