"""An in-memory SPC-4 logical unit for unit tests: persistent reservations as the standard says.

It decodes the very CDBs and parameter lists the SCSI layer builds, keeps registrations
per I_T nexus (initiator name, target port), the PRgeneration counter, all six
reservation types, per-nexus unit attentions, and answers writes with RESERVATION
CONFLICT exactly where SPC-4's access table says so. ``TgtProfile`` makes it refuse what
tgt refuses (PREEMPT AND ABORT, READ FULL STATUS, APTPL, ALL_TG_PT) so that the fallback
paths are unit-tested too; the integration tier checks the same scenarios on real tgtd.

Faults: ``SimLun.fail_port(port)`` makes every transport through that target port raise
PathError (a dead path); ``hang_port`` makes it raise PathTimeout (a target that stopped
answering), without sleeping. ``SimLun.inject(port, *rules)`` answers chosen commands
through one port abnormally (:class:`FaultRule`, :class:`FaultKind`): CHECK CONDITION with
any sense, BUSY, TASK SET FULL, RESERVATION CONFLICT, no answer, connection lost, or
corrupted PR IN data. The iSCSI fault proxy of the test tiers (tests/faultproxy.py) uses
the same classes, so a fault means the same thing in every tier.
"""
from __future__ import annotations

import hashlib
import struct
import threading
from dataclasses import dataclass, field

from hamon.lib.scsi import cdb as cdbs
from hamon.lib.scsi import inquiry
from hamon.lib.scsi import pr as prm
from hamon.lib.scsi.pr import PrInServiceAction as In
from hamon.lib.scsi.pr import PrOutServiceAction as Out
from hamon.lib.scsi.pr import ReservationType as RT
from hamon.lib.scsi.sense import SenseKey, build_fixed_sense
from hamon.lib.scsi.status import Status
from hamon.lib.sim.faults import FaultPlan, FaultRule
from hamon.lib.transport.base import CommandResult

Nexus = tuple[str, int]  # (initiator name, relative target port)

UA_POWER_ON = (0x29, 0x00)
UA_RESERVATIONS_PREEMPTED = (0x2A, 0x03)
UA_RESERVATIONS_RELEASED = (0x2A, 0x04)
UA_REGISTRATIONS_PREEMPTED = (0x2A, 0x05)

#: Commands that neither report nor clear a unit attention (SPC-4 5.14).
_UA_EXEMPT = {cdbs.INQUIRY, 0xA0, 0x03}  # INQUIRY, REPORT LUNS, REQUEST SENSE


@dataclass(frozen=True)
class TargetProfile:
    """What the target implements; the default is all of SPC-4 (like LIO)."""

    preempt_and_abort: bool = True
    read_full_status: bool = True
    aptpl: bool = True
    all_tg_pt: bool = True
    ua_on_new_nexus: bool = True


#: What tgt (Debian bookworm) implements, as verified in DESIGN.md.
TgtProfile = TargetProfile(preempt_and_abort=False, read_full_status=False, aptpl=False,
                           all_tg_pt=False)


class _Answer(Exception):
    """Internal: ends a command with a non-GOOD status."""

    def __init__(self, status: int, sense: bytes = b"") -> None:
        super().__init__(status)
        self.status = status
        self.sense = sense


def _check(key: int, asc: int, ascq: int) -> _Answer:
    return _Answer(Status.CHECK_CONDITION, build_fixed_sense(key, asc, ascq))


def _illegal(asc: int = 0x24, ascq: int = 0) -> _Answer:
    return _check(SenseKey.ILLEGAL_REQUEST, asc, ascq)


_CONFLICT = Status.RESERVATION_CONFLICT


