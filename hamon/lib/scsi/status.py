"""SCSI status byte values (SAM-5 table 'Status codes')."""
from enum import IntEnum


class Status(IntEnum):
    GOOD = 0x00
    CHECK_CONDITION = 0x02
    CONDITION_MET = 0x04
    BUSY = 0x08
    RESERVATION_CONFLICT = 0x18
    TASK_SET_FULL = 0x28
    ACA_ACTIVE = 0x30
    TASK_ABORTED = 0x40


def status_name(value: int) -> str:
    """``RESERVATION CONFLICT`` for 0x18; hex for values SAM does not define."""
    try:
        return Status(value).name.replace("_", " ")
    except ValueError:
        return f"status 0x{value:02x}"
