"""Is this disk fit for hamon? The verdict of ``hamon check-disk``, as a pure function.

Before an administrator trusts fencing to an array, each persistent-reservation operation
hamon relies on is tried from this node through two I_T nexuses of its own (the runner,
:mod:`hamon.lib.compliance.run`, sends the commands and records what it saw as
:class:`Observation` values). :func:`decide` turns those observations into one row per
operation (supported / refused / wrong, what hamon will do about it) and a verdict:

* **fit**: every operation hamon uses behaves as SPC-4 says;
* **fit with fallbacks**: something is refused, but hamon has a fallback that it uses
  by itself (PREEMPT for PREEMPT AND ABORT, READ KEYS + READ RESERVATION for READ FULL
  STATUS, ...), or the setting that needs it must stay off (``aptpl``);
* **unfit**: an operation hamon cannot do without is refused, or a command was accepted
  but the target's state afterwards (read back through the other nexus) is not what
  SPC-4 says: hamon would report a fence that did not happen;
* **incomplete**: an operation hamon needs could not be shown to work (read-only mode,
  a path that gave no answer, or a write that both nexuses of one initiator may make).

Why a table of roles and not one rule: what a refusal means depends on the operation.
A target without ALL_TG_PT costs hamon nothing (it registers every path itself); one
without PREEMPT AND ABORT costs the abort of queued commands (PREEMPT still removes the
key, and hamon falls back by itself); one without RESERVE cannot be used at all.
"""
from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from hamon.lib.scsi.pr import ReservationType

#: The check's own keys: ASCII "HMCHECKA" / "HMCHECKB". fence_scsi's keys fit in 32 bits
#: and hamon's old keys start with "hm" (0x686d): neither can be these. A key derived from
#: sha256 of cluster and node names equals one with probability 2^-64, and the check
#: refuses a disk holding any registration unless --force anyway.
KEY_A = 0x484D434845434B41
KEY_B = 0x484D434845434B42
CHECK_KEYS = (KEY_A, KEY_B)


class Outcome(StrEnum):
    SUPPORTED = "supported"    # accepted, and the state read back is what SPC-4 says
    REFUSED = "refused"        # the target answered no (ILLEGAL REQUEST and the like)
    WRONG = "wrong"            # accepted (or refused) where SPC-4 says otherwise
    NO_ANSWER = "no answer"    # the path gave no SCSI answer: nothing learnt
    NOT_TESTED = "not tested"  # not sent (read-only mode, or an earlier step failed)


class Role(StrEnum):
    REQUIRED = "required"  # hamon cannot work without it
    FALLBACK = "fallback"  # hamon works around a refusal by itself
    OPTIONAL = "optional"  # hamon does not use it; shown for the administrator


class Impact(StrEnum):
    OK = "ok"
    FALLBACK = "fallback"
    NONE = "none"              # refused or odd, but hamon does not depend on it
    UNFIT = "unfit"
    INCOMPLETE = "incomplete"  # needed, but not shown to work


class Verdict(StrEnum):
    FIT = "fit"
    FIT_WITH_FALLBACKS = "fit with fallbacks"
    UNFIT = "unfit"
    INCOMPLETE = "incomplete"


@dataclass(frozen=True)
class Op:
    """One operation of the check: its label, its role for hamon and what hamon does."""

    id: str
    label: str
    role: Role
    uses: str       # where hamon uses it (the "what hamon will do" when supported)
    otherwise: str  # what hamon does when the target refuses it
    mutates: bool = True


