"""The writers' record format, shared by the guest writer and the host checker.

One record is one 512-byte sector (the LUNs' logical block size, so one O_DIRECT write is
one atomic SCSI WRITE): magic, node name, LUN label, epoch (one per writer start), sequence
number (one per write attempt of that writer), slot (the sector index it was written to),
the guest's CLOCK_REALTIME in ns, and a CRC-32 over everything before it. A slot without a
valid record (zeros, a torn or foreign sector) ends a log.
"""
from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass

SIZE = 512
MAGIC = b"HAMONREC"
_HEAD = struct.Struct("<8s16s8sIQQQ")  # magic node lun epoch seq slot guest_ns


@dataclass(frozen=True)
class Record:
    node: str
    lun: str
    epoch: int
    seq: int
    slot: int
    guest_ns: int = 0

    @property
    def ident(self) -> tuple[str, int, int]:
        """What an acknowledgement names: (node, epoch, seq)."""
        return (self.node, self.epoch, self.seq)

    def pack(self) -> bytes:
        head = _HEAD.pack(MAGIC, self.node.encode()[:16], self.lun.encode()[:8], self.epoch,
                          self.seq, self.slot, self.guest_ns)
        body = head + bytes(SIZE - 4 - len(head))
        return body + struct.pack("<I", zlib.crc32(body))


def unpack(sector: bytes) -> Record | None:
    """The record in one sector, or None (no magic, bad checksum)."""
    if len(sector) < SIZE or sector[:8] != MAGIC:
        return None
    body = sector[: SIZE - 4]
    (crc,) = struct.unpack("<I", sector[SIZE - 4 : SIZE])
    if zlib.crc32(body) != crc:
        return None
    _, node, lun, epoch, seq, slot, gns = _HEAD.unpack(body[: _HEAD.size])
    return Record(node.rstrip(b"\0").decode(), lun.rstrip(b"\0").decode(), epoch, seq, slot,
                  gns)


def scan(data: bytes, base_slot: int = 0) -> list[Record]:
    """Every valid record from the start of `data` up to the first slot without one."""
    out = []
    for off in range(0, len(data) - SIZE + 1, SIZE):
        r = unpack(data[off : off + SIZE])
        if r is None:
            break
        out.append(r)
    return out


def scan_all(data: bytes) -> dict[int, Record]:
    """Every valid record anywhere in `data`, by slot (the checker reads past gaps too)."""
    out = {}
    for off in range(0, len(data) - SIZE + 1, SIZE):
        if data[off : off + 8] == MAGIC:
            r = unpack(data[off : off + SIZE])
            if r is not None:
                out[off // SIZE] = r
    return out
