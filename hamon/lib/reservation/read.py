"""Reading a LUN's keys and holder: READ KEYS + READ RESERVATION, or READ FULL STATUS.
"""
from __future__ import annotations

from hamon.lib import command
from hamon.lib.disk import Disk, Path
from hamon.lib.reservation import quirks as tq
from hamon.lib.reservation.paths import (
    on_one_path,
)
from hamon.lib.reservation.results import LunStatus, Outcome
from hamon.lib.scsi import pr as prm
from hamon.lib.scsi.errors import IllegalRequest
from hamon.lib.transport.base import Transport


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
