"""Persistent-reservation operations on shared disks, over every path, in parallel.

Each operation takes disks and returns an :class:`Outcome` that says per disk, and per
path where the operation is per path, what happened. Nothing here decides cluster policy
(who should hold what, when to terminate the OS): the agents do, from these results.

Rules that hold everywhere:

* REGISTER goes through every path, because SPC-4 registrations are per I_T nexus: a
  path without the key gets RESERVATION CONFLICT the moment multipath fails over to it.
* RESERVE, RELEASE, PREEMPT, CLEAR and the reads go through one path, the first that
  answers; a path that gives no answer (PathError) is marked failed and the next is tried.
  A SCSI answer (even a refusal) ends the attempt: the LUN has spoken.
* RESERVATION CONFLICT is never success, and never retried into one.
* PREEMPT AND ABORT falls back to PREEMPT when the target answers ILLEGAL REQUEST (tgt
  does), and the fallback is remembered per LUN for the life of the process.
"""
from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from hamon.lib.disk import Disk, Path, PathState, run_parallel
from hamon.lib.scsi import command
from hamon.lib.scsi import pr as prm
from hamon.lib.scsi.errors import IllegalRequest, ReservationConflict, ScsiError
from hamon.lib.scsi.pr import PrOutServiceAction as Out
from hamon.lib.scsi.pr import ReservationType
from hamon.lib.transport.base import PathError, Transport

#: LUNs (by WWID, else operand) known to refuse PREEMPT AND ABORT.
_NO_PREEMPT_ABORT: set[str] = set()
_NO_PREEMPT_ABORT_LOCK = threading.Lock()


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
        """True when no path answered at all (as opposed to a SCSI refusal)."""
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
    """Run ``fn`` through the first path that answers; PathError if none does.

    Paths already known to be up are tried first, then unknown ones, failed ones last:
    a path that failed a moment ago may be back, but it should not delay a working one.
    """
    order = sorted(disk.paths, key=lambda p: {PathState.UP: 0, PathState.UNKNOWN: 1,
                                              PathState.FAILED: 2}[p.state])
    last: PathError | None = None
    for p in order:
        try:
            value = fn(p)
        except PathError as err:
            p.mark(PathState.FAILED, err.reason)
            p.close()
            last = err
            continue
        p.mark(PathState.UP)
        return p, value
    raise last or PathError(disk.name, "the disk has no paths")


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
            a = command.pr_out(p.transport(), Out.REGISTER_AND_IGNORE_EXISTING_KEY, 0, key,
                               aptpl=aptpl, all_tg_pt=all_tg_pt)
        except PathError as err:
            p.mark(PathState.FAILED, err.reason)
            p.close()
            return PathResult(p.name, False, "no answer", err)
        except ScsiError as err:
            p.mark(PathState.UP)
            return PathResult(p.name, False, "refused", err)
        p.mark(PathState.UP)
        return PathResult(p.name, True, "registered", unit_attentions=_ua_text(a))

    def one_disk(d: Disk) -> DiskResult:
        prs = [r if isinstance(r, PathResult) else PathResult("?", False, str(r), r)
               for r in run_parallel([lambda p=p: one_path(p) for p in d.paths])]
        ok = [r for r in prs if r.ok]
        bad = [r for r in prs if not r.ok]
        if not ok:
            err = bad[0].error if bad else PathError(d.name, "no paths")
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
            command.pr_out(p.transport(), Out.REGISTER, key, 0)
        except ReservationConflict:
            return PathResult(p.name, True, "was not registered")
        except PathError as err:
            p.mark(PathState.FAILED, err.reason)
            p.close()
            return PathResult(p.name, False, "no answer", err)
        except ScsiError as err:
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
            return DiskResult(d, False, "no path answered", err)
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
    lun = _lun_key(disk)
    if abort and lun not in _NO_PREEMPT_ABORT:
        try:
            command.pr_out(t, Out.PREEMPT_AND_ABORT, key, victim, rtype)
            return "preempted and aborted", "preempt-and-abort"
        except IllegalRequest:
            with _NO_PREEMPT_ABORT_LOCK:
                _NO_PREEMPT_ABORT.add(lun)
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


# -- reads ------------------------------------------------------------------------------
@dataclass(frozen=True)
class LunStatus:
    keys: tuple[int, ...]
    generation: int
    reservation: prm.Reservation
    full: prm.FullStatus | None = None


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
            except IllegalRequest:
                fs = None
        return "read", LunStatus(keys.keys, keys.generation, res, fs)

    return _single("status", disks, fn)


def write_probe(disks: list[Disk], lba: int, payload: bytes) -> Outcome:
    """WRITE one block through one path: how a test shows who may write (RESERVATION
    CONFLICT for a fenced node). Never used by the agents on user data."""

    def fn(d: Disk, p: Path) -> tuple[str, Any]:
        command.write_block(p.transport(), lba, payload.ljust(512, b"\0")[:512])
        return f"wrote LBA {lba}", None

    return _single("write", disks, fn)
