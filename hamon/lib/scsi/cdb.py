"""The non-PR CDBs hamon sends: TEST UNIT READY, INQUIRY, READ(10)/WRITE(10) (SBC-3).

READ/WRITE exist for tests, the demo and the write probe that shows a fenced node's
RESERVATION CONFLICT; the agents themselves never write user data.
"""
from __future__ import annotations

import struct

TEST_UNIT_READY = 0x00
INQUIRY = 0x12
READ_10 = 0x28
WRITE_10 = 0x2A

VPD_SUPPORTED_PAGES = 0x00
VPD_UNIT_SERIAL_NUMBER = 0x80
VPD_DEVICE_IDENTIFICATION = 0x83


def test_unit_ready_cdb() -> bytes:
    return bytes(6)


def inquiry_cdb(page: int | None = None, alloc_len: int = 255) -> bytes:
    """Standard INQUIRY when ``page`` is None, else the EVPD page."""
    evpd = 0 if page is None else 1
    return struct.pack(">BBBHB", INQUIRY, evpd, page or 0, alloc_len, 0)


def read10_cdb(lba: int, blocks: int = 1) -> bytes:
    return struct.pack(">BBIBHB", READ_10, 0, lba, 0, blocks, 0)


def write10_cdb(lba: int, blocks: int = 1) -> bytes:
    return struct.pack(">BBIBHB", WRITE_10, 0, lba, 0, blocks, 0)
