"""Sense data: fixed (70h/71h) and descriptor (72h/73h) formats, SPC-4 4.5.

Only what a reservation engine acts on is decoded (key, ASC, ASCQ, deferred); the raw
bytes are kept so a message can always show exactly what the target said.
"""
from __future__ import annotations

from enum import IntEnum
from typing import NamedTuple


class SenseKey(IntEnum):
    NO_SENSE = 0x0
    RECOVERED_ERROR = 0x1
    NOT_READY = 0x2
    MEDIUM_ERROR = 0x3
    HARDWARE_ERROR = 0x4
    ILLEGAL_REQUEST = 0x5
    UNIT_ATTENTION = 0x6
    DATA_PROTECT = 0x7
    BLANK_CHECK = 0x8
    VENDOR_SPECIFIC = 0x9
    COPY_ABORTED = 0xA
    ABORTED_COMMAND = 0xB
    VOLUME_OVERFLOW = 0xD
    MISCOMPARE = 0xE
    COMPLETED = 0xF


#: The additional sense codes hamon reports by name (the rest print as hex).
ASC_NAMES: dict[tuple[int, int | None], str] = {
    (0x04, None): "LOGICAL UNIT NOT READY",
    (0x20, 0x00): "INVALID COMMAND OPERATION CODE",
    (0x24, 0x00): "INVALID FIELD IN CDB",
    (0x25, 0x00): "LOGICAL UNIT NOT SUPPORTED",
    (0x26, 0x00): "INVALID FIELD IN PARAMETER LIST",
    (0x26, 0x04): "INVALID RELEASE OF PERSISTENT RESERVATION",
    (0x29, None): "POWER ON, RESET, OR BUS DEVICE RESET OCCURRED",
    (0x2A, 0x01): "MODE PARAMETERS CHANGED",
    (0x2A, 0x03): "RESERVATIONS PREEMPTED",
    (0x2A, 0x04): "RESERVATIONS RELEASED",
    (0x2A, 0x05): "REGISTRATIONS PREEMPTED",
    (0x2A, 0x09): "CAPACITY DATA HAS CHANGED",
    (0x3F, 0x0E): "REPORTED LUNS DATA HAS CHANGED",
    (0x55, 0x02): "INSUFFICIENT RESERVATION RESOURCES",
    (0x55, 0x04): "INSUFFICIENT REGISTRATION RESOURCES",
}


def asc_name(asc: int, ascq: int) -> str:
    """The SPC-4 name of an ASC/ASCQ pair, or ``ASC/ASCQ 2a/07`` when hamon has none."""
    return ASC_NAMES.get((asc, ascq)) or ASC_NAMES.get((asc, None)) or (
        f"ASC/ASCQ {asc:02x}/{ascq:02x}"
    )


class Sense(NamedTuple):
    """Decoded sense data; ``raw`` is exactly what the target returned."""

    key: int
    asc: int
    ascq: int
    deferred: bool
    descriptor_format: bool
    raw: bytes

    @property
    def key_name(self) -> str:
        try:
            return SenseKey(self.key).name.replace("_", " ")
        except ValueError:  # pragma: no cover - 4-bit field, every value is named but 0xC
            return f"sense key 0x{self.key:x}"

    def __str__(self) -> str:
        return f"{self.key_name}, {asc_name(self.asc, self.ascq)}"


class SenseFormatError(ValueError):
    """The bytes are not sense data in a format SPC-4 defines."""


def parse_sense(raw: bytes) -> Sense:
    """Decode fixed or descriptor format sense; raise SenseFormatError otherwise.

    A fixed-format buffer shorter than 14 bytes is accepted as long as the sense key is
    present (some targets truncate); missing ASC/ASCQ read as 0.
    """
    if not raw:
        raise SenseFormatError("no sense data")
    code = raw[0] & 0x7F
    if code in (0x70, 0x71):
        if len(raw) < 3:
            raise SenseFormatError(f"fixed-format sense too short ({len(raw)} bytes)")
        asc = raw[12] if len(raw) > 12 else 0
        ascq = raw[13] if len(raw) > 13 else 0
        return Sense(raw[2] & 0x0F, asc, ascq, code == 0x71, False, bytes(raw))
    if code in (0x72, 0x73):
        if len(raw) < 4:
            raise SenseFormatError(f"descriptor-format sense too short ({len(raw)} bytes)")
        return Sense(raw[1] & 0x0F, raw[2], raw[3], code == 0x73, True, bytes(raw))
    raise SenseFormatError(f"unknown sense response code 0x{code:02x}")


def build_fixed_sense(key: int, asc: int, ascq: int) -> bytes:
    """Fixed-format current sense, 18 bytes: what the in-memory target returns."""
    buf = bytearray(18)
    buf[0] = 0x70
    buf[2] = key & 0x0F
    buf[7] = 10
    buf[12] = asc
    buf[13] = ascq
    return bytes(buf)


def build_descriptor_sense(key: int, asc: int, ascq: int) -> bytes:
    """Descriptor-format current sense with no descriptors (8 bytes)."""
    return bytes([0x72, key & 0x0F, asc, ascq, 0, 0, 0, 0])
