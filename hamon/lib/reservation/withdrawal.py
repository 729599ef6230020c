"""``stop``: leave a shared disk, our reservation released and every registration of our
key removed, verified by reading the LUN back (:func:`withdraw`)."""
from __future__ import annotations

from typing import Any, NamedTuple

from hamon.lib import command
from hamon.lib.disk import Disk, Path
from hamon.lib.faults import LunAnswer
from hamon.lib.reservation.hold import preempt_through
from hamon.lib.reservation.paths import on_one_path
from hamon.lib.reservation.results import LunStatus, Outcome
from hamon.lib.scsi import pr as prm
from hamon.lib.scsi.pr import PrOutServiceAction as Out
from hamon.lib.scsi.pr import ReservationType


class StillRegistered(LunAnswer):
    """After removing our key, the LUN still lists it (or our reservation)."""


def _ours(held: prm.Reservation, keys: tuple[int, ...], key: int) -> bool:
    if not held.held:
        return False
    if held.type is not None and held.type.all_registrants:
        return key in keys
    return held.key == key


class Withdrawal(NamedTuple):
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

    return on_one_path("withdraw", disks, fn)
