"""The recovery plan: the four steps put together for ``hamon recover``.

:func:`build` is the decision ``hamon recover`` prints and runs: a pure function of the
journal selection, the disks read now and the kernel's lines, with no I/O of its own, so
that what it says is tested from plain data. :func:`termination_of` says which termination
kind step 4 may rely on, and why it is unknown when it is.
"""
from __future__ import annotations

import shlex
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from hamon.lib import failback
from hamon.lib.recovery.observed import DiskNow
from hamon.lib.recovery.selection import Selection
from hamon.lib.recovery.steps import Step, step1, step2, step3, step4
from hamon.lib.termination import TerminationKind


@dataclass
class Plan:
    """Every step for the disks, and the termination kind step 4 went by."""

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


def termination_of(sel: Selection) -> tuple[str, str]:
    """The termination kind to act on, and why it is unknown when it is."""
    if sel.entry is None:
        why = "no intact failure entry in the journal"
        if sel.torn:
            why += f" ({len(sel.torn)} torn or damaged line(s) not trusted)"
        return TerminationKind.UNKNOWN, why
    if sel.newer_torn:
        lines = ", ".join(str(r.line) for r in sel.newer_torn)
        return TerminationKind.UNKNOWN, (
            f"journal line(s) {lines} after the entry are torn or damaged; one of them may "
            "record the failure being recovered from, so the termination kind recorded "
            "earlier is not relied on")
    kind = str(sel.entry.get("termination") or TerminationKind.UNKNOWN)
    if kind not in (TerminationKind.NORMAL, TerminationKind.PLANNED, TerminationKind.ABNORMAL):
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
        return TerminationKind.UNKNOWN, why
    return kind, ""


def build(sel: Selection, disks: list[DiskNow], *, device: str | None = None,
          nodes: Sequence[str] = (), kernel: dict[str, list[str]] | None = None,
          dlnkmgr: str = "dlnkmgr", cluster: str | None = None) -> Plan:
    """The procedure for ``disks`` given the journal ``sel``ection. Pure: no I/O once
    ``cluster`` (the name keys are derived with) is given; None asks hamon.lib.keys."""
    termination, unknown_why = termination_of(sel)
    warnings = [f"journal line {r.line}: {r.problem}; not trusted" for r in sel.torn]
    if sel.entry is not None and sel.newer_torn:
        warnings.append(unknown_why)
    nodes = list(dict.fromkeys([*nodes, *([str(sel.entry["node"])]
                                          if sel.entry and sel.entry.get("node") else [])]))
    steps = [step1(sel, disks, kernel or {}), step2(sel, disks),
             step3(disks, dlnkmgr), step4(sel, disks, nodes, termination, unknown_why,
                                                 cluster)]
    return Plan(device, sel.entry, sel.line, termination, warnings, disks, steps)
