"""One path of a disk: is our key registered through it, and put it back.

What the disk agent's path check needs when a failed path comes back (KAMN727-I
ONLINE_CHECK vs ONLINE_CHECK(NO_KEY)): SPC-4 registrations are per I_T nexus, so a
path that was down while the key changed may carry no key, or an old one.
"""
from __future__ import annotations

from hamon.lib import command
from hamon.lib.disk import Path, PathFaulted
from hamon.lib.reservation.paths import refusal_fault
from hamon.lib.scsi.errors import ReservationConflict, ScsiError
from hamon.lib.scsi.pr import PrOutServiceAction as Out


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
        p.fail(refusal_fault(err))
        raise PathFaulted(p.name, refusal_fault(err)) from err
