"""Who may write: WRITE one block through one path of each disk.

How the demo and the tests show that a fenced node's writes get RESERVATION CONFLICT
and the holder's do not. Never used by the agents on user data.
"""
from __future__ import annotations

from hamon.lib import command
from hamon.lib.disk import Disk, Path
from hamon.lib.reservation.paths import on_one_path
from hamon.lib.reservation.results import Outcome
from hamon.lib.scsi.errors import ReservationConflict


def write_probe(disks: list[Disk], lba: int, payload: bytes) -> Outcome[None]:
    """WRITE one block through one path: how a test shows who may write (RESERVATION
    CONFLICT for a fenced node). Never used by the agents on user data."""

    def fn(d: Disk, p: Path) -> tuple[str, None]:
        try:
            command.write_block(p.transport(), lba, payload.ljust(512, b"\0")[:512])
        except ReservationConflict as err:
            # the answer this probe looks for: as a verdict (no command attached), so the
            # fault classification does not take the path for a failed one
            raise ReservationConflict(err.status, None, str(err)) from err
        return f"wrote LBA {lba}", None

    return on_one_path("write", disks, fn)
