"""The four steps of the recovery procedure, each decided over plain data.

Each ``stepN`` function answers one question of HA Monitor's §7.5.8 for the disks as read
now (:mod:`hamon.lib.recovery.observed`) and the journal entry chosen
(:mod:`hamon.lib.recovery.selection`): does the step apply here, and why. Pure: no I/O, so
every branch is tested cell by cell (tests/unit/test_recovery.py). Step 4 is the one
whose mistake would harm (cancelling a reservation a standby legitimately took over), so
it says what to check whenever the termination kind is not known.
"""
from __future__ import annotations

import contextlib
import shlex
from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from hamon.lib import failback
from hamon.lib import keys as keymod
from hamon.lib.disk import DiskKind
from hamon.lib.messages import format_message
from hamon.lib.recovery.observed import DiskNow, describe_key
from hamon.lib.recovery.selection import Selection, entry_disks, failed_paths, summarize
from hamon.lib.termination import Phase, TerminationKind, Verdict


class Applies(StrEnum):
    """Whether a step is to be done; every value comes with a ``why``."""

    YES = "yes"          # do this step
    NO = "no"            # the step does not apply here; ``why`` says why
    DONE = "done"        # nothing left to do for it; ``why`` says what shows that
    UNKNOWN = "unknown"  # hamon cannot tell; ``why`` says what to check


@dataclass
class Step:
    """One step of the procedure as decided here: whether it applies, why, what to run."""

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


TITLES = {
    1: "Determine the cause of the device failure",
    2: "Resolve the cause (do not fail back yet)",
    3: "Fail back the recovered path with the multipath software",
    4: "Cancel the reservation",
}

#: multipath software that fails a recovered path back (step 3); others use it at once
MULTIPATH = (DiskKind.DMMP, DiskKind.HDLM)

KAMN_HINT = "journalctl -t hamon | grep -E 'KAMN72[5-7]'  (or grep KAMN /var/log/syslog)"


def _failed_paths(entry: dict[str, Any] | None) -> dict[str, list[dict[str, Any]]]:
    if entry is None:
        return {}
    return {str(d.get("disk")): failed_paths(d)
            for d in entry_disks(entry)}


def step1(sel: Selection, disks: list[DiskNow], kernel: dict[str, list[str]]) -> Step:
    """Determine the cause: what the journal, the kernel and the paths now say."""
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


def step2(sel: Selection, disks: list[DiskNow]) -> Step:
    """Resolve the cause: done once every path answers hamon's check again."""
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
    if still and any(d.kind in MULTIPATH for d in disks):
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


