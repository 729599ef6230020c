"""HA Monitor's recovery procedure after a shared-disk failure, as data.

The seed (HA Monitor manual §7.5.8) prescribes four steps after a disk failure terminated
the active server's OS:

1. determine the cause (KAMN725-W / KAMN726-E, the kernel's messages, hardware tools);
2. resolve it (replace the device...); in a multipath configuration do *not* fail back yet;
3. in a multipath configuration fail the recovered path back with the multipath software
   (HDLM, DMMP); not for a single path, nor where no DMMP is used (VMware ESXi);
4. cancel the reservation if the failure hit a *normal* termination; after a planned or
   abnormal termination the standby forcibly obtained the reservation, nothing to cancel.

Which steps apply depends on three things, and on nothing else: the journal entry that
``hamon.lib.termination.act`` made durable before the OS went down (phase, termination
kind, failed paths), the state of the paths and the reservation *now*, and the multipath
software in use. :func:`build` turns those into a :class:`Plan` (every step, whether it
applies, and why) without touching a device, so every branch is testable with plain data;
the ``hamon recover`` command gathers the inputs and prints or runs the plan.

Trust: a torn or damaged journal line is never read as an entry (see
:mod:`hamon.lib.journal`). When such a line is *newer* than the last intact failure
entry, it may be the record of the very failure being recovered from, so the termination
kind is then treated as unknown and step 4 says what to check instead of guessing:
cancelling a reservation that the standby legitimately took over would be the one
harmful mistake in this procedure.
"""
from __future__ import annotations

import contextlib
import re
import shlex
import subprocess
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum
from typing import TYPE_CHECKING, Any

from hamon.lib import failback
from hamon.lib import keys as keymod
from hamon.lib.disk import split_operands
from hamon.lib.journal import Record
from hamon.lib.messages import format_message
from hamon.lib.scsi.pr import format_key

if TYPE_CHECKING:
    from hamon.lib.disk import Disk
    from hamon.lib.reservation import DiskResult


class Applies(StrEnum):
    YES = "yes"          # do this step
    NO = "no"            # the step does not apply here; ``why`` says why
    DONE = "done"        # nothing left to do for it; ``why`` says what shows that
    UNKNOWN = "unknown"  # hamon cannot tell; ``why`` says what to check


# -- the state now -----------------------------------------------------------------------
@dataclass(frozen=True)
class PathNow:
    """One path as hamon's check and the multipath software see it now."""

    name: str
    state: str                  # up | failed | unknown: hamon's TEST UNIT READY
    reason: str = ""
    os_state: str | None = None  # sysfs / multipathd / HDLM
    os_failed: bool = False

    @property
    def answers(self) -> bool:
        return self.state == "up"


@dataclass(frozen=True)
class ReservationNow:
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
    paths = tuple(PathNow(p.name, str(p.state), p.reason, p.os_state, p.os_failed)
                  for p in disk.paths)
    res = err = None
    if status is not None:
        if status.ok:
            r = status.value.reservation
            res = ReservationNow(r.held, r.key, r.type.short if r.type else None,
                                 tuple(status.value.keys))
        else:
            err = str(status.error or status.detail)
    return DiskNow(disk.name, str(disk.kind), disk.wwid, paths, None, res, err)


# -- which journal entry -----------------------------------------------------------------
@dataclass(frozen=True)
class Selection:
    """The failure entry a recovery is about, and what the journal says around it."""

    entry: dict[str, Any] | None
    line: int | None
    torn: tuple[Record, ...] = ()        # every torn/damaged line
    newer_torn: tuple[Record, ...] = ()  # of those, the ones after ``entry`` (or all)
    later: tuple[dict[str, Any], ...] = ()  # intact entries after it, about its disks


def entry_disks(entry: dict[str, Any]) -> list[dict[str, Any]]:
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
                       if r.entry and r.entry.get("verdict") == "terminate-os"]
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


