"""INQUIRY data: standard, VPD 0x80 (unit serial) and 0x83 (device identification).

The LUN identity hamon groups paths by is the one multipath-tools' ``scsi_id`` would give:
the designator type digit followed by the designator in hex (``3`` + NAA, ``2`` + EUI-64,
``8`` + SCSI name string, ``1`` + T10 vendor id), taken from the logical unit's own
designators (association 0), best first. Same LUN through two portals, same identity.
"""
from __future__ import annotations

import struct
from typing import NamedTuple

# Designator types (SPC-4 table 'DESIGNATOR TYPE field'), in multipath's order of preference.
DESIG_T10 = 1
DESIG_EUI64 = 2
DESIG_NAA = 3
DESIG_NAME = 8
_PREFERENCE = (DESIG_NAA, DESIG_EUI64, DESIG_NAME, DESIG_T10)


class StandardInquiry(NamedTuple):
    peripheral_type: int
    vendor: str
    product: str
    revision: str


class Designator(NamedTuple):
    code_set: int
    association: int
    type: int
    value: bytes

    def identity(self) -> str:
        if self.type in (DESIG_NAME, DESIG_T10) and self.code_set in (2, 3):
            text = self.value.rstrip(b"\0").decode("ascii", "replace").strip()
            return f"{self.type}{text}" if self.type == DESIG_NAME else f"1{text}"
        return f"{self.type}{self.value.hex()}"


def parse_standard_inquiry(data: bytes) -> StandardInquiry:
    if len(data) < 36:
        raise ValueError(f"standard INQUIRY data of {len(data)} bytes (need 36)")

    def text(a: int, b: int) -> str:
        return data[a:b].decode("ascii", "replace").strip()

    return StandardInquiry(data[0] & 0x1F, text(8, 16), text(16, 32), text(32, 36))


def parse_unit_serial(data: bytes) -> str:
    if len(data) < 4 or data[1] != 0x80:
        raise ValueError("not a VPD 0x80 page")
    n = struct.unpack_from(">H", data, 2)[0]
    return data[4:4 + n].decode("ascii", "replace").strip(" \0")


def parse_device_identification(data: bytes) -> list[Designator]:
    if len(data) < 4 or data[1] != 0x83:
        raise ValueError("not a VPD 0x83 page")
    end = min(len(data), 4 + struct.unpack_from(">H", data, 2)[0])
    out = []
    off = 4
    while off + 4 <= end:
        code_set = data[off] & 0x0F
        association = (data[off + 1] >> 4) & 0x03
        dtype = data[off + 1] & 0x0F
        n = data[off + 3]
        out.append(Designator(code_set, association, dtype, bytes(data[off + 4:off + 4 + n])))
        off += 4 + n
    return out


def _rank(d: Designator) -> int:
    """scsi_id's order (systemd's scsi_serial.c, ``id_search_list``): among NAA
    designators IEEE Registered Extended (NAA 6) first, then IEEE Registered (5), then
    any other NAA; then EUI-64, SCSI name string, T10 vendor id. This is what names the
    multipath map (ID_SERIAL -> WWID), so a LUN seen as a dm map on one node and as a
    plain sd on another gets one identity. Targets list several NAAs (tgt: a locally
    assigned NAA 3 before its NAA 6), so the first NAA in page order is not enough."""
    if d.type == DESIG_NAA:
        naa = d.value[0] >> 4 if d.value else 0
        return {6: 0, 5: 1}.get(naa, 2)
    return 3 + _PREFERENCE.index(d.type) if d.type in _PREFERENCE else 99


def lun_identity(designators: list[Designator]) -> str | None:
    """The best logical-unit designator as a multipath-style WWID, or None (the first of
    the best rank, in page order, as scsi_id takes it)."""
    lu = [d for d in designators
          if d.association == 0 and d.type in _PREFERENCE and d.value.strip(b"\0 ")]
    return min(lu, key=_rank).identity() if lu else None


def build_device_identification(naa: bytes, t10: str) -> bytes:
    """A VPD 0x83 page with one NAA and one T10 designator (the in-memory target's)."""
    body = bytes([0x01, 0x03, 0, len(naa)]) + naa
    t = t10.encode()
    body += bytes([0x02, 0x01, 0, len(t)]) + t
    return bytes([0, 0x83]) + struct.pack(">H", len(body)) + body