def step3(disks: list[DiskNow], dlnkmgr: str) -> Step:
    """Fail back: only under multipath software, only for paths that answer again."""
    details: list[str] = []
    commands: list[failback.Command] = []
    states: list[Applies] = []
    for d in disks:
        n = len(d.paths)
        if d.kind == DiskKind.SCSI or (n == 1 and d.kind not in MULTIPATH):
            states.append(Applies.NO)
            details.append(f"{d.disk}: a single path: nothing to fail back")
            continue
        if d.kind not in MULTIPATH:
            states.append(Applies.NO)
            details.append(f"{d.disk}: {n} {d.kind or 'unknown'} paths without multipath "
                           "software (as under VMware ESXi without DMMP): a path is used "
                           "again as soon as it answers, nothing to fail back")
            continue
        if d.error:
            states.append(Applies.UNKNOWN)
            details.append(f"{d.disk}: cannot see its paths now ({d.error}); fail back "
                           "after step 2 with "
                           + ("multipathd reinstate path sdX" if d.kind == DiskKind.DMMP
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
            sw = "multipathd" if d.kind == DiskKind.DMMP else "HDLM"
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


def _holder_lines(disks: list[DiskNow], nodes: Sequence[str],
                  cluster: str | None) -> list[str]:
    out = []
    for d in disks:
        r = d.reservation
        if r is None:
            out.append(f"{d.disk}: the reservation cannot be read now"
                       f" ({d.reservation_error or d.error or 'no path answers'})")
        elif not r.held:
            keys = ", ".join(describe_key(k, nodes, cluster=cluster)
                             for k in dict.fromkeys(r.keys))
            out.append(f"{d.disk}: nobody holds a reservation now"
                       + (f"; registered: {keys}" if keys else "; no key registered"))
        else:
            out.append(f"{d.disk}: held now by "
                       f"{describe_key(r.key, nodes, cluster=cluster)} ({r.type})")
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


def step4(sel: Selection, disks: list[DiskNow], nodes: Sequence[str],
          termination: str, unknown_why: str, cluster: str | None = None) -> Step:
    """Cancel the reservation: only after a normal termination left it held; the phase
    decides before the termination kind does, and an unknown kind says what to check.
    ``cluster``: the cluster name keys are derived with (None: hamon.lib.keys finds it)."""
    e = sel.entry
    holders = _holder_lines(disks, nodes, cluster)
    cancels = [x for x in sel.later if x.get("kind") == "cancel"]
    failed_node = str(e.get("node")) if e else None
    failed_key = None
    with contextlib.suppress(ValueError):  # the key the stop journalled, else derived
        failed_key = keymod.parse_key(str(e.get("key"))) if e and e.get("key") else None
    if failed_key is None and failed_node:
        failed_key = keymod.key_for_node(failed_node, cluster)
    # Never advise cancelling a reservation another node's key holds now (the standby
    # took over, or the service was started again): only the failed node's, or one that
    # cannot be read, or any when the failed node's key is not known.
    theirs = [d for d in disks if d.reservation is not None and d.reservation.held
              and failed_key is not None and d.reservation.key != failed_key]
    cancel_cmd = [f"hamon reservation cancel {shlex.quote(d.disk)}" for d in disks
                  if d not in theirs and (d.reservation is None or d.reservation.held)]
    taken_over = [f"{d.disk}: held by another key than the failed node {failed_node}'s: "
                  "not to be cancelled (hamon refuses to cancel one a live node holds)"
                  for d in theirs]
    if e is not None and not sel.newer_torn:  # the phase decides before the kind does
        phase, verdict = e.get("phase"), e.get("verdict")
        if phase != Phase.TERMINATING:
            what = {Phase.SWITCHOVER: "the switchover failed (§7.5.10): the reservation stays "
                                  "where it was and Pacemaker decides what runs where",
                    Phase.STANDBY: "the standby resumed processing (§7.5.9)",
                    Phase.RUNNING: "the active server kept the disk; Pacemaker recovers the "
                               "resource (§7.5.7)"}.get(str(phase), f"phase {phase}")
            return Step(4, TITLES[4], Applies.NO,
                        f"the failure happened while {phase}, not while the active server "
                        f"was terminating: no OS termination left a reservation behind; "
                        f"{what}", holders)
        left = _left_by(disks, failed_key)
        if verdict != Verdict.TERMINATE_OS and not left:
            return Step(4, TITLES[4], Applies.NO,
                        "only some paths failed: the termination completed and the OS "
                        "kept running, and the disk, read now, holds nothing of "
                        f"{failed_node}'s", holders)
        if verdict != Verdict.TERMINATE_OS:
            # the stop could not release (it failed, so Pacemaker escalated): what is on
            # the disk now decides, as after an OS termination
            holders = [*holders, *(f"{d}: the stop of {failed_node} left its key there"
                                   for d in left)]
    if cancels:
        return Step(4, TITLES[4], Applies.DONE, f"cancelled already: {summarize(cancels[-1])}",
                    holders)
    if termination in (TerminationKind.PLANNED, TerminationKind.ABNORMAL):
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
                    f"the failure hit {'an' if termination == TerminationKind.ABNORMAL else 'a'} "
                    f"{termination} termination: the standby forcibly "
                    "obtains the reservation, there is nothing to cancel", details)
    if termination == TerminationKind.NORMAL:
        unread = [d for d in disks if d.reservation is None]
        held = [d for d in disks if d.reservation is not None and d.reservation.held]
        details = [*holders, *taken_over]
        if not held and not unread:
            return Step(4, TITLES[4], Applies.DONE,
                        "the failure hit a normal termination, but nobody holds the "
                        "reservation any more (released, cancelled or fenced)", details)
        if not cancel_cmd:
            return Step(4, TITLES[4], Applies.DONE,
                        f"the failure hit a normal termination, but nothing of "
                        f"{failed_node}'s holds the disks any more: another key holds them "
                        "now (the service was started again since)", details)
        if unread and not held:
            details.append("cancel once a path answers again")
        return Step(4, TITLES[4], Applies.YES,
                    "the failure hit a normal termination: the reservation stays held and "
                    "no standby takes it over, so cancel it (HA Monitor 7.5.12)", details,
                    suggested=cancel_cmd)
    if not cancel_cmd and theirs:
        return Step(4, TITLES[4], Applies.NO,
                    f"whatever the termination was ({unknown_why}), nothing of "
                    f"{failed_node}'s holds the disks now: another node's key holds them "
                    "(the standby obtained them, or the service was started again): "
                    "nothing to cancel", [*holders, *taken_over])
    why = (f"hamon cannot tell which termination was underway: {unknown_why}. If it was a "
           "normal termination (the service was stopped to start nowhere else), cancel the "
           "reservation; after a planned or abnormal termination the standby obtains it and "
           "nothing is to be cancelled. Check the cluster log (pacemaker.log) and crm_mon.")
    return Step(4, TITLES[4], Applies.UNKNOWN, why, [*holders, *taken_over],
                suggested=cancel_cmd)