# -- the plan ----------------------------------------------------------------------------
@dataclass
class Step:
    number: int
    title: str
    applies: Applies
    why: str
    details: list[str] = field(default_factory=list)
    #: commands hamon runs for the administrator after confirmation (failback)
    commands: list[failback.Command] = field(default_factory=list)
    #: commands the administrator runs (hamon does not run them from ``recover``)
    suggested: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {"step": self.number, "title": self.title, "applies": str(self.applies),
                "why": self.why, "details": self.details,
                "commands": [c.as_dict() for c in self.commands],
                "suggested": self.suggested}


@dataclass
class Plan:
    device: str | None
    entry: dict[str, Any] | None
    entry_line: int | None
    termination: str
    warnings: list[str]
    disks: list[DiskNow]
    steps: list[Step]

    @property
    def failback_commands(self) -> list[failback.Command]:
        return [c for s in self.steps for c in s.commands]

    def step(self, number: int) -> Step:
        return next(s for s in self.steps if s.number == number)

    def as_dict(self) -> dict[str, Any]:
        return {"device": self.device, "entry": self.entry, "entry_line": self.entry_line,
                "termination": self.termination, "warnings": self.warnings,
                "disks": [d.as_dict() for d in self.disks],
                "steps": [s.as_dict() for s in self.steps]}


TITLES = {
    1: "Determine the cause of the device failure",
    2: "Resolve the cause (do not fail back yet)",
    3: "Fail back the recovered path with the multipath software",
    4: "Cancel the reservation",
}

KAMN_HINT = "journalctl -t hamon | grep -E 'KAMN72[5-7]'  (or grep KAMN /var/log/syslog)"


def describe_key(key: int | None, nodes: Iterable[str],
                 explicit: Mapping[int, str] | None = None) -> str:
    """``0x686d... (node2)``: a key with its owner, as far as hamon can name it
    (``explicit``: configured keys, e.g. the fence device's node_keys)."""
    if key is None:
        return "-"
    if key == 0:
        return "0x0 (all registrants)"
    who = (explicit or {}).get(key) or keymod.owner_label(key, list(nodes))
    if who:
        return f"{format_key(key)} ({who})"
    if keymod.is_hamon_key(key):
        return f"{format_key(key)} (a hamon key of a node not named here)"
    return f"{format_key(key)} (not a hamon-derived key)"


def termination_of(sel: Selection) -> tuple[str, str]:
    """The termination kind to act on, and why it is unknown when it is."""
    if sel.entry is None:
        why = "no intact failure entry in the journal"
        if sel.torn:
            why += f" ({len(sel.torn)} torn or damaged line(s) not trusted)"
        return "unknown", why
    if sel.newer_torn:
        lines = ", ".join(str(r.line) for r in sel.newer_torn)
        return "unknown", (f"journal line(s) {lines} after the entry are torn or damaged; "
                           "one of them may record the failure being recovered from, so "
                           "the termination kind recorded earlier is not relied on")
    kind = str(sel.entry.get("termination") or "unknown")
    if kind not in ("normal", "planned", "abnormal"):
        why = f"the entry records termination kind {kind!r}"
        reason = sel.entry.get("termination_reason")
        if reason:
            why += f" (at the stop: {reason}"
            signals = sel.entry.get("termination_signals") or []
            why += f"; signals: {', '.join(map(str, signals))})" if signals else ")"
        rsc = sel.entry.get("resource") or "RESOURCE"
        why += ("; look at what Pacemaker did then: the transition that stopped "
                f"{rsc} in the cluster log (grep -E 'Stop|Move|Recover|Restart' "
                f"/var/log/pacemaker/pacemaker.log | grep {shlex.quote(str(rsc))}) "
                "around the entry's time, and crm_mon -1 --show-detail (failed actions, "
                "fencing history, standby and constraints)")
        return "unknown", why
    return kind, ""


def _failed_paths(entry: dict[str, Any] | None) -> dict[str, list[dict[str, Any]]]:
    if entry is None:
        return {}
    return {str(d.get("disk")): failed_paths(d)
            for d in entry_disks(entry)}