OPS: tuple[Op, ...] = (
    Op("tur", "TEST UNIT READY (every nexus)", Role.REQUIRED,
       "path checks (hamon paths, monitor)", "no path to check through", mutates=False),
    Op("identity", "INQUIRY VPD 0x83: one LUN on every nexus", Role.REQUIRED,
       "groups paths into disks", "cannot tell which paths are one LUN", mutates=False),
    Op("report_capabilities", "REPORT CAPABILITIES", Role.OPTIONAL,
       "informational only", "nothing: hamon probes instead of trusting it",
       mutates=False),
    Op("read_keys", "READ KEYS", Role.REQUIRED,
       "every check of who is registered", "none: hamon cannot see registrations",
       mutates=False),
    Op("read_reservation", "READ RESERVATION", Role.REQUIRED,
       "every check of who holds the disk", "none: hamon cannot see the holder",
       mutates=False),
    Op("read_full_status", "READ FULL STATUS", Role.FALLBACK,
       "hamon keys/reservation name each registrant's initiator",
       "READ KEYS + READ RESERVATION (keys and holder, no initiator names)",
       mutates=False),
    Op("register", "REGISTER", Role.REQUIRED,
       "removing this node's key (unregister)", "none: keys could not be removed"),
    Op("register_every_path", "registration seen through every path", Role.REQUIRED,
       "one key per path, so a failover path is never unregistered",
       "none: a path could lose the key"),
    Op("reserve", "RESERVE", Role.REQUIRED,
       "hamon_disk start, fence_hamon_scsi on", "none: the disk cannot be reserved"),
    Op("write_non_registrant", "WRITE refused to a non-registrant", Role.REQUIRED,
       "the protection itself: a fenced or standby node cannot write",
       "none: the reservation protects nothing"),
    Op("write_holder", "WRITE allowed to the holder", Role.REQUIRED,
       "the active node writes", "none: the holder could not write"),
    Op("register_ignore", "REGISTER AND IGNORE EXISTING KEY", Role.REQUIRED,
       "registering on every path (fence_hamon_scsi on, hamon_disk start)",
       "none: hamon registers only this way"),
    Op("write_registrant", "WRITE by a registrant (not the holder)", Role.REQUIRED,
       "registered nodes write under WE-RO (fence_hamon_scsi's model)",
       "none: registered nodes could not write"),
    Op("preempt_and_abort", "PREEMPT AND ABORT", Role.FALLBACK,
       "fence_hamon_scsi off, hamon_disk's forced takeover",
       "PREEMPT (the victim's queued commands are not aborted; remembered per LUN)"),
    Op("unit_attention", "UNIT ATTENTION to the preempted nexus", Role.OPTIONAL,
       "logged only; a fenced node learns from RESERVATION CONFLICT",
       "nothing: hamon does not depend on unit attentions"),
    Op("write_preempted", "WRITE refused after the preempt", Role.REQUIRED,
       "the fence itself", "none: a preempted node could still write"),
    Op("preempt", "PREEMPT", Role.FALLBACK,
       "where PREEMPT AND ABORT is refused", "none when PREEMPT AND ABORT works too"),
    Op("release", "RELEASE", Role.REQUIRED,
       "hamon_disk stop", "none: a stopped service would keep the disk reserved"),
    Op("aptpl", "APTPL (persist through power loss)", Role.FALLBACK,
       "fence_hamon_scsi aptpl=1", "leave aptpl unset (registering with it would fail); "
       "registrations then do not survive a power loss of the target"),
    Op("all_tg_pt", "ALL_TG_PT", Role.OPTIONAL,
       "not used", "nothing: hamon registers through every path itself"),
    Op("clear", "CLEAR", Role.REQUIRED,
       "hamon reservation cancel (HA Monitor's cancel)",
       "none: the reservation cannot be cancelled"),
)
OPS_BY_ID = {op.id: op for op in OPS}
#: What a single nexus cannot test (named when check-disk refuses such a disk).
NEEDS_TWO_NEXUSES = ("register_every_path", "write_non_registrant", "write_registrant",
                     "preempt_and_abort", "unit_attention", "write_preempted", "preempt")


@dataclass(frozen=True)
class Observation:
    """What the runner saw for one operation. ``caveat`` marks a WRONG that hamon's own
    use does not meet (e.g. a count of registrations per initiator, not per nexus);
    ``unproven`` marks one that leaves the question open rather than answering no."""

    op: str
    outcome: Outcome
    detail: str = ""
    caveat: bool = False
    unproven: bool = False


@dataclass(frozen=True)
class Row:
    op: str
    label: str
    outcome: Outcome
    detail: str
    hamon: str
    impact: Impact

    def as_dict(self) -> dict[str, Any]:
        return {"op": self.op, "operation": self.label, "outcome": str(self.outcome),
                "detail": self.detail, "hamon": self.hamon, "impact": str(self.impact)}


@dataclass
class Judgement:
    verdict: Verdict
    why: str
    rows: list[Row] = field(default_factory=list)


