"""PERSISTENT RESERVE IN/OUT (SPC-4 6.15, 6.16): CDBs, parameter list, responses.

Field names follow SPC-4 and ``sg_persist``: reservation key (``RK``), service action
reservation key (``SARK``), ``PRgeneration``, scope/type, APTPL, ALL_TG_PT.

The parsed records are ``typing.NamedTuple`` (the stdlib's form for parsed records), not
dataclasses (docs/architecture.md, "What a fence loads").
"""
from __future__ import annotations

import struct
from enum import IntEnum
from typing import NamedTuple

PERSISTENT_RESERVE_IN = 0x5E
PERSISTENT_RESERVE_OUT = 0x5F

#: Basic PR OUT parameter list length (no TransportIDs).
PR_OUT_PARAM_LEN = 24
#: Allocation length of the first PR IN: 1022 keys, within one iSCSI burst. A longer
#: list is read again with the length its header asks for (see command.pr_in).
DEFAULT_ALLOC_LEN = 8192
#: PR IN's ALLOCATION LENGTH field is two bytes: the most one command can return.
MAX_ALLOC_LEN = 0xFFFF
SCOPE_LU = 0


class PrOutServiceAction(IntEnum):
    REGISTER = 0x00
    RESERVE = 0x01
    RELEASE = 0x02
    CLEAR = 0x03
    PREEMPT = 0x04
    PREEMPT_AND_ABORT = 0x05
    REGISTER_AND_IGNORE_EXISTING_KEY = 0x06
    REGISTER_AND_MOVE = 0x07

    @property
    def label(self) -> str:
        return self.name.replace("_", " ")


class PrInServiceAction(IntEnum):
    READ_KEYS = 0x00
    READ_RESERVATION = 0x01
    REPORT_CAPABILITIES = 0x02
    READ_FULL_STATUS = 0x03


class ReservationType(IntEnum):
    """SPC-4 table 'Persistent reservation type codes'; short names as sg_persist prints."""

    WRITE_EXCLUSIVE = 1
    EXCLUSIVE_ACCESS = 3
    WRITE_EXCLUSIVE_REGISTRANTS_ONLY = 5
    EXCLUSIVE_ACCESS_REGISTRANTS_ONLY = 6
    WRITE_EXCLUSIVE_ALL_REGISTRANTS = 7
    EXCLUSIVE_ACCESS_ALL_REGISTRANTS = 8

    @property
    def short(self) -> str:
        return _SHORT[self]

    @property
    def all_registrants(self) -> bool:
        """WE-AR/EA-AR: every registrant is a holder, and the holder key reads as 0."""
        return self in (ReservationType.WRITE_EXCLUSIVE_ALL_REGISTRANTS,
                        ReservationType.EXCLUSIVE_ACCESS_ALL_REGISTRANTS)

    @property
    def registrants_only(self) -> bool:
        return self in (ReservationType.WRITE_EXCLUSIVE_REGISTRANTS_ONLY,
                        ReservationType.EXCLUSIVE_ACCESS_REGISTRANTS_ONLY)

    @classmethod
    def parse(cls, text: str | int) -> ReservationType:
        """Accept ``5``, ``WE-RO``, ``we_ro``, ``write-exclusive-registrants-only``."""
        if isinstance(text, int) or str(text).strip().isdigit():
            try:
                return cls(int(text))
            except ValueError:
                pass
        else:
            norm = str(text).strip().upper().replace("_", "-")
            for member, short in _SHORT.items():
                if norm in (short, member.name.replace("_", "-")):
                    return member
        choices = ", ".join(f"{m.short} ({m.value})" for m in cls)
        raise ValueError(f"unknown reservation type {text!r}; choose one of {choices}")


_SHORT = {
    ReservationType.WRITE_EXCLUSIVE: "WE",
    ReservationType.EXCLUSIVE_ACCESS: "EA",
    ReservationType.WRITE_EXCLUSIVE_REGISTRANTS_ONLY: "WE-RO",
    ReservationType.EXCLUSIVE_ACCESS_REGISTRANTS_ONLY: "EA-RO",
    ReservationType.WRITE_EXCLUSIVE_ALL_REGISTRANTS: "WE-AR",
    ReservationType.EXCLUSIVE_ACCESS_ALL_REGISTRANTS: "EA-AR",
}


