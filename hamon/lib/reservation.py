"""Persistent-reservation operations on shared disks, over every path, in parallel.

Each operation takes disks and returns an :class:`Outcome` that says per disk, and per
path where the operation is per path, what happened. Nothing here decides cluster policy
(who should hold what, when to terminate the OS): the agents do, from these results.

Rules that hold everywhere:

* REGISTER goes through every path, because SPC-4 registrations are per I_T nexus: a
  path without the key gets RESERVATION CONFLICT the moment multipath fails over to it.
* RESERVE, RELEASE, PREEMPT, CLEAR and the reads go through one path, the first that
  works. What ends abnormally on a path is classified once (:mod:`hamon.lib.faults`): a
  path fault (no answer, a lost connection, HARDWARE ERROR, a malformed PR IN, ...) marks
  the path failed for the action and the step is tried again through the next path; an
  answer of the PR protocol (RESERVATION CONFLICT to PR OUT, ILLEGAL REQUEST to PREEMPT
  AND ABORT) ends the attempt: the LUN has spoken. A disk none of whose paths works
  gives :class:`~hamon.lib.disk.NoWorkingPath`.
* Every step is idempotent, so a step that faulted half-way on one path is simply done
  again, from its start, through the next.
* RESERVATION CONFLICT is never success, and never retried into one.
* PREEMPT AND ABORT falls back to PREEMPT when the target answers ILLEGAL REQUEST (tgt
  does), and the fallback is remembered per LUN for the life of the process.
* What one LUN taught applies to every LUN of the same target
  (:mod:`hamon.lib.target_quirks`), so an action on many LUNs does not send the same
  refused command to each.

Beside this module: :mod:`hamon.lib.reservation_fence` (``off``: the guarded preempt of
a victim, verified) and :mod:`hamon.lib.reservation_withdraw` (``stop``: leave a disk).
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Generic, TypeVar

from hamon.lib import target_quirks as tq
from hamon.lib.disk import Disk, NoWorkingPath, Path, PathFaulted, PathState, run_parallel
from hamon.lib.faults import PathFault
from hamon.lib.messages import DetailsCode
from hamon.lib.scsi import command
from hamon.lib.scsi import pr as prm
from hamon.lib.scsi.errors import IllegalRequest, ReservationConflict, ScsiError
from hamon.lib.scsi.pr import PrOutServiceAction as Out
from hamon.lib.scsi.pr import ReservationType
from hamon.lib.scsi.status import Status
from hamon.lib.transport.base import PathError, Transport

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


def _ua_text(answer: command.Answer) -> list[str]:
    return [str(ua.sense) for ua in answer.unit_attentions if ua.sense]


def on_any_path(disk: Disk, fn: Callable[[Path], Any]) -> tuple[Path, Any]:
    """Run ``fn`` through the first path that works; NoWorkingPath if none does.

    Paths known to be up are tried first, then unknown ones. A path that faulted in this
    action is not tried again: it is a failed path for the action (KAMN725-W), and a path
    that swallows commands must not cost its timeout twice. An answer of the PR protocol
    propagates (the LUN has spoken; another path would say the same).
    """
    order = sorted((p for p in disk.paths if not p.failed),
                   key=lambda p: p.state is not PathState.UP)
    for p in order:
        try:
            return p, p.attempt(fn)
        except PathFaulted:
            continue
    raise NoWorkingPath(disk.name, [(p.name, p.reason) for p in disk.paths if p.failed])


def refusal_fault(err: ScsiError) -> PathFault:
    """An answer that is a refusal where the step expects success (REGISTER AND IGNORE
    EXISTING KEY answered RESERVATION CONFLICT): the command ended abnormally."""
    code = DetailsCode.IOCTL if isinstance(err, IllegalRequest) else DetailsCode.IO_ERR
    return PathFault(str(err), code, err)


def _for_each_disk(action: str, disks: list[Disk],
                   fn: Callable[[Disk], DiskResult]) -> Outcome:
    results = run_parallel([lambda d=d: fn(d) for d in disks])
    out = []
    for d, r in zip(disks, results, strict=True):
        if isinstance(r, Exception):  # a bug or an unexpected error: report, never hide
            r = DiskResult(d, False, f"{type(r).__name__}: {r}", r)
        out.append(r)
    return Outcome(action, out)


# -- per-path: REGISTER -----------------------------------------------------------------
def register(disks: list[Disk], key: int, *, aptpl: bool = False,
             all_tg_pt: bool = False) -> Outcome:
    """REGISTER AND IGNORE EXISTING KEY with ``key`` on every path of every disk.

    IGNORE EXISTING KEY makes it idempotent and makes it replace whatever key a previous
    incarnation of this I_T nexus left (a reboot, a changed key). A disk is ok when at
    least one path holds the key; each failed path is listed.
    """

    def one_path(p: Path) -> PathResult:
        try:
            a = p.attempt(lambda p: command.pr_out(
                p.transport(), Out.REGISTER_AND_IGNORE_EXISTING_KEY, 0, key, aptpl=aptpl,
                all_tg_pt=all_tg_pt))
        except PathFaulted as err:
            return PathResult(p.name, False, "failed", err.__cause__ or err)
        except ScsiError as err:  # no answer but GOOD is expected of this command
            p.fail(refusal_fault(err))
            return PathResult(p.name, False, "refused", err)
        return PathResult(p.name, True, "registered", unit_attentions=_ua_text(a))

    def one_disk(d: Disk) -> DiskResult:
        prs = [r if isinstance(r, PathResult) else PathResult("?", False, str(r), r)
               for r in run_parallel([lambda p=p: one_path(p) for p in d.paths])]
        ok = [r for r in prs if r.ok]
        if not ok:
            err = NoWorkingPath(d.name, [(p.name, p.reason) for p in d.paths if p.failed])
            return DiskResult(d, False, "not registered on any path", err, prs)
        detail = f"registered on {len(ok)}/{len(prs)} paths"
        return DiskResult(d, True, detail, None, prs)

    return _for_each_disk("register", disks, one_disk)


def unregister(disks: list[Disk], key: int) -> Outcome:
    """Remove ``key`` from every path (REGISTER with service action key 0).

    A path where the key is not registered answers RESERVATION CONFLICT to REGISTER with
    a non-matching key: that is already the desired state, so it counts as done.
    """

    def one_path(p: Path) -> PathResult:
        try:
            p.attempt(lambda p: command.pr_out(p.transport(), Out.REGISTER, key, 0))
        except ReservationConflict:
            return PathResult(p.name, True, "was not registered")
        except PathFaulted as err:
            return PathResult(p.name, False, "failed", err.__cause__ or err)
        except ScsiError as err:
            p.fail(refusal_fault(err))
            return PathResult(p.name, False, "refused", err)
        return PathResult(p.name, True, "unregistered")

    def one_disk(d: Disk) -> DiskResult:
        prs = list(run_parallel([lambda p=p: one_path(p) for p in d.paths]))
        bad = [r for r in prs if not r.ok]
        err = bad[0].error if bad else None
        return DiskResult(d, not bad, "unregistered" if not bad else "some paths failed",
                          err, prs)

    return _for_each_disk("unregister", disks, one_disk)


# -- one path: RESERVE / RELEASE / PREEMPT / CLEAR ----------------------------------------
def on_one_path(action: str, disks: list[Disk],
                fn: Callable[[Disk, Path], tuple[str, V]]) -> Outcome[V]:
    """Run ``fn`` on every disk in parallel, each through one working path
    (:func:`on_any_path`): (detail, value) becomes a DiskResult, an answer of the PR
    protocol a failed one, no working path a path failure."""

    def one_disk(d: Disk) -> DiskResult[V]:
        try:
            p, (detail, value) = on_any_path(d, lambda p: fn(d, p))
        except PathError as err:
            return DiskResult(d, False, "no path works", err)
        except ScsiError as err:
            return DiskResult(d, False, str(err), err)
        return DiskResult(d, True, detail, None, [PathResult(p.name, True, detail)], value)

    return _for_each_disk(action, disks, one_disk)


def reserve(disks: list[Disk], key: int, rtype: ReservationType) -> Outcome:
    """RESERVE with ``key``. Already holding it with that type is success (idempotent).

    When another key holds the LUN the result is a ReservationConflict whose text names
    the holder's key, read back with READ RESERVATION.
    """

    def fn(d: Disk, p: Path) -> tuple[str, Any]:
        t = p.transport()
        try:
            command.pr_out(t, Out.RESERVE, key, 0, rtype)
        except ReservationConflict as err:
            held = command.read_reservation(t)
            holder = prm.format_key(held.key) if held.key is not None else "nobody"
            typ = held.type.short if held.type else "-"
            raise ReservationConflict(err.status, None,
                                      f"{d.name}: reserved by key {holder} ({typ})") from err
        return f"reserved {rtype.short}", rtype

    return on_one_path("reserve", disks, fn)


def release(disks: list[Disk], key: int) -> Outcome:
    """RELEASE the reservation if ``key`` holds it, with the type it is held with.

    Not holding it is success (idempotent: a stop of a stopped resource succeeds). Not
    being registered at all is success too: there is nothing of ours to release.
    """

    def fn(d: Disk, p: Path) -> tuple[str, Any]:
        t = p.transport()
        held = command.read_reservation(t)
        if not held.held:
            return "no reservation held", None
        mine = held.key == key or (held.type is not None and held.type.all_registrants
                                   and key in command.read_keys(t).keys)
        if not mine:
            return f"held by {prm.format_key(held.key or 0)}, not by us", None
        try:
            command.pr_out(t, Out.RELEASE, key, 0, held.type)
        except ReservationConflict:
            return "not registered", None
        return f"released {held.type.short}", held.type

    return on_one_path("release", disks, fn)


class Preemption(StrEnum):
    """How a victim left a LUN (the journal and the fence report say it)."""

    PREEMPT_AND_ABORT = "preempt-and-abort"
    PREEMPT = "preempt"
    ABSENT = "absent"  # it held no registration: already off the LUN


def preempt(disks: list[Disk], key: int, victim: int, rtype: ReservationType, *,
            abort: bool = True) -> Outcome[Preemption]:
    """Remove ``victim``'s registrations (and its reservation) using our ``key``.

    PREEMPT AND ABORT when ``abort`` (the victim's queued writes die with it), falling
    back to PREEMPT where the LUN answers ILLEGAL REQUEST. RESERVATION CONFLICT means our
    own key is not registered: we have been fenced ourselves, and it is an error.
    A victim that holds no registration is success: it is already off the LUN.
    """

    def fn(d: Disk, p: Path) -> tuple[str, Preemption]:
        t = p.transport()
        keys = command.read_keys(t).keys
        if key not in keys:
            raise ReservationConflict(Status.RESERVATION_CONFLICT, None, f"{d.name}: our key "
                                      f"{prm.format_key(key)} is not registered")
        if victim not in keys:
            return f"{prm.format_key(victim)} not registered", Preemption.ABSENT
        return preempt_through(t, d, key, victim, rtype, abort=abort)

    return on_one_path("preempt", disks, fn)


def preempt_through(t: Transport, disk: Disk, key: int, victim: int,
                    rtype: ReservationType, *, abort: bool = True) -> tuple[str, Preemption]:
    """One PREEMPT (AND ABORT) of ``victim`` through ``t``: (what happened, which).

    PREEMPT AND ABORT when ``abort`` (the victim's queued writes die with it); where the
    LUN answers ILLEGAL REQUEST (tgt does) PREEMPT instead, and the LUN is remembered for
    the rest of the process so the refused command is not sent again. The one primitive
    that both :func:`preempt` and the fence agent's guarded preempt stand on.
    Errors other than ILLEGAL REQUEST (RESERVATION CONFLICT above all) propagate.
    """
    if abort and tq.known(tq.NO_PREEMPT_ABORT, t, disk):
        tq.learn(tq.NO_PREEMPT_ABORT, t, disk)  # this LUN too, for the rest of the process
    elif abort:
        try:
            command.pr_out(t, Out.PREEMPT_AND_ABORT, key, victim, rtype)
            return "preempted and aborted", Preemption.PREEMPT_AND_ABORT
        except IllegalRequest:
            tq.learn(tq.NO_PREEMPT_ABORT, t, disk)
    command.pr_out(t, Out.PREEMPT, key, victim, rtype)
    return ("preempted (the target lacks PREEMPT AND ABORT)" if abort else "preempted",
            Preemption.PREEMPT)


def clear(disks: list[Disk], key: int) -> Outcome:
    """CLEAR: drop every registration and the reservation (HA Monitor's cancel).

    CLEAR needs a registered key, so ``key`` is registered on the answering path first.
    """

    def fn(d: Disk, p: Path) -> tuple[str, Any]:
        t = p.transport()
        command.pr_out(t, Out.REGISTER_AND_IGNORE_EXISTING_KEY, 0, key)
        command.pr_out(t, Out.CLEAR, key, 0)
        return "cleared", None

    return on_one_path("clear", disks, fn)


def read_back(t: Transport, d: Disk) -> LunStatus:
    """Keys and holder of one LUN through ``t``: READ FULL STATUS (one command) where
    the target has it, else READ KEYS + READ RESERVATION; the refusal is remembered for
    the target. A malformed answer is a fault like any other (the caller's path moves
    on); only ILLEGAL REQUEST means "not supported"."""
    if not tq.known(tq.NO_FULL_STATUS, t, d):
        try:
            fs = command.read_full_status(t)
        except IllegalRequest:
            tq.learn(tq.NO_FULL_STATUS, t, d)
        else:
            return _status_from_full(fs)
    keys = command.read_keys(t)
    return LunStatus(keys.keys, keys.generation, command.read_reservation(t))


def _status_from_full(fs: prm.FullStatus) -> LunStatus:
    """READ FULL STATUS as READ KEYS + READ RESERVATION would have said it: one key per
    registered nexus; the holder's key and type (key 0 for the all-registrants types,
    whose holder is every registrant, as READ RESERVATION reports them)."""
    holders = [e for e in fs.entries if e.holder and e.type is not None]
    if not holders:
        held = prm.Reservation(fs.generation, None, None)
    else:
        rt = holders[0].type
        assert rt is not None
        held = prm.Reservation(fs.generation, 0 if rt.all_registrants else holders[0].key,
                               rt)
    return LunStatus(tuple(e.key for e in fs.entries), fs.generation, held, fs)


# -- reads ------------------------------------------------------------------------------
@dataclass(frozen=True)
class LunStatus:
    keys: tuple[int, ...]
    generation: int
    reservation: prm.Reservation
    full: prm.FullStatus | None = None
    #: The reservation was read just before the PREEMPT that could not change it, and
    #: the keys read afterwards show no other registration change (see fence).
    reservation_read_before: bool = False


def read_status(disks: list[Disk], *, full: bool = False) -> Outcome[LunStatus]:
    """Keys and holder of every disk (value: LunStatus). READ FULL STATUS when asked
    and supported; a target without it still gives keys and holder."""

    def fn(d: Disk, p: Path) -> tuple[str, LunStatus]:
        t = p.transport()
        keys = command.read_keys(t)
        res = command.read_reservation(t)
        fs = None
        if full:
            try:
                fs = command.read_full_status(t)
            except (IllegalRequest, prm.ResponseError):  # optional: keys + holder suffice
                fs = None
        return "read", LunStatus(keys.keys, keys.generation, res, fs)

    return on_one_path("status", disks, fn)