@dataclass
class SimLun:
    """One logical unit with its persistent-reservation state."""

    name: str = "sim-lun"
    blocks: int = 2048
    block_size: int = 512
    profile: TargetProfile = field(default_factory=TargetProfile)
    registrations: dict[Nexus, int] = field(default_factory=dict)
    holder: Nexus | None = None
    rtype: RT | None = None
    generation: int = 0
    aptpl: bool = False
    data: dict[int, bytes] = field(default_factory=dict)
    pending_ua: dict[Nexus, list[tuple[int, int]]] = field(default_factory=dict)
    seen: set[Nexus] = field(default_factory=set)
    failed_ports: set[int] = field(default_factory=set)
    hung_ports: set[int] = field(default_factory=set)
    faults: dict[int, FaultPlan] = field(default_factory=dict)
    commands: list[tuple[Nexus, bytes]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    # -- faults -----------------------------------------------------------------------
    def fail_port(self, port: int) -> None:
        self.failed_ports.add(port)

    def hang_port(self, port: int) -> None:
        self.hung_ports.add(port)

    def restore_port(self, port: int) -> None:
        self.failed_ports.discard(port)
        self.hung_ports.discard(port)

    def inject(self, port: int, *rules: FaultRule) -> None:
        """Answer commands through ``port`` by ``rules`` (appended; first match wins)."""
        self.faults.setdefault(port, FaultPlan()).add(*rules)

    def clear_faults(self, port: int | None = None) -> None:
        """Remove the injected rules of ``port`` (of every port when None)."""
        if port is None:
            self.faults.clear()
        else:
            self.faults.pop(port, None)

    def take_fault(self, port: int, cdb: bytes) -> FaultRule | None:
        plan = self.faults.get(port)
        return plan.take(cdb) if plan else None

    # -- identity ---------------------------------------------------------------------
    @property
    def naa(self) -> bytes:
        """A stable NAA 6 designator from the LUN name (OUI 0x001405, as LIO uses)."""
        digest = hashlib.sha256(self.name.encode()).digest()
        return bytes([0x60, 0x01, 0x40, 0x50 | (digest[0] & 0x0F)]) + digest[1:13]

    @property
    def wwid(self) -> str:
        return "3" + self.naa.hex()

    # -- state queries ----------------------------------------------------------------
    def keys(self) -> list[int]:
        return list(self.registrations.values())

    def _is_holder(self, nexus: Nexus) -> bool:
        if self.rtype is None:
            return False
        if self.rtype.all_registrants:
            return nexus in self.registrations
        return self.holder == nexus

    def _ua(self, nexus: Nexus, asc_ascq: tuple[int, int]) -> None:
        self.pending_ua.setdefault(nexus, []).append(asc_ascq)

    # -- command dispatch -------------------------------------------------------------
    def execute(self, nexus: Nexus, cdb: bytes, data_out: bytes | None,
                data_in_len: int) -> CommandResult:
        with self.lock:
            self.commands.append((nexus, bytes(cdb)))
            try:
                data = self._dispatch(nexus, cdb, data_out or b"")
            except _Answer as a:
                return CommandResult(a.status, a.sense, b"")
            return CommandResult(Status.GOOD, b"", data[:data_in_len])

    def _dispatch(self, nexus: Nexus, cdb: bytes, data_out: bytes) -> bytes:
        op = cdb[0]
        if nexus not in self.seen:
            self.seen.add(nexus)
            if self.profile.ua_on_new_nexus:
                self._ua(nexus, UA_POWER_ON)
        if op not in _UA_EXEMPT and self.pending_ua.get(nexus):
            asc, ascq = self.pending_ua[nexus].pop(0)
            raise _check(SenseKey.UNIT_ATTENTION, asc, ascq)
        if op == cdbs.TEST_UNIT_READY:
            return b""
        if op == cdbs.INQUIRY:
            return self._inquiry(cdb)
        if op == prm.PERSISTENT_RESERVE_IN:
            return self._pr_in(nexus, cdb)
        if op == prm.PERSISTENT_RESERVE_OUT:
            self._pr_out(nexus, cdb, data_out)
            return b""
        if op in (cdbs.READ_10, cdbs.WRITE_10):
            return self._rw(nexus, cdb, data_out)
        raise _illegal(0x20, 0x00)

    def _inquiry(self, cdb: bytes) -> bytes:
        if not cdb[1] & 1:
            return (bytes([0, 0, 6, 2, 31, 0, 0, 0]) + b"HAMON   " + b"SIM-LUN".ljust(16)
                    + b"0001")
        page = cdb[2]
        if page == cdbs.VPD_DEVICE_IDENTIFICATION:
            return inquiry.build_device_identification(self.naa, f"HAMON   {self.name}")
        if page == cdbs.VPD_UNIT_SERIAL_NUMBER:
            serial = self.naa.hex()[-16:].encode()
            return bytes([0, 0x80, 0, len(serial)]) + serial
        if page == cdbs.VPD_SUPPORTED_PAGES:
            return bytes([0, 0, 0, 3, 0x00, 0x80, 0x83])
        raise _illegal()

    # -- data access under reservations (SPC-4 table 'SPC commands ... reservations') -
    def _rw(self, nexus: Nexus, cdb: bytes, data_out: bytes) -> bytes:
        write = cdb[0] == cdbs.WRITE_10
        lba = struct.unpack_from(">I", cdb, 2)[0]
        count = struct.unpack_from(">H", cdb, 7)[0]
        if lba + count > self.blocks:
            raise _illegal(0x21, 0x00)
        if self.rtype is not None and not self._is_holder(nexus):
            registered = nexus in self.registrations
            t = self.rtype
            if t == RT.WRITE_EXCLUSIVE:
                conflict = write
            elif t == RT.EXCLUSIVE_ACCESS:
                conflict = True
            elif t in (RT.WRITE_EXCLUSIVE_REGISTRANTS_ONLY, RT.WRITE_EXCLUSIVE_ALL_REGISTRANTS):
                conflict = write and not registered
            else:  # EA-RO, EA-AR
                conflict = not registered
            if conflict:
                raise _Answer(_CONFLICT)
        if write:
            for i in range(count):
                chunk = data_out[i * self.block_size:(i + 1) * self.block_size]
                self.data[lba + i] = chunk.ljust(self.block_size, b"\0")
            return b""
        return b"".join(self.data.get(lba + i, bytes(self.block_size)) for i in range(count))

    # -- PERSISTENT RESERVE IN --------------------------------------------------------
    def _pr_in(self, nexus: Nexus, cdb: bytes) -> bytes:
        sa = cdb[1] & 0x1F
        if sa == In.READ_KEYS:
            body = b"".join(struct.pack(">Q", k) for k in self.registrations.values())
        elif sa == In.READ_RESERVATION:
            if self.rtype is None:
                body = b""
            else:
                key = 0 if self.rtype.all_registrants else self.registrations[self.holder]
                body = struct.pack(">Q4xxBxx", key, int(self.rtype))
        elif sa == In.REPORT_CAPABILITIES:
            return prm.build_capabilities(set(RT), all_tg_pt=self.profile.all_tg_pt,
                                          ptpl=self.profile.aptpl)
        elif sa == In.READ_FULL_STATUS and self.profile.read_full_status:
            body = b""
            for nx, key in self.registrations.items():
                holder = self._is_holder(nx)
                name = nx[0].encode() + b"\0"
                name += bytes(-len(name) % 4)
                tid = bytes([0x05, 0]) + struct.pack(">H", len(name)) + name
                flags = 0x01 if holder else 0
                scope_type = int(self.rtype) if holder and self.rtype else 0
                body += struct.pack(">Q4xBB4xHI", key, flags, scope_type, nx[1], len(tid))
                body += tid
        else:
            raise _illegal()
        return struct.pack(">II", self.generation, len(body)) + body

    # -- PERSISTENT RESERVE OUT -------------------------------------------------------
    def _pr_out(self, nexus: Nexus, cdb: bytes, params: bytes) -> None:
        sa = cdb[1] & 0x1F
        rtype_code = cdb[2] & 0x0F
        if len(params) < prm.PR_OUT_PARAM_LEN:
            raise _illegal(0x1A, 0x00)  # PARAMETER LIST LENGTH ERROR
        key, sa_key = struct.unpack_from(">QQ", params)
        flags = params[20]
        aptpl, all_tg_pt = bool(flags & 0x01), bool(flags & 0x04)
        if (aptpl and not self.profile.aptpl) or (all_tg_pt and not self.profile.all_tg_pt):
            raise _illegal(0x26, 0x00)
        registered = self.registrations.get(nexus)

        if sa in (Out.REGISTER, Out.REGISTER_AND_IGNORE_EXISTING_KEY):
            if sa == Out.REGISTER and (
                    (registered is None and key != 0)
                    or (registered is not None and key != registered)):
                raise _Answer(_CONFLICT)
            nexuses = [nexus]
            if all_tg_pt:
                nexuses = sorted({nexus} | {(nexus[0], p) for _, p in self.seen})
            if sa_key == 0:
                if registered is not None:
                    self._unregister(nexus)
            else:
                for nx in nexuses:
                    self.registrations[nx] = sa_key
            self.aptpl = aptpl
            self.generation += 1
            return
        if sa == Out.REGISTER_AND_MOVE:
            raise _illegal(0x20, 0x00)
        if sa not in set(Out):
            raise _illegal()
        if sa == Out.PREEMPT_AND_ABORT and not self.profile.preempt_and_abort:
            # tgt refuses the service action before it looks at the nexus (seen on
            # tgtd 1.0.85: an unregistered session gets ILLEGAL REQUEST, not a conflict)
            raise _illegal(0x24, 0x00)
        # Every other action needs a registered nexus whose key matches.
        if registered is None or registered != key:
            raise _Answer(_CONFLICT)
        if sa == Out.RESERVE:
            rtype = self._type(rtype_code)
            if self.rtype is None:
                self.rtype, self.holder = rtype, nexus
                return
            if self._is_holder(nexus) and self.rtype == rtype:
                return
            raise _Answer(_CONFLICT)
        if sa == Out.RELEASE:
            if self.rtype is None or not self._is_holder(nexus):
                return
            if int(self.rtype) != rtype_code:
                raise _illegal(0x26, 0x04)
            self._release(notify_except=nexus)
            return
        if sa == Out.CLEAR:
            for nx in self.registrations:
                if nx != nexus:
                    self._ua(nx, UA_RESERVATIONS_PREEMPTED)
            self.registrations.clear()
            self.rtype = self.holder = None
            self.generation += 1
            return
        if sa in (Out.PREEMPT, Out.PREEMPT_AND_ABORT):
            self._preempt(nexus, sa_key, self._type(rtype_code) if rtype_code else None)
            return

    def _type(self, code: int) -> RT:
        try:
            return RT(code)
        except ValueError:
            raise _illegal(0x24, 0x00) from None

    def _unregister(self, nexus: Nexus) -> None:
        was_holder = self._is_holder(nexus)
        del self.registrations[nexus]
        if self.rtype is None or not was_holder:
            return
        if self.rtype.all_registrants:
            if not self.registrations:
                self.rtype = self.holder = None
            return
        self._release(notify_except=nexus)

    def _release(self, notify_except: Nexus) -> None:
        if self.rtype is not None and self.rtype not in (RT.WRITE_EXCLUSIVE,
                                                         RT.EXCLUSIVE_ACCESS):
            for nx in self.registrations:
                if nx != notify_except:
                    self._ua(nx, UA_RESERVATIONS_RELEASED)
        self.rtype = self.holder = None

    def _preempt(self, nexus: Nexus, sa_key: int, rtype: RT | None) -> None:
        if self.rtype is not None and self.rtype.all_registrants and sa_key == 0:
            # Preempting an all-registrants reservation: everyone else goes, we hold.
            for nx in [nx for nx in self.registrations if nx != nexus]:
                del self.registrations[nx]
                self._ua(nx, UA_REGISTRATIONS_PREEMPTED)
            self.rtype, self.holder = rtype or self.rtype, nexus
            self.generation += 1
            return
        if sa_key == 0:
            raise _illegal(0x26, 0x00)
        victims = [nx for nx, k in self.registrations.items() if k == sa_key]
        if not victims:
            raise _Answer(_CONFLICT)
        holder_key = None
        if self.rtype is not None and not self.rtype.all_registrants:
            holder_key = self.registrations.get(self.holder)
        for nx in victims:
            if nx != nexus:
                del self.registrations[nx]
                self._ua(nx, UA_REGISTRATIONS_PREEMPTED)
        if holder_key == sa_key:
            if rtype is None:
                raise _illegal(0x24, 0x00)
            self.rtype, self.holder = rtype, nexus
        self.generation += 1
