"""What one LUN taught about its target's persistent-reservation behaviour, per process.

An agent process is one action on many LUNs, often of one target. Where one LUN refused
a command or showed a quirk, the others of the same target (:func:`target_of`: the iSCSI
target name; the SCSI vendor and product for /dev paths) are not asked again:
PREEMPT AND ABORT refused, READ FULL STATUS refused, a new session not being the
registered nexus (tgt). Each is a guess for the other LUNs, and each guess is safe when
wrong: PREEMPT removes the victim as PREEMPT AND ABORT does, a refused READ FULL STATUS
is asked as READ KEYS and READ RESERVATION, and the nexus guess is checked by the
target's own answer and by counting (:func:`hamon.lib.reservation.fencing.guarded_preempt`),
so a wrong guess costs commands, never a needed one. The memory lives as long as the
process; :func:`forget` empties it (tests).
"""
from __future__ import annotations

import threading

from hamon.lib.disk import Disk
from hamon.lib.transport.base import Transport

#: LUNs (by WWID, else operand) known to refuse PREEMPT AND ABORT, and targets
#: (``target:`` + :func:`target_of`) where one LUN refused it.
NO_PREEMPT_ABORT: set[str] = set()
_LOCK = threading.Lock()
#: Targets where a new session was not the registered nexus of its initiator port
#: (tgt binds a registration to the session), and LUNs or targets without READ FULL
#: STATUS. Process-wide, like NO_PREEMPT_ABORT: an agent process is one action.
NEW_SESSION_UNREGISTERED: set[str] = set()
NO_FULL_STATUS: set[str] = set()
#: (LUN or target, key): the guard's count found ``key`` legitimately registered there
#: in this process (hamon.lib.reservation.fencing.guarded_preempt): past a fence's arbiter.
KEY_SEEN: set[tuple[str, int]] = set()


def target_of(t: Transport) -> str | None:
    """``target:<name>`` for the target behind ``t`` (the transport's ``target_id``),
    or None when the transport cannot say (then only the LUN itself is remembered)."""
    tid = getattr(t, "target_id", None)
    return f"target:{tid}" if tid else None


def known(memory: set[str], t: Transport, disk: Disk) -> bool:
    target = target_of(t)
    return lun_key(disk) in memory or (target is not None and target in memory)


def learn(memory: set[str], t: Transport, disk: Disk) -> None:
    target = target_of(t)
    with _LOCK:
        memory.add(lun_key(disk))
        if target is not None:
            memory.add(target)


def lun_key(disk: Disk) -> str:
    """How a LUN is remembered: its WWID, else the operand's name."""
    return disk.wwid or disk.name


def key_seen(t: Transport, d: Disk, key: int) -> bool:
    """Whether the guard's count saw ``key`` registered on this LUN or its target."""
    target = target_of(t)
    return (lun_key(d), key) in KEY_SEEN or (target is not None
                                             and (target, key) in KEY_SEEN)


def see_key(t: Transport, d: Disk, key: int) -> None:
    target = target_of(t)
    with _LOCK:
        KEY_SEEN.add((lun_key(d), key))
        if target is not None:
            KEY_SEEN.add((target, key))


def forget() -> None:
    """Empty every memory (a new action in the same process: tests)."""
    with _LOCK:
        for memory in (NO_PREEMPT_ABORT, NEW_SESSION_UNREGISTERED, NO_FULL_STATUS, KEY_SEEN):
            memory.clear()