def _step1(sel: Selection, disks: list[DiskNow], kernel: dict[str, list[str]]) -> Step:
    e = sel.entry
    details: list[str] = []
    if e is not None:
        details.append(f"journal line {sel.line}: {summarize(e)}")
        details.append(f"  alias {e.get('alias') or '-'}, resource "
                       f"{e.get('resource') or '-'}, OS action {e.get('os_action') or '-'}")
        details.extend(f"  later: {summarize(x)}" for x in sel.later)
        details.append("Messages hamon issued then:")
        for d in entry_disks(e):
            for p in failed_paths(d):
                m = format_message("KAMN725", device=p.get("label") or p.get("path"),
                                   code=p.get("code"), alias=e.get("alias"),
                                   host=e.get("node"), hostkey=e.get("key"))
                details.append(f"  {m}")
                if p.get("reason"):
                    details.append(f"      reason: {p['reason']}")
            if d.get("all_failed"):
                m = format_message("KAMN726", device=d.get("disk"), alias=e.get("alias"),
                                   failed=",".join(str(p.get("path"))
                                                   for p in failed_paths(d)))
                details.append(f"  {m}")
    else:
        details.append("No failure is recorded in the journal; look for KAMN725-W and "
                       "KAMN726-E in the logs.")
    failed_names = sorted({str(p.get("path")) for ps in _failed_paths(e).values()
                           for p in ps} | {p.name for d in disks for p in d.paths
                                           if not p.answers})
    if failed_names:
        details.append("Kernel messages about the failed paths:")
        for name in failed_names:
            lines = kernel.get(name)
            if not name.startswith("/dev/"):
                details.append(f"  {name}: no kernel device (userspace iSCSI); see the "
                               "target's and the network's logs")
            elif lines:
                details.append(f"  {name}:")
                details.extend(f"    {ln}" for ln in lines)
            else:
                details.append(f"  {name}: none found (journalctl -k, dmesg)")
    details.append("Paths now (hamon's TEST UNIT READY; the OS's view in brackets):")
    for d in disks:
        if d.error:
            details.append(f"  {d.disk}: cannot be opened now: {d.error}")
            continue
        up = sum(p.answers for p in d.paths)
        details.append(f"  {d.disk} ({d.kind}): {up}/{len(d.paths)} path(s) answer")
        for p in d.paths:
            extra = f" [{p.os_state}]" if p.os_state else ""
            reason = f": {p.reason}" if p.reason and not p.answers else ""
            details.append(f"    {p.name} {p.state}{reason}{extra}")
    details.append(f"Also: {KAMN_HINT}; the storage's and the SAN's management tools.")
    why = ("the journal records the failure; compare it with the kernel's messages and "
           "the hardware tools" if e is not None else
           "nothing recorded: find the cause from the messages and the hardware tools")
    return Step(1, TITLES[1], Applies.YES, why, details)


def _step2(sel: Selection, disks: list[DiskNow]) -> Step:
    details = []
    still = []
    for d in disks:
        if d.error:
            still.append(d.disk)
            details.append(f"{d.disk}: cannot be opened: {d.error}")
            continue
        for p in d.paths:
            if p.answers:
                continue
            still.append(p.name)
            details.append(f"{p.name}: still failed ({p.reason or p.state})")
            if p.os_state and "offline" in p.os_state and p.name.startswith("/dev/sd"):
                dev = p.name.rsplit("/", 1)[-1]
                details.append(f"  the kernel has set it offline; once the hardware is "
                               f"fixed: echo running > /sys/block/{dev}/device/state")
    if still and any(d.kind in ("dmmp", "hdlm") for d in disks):
        details.append("In a multipath configuration do not fail the path back yet "
                       "(step 3 does it once the path is fixed).")
    if still:
        return Step(2, TITLES[2], Applies.YES,
                    "replace or repair what failed (device, cable, HBA, switch port, "
                    f"target); {len(still)} path(s) or disk(s) still fail", details)
    if sel.entry is None and not any(d.paths for d in disks):
        return Step(2, TITLES[2], Applies.UNKNOWN, "no disk to check", details)
    return Step(2, TITLES[2], Applies.DONE,
                "every path answers hamon's check now: the cause looks resolved", details)


