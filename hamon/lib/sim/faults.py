"""Injected faults: one vocabulary for the in-memory target and the iSCSI fault proxy.

A :class:`FaultRule` says which commands a path answers abnormally and how
(:class:`FaultKind`): CHECK CONDITION with any sense, BUSY, TASK SET FULL, RESERVATION
CONFLICT, no answer, connection lost, or corrupted PR IN data. The in-memory target
(:mod:`hamon.lib.sim.target`) and tests/faultproxy.py both read these rules, so a fault
means the same thing in every tier. Stdlib and ``hamon.lib.scsi`` only: the proxy runs it
as a separate process too.
"""
from __future__ import annotations

import struct
import threading
from dataclasses import dataclass
from enum import StrEnum

from hamon.lib.scsi import pr as prm
from hamon.lib.scsi.pr import PrInServiceAction as In
from hamon.lib.scsi.sense import build_fixed_sense
from hamon.lib.scsi.status import Status


class FaultKind(StrEnum):
    """How a faulted command is answered."""

    CHECK_CONDITION = "check-condition"  # status 0x02 + fixed sense (sense_key, asc, ascq)
    BUSY = "busy"  # status 0x08
    TASK_SET_FULL = "task-set-full"  # status 0x28
    RESERVATION_CONFLICT = "reservation-conflict"  # status 0x18
    SWALLOW = "swallow"  # no answer ever: the initiator times out
    DROP = "drop"  # the connection is lost
    CORRUPT = "corrupt"  # PR IN data whose header claims more than was sent (see below)


#: The status byte each answering kind returns.
FAULT_STATUS: dict[FaultKind, int] = {
    FaultKind.CHECK_CONDITION: Status.CHECK_CONDITION,
    FaultKind.BUSY: Status.BUSY,
    FaultKind.TASK_SET_FULL: Status.TASK_SET_FULL,
    FaultKind.RESERVATION_CONFLICT: Status.RESERVATION_CONFLICT,
}


@dataclass(frozen=True)
class FaultRule:
    """Which commands to fault and how; ``count`` None = every matching command."""

    kind: FaultKind
    opcode: int | None = None  # None = every command (0x5E PR IN, 0x5F PR OUT, 0x00 TUR)
    service_action: int | None = None  # cdb[1] & 0x1F, only checked when not None
    sense_key: int = 0x4  # HARDWARE ERROR by default
    asc: int = 0x44  # INTERNAL TARGET FAILURE
    ascq: int = 0x00
    count: int | None = None  # how many matching commands it hits; None = all

    def __post_init__(self) -> None:
        object.__setattr__(self, "kind", FaultKind(self.kind))

    def matches(self, cdb: bytes) -> bool:
        """Whether this rule applies to ``cdb``; CORRUPT applies to PR IN only, so a
        counted CORRUPT rule is not used up by the commands it cannot corrupt."""
        if not cdb:
            return False
        if self.opcode is not None and cdb[0] != self.opcode:
            return False
        if self.kind == FaultKind.CORRUPT and cdb[0] != prm.PERSISTENT_RESERVE_IN:
            return False
        sa = cdb[1] & 0x1F if len(cdb) > 1 else None
        return self.service_action is None or sa == self.service_action

    def status(self) -> int | None:
        """The status byte this rule answers with, or None (swallow, drop, corrupt)."""
        return FAULT_STATUS.get(self.kind)

    def sense(self) -> bytes:
        """The fixed-format sense data of a CHECK CONDITION rule (empty otherwise)."""
        if self.kind != FaultKind.CHECK_CONDITION:
            return b""
        return build_fixed_sense(self.sense_key, self.asc, self.ascq)


#: The failing array of issue 10: CHECK CONDITION, HARDWARE ERROR, 44/00, every command.
HARDWARE_ERROR = FaultRule(FaultKind.CHECK_CONDITION)


class FaultPlan:
    """The rules of one path, in order, with their remaining counts (thread-safe)."""

    def __init__(self, rules: tuple[FaultRule, ...] | list[FaultRule] = ()) -> None:
        self._lock = threading.Lock()
        self._rules: list[list] = []
        self.add(*rules)

    def add(self, *rules: FaultRule) -> None:
        with self._lock:
            self._rules.extend([r, r.count] for r in rules)

    def clear(self) -> None:
        with self._lock:
            self._rules.clear()

    def replace(self, rules: tuple[FaultRule, ...] | list[FaultRule]) -> None:
        with self._lock:
            self._rules = [[r, r.count] for r in rules]

    def rules(self) -> list[FaultRule]:
        with self._lock:
            return [r for r, _ in self._rules]

    def take(self, cdb: bytes) -> FaultRule | None:
        """The first rule matching ``cdb``, charged one hit; None if no rule matches."""
        with self._lock:
            for entry in self._rules:
                rule, left = entry
                if not rule.matches(cdb):
                    continue
                if left is not None:
                    if left <= 0:
                        continue
                    entry[1] = left - 1
                return rule
        return None

    def refund(self, rule: FaultRule) -> None:
        """Give back one hit of ``rule`` (the proxy: the target answered the faulted
        command with something that takes precedence, e.g. a UNIT ATTENTION)."""
        with self._lock:
            for entry in self._rules:
                if entry[0] is rule and entry[1] is not None:
                    entry[1] += 1
                    return

    def __bool__(self) -> bool:
        with self._lock:
            return bool(self._rules)


def corrupt_pr_in(cdb: bytes, data: bytes) -> bytes:
    """PR IN parameter data whose header claims more bytes than it carries.

    READ KEYS / READ RESERVATION / READ FULL STATUS: ADDITIONAL LENGTH (bytes 4..7) becomes
    larger than the bytes that follow the header (and than what it said before) and not a
    multiple of 8, so a reader can detect both "short" and "malformed". REPORT
    CAPABILITIES: LENGTH (bytes 0..1) likewise. Data shorter than its header, and every
    other command, pass unchanged (nothing to corrupt). ``data`` may be the first part of
    the answer only (the proxy's first Data-In PDU): the claim still exceeds the whole.
    """
    if not cdb or cdb[0] != prm.PERSISTENT_RESERVE_IN:
        return data
    if (cdb[1] & 0x1F) == In.REPORT_CAPABILITIES:
        if len(data) < 2:
            return data
        claimed = max(struct.unpack_from(">H", data)[0], len(data)) + 5
        claimed += 1 if claimed % 8 == 0 else 0
        return struct.pack(">H", claimed & 0xFFFF) + data[2:]
    if len(data) < 8:
        return data
    claimed = max(struct.unpack_from(">I", data, 4)[0], len(data) - 8) + 12
    claimed += 4 if claimed % 8 == 0 else 0
    return data[:4] + struct.pack(">I", claimed & 0xFFFFFFFF) + data[8:]