def _row(op: Op, ob: Observation, paa_works: bool) -> Row:
    role = op.role
    if op.id == "preempt" and not paa_works:
        role = Role.REQUIRED  # the fallback is all there is
    o = ob.outcome
    if o is Outcome.SUPPORTED:
        return Row(op.id, op.label, o, ob.detail, op.uses, Impact.OK)
    if o in (Outcome.NOT_TESTED, Outcome.NO_ANSWER):
        impact = Impact.NONE if role is Role.OPTIONAL else Impact.INCOMPLETE
        if op.id == "preempt" and paa_works:
            impact = Impact.NONE
        return Row(op.id, op.label, o, ob.detail, "not known", impact)
    if role is Role.OPTIONAL or ob.caveat:
        return Row(op.id, op.label, o, ob.detail, op.otherwise if o is Outcome.REFUSED
                   else f"{op.uses}; unaffected", Impact.NONE)
    if ob.unproven:
        return Row(op.id, op.label, o, ob.detail, "not proven", Impact.INCOMPLETE)
    if o is Outcome.REFUSED and role is Role.FALLBACK:
        if op.id == "preempt":  # PREEMPT AND ABORT works: PREEMPT is never needed
            return Row(op.id, op.label, o, ob.detail, op.otherwise, Impact.NONE)
        return Row(op.id, op.label, o, ob.detail, op.otherwise, Impact.FALLBACK)
    # REFUSED where required, or WRONG where hamon would trust the answer
    return Row(op.id, op.label, o, ob.detail, op.otherwise, Impact.UNFIT)


def decide(observations: Iterable[Observation] | Mapping[str, Observation], *,
           read_only: bool = False) -> Judgement:
    """Rows and verdict from what was observed. Operations not observed are NOT_TESTED."""
    if isinstance(observations, Mapping):
        observations = observations.values()
    seen = {ob.op: ob for ob in observations}
    unknown = set(seen) - set(OPS_BY_ID)
    if unknown:
        raise ValueError(f"unknown check-disk operations: {sorted(unknown)}")
    paa = seen.get("preempt_and_abort")
    paa_works = paa is not None and paa.outcome is Outcome.SUPPORTED
    rows = []
    for op in OPS:
        ob = seen.get(op.id) or Observation(
            op.id, Outcome.NOT_TESTED, "read-only mode" if read_only and op.mutates else "")
        rows.append(_row(op, ob, paa_works))
    unfit = [r for r in rows if r.impact is Impact.UNFIT]
    incomplete = [r for r in rows if r.impact is Impact.INCOMPLETE]
    fallbacks = [r for r in rows if r.impact is Impact.FALLBACK]
    if unfit:
        return Judgement(Verdict.UNFIT, "; ".join(
            f"{r.label} {r.outcome}" + (f" ({r.detail})" if r.detail else "")
            for r in unfit), rows)
    if incomplete:
        why = ("read-only mode: no PERSISTENT RESERVE OUT sent, "
               f"{len(incomplete)} operations not tested" if read_only and all(
                   r.outcome is Outcome.NOT_TESTED for r in incomplete)
               else "not shown to work: " + "; ".join(
                   f"{r.label} ({r.outcome}{': ' + r.detail if r.detail else ''})"
                   for r in incomplete))
        return Judgement(Verdict.INCOMPLETE, why, rows)
    if fallbacks:
        return Judgement(Verdict.FIT_WITH_FALLBACKS, "; ".join(
            f"{r.label} refused: {r.hamon}" for r in fallbacks), rows)
    return Judgement(Verdict.FIT, "every operation hamon uses behaves as SPC-4 says", rows)


def expected_write(rtype: ReservationType, *, registered: bool, holder: bool) -> bool:
    """Whether SPC-4 lets a nexus write under a persistent reservation of ``rtype``."""
    if holder:
        return True
    if rtype in (ReservationType.WRITE_EXCLUSIVE, ReservationType.EXCLUSIVE_ACCESS):
        return False
    return registered


# -- rendering (small on purpose: the CLI prints this) ------------------------------------
def format_table(rows: list[Row]) -> list[str]:
    """Fixed-width text: operation, outcome, what hamon does, detail on its own line."""
    lines = [f"  {'operation':<42} {'result':<11} {'impact':<10} hamon will"]
    for r in rows:
        lines.append(f"  {r.label:<42} {r.outcome:<11} {r.impact:<10} {r.hamon}")
        if r.detail:
            lines.append(f"  {'':<42} {'':<11} {'':<10} ({r.detail})")
    return lines