def _step3(disks: list[DiskNow], dlnkmgr: str) -> Step:
    details: list[str] = []
    commands: list[failback.Command] = []
    states: list[Applies] = []
    for d in disks:
        n = len(d.paths)
        if d.kind == "scsi" or (n == 1 and d.kind not in ("dmmp", "hdlm")):
            states.append(Applies.NO)
            details.append(f"{d.disk}: a single path: nothing to fail back")
            continue
        if d.kind not in ("dmmp", "hdlm"):
            states.append(Applies.NO)
            details.append(f"{d.disk}: {n} {d.kind or 'unknown'} paths without multipath "
                           "software (as under VMware ESXi without DMMP): a path is used "
                           "again as soon as it answers, nothing to fail back")
            continue
        if d.error:
            states.append(Applies.UNKNOWN)
            details.append(f"{d.disk}: cannot see its paths now ({d.error}); fail back "
                           "after step 2 with "
                           + ("multipathd reinstate path sdX" if d.kind == "dmmp"
                              else "dlnkmgr online -pathid N -s"))
            continue
        a = failback.assess(d.disk, d.kind, d.paths, dlnkmgr)
        commands.extend(a.commands)
        for c in a.commands:
            details.append(f"{d.disk}: {c.path} {c.why}")
        for name in a.not_yet:
            details.append(f"{d.disk}: {name} does not answer yet: fix it first (step 2)")
        details.extend(f"{d.disk}: {u}" for u in a.unknown)
        if a.commands:
            states.append(Applies.YES)
        elif a.not_yet or a.unknown:
            states.append(Applies.UNKNOWN if a.unknown else Applies.YES)
        else:
            states.append(Applies.DONE)
            sw = "multipathd" if d.kind == "dmmp" else "HDLM"
            details.append(f"{d.disk}: {sw} uses every path: nothing to fail back")
    if not states:
        return Step(3, TITLES[3], Applies.UNKNOWN, "no disk to look at", details)
    if commands:
        why = "in a multipath configuration the recovered path is failed back with the " \
              "multipath software; hamon runs these commands once you confirm"
        return Step(3, TITLES[3], Applies.YES, why, details, commands)
    if Applies.YES in states:
        return Step(3, TITLES[3], Applies.YES,
                    "multipath: fail the path back once it answers (after step 2)", details)
    if Applies.UNKNOWN in states:
        return Step(3, TITLES[3], Applies.UNKNOWN, "hamon cannot tell (see below)", details)
    if Applies.DONE in states:
        return Step(3, TITLES[3], Applies.DONE, "every path is in use again", details)
    return Step(3, TITLES[3], Applies.NO,
                "not needed for a single path or where no multipath software (DMMP, "
                "HDLM) is used", details)


def _holder_lines(disks: list[DiskNow], nodes: Sequence[str]) -> list[str]:
    out = []
    for d in disks:
        r = d.reservation
        if r is None:
            out.append(f"{d.disk}: the reservation cannot be read now"
                       f" ({d.reservation_error or d.error or 'no path answers'})")
        elif not r.held:
            keys = ", ".join(describe_key(k, nodes) for k in dict.fromkeys(r.keys))
            out.append(f"{d.disk}: nobody holds a reservation now"
                       + (f"; registered: {keys}" if keys else "; no key registered"))
        else:
            out.append(f"{d.disk}: held now by {describe_key(r.key, nodes)} ({r.type})")
    return out


def _left_by(disks: list[DiskNow], key: int | None) -> list[str]:
    """The disks that, read now, still hold ``key``'s registration or reservation (a
    disk that cannot be read counts: nothing says it was released)."""
    if key is None:
        return []
    out = []
    for d in disks:
        r = d.reservation
        if r is None or key in r.keys or (r.held and r.key == key):
            out.append(d.disk)
    return out