def pr_out_cdb(
    action: PrOutServiceAction,
    rtype: ReservationType | int = 0,
    param_len: int = PR_OUT_PARAM_LEN,
) -> bytes:
    """10-byte PERSISTENT RESERVE OUT CDB. Type only matters for RESERVE/RELEASE/PREEMPT*."""
    return struct.pack(
        ">BBBxxI B", PERSISTENT_RESERVE_OUT, int(action) & 0x1F,
        ((SCOPE_LU << 4) | (int(rtype) & 0x0F)), param_len, 0,
    )


def pr_out_params(
    key: int,
    sa_key: int = 0,
    *,
    aptpl: bool = False,
    all_tg_pt: bool = False,
    spec_i_pt: bool = False,
) -> bytes:
    """The basic 24-byte PR OUT parameter list (SPC-4 table 'PR OUT parameter list')."""
    flags = (0x08 if spec_i_pt else 0) | (0x04 if all_tg_pt else 0) | (0x01 if aptpl else 0)
    return struct.pack(">QQ4xBx2x", _check_key(key), _check_key(sa_key), flags)


def pr_in_cdb(action: PrInServiceAction, alloc_len: int = DEFAULT_ALLOC_LEN) -> bytes:
    """10-byte PERSISTENT RESERVE IN CDB."""
    return struct.pack(">BB5xHB", PERSISTENT_RESERVE_IN, int(action) & 0x1F, alloc_len, 0)


def _check_key(key: int) -> int:
    if not 0 <= key < 1 << 64:
        raise ValueError(f"reservation key {key!r} is not an 8-byte unsigned value")
    return key


class ResponseError(ValueError):
    """A PR IN response shorter or longer than its own header says."""


class Keys(NamedTuple):
    generation: int
    keys: tuple[int, ...]
    truncated: bool = False


class Reservation(NamedTuple):
    """READ RESERVATION: ``key`` None means no persistent reservation is held."""

    generation: int
    key: int | None
    type: ReservationType | None

    @property
    def held(self) -> bool:
        return self.type is not None


class Capabilities(NamedTuple):
    compatible_reservation_handling: bool
    spec_i_pt_capable: bool
    all_tg_pt_capable: bool
    ptpl_capable: bool
    ptpl_active: bool
    type_mask_valid: bool
    types: frozenset[ReservationType]


class TransportId(NamedTuple):
    """Who an I_T nexus's initiator port is (SPC-4 7.6.4). ``name`` is readable text."""

    protocol: int
    name: str

    def __str__(self) -> str:
        return self.name


class FullStatusEntry(NamedTuple):
    key: int
    all_tg_pt: bool
    holder: bool
    type: ReservationType | None
    relative_target_port: int
    initiator: TransportId | None


class FullStatus(NamedTuple):
    generation: int
    entries: tuple[FullStatusEntry, ...]


def response_length(action: PrInServiceAction, data: bytes) -> int:
    """The whole length a PR IN response says it has: 8 + ADDITIONAL LENGTH, or for
    REPORT CAPABILITIES its two-byte LENGTH."""
    if action is PrInServiceAction.REPORT_CAPABILITIES:
        if len(data) < 2:
            raise ResponseError(f"REPORT CAPABILITIES response of {len(data)} bytes")
        return struct.unpack_from(">H", data)[0]
    if len(data) < 8:
        raise ResponseError(f"PR IN response of {len(data)} bytes has no 8-byte header")
    return 8 + struct.unpack_from(">I", data, 4)[0]


def _header(data: bytes) -> tuple[int, bytes, bool]:
    if len(data) < 8:
        raise ResponseError(f"PR IN response of {len(data)} bytes has no 8-byte header")
    generation, add_len = struct.unpack_from(">II", data)
    body = data[8:8 + add_len]
    return generation, body, len(body) < add_len


def parse_read_keys(data: bytes) -> Keys:
    """READ KEYS. ``truncated``: the list goes on past ``data`` (the caller must read
    again with a larger allocation; :func:`hamon.lib.command.read_keys` does). A
    list whose length is not whole keys is malformed: ResponseError."""
    generation, body, truncated = _header(data)
    add_len = struct.unpack_from(">I", data, 4)[0]
    if add_len % 8:
        raise ResponseError(f"READ KEYS reports an ADDITIONAL LENGTH of {add_len} bytes, "
                            "not a whole number of 8-byte keys")
    n = len(body) // 8
    keys = struct.unpack_from(f">{n}Q", body) if n else ()
    return Keys(generation, tuple(keys), truncated)


def parse_read_reservation(data: bytes) -> Reservation:
    generation, body, _ = _header(data)
    if len(body) < 16:
        return Reservation(generation, None, None)
    key = struct.unpack_from(">Q", body)[0]
    rtype = body[13] & 0x0F
    try:
        return Reservation(generation, key, ReservationType(rtype))
    except ValueError as err:
        raise ResponseError(f"READ RESERVATION reports unknown type {rtype}") from err


