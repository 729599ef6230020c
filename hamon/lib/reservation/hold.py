"""RESERVE, RELEASE, PREEMPT (AND ABORT), CLEAR: one path each, the first that works.
"""
from __future__ import annotations

from typing import Any

from hamon.lib import command
from hamon.lib.disk import Disk, Path
from hamon.lib.reservation import quirks as tq
from hamon.lib.reservation.paths import (
    on_one_path,
)
from hamon.lib.reservation.results import Outcome, Preemption
from hamon.lib.scsi import pr as prm
from hamon.lib.scsi.errors import IllegalRequest, ReservationConflict
from hamon.lib.scsi.pr import PrOutServiceAction as Out
from hamon.lib.scsi.pr import ReservationType
from hamon.lib.scsi.status import Status
from hamon.lib.transport.base import Transport


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