def _step4(sel: Selection, disks: list[DiskNow], nodes: Sequence[str],
           termination: str, unknown_why: str) -> Step:
    e = sel.entry
    holders = _holder_lines(disks, nodes)
    cancels = [x for x in sel.later if x.get("kind") == "cancel"]
    cancel_cmd = [f"hamon reservation cancel {shlex.quote(d.disk)}" for d in disks
                  if d.reservation is None or d.reservation.held]
    failed_node = str(e.get("node")) if e else None
    failed_key = None
    with contextlib.suppress(ValueError):  # the key the stop journalled, else derived
        failed_key = keymod.parse_key(str(e.get("key"))) if e and e.get("key") else None
    if failed_key is None and failed_node:
        failed_key = keymod.key_for_node(failed_node)
    if e is not None and not sel.newer_torn:  # the phase decides before the kind does
        phase, verdict = e.get("phase"), e.get("verdict")
        if phase != "terminating":
            what = {"switchover": "the switchover failed (§7.5.10): the reservation stays "
                                  "where it was and Pacemaker decides what runs where",
                    "standby": "the standby resumed processing (§7.5.9)",
                    "running": "the active server kept the disk; Pacemaker recovers the "
                               "resource (§7.5.7)"}.get(str(phase), f"phase {phase}")
            return Step(4, TITLES[4], Applies.NO,
                        f"the failure happened while {phase}, not while the active server "
                        f"was terminating: no OS termination left a reservation behind; "
                        f"{what}", holders)
        left = _left_by(disks, failed_key)
        if verdict != "terminate-os" and not left:
            return Step(4, TITLES[4], Applies.NO,
                        "only some paths failed: the termination completed and the OS "
                        "kept running, and the disk, read now, holds nothing of "
                        f"{failed_node}'s", holders)
        if verdict != "terminate-os":
            # the stop could not release (it failed, so Pacemaker escalated): what is on
            # the disk now decides, as after an OS termination
            holders = [*holders, *(f"{d}: the stop of {failed_node} left its key there"
                                   for d in left)]
    if cancels:
        return Step(4, TITLES[4], Applies.DONE, f"cancelled already: {summarize(cancels[-1])}",
                    holders)
    if termination in ("planned", "abnormal"):
        details = list(holders)
        for d in disks:
            r = d.reservation
            if r is not None and r.held and failed_key is not None and r.key == failed_key:
                details.append(f"{d.disk}: still held by the failed node {failed_node}'s "
                               "key: the standby has not taken over yet (check crm_mon); "
                               "it preempts the reservation when it starts the service")
            elif r is not None and not r.held:
                details.append(f"{d.disk}: the standby has not started the service yet; "
                               "it obtains the reservation when it does")
        return Step(4, TITLES[4], Applies.NO,
                    f"the failure hit {'an' if termination == 'abnormal' else 'a'} "
                    f"{termination} termination: the standby forcibly "
                    "obtains the reservation, there is nothing to cancel", details)
    if termination == "normal":
        unread = [d for d in disks if d.reservation is None]
        held = [d for d in disks if d.reservation is not None and d.reservation.held]
        details = list(holders)
        for d in held:
            r = d.reservation
            assert r is not None
            if failed_key is not None and r.key != failed_key:
                details.append(f"{d.disk}: held by another key than the failed node "
                               f"{failed_node}'s: the service may have been started again "
                               "since; cancel only a stale reservation (hamon refuses to "
                               "cancel one a live node holds)")
        if not held and not unread:
            return Step(4, TITLES[4], Applies.DONE,
                        "the failure hit a normal termination, but nobody holds the "
                        "reservation any more (released, cancelled or fenced)", details)
        if unread and not held:
            details.append("cancel once a path answers again")
        return Step(4, TITLES[4], Applies.YES,
                    "the failure hit a normal termination: the reservation stays held and "
                    "no standby takes it over, so cancel it (HA Monitor 7.5.12)", details,
                    suggested=cancel_cmd)
    why = (f"hamon cannot tell which termination was underway: {unknown_why}. If it was a "
           "normal termination (the service was stopped to start nowhere else), cancel the "
           "reservation; after a planned or abnormal termination the standby obtains it and "
           "nothing is to be cancelled. Check the cluster log (pacemaker.log) and crm_mon.")
    return Step(4, TITLES[4], Applies.UNKNOWN, why, holders, suggested=cancel_cmd)


