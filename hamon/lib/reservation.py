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
* What one LUN taught applies to every LUN of the same target (:func:`_target_of`: the
  iSCSI target name; the SCSI vendor and product for /dev paths), so that an action on
  many LUNs does not send the same refused command to each: PREEMPT AND ABORT refused,
  READ FULL STATUS refused, a new session not being the registered nexus (tgt). Each is
  a guess for the other LUNs, and each guess is safe when wrong: PREEMPT removes the
  victim as PREEMPT AND ABORT does, a refused READ FULL STATUS is asked as READ KEYS and
  READ RESERVATION, and the nexus guess is checked by counting (:func:`guarded_preempt`),
  so a wrong guess costs commands, never a needed one.
"""
from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from hamon.lib.disk import Disk, NoWorkingPath, Path, PathFaulted, PathState, run_parallel
from hamon.lib.faults import LunAnswer, PathFault
from hamon.lib.messages import DetailsCode
from hamon.lib.scsi import command
from hamon.lib.scsi import pr as prm
from hamon.lib.scsi.errors import IllegalRequest, ReservationConflict, ScsiError
from hamon.lib.scsi.pr import PrOutServiceAction as Out
from hamon.lib.scsi.pr import ReservationType
from hamon.lib.transport.base import PathError, Transport

#: LUNs (by WWID, else operand) known to refuse PREEMPT AND ABORT, and targets
#: (``target:`` + :func:`_target_of`) where one LUN refused it.
_NO_PREEMPT_ABORT: set[str] = set()
_NO_PREEMPT_ABORT_LOCK = threading.Lock()
#: Targets where a new session was not the registered nexus of its initiator port
#: (tgt binds a registration to the session), and LUNs or targets without READ FULL
#: STATUS. Process-wide, like _NO_PREEMPT_ABORT: an agent process is one action.
_NEW_SESSION_UNREGISTERED: set[str] = set()
_NO_FULL_STATUS: set[str] = set()
#: (LUN or target, key): the guard's count found ``key`` legitimately registered there
#: in this process (:func:`guarded_preempt`), i.e. past the arbiter of a fence.
_KEY_SEEN: set[tuple[str, int]] = set()


def _target_of(t: Transport) -> str | None:
    """``target:<name>`` for the target behind ``t`` (the transport's ``target_id``),
    or None when the transport cannot say (then only the LUN itself is remembered)."""
    tid = getattr(t, "target_id", None)
    return f"target:{tid}" if tid else None


def _known(memory: set[str], t: Transport, disk: Disk) -> bool:
    target = _target_of(t)
    return _lun_key(disk) in memory or (target is not None and target in memory)


def _learn(memory: set[str], t: Transport, disk: Disk) -> None:
    target = _target_of(t)
    with _NO_PREEMPT_ABORT_LOCK:
        memory.add(_lun_key(disk))
        if target is not None:
            memory.add(target)


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
class DiskResult:
    disk: Disk
    ok: bool
    detail: str = ""
    error: Exception | None = None
    paths: list[PathResult] = field(default_factory=list)
    value: Any = None

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
class Outcome:
    action: str
    results: list[DiskResult]

    @property
    def ok(self) -> bool:
        return all(r.ok for r in self.results)

    def failed(self) -> list[DiskResult]:
        return [r for r in self.results if not r.ok]

    def as_dict(self) -> dict[str, Any]:
        return {"action": self.action, "ok": self.ok,
                "disks": [r.as_dict() for r in self.results]}


def _ua_text(answer: command.Answer) -> list[str]:
    return [str(ua.sense) for ua in answer.unit_attentions if ua.sense]


def _lun_key(disk: Disk) -> str:
    return disk.wwid or disk.name


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


def _refusal_fault(err: ScsiError) -> PathFault:
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
            p.fail(_refusal_fault(err))
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
            p.fail(_refusal_fault(err))
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
def _single(action: str, disks: list[Disk],
            fn: Callable[[Disk, Path], tuple[str, Any]]) -> Outcome:
    def one_disk(d: Disk) -> DiskResult:
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

    return _single("reserve", disks, fn)


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

    return _single("release", disks, fn)


def preempt(disks: list[Disk], key: int, victim: int, rtype: ReservationType, *,
            abort: bool = True) -> Outcome:
    """Remove ``victim``'s registrations (and its reservation) using our ``key``.

    PREEMPT AND ABORT when ``abort`` (the victim's queued writes die with it), falling
    back to PREEMPT where the LUN answers ILLEGAL REQUEST. RESERVATION CONFLICT means our
    own key is not registered: we have been fenced ourselves, and it is an error.
    A victim that holds no registration is success: it is already off the LUN.
    """

    def fn(d: Disk, p: Path) -> tuple[str, Any]:
        t = p.transport()
        keys = command.read_keys(t).keys
        if key not in keys:
            raise ReservationConflict(0x18, None, f"{d.name}: our key "
                                      f"{prm.format_key(key)} is not registered")
        if victim not in keys:
            return f"{prm.format_key(victim)} not registered", "absent"
        return preempt_through(t, d, key, victim, rtype, abort=abort)

    return _single("preempt", disks, fn)


def preempt_through(t: Transport, disk: Disk, key: int, victim: int,
                    rtype: ReservationType, *, abort: bool = True) -> tuple[str, str]:
    """One PREEMPT (AND ABORT) of ``victim`` through ``t``: (what happened, which).

    PREEMPT AND ABORT when ``abort`` (the victim's queued writes die with it); where the
    LUN answers ILLEGAL REQUEST (tgt does) PREEMPT instead, and the LUN is remembered for
    the rest of the process so the refused command is not sent again. The one primitive
    that both :func:`preempt` and the fence agent's guarded preempt stand on.
    Errors other than ILLEGAL REQUEST (RESERVATION CONFLICT above all) propagate.
    """
    if abort and _known(_NO_PREEMPT_ABORT, t, disk):
        _learn(_NO_PREEMPT_ABORT, t, disk)  # this LUN too, for the rest of the process
    elif abort:
        try:
            command.pr_out(t, Out.PREEMPT_AND_ABORT, key, victim, rtype)
            return "preempted and aborted", "preempt-and-abort"
        except IllegalRequest:
            _learn(_NO_PREEMPT_ABORT, t, disk)
    command.pr_out(t, Out.PREEMPT, key, victim, rtype)
    return ("preempted (the target lacks PREEMPT AND ABORT)" if abort else "preempted",
            "preempt")


def clear(disks: list[Disk], key: int) -> Outcome:
    """CLEAR: drop every registration and the reservation (HA Monitor's cancel).

    CLEAR needs a registered key, so ``key`` is registered on the answering path first.
    """

    def fn(d: Disk, p: Path) -> tuple[str, Any]:
        t = p.transport()
        command.pr_out(t, Out.REGISTER_AND_IGNORE_EXISTING_KEY, 0, key)
        command.pr_out(t, Out.CLEAR, key, 0)
        return "cleared", None

    return _single("clear", disks, fn)


# -- stop: leave the disk ------------------------------------------------------------
class StillRegistered(LunAnswer):
    """After removing our key, the LUN still lists it (or our reservation)."""


def _ours(held: prm.Reservation, keys: tuple[int, ...], key: int) -> bool:
    if not held.held:
        return False
    if held.type is not None and held.type.all_registrants:
        return key in keys
    return held.key == key


@dataclass(frozen=True)
class Withdrawal:
    """What :func:`withdraw` did on one disk, and the LUN as read back afterwards."""

    had_ours: bool        # our key was registered, or held the reservation
    released: bool        # our key held the reservation, and RELEASE went through
    after: LunStatus


def withdraw(disks: list[Disk], key: int, rtype: ReservationType) -> Outcome:
    """Leave each disk: release our reservation and remove every registration of ``key``,
    verified by reading the LUN back.

    Our key may be registered through nexuses this process cannot speak for: paths that
    fail, and, on targets that bind a registration to the iSCSI session rather than to
    the initiator port (tgt does), sessions of the start that made them, long closed.
    RELEASE and REGISTER from here would be refused or do nothing. So, through one
    working path: register our key (REGISTER AND IGNORE EXISTING KEY), then PREEMPT our
    own key, which removes the registration of every *other* nexus with it, dead or stale
    alike, and moves a reservation held with that key onto this nexus; RELEASE it;
    unregister; read back. Every command of it is idempotent, so a path fault half-way
    starts it again through the next path. A disk where our key was neither registered
    nor holding anything is left untouched (a stop of a stopped resource).
    Value: :class:`Withdrawal`.
    """

    def fn(d: Disk, p: Path) -> tuple[str, Any]:
        t = p.transport()
        keys = command.read_keys(t).keys
        held = command.read_reservation(t)
        if key not in keys and not _ours(held, keys, key):
            return "nothing of ours", Withdrawal(False, False, LunStatus(keys, 0, held))
        command.pr_out(t, Out.REGISTER_AND_IGNORE_EXISTING_KEY, 0, key)
        preempt_through(t, d, key, key, held.type or rtype)
        held = command.read_reservation(t)
        released = _ours(held, command.read_keys(t).keys, key)
        if released:
            command.pr_out(t, Out.RELEASE, key, 0, held.type or rtype)
        command.pr_out(t, Out.REGISTER, key, 0)
        after = command.read_keys(t)
        held = command.read_reservation(t)
        if key in after.keys or _ours(held, after.keys, key):
            raise StillRegistered(
                f"{d.name}: key {prm.format_key(key)} is still "
                + ("registered" if key in after.keys else "holding the reservation")
                + f" after release and unregister through {p.name}")
        return ("released and unregistered" if released else "unregistered",
                Withdrawal(True, released, LunStatus(after.keys, after.generation, held)))

    return _single("withdraw", disks, fn)


# -- fence: remove a victim's key from one LUN, guarded -----------------------------------
class OwnKeyMissing(ReservationConflict):
    """Our key is not registered on this LUN (any more): we have been fenced."""

    def __init__(self, text: str) -> None:
        super().__init__(0x18, None, text)


@dataclass(frozen=True)
class Preempted:
    """What :func:`guarded_preempt` did on one LUN.

    ``kept``: the reservation as READ RESERVATION gave it just before the PREEMPT, when
    that PREEMPT cannot have changed it (held, not an all-registrants type, by a key that
    is not the victim's: SPC-4 5.14.11.2.4 leaves such a reservation alone), and
    ``generation`` the PRgeneration the LUN shows after our own PR OUT commands if no
    other registration changed meanwhile. :func:`fence` then reads only the keys back."""

    detail: str
    how: str                               # "preempt-and-abort", "preempt", "absent"
    kept: prm.Reservation | None = None
    generation: int | None = None


def fence(disks: list[Disk], key: int, victim: int, rtype: ReservationType) -> Outcome:
    """Remove ``victim`` from each disk, acting only while our ``key`` is there; make
    sure a reservation restricts writes; read the LUN back (value: (how, LunStatus)).

    One job does everything a LUN needs (the guarded preempt, a reservation where none
    is held, the read-back that verifies it), through one working path; a path fault
    starts it again through the next. Answers: :class:`OwnKeyMissing` (we are fenced).
    """

    def fn(d: Disk, p: Path) -> tuple[str, Any]:
        t = p.transport()
        pre = guarded_preempt(t, d, key, victim, rtype)
        st = _read_back_after(t, d, pre)
        if not st.reservation.held:
            with contextlib.suppress(ReservationConflict):  # somebody was faster: fine
                command.pr_out(t, Out.RESERVE, key, 0, rtype)
            st = read_back(t, d)
        return pre.detail, (pre.how, st)

    return _single("fence", disks, fn)


def _read_back_after(t: Transport, d: Disk, pre: Preempted) -> LunStatus:
    """The read-back after a guarded preempt. The keys are always read (the victim's key
    must be seen gone). Where the target lacks READ FULL STATUS and the reservation was
    read just before a PREEMPT that leaves it alone (``pre.kept``), it is not read again
    when the keys show the PRgeneration our own commands account for, i.e. nobody
    registered, unregistered, preempted or cleared meanwhile (which every change of the
    holder but a RELEASE by the holder itself needs), and the holder's key is listed.
    Any other generation: READ RESERVATION, as always."""
    if pre.kept is None or pre.generation is None or not _known(_NO_FULL_STATUS, t, d):
        return read_back(t, d)
    keys = command.read_keys(t)
    if keys.generation == pre.generation and pre.kept.key in keys.keys:
        held = prm.Reservation(keys.generation, pre.kept.key, pre.kept.type)
        return LunStatus(keys.keys, keys.generation, held, reservation_read_before=True)
    return LunStatus(keys.keys, keys.generation, command.read_reservation(t))


def guarded_preempt(t: Transport, d: Disk, key: int, victim: int,
                    rtype: ReservationType) -> Preempted:
    """Remove ``victim`` from one LUN through ``t``, acting only while ``key`` is there.

    The PREEMPT must come from a registered I_T nexus. On an SPC-4 target with a stable
    ISID the nexus that ``on`` registered is this one, and PREEMPT goes straight through.
    tgt binds a registration to the *session* instead, so a new process is a new,
    unregistered registrant: its PREEMPT gets RESERVATION CONFLICT although our key is
    listed (fence-agents#517/#558 met the same with ISID changes). So this nexus is
    registered, guarded by counting:

    1. READ KEYS: our key must be listed (else we are fenced: stop).
    2. PREEMPT; success ends it. RESERVATION CONFLICT: this nexus is not registered.
    3. REGISTER AND IGNORE EXISTING KEY through this nexus, then READ KEYS again. A
       PREEMPT of our key removes *every* entry with it at once, so at least two entries
       (the others and ours) prove nobody removed our key before this READ KEYS: we
       were legitimately registered when we registered this nexus, and stay so up to
       here. Only our own entry means our key was removed (or never there): we undo our
       registration and stop. This count, not step 1, is what keeps a node that was
       fenced meanwhile from preempting the winner.
    4. READ RESERVATION (did the victim hold it?), then PREEMPT again. The target checks
       atomically that this nexus is still registered; if the other node removed us in
       between, this is RESERVATION CONFLICT: stop.
    5. The registration made in 3 is removed again (REGISTER with key 0 from this nexus)
       unless this nexus became the reservation holder in 4 (the victim held it; its
       removal would release the reservation). Without this every fence on tgt left one
       more registration of our key behind (100 cycles: 102 entries) until READ KEYS
       could not list them all. What stays is bounded: the next fence of a victim that
       does not hold the reservation removes its own registration again, and a PREEMPT
       of our key (when we are fenced) removes them all. Our other registrations, those
       of live sessions that write, are never touched.

    Where another LUN of the same target already showed that a new session is not the
    registered nexus (tgt), and step 3's count there found our key registered (so this
    process got past the arbiter of its fence), steps 1 and 2 would only repeat what is
    known: the nexus is
    registered with a plain REGISTER (reservation key 0), which SPC-4 (and tgt) performs
    only from an *unregistered* nexus and answers RESERVATION CONFLICT from a registered
    one. GOOD: this nexus was unregistered and the registration is ours to remove in 5;
    step 3's count then guards exactly as above (step 1 was never what made it safe:
    our key can vanish between 1 and 3 all the same). RESERVATION CONFLICT: the guess
    was wrong, nothing changed, and steps 1-5 follow. A wrong guess costs one command.
    The difference a fenced node would see: it registers this nexus for the moment
    until its count says "fenced" and it undoes it, as the loser of a race already
    could between steps 1 and 3 (the fencer's verification removes such a key again).
    Under the arbiter rule (fence_core) a fenced node stops at the arbiter, where its
    key was never seen by a count, so nothing is guessed and nothing is registered.
    """
    if _known(_NEW_SESSION_UNREGISTERED, t, d) and _key_seen(t, d, key):
        try:
            command.pr_out(t, Out.REGISTER, 0, key)
        except ReservationConflict:
            pass  # this nexus is registered already: the guess was wrong, ask below
        else:
            return _preempt_registered(t, d, key, victim, rtype)
    before = command.read_keys(t).keys
    if key not in before:
        raise OwnKeyMissing(f"{d.name}: our key {prm.format_key(key)} is not registered")
    if victim not in before:
        return Preempted(f"{prm.format_key(victim)} not registered", "absent")
    try:
        return Preempted(*preempt_through(t, d, key, victim, rtype))
    except ReservationConflict:
        _learn(_NEW_SESSION_UNREGISTERED, t, d)
    command.pr_out(t, Out.REGISTER_AND_IGNORE_EXISTING_KEY, 0, key)
    return _preempt_registered(t, d, key, victim, rtype)


def _key_seen(t: Transport, d: Disk, key: int) -> bool:
    target = _target_of(t)
    return (_lun_key(d), key) in _KEY_SEEN or (target is not None
                                              and (target, key) in _KEY_SEEN)


def _see_key(t: Transport, d: Disk, key: int) -> None:
    target = _target_of(t)
    with _NO_PREEMPT_ABORT_LOCK:
        _KEY_SEEN.add((_lun_key(d), key))
        if target is not None:
            _KEY_SEEN.add((target, key))


def _fenced_meanwhile(d: Disk, key: int) -> OwnKeyMissing:
    return OwnKeyMissing(f"{d.name}: our key {prm.format_key(key)} was removed while "
                         "this node was fencing")


def _preempt_registered(t: Transport, d: Disk, key: int, victim: int,
                        rtype: ReservationType) -> Preempted:
    """Steps 3 (the count) to 5 of :func:`guarded_preempt`, once this nexus was
    registered by us."""
    keys = command.read_keys(t)
    if keys.keys.count(key) < 2:
        with contextlib.suppress(ScsiError):  # undo: we were removed before registering
            command.pr_out(t, Out.REGISTER, key, 0)
        raise OwnKeyMissing(f"{d.name}: our key {prm.format_key(key)} was removed while "
                            "this node was fencing (or was never registered here)")
    _see_key(t, d, key)
    kept: prm.Reservation | None = None
    if victim not in keys.keys:
        outcome = (f"{prm.format_key(victim)} not registered", "absent")
        victim_held, generation = False, keys.generation
    else:
        held = command.read_reservation(t)
        victim_held = held.key == victim
        if held.held and held.type is not None and not held.type.all_registrants \
                and held.key is not None and not victim_held:
            kept = held
        try:
            outcome = preempt_through(t, d, key, victim, rtype)
        except ReservationConflict:
            raise _fenced_meanwhile(d, key) from None
        generation = held.generation + 1
    if not victim_held:
        try:
            command.pr_out(t, Out.REGISTER, key, 0)
        except ReservationConflict:
            raise _fenced_meanwhile(d, key) from None
        generation += 1
    if kept is None:
        return Preempted(*outcome)
    return Preempted(*outcome, kept=kept, generation=generation & 0xFFFFFFFF)


def read_back(t: Transport, d: Disk) -> LunStatus:
    """Keys and holder of one LUN through ``t``: READ FULL STATUS (one command) where
    the target has it, else READ KEYS + READ RESERVATION; the refusal is remembered for
    the target. A malformed answer is a fault like any other (the caller's path moves
    on); only ILLEGAL REQUEST means "not supported"."""
    if not _known(_NO_FULL_STATUS, t, d):
        try:
            fs = command.read_full_status(t)
        except IllegalRequest:
            _learn(_NO_FULL_STATUS, t, d)
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


# -- one path: is our key there, and put it back ---------------------------------------------
def key_on_path(p: Path, key: int) -> bool:
    """Whether the nexus of ``p`` is registered with ``key``: REGISTER with ``key`` as both
    the old and the new key succeeds only through a nexus registered with it and changes
    nothing else; RESERVATION CONFLICT means it is not. A path fault raises PathFaulted
    (and marks the path failed)."""
    try:
        p.attempt(lambda p: command.pr_out(p.transport(), Out.REGISTER, key, key))
    except ReservationConflict:
        return False
    return True


def register_path(p: Path, key: int) -> None:
    """REGISTER AND IGNORE EXISTING KEY through one path; PathFaulted on a path fault,
    and an unexpected refusal marks the path failed too."""
    try:
        p.attempt(lambda p: command.pr_out(p.transport(),
                                           Out.REGISTER_AND_IGNORE_EXISTING_KEY, 0, key))
    except ScsiError as err:
        p.fail(_refusal_fault(err))
        raise PathFaulted(p.name, _refusal_fault(err)) from err


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


def read_status(disks: list[Disk], *, full: bool = False) -> Outcome:
    """Keys and holder of every disk (value: LunStatus). READ FULL STATUS when asked
    and supported; a target without it still gives keys and holder."""

    def fn(d: Disk, p: Path) -> tuple[str, Any]:
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

    return _single("status", disks, fn)


def write_probe(disks: list[Disk], lba: int, payload: bytes) -> Outcome:
    """WRITE one block through one path: how a test shows who may write (RESERVATION
    CONFLICT for a fenced node). Never used by the agents on user data."""

    def fn(d: Disk, p: Path) -> tuple[str, Any]:
        try:
            command.write_block(p.transport(), lba, payload.ljust(512, b"\0")[:512])
        except ReservationConflict as err:
            # the answer this probe looks for: as a verdict (no command attached), so the
            # fault classification does not take the path for a failed one
            raise ReservationConflict(err.status, None, str(err)) from err
        return f"wrote LBA {lba}", None

    return _single("write", disks, fn)
