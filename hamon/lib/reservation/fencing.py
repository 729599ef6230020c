"""``off`` on one LUN: remove a victim's key, acting only while our own key is there.

:func:`fence` runs on each disk through one working path (a path fault starts the LUN
again through the next, as everywhere in :mod:`hamon.lib.reservation`):
:func:`guarded_preempt`, a reservation where none is held, and the read-back that
verifies the victim's key is gone. The guard (register this session where the target
binds registrations to sessions, count our key's entries, PREEMPT, remove the session's
registration again) is what makes a new agent process able to PREEMPT on tgt without
ever letting a fenced node preempt the winner; its steps and why each is safe are in
:func:`guarded_preempt`'s docstring. Which commands a LUN can skip because another LUN of
its target answered them is :mod:`hamon.lib.reservation.quirks`.
"""
from __future__ import annotations

import contextlib
from typing import NamedTuple

from hamon.lib import command
from hamon.lib.disk import Disk, Path
from hamon.lib.reservation import quirks as tq
from hamon.lib.reservation.hold import preempt_through
from hamon.lib.reservation.paths import on_one_path
from hamon.lib.reservation.read import read_back
from hamon.lib.reservation.results import LunStatus, Outcome, Preemption
from hamon.lib.scsi import pr as prm
from hamon.lib.scsi.errors import ReservationConflict, ScsiError
from hamon.lib.scsi.pr import PrOutServiceAction as Out
from hamon.lib.scsi.pr import ReservationType
from hamon.lib.scsi.status import Status
from hamon.lib.transport.base import Transport


class OwnKeyMissing(ReservationConflict):
    """Our key is not registered on this LUN (any more): we have been fenced."""

    def __init__(self, text: str) -> None:
        super().__init__(Status.RESERVATION_CONFLICT, None, text)


class Preempted(NamedTuple):
    """What :func:`guarded_preempt` did on one LUN.

    ``kept``: the reservation as READ RESERVATION gave it just before the PREEMPT, when
    that PREEMPT cannot have changed it (held, not an all-registrants type, by a key that
    is not the victim's: SPC-4 5.14.11.2.4 leaves such a reservation alone), and
    ``generation`` the PRgeneration the LUN shows after our own PR OUT commands if no
    other registration changed meanwhile. :func:`fence` then reads only the keys back."""

    detail: str
    how: Preemption
    kept: prm.Reservation | None = None
    generation: int | None = None


def fence(disks: list[Disk], key: int, victim: int, rtype: ReservationType
          ) -> Outcome[tuple[Preemption, LunStatus]]:
    """Remove ``victim`` from each disk, acting only while our ``key`` is there; make
    sure a reservation restricts writes; read the LUN back (value: (how, LunStatus)).

    One job does everything a LUN needs (the guarded preempt, a reservation where none
    is held, the read-back that verifies it), through one working path; a path fault
    starts it again through the next. Answers: :class:`OwnKeyMissing` (we are fenced).
    """

    def fn(d: Disk, p: Path) -> tuple[str, tuple[Preemption, LunStatus]]:
        t = p.transport()
        pre = guarded_preempt(t, d, key, victim, rtype)
        st = _read_back_after(t, d, pre)
        if not st.reservation.held:
            with contextlib.suppress(ReservationConflict):  # somebody was faster: fine
                command.pr_out(t, Out.RESERVE, key, 0, rtype)
            st = read_back(t, d)
        return pre.detail, (pre.how, st)

    return on_one_path("fence", disks, fn)


def _read_back_after(t: Transport, d: Disk, pre: Preempted) -> LunStatus:
    """The read-back after a guarded preempt. The keys are always read (the victim's key
    must be seen gone). Where the target lacks READ FULL STATUS and the reservation was
    read just before a PREEMPT that leaves it alone (``pre.kept``), it is not read again
    when the keys show the PRgeneration our own commands account for, i.e. nobody
    registered, unregistered, preempted or cleared meanwhile (which every change of the
    holder but a RELEASE by the holder itself needs), and the holder's key is listed.
    Any other generation: READ RESERVATION, as always."""
    if pre.kept is None or pre.generation is None or not tq.known(tq.NO_FULL_STATUS, t, d):
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
    if tq.known(tq.NEW_SESSION_UNREGISTERED, t, d) and tq.key_seen(t, d, key):
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
        return Preempted(f"{prm.format_key(victim)} not registered", Preemption.ABSENT)
    try:
        return Preempted(*preempt_through(t, d, key, victim, rtype))
    except ReservationConflict:
        tq.learn(tq.NEW_SESSION_UNREGISTERED, t, d)
    command.pr_out(t, Out.REGISTER_AND_IGNORE_EXISTING_KEY, 0, key)
    return _preempt_registered(t, d, key, victim, rtype)


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
    tq.see_key(t, d, key)
    kept: prm.Reservation | None = None
    if victim not in keys.keys:
        outcome = (f"{prm.format_key(victim)} not registered", Preemption.ABSENT)
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
