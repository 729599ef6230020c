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
  (:mod:`.quirks`), so an action on many LUNs does not send the same
  refused command to each.

Rooms: ``results`` (the values), ``paths`` (which path carries a step), ``register``,
``hold`` (reserve/release/preempt/clear), ``read``, ``fencing`` (``off``: the guarded
preempt of a victim, verified), ``withdrawal`` (``stop``: leave a disk), ``path_key``
(one path's registration, for monitor), ``quirks`` (what one LUN taught about its target),
``write_probe`` (who may write: the demo's and the tests' check, imported from its room).
This face hands on the vocabulary the agents and the command use as ``rsv.register``,
``rsv.LunStatus``, ...; ``withdraw`` and ``path_key``'s names load their rooms on first
use (a fence starts in a fresh process: it imports only what its action runs).
"""
from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

from hamon.lib.reservation.fencing import OwnKeyMissing, Preempted, fence, guarded_preempt
from hamon.lib.reservation.hold import clear, preempt, preempt_through, release, reserve
from hamon.lib.reservation.paths import on_any_path, on_one_path, refusal_fault
from hamon.lib.reservation.read import read_back, read_status
from hamon.lib.reservation.register import register, unregister
from hamon.lib.reservation.results import DiskResult, LunStatus, Outcome, PathResult, Preemption
from hamon.lib.scsi.pr import ReservationType

if TYPE_CHECKING:
    from hamon.lib.reservation.path_key import key_on_path, register_path
    from hamon.lib.reservation.withdrawal import Withdrawal, withdraw

#: Names whose room is imported on first use (PEP 562): a fence's ``off`` never leaves a
#: disk or checks one path's key, and its process starts fresh. ``register`` stays eager:
#: a name that is also a submodule's would be overwritten by the submodule when it loads.
_LAZY = {"key_on_path": "path_key", "register_path": "path_key",
         "Withdrawal": "withdrawal", "withdraw": "withdrawal"}


def __getattr__(name: str) -> object:
    room = _LAZY.get(name)
    if room is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{room}"), name)
    globals()[name] = value
    return value


__all__ = ["DiskResult", "LunStatus", "Outcome", "OwnKeyMissing", "PathResult", "Preempted",
           "Preemption", "ReservationType", "Withdrawal", "clear", "fence", "guarded_preempt",
           "key_on_path", "on_any_path", "on_one_path", "preempt", "preempt_through",
           "read_back", "read_status", "refusal_fault", "register", "register_path",
           "release", "reserve", "unregister", "withdraw"]