def build(sel: Selection, disks: list[DiskNow], *, device: str | None = None,
          nodes: Sequence[str] = (), kernel: dict[str, list[str]] | None = None,
          dlnkmgr: str = "dlnkmgr") -> Plan:
    """The procedure for ``disks`` given the journal ``sel``ection. Pure: no I/O."""
    termination, unknown_why = termination_of(sel)
    warnings = [f"journal line {r.line}: {r.problem}; not trusted" for r in sel.torn]
    if sel.entry is not None and sel.newer_torn:
        warnings.append(unknown_why)
    nodes = list(dict.fromkeys([*nodes, *([str(sel.entry["node"])]
                                          if sel.entry and sel.entry.get("node") else [])]))
    steps = [_step1(sel, disks, kernel or {}), _step2(sel, disks),
             _step3(disks, dlnkmgr), _step4(sel, disks, nodes, termination, unknown_why)]
    return Plan(device, sel.entry, sel.line, termination, warnings, disks, steps)


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


# -- kernel messages (the one impure helper here; bounded) --------------------------------
KERNEL_LOG_TIMEOUT = 10.0
KERNEL_LINES_PER_DEVICE = 20

Runner = Callable[[list[str], float], tuple[int, str]]


def _run(argv: list[str], timeout: float) -> tuple[int, str]:
    try:
        p = subprocess.run(argv, capture_output=True, text=True, timeout=timeout,
                           check=False)
    except (OSError, subprocess.TimeoutExpired):
        return 1, ""
    return p.returncode, p.stdout


def kernel_messages(devices: Iterable[str], around: str | None = None, *,
                    runner: Runner = _run, timeout: float = KERNEL_LOG_TIMEOUT,
                    limit: int = KERNEL_LINES_PER_DEVICE) -> dict[str, list[str]]:
    """Kernel lines naming each ``/dev/...`` device, around the failure's time.

    The failure usually happened in the *previous* boot (the OS was terminated), which
    ``dmesg`` no longer has: journald's kernel transport across boots is asked first,
    from ten minutes before to five after the entry, then ``dmesg`` for this boot.
    """
    names = {d: d.rsplit("/", 1)[-1] for d in devices if d.startswith("/dev/")}
    if not names:
        return {}
    texts = []
    argv = ["journalctl", "_TRANSPORT=kernel", "--no-pager", "-q", "-o", "short-iso"]
    when = _parse_time(around)
    if when is not None:
        argv += ["--since", (when - timedelta(minutes=10)).strftime("%Y-%m-%d %H:%M:%S"),
                 "--until", (when + timedelta(minutes=5)).strftime("%Y-%m-%d %H:%M:%S")]
    rc, out = runner(argv, timeout)
    if rc == 0:
        texts.append(out)
    rc, out = runner(["dmesg", "-T"], timeout)
    if rc == 0:
        texts.append(out)
    found: dict[str, list[str]] = {}
    for dev, base in names.items():
        pat = re.compile(rf"(?<![\w-]){re.escape(base)}(?![\w-])")
        lines = [ln for t in texts for ln in t.splitlines() if pat.search(ln)]
        if lines:
            found[dev] = list(dict.fromkeys(lines))[-limit:]
    return found


def _parse_time(text: str | None) -> datetime | None:
    if not text:
        return None
    try:
        t = datetime.fromisoformat(text)
    except ValueError:
        return None
    return t.astimezone() if t.tzinfo else t  # journalctl reads local time