def parse_report_capabilities(data: bytes) -> Capabilities:
    if len(data) < 8:
        raise ResponseError(f"REPORT CAPABILITIES response of {len(data)} bytes (need 8)")
    b2, b3 = data[2], data[3]
    mask = struct.unpack_from(">H", data, 4)[0]
    bits = {
        ReservationType.WRITE_EXCLUSIVE_ALL_REGISTRANTS: 0x8000,
        ReservationType.EXCLUSIVE_ACCESS_REGISTRANTS_ONLY: 0x4000,
        ReservationType.WRITE_EXCLUSIVE_REGISTRANTS_ONLY: 0x2000,
        ReservationType.EXCLUSIVE_ACCESS: 0x0800,
        ReservationType.WRITE_EXCLUSIVE: 0x0200,
        ReservationType.EXCLUSIVE_ACCESS_ALL_REGISTRANTS: 0x0001,
    }
    return Capabilities(
        compatible_reservation_handling=bool(b2 & 0x10),
        spec_i_pt_capable=bool(b2 & 0x08),
        all_tg_pt_capable=bool(b2 & 0x04),
        ptpl_capable=bool(b2 & 0x01),
        ptpl_active=bool(b3 & 0x01),
        type_mask_valid=bool(b3 & 0x80),
        types=frozenset(t for t, bit in bits.items() if mask & bit),
    )


def build_capabilities(types: frozenset[ReservationType] | set[ReservationType],
                       *, all_tg_pt: bool, ptpl: bool) -> bytes:
    """The 8-byte REPORT CAPABILITIES answer (used by the in-memory target)."""
    bits = {ReservationType.WRITE_EXCLUSIVE_ALL_REGISTRANTS: 0x8000,
            ReservationType.EXCLUSIVE_ACCESS_REGISTRANTS_ONLY: 0x4000,
            ReservationType.WRITE_EXCLUSIVE_REGISTRANTS_ONLY: 0x2000,
            ReservationType.EXCLUSIVE_ACCESS: 0x0800,
            ReservationType.WRITE_EXCLUSIVE: 0x0200,
            ReservationType.EXCLUSIVE_ACCESS_ALL_REGISTRANTS: 0x0001}
    mask = 0
    for t in types:
        mask |= bits[t]
    b2 = (0x04 if all_tg_pt else 0) | (0x01 if ptpl else 0)
    return struct.pack(">HBBH2x", 8, b2, 0x80, mask)


def parse_transport_id(raw: bytes) -> TransportId | None:
    """A TransportID as readable text: iSCSI name (+ ISID), FC WWPN, SAS address."""
    if len(raw) < 4:
        return None
    fmt, proto = raw[0] >> 6, raw[0] & 0x0F
    if proto == 0x5:  # iSCSI: 2-byte additional length, then NUL-terminated name
        add_len = struct.unpack_from(">H", raw, 2)[0]
        text = raw[4:4 + add_len].split(b"\0", 1)[0].decode("utf-8", "replace")
        if fmt == 1:  # "iqn...,i,0x<isid>"
            text = text.replace(",i,0x", " isid 0x")
        return TransportId(proto, text)
    if proto == 0x0 and len(raw) >= 16:
        return TransportId(proto, "fc " + raw[8:16].hex())
    if proto == 0x6 and len(raw) >= 12:
        return TransportId(proto, "sas " + raw[4:12].hex())
    return TransportId(proto, f"protocol {proto:#x} " + raw[:24].hex())


def parse_read_full_status(data: bytes) -> FullStatus:
    generation, body, _ = _header(data)
    entries = []
    off = 0
    while off + 24 <= len(body):
        key = struct.unpack_from(">Q", body, off)[0]
        flags, scope_type = body[off + 12], body[off + 13]
        rtp = struct.unpack_from(">H", body, off + 18)[0]
        add = struct.unpack_from(">I", body, off + 20)[0]
        holder = bool(flags & 0x01)
        rtype = None
        if holder:
            try:
                rtype = ReservationType(scope_type & 0x0F)
            except ValueError:
                rtype = None
        tid = parse_transport_id(body[off + 24:off + 24 + add])
        entries.append(FullStatusEntry(key, bool(flags & 0x02), holder, rtype, rtp, tid))
        off += 24 + add
    return FullStatus(generation, tuple(entries))


def format_key(key: int) -> str:
    """Keys print as sg_persist prints them: 0x followed by hex, no padding."""
    return f"0x{key:x}"
