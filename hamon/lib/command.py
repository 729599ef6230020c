"""One SCSI command through one transport, with SPC-4's retry rules and typed answers.

Retry policy lives here because it is protocol, not cluster policy: a UNIT ATTENTION
means "the command was not executed, an event is being reported", so resending is what
SPC-4 expects, a bounded number of times. BUSY / TASK SET FULL are retried after a short
pause, taken through the transport (:meth:`Transport.pause`): inside an action's poll
loop it yields to the other paths' jobs instead of stopping the one thread they all run
on. RESERVATION CONFLICT is never retried: it is an answer, and for a fence agent the
most important one.

:class:`Answer` is a ``NamedTuple``, not a dataclass (docs/architecture.md, "What a fence loads").
"""
from __future__ import annotations

from typing import NamedTuple

from hamon.lib.scsi import cdb as cdbs
from hamon.lib.scsi import inquiry, pr
from hamon.lib.scsi.errors import Busy, UnitAttention, error_for
from hamon.lib.transport.base import Transport

#: How many unit attentions one command may meet before the UA is the answer.
#: A fresh I_T nexus may hold several (power on, then reservations preempted, then
#: registrations preempted); 8 bounds a target that raises them forever.
UA_RETRIES = 8
BUSY_RETRIES = 3
BUSY_PAUSE = 0.05


class Answer(NamedTuple):
    """What a command returned, plus the unit attentions met on the way (a list of its
    own for each answer: no shared default)."""

    data: bytes
    unit_attentions: list[UnitAttention]


def run(
    transport: Transport,
    cdb: bytes,
    *,
    data_out: bytes | None = None,
    data_in_len: int = 0,
    what: str = "",
    timeout: float | None = None,
) -> Answer:
    """Execute ``cdb``; return its data or raise the typed ScsiError / PathError."""
    uas: list[UnitAttention] = []
    busy = 0
    while True:
        result = transport.execute(cdb, data_out, data_in_len, timeout)
        err = error_for(result.status, result.sense, what or transport.path, cdb)
        if err is None:
            return Answer(result.data, uas)
        if isinstance(err, UnitAttention) and len(uas) < UA_RETRIES:
            uas.append(err)
            continue
        if isinstance(err, Busy) and busy < BUSY_RETRIES:
            busy += 1
            transport.pause(BUSY_PAUSE * busy)
            continue
        raise err


def test_unit_ready(t: Transport, timeout: float | None = None) -> Answer:
    return run(t, cdbs.test_unit_ready_cdb(), what=f"{t.path}: TEST UNIT READY",
               timeout=timeout)


def lun_identity(t: Transport) -> str | None:
    """The LUN's WWID from VPD 0x83, or the unit serial (VPD 0x80) when 0x83 has none."""
    a = run(t, cdbs.inquiry_cdb(cdbs.VPD_DEVICE_IDENTIFICATION, 1024), data_in_len=1024,
            what=f"{t.path}: INQUIRY VPD 0x83")
    ident = inquiry.lun_identity(inquiry.parse_device_identification(a.data))
    if ident:
        return ident
    a = run(t, cdbs.inquiry_cdb(cdbs.VPD_UNIT_SERIAL_NUMBER), data_in_len=255,
            what=f"{t.path}: INQUIRY VPD 0x80")
    serial = inquiry.parse_unit_serial(a.data)
    return f"S{serial}" if serial else None


def pr_out(
    t: Transport,
    action: pr.PrOutServiceAction,
    key: int,
    sa_key: int = 0,
    rtype: pr.ReservationType | int = 0,
    *,
    aptpl: bool = False,
    all_tg_pt: bool = False,
    timeout: float | None = None,
) -> Answer:
    params = pr.pr_out_params(key, sa_key, aptpl=aptpl, all_tg_pt=all_tg_pt)
    return run(t, pr.pr_out_cdb(action, rtype), data_out=params,
               what=f"{t.path}: PERSISTENT RESERVE OUT {action.label}", timeout=timeout)


def _pr_in(t: Transport, action: pr.PrInServiceAction) -> bytes:
    """One whole PR IN response, never a cut one.

    The first read allows DEFAULT_ALLOC_LEN bytes. When the header's ADDITIONAL LENGTH
    says the list is longer (more than 1022 registrations), it is read again with the
    length asked for. A response shorter than both what it claims and what was allowed
    is malformed, and a list longer than one PR IN can carry cannot be read whole: both
    are ResponseError, which the fault classification counts as a path fault. A key past
    the cut must never read as "absent": a fence would report success while the victim
    is still registered.
    """
    label = action.name.replace("_", " ")
    alloc = pr.DEFAULT_ALLOC_LEN
    while True:
        data = run(t, pr.pr_in_cdb(action, alloc), data_in_len=alloc,
                   what=f"{t.path}: PERSISTENT RESERVE IN {label}").data
        need = pr.response_length(action, data)
        if need <= len(data):
            return data[:need]
        if len(data) < alloc:
            raise pr.ResponseError(f"{t.path}: PERSISTENT RESERVE IN {label}: the target "
                                   f"sent {len(data)} bytes of a {need}-byte response")
        if alloc >= pr.MAX_ALLOC_LEN:
            raise pr.ResponseError(f"{t.path}: PERSISTENT RESERVE IN {label}: the response "
                                   f"is {need} bytes, more than one command can return "
                                   f"({pr.MAX_ALLOC_LEN}); too many registrations")
        alloc = min(need, pr.MAX_ALLOC_LEN)


def read_keys(t: Transport) -> pr.Keys:
    return pr.parse_read_keys(_pr_in(t, pr.PrInServiceAction.READ_KEYS))


def read_reservation(t: Transport) -> pr.Reservation:
    return pr.parse_read_reservation(_pr_in(t, pr.PrInServiceAction.READ_RESERVATION))


def report_capabilities(t: Transport) -> pr.Capabilities:
    return pr.parse_report_capabilities(_pr_in(t, pr.PrInServiceAction.REPORT_CAPABILITIES))


def read_full_status(t: Transport) -> pr.FullStatus:
    return pr.parse_read_full_status(_pr_in(t, pr.PrInServiceAction.READ_FULL_STATUS))


def write_block(t: Transport, lba: int, data: bytes, timeout: float | None = None) -> Answer:
    return run(t, cdbs.write10_cdb(lba, 1), data_out=data,
               what=f"{t.path}: WRITE(10) LBA {lba}", timeout=timeout)


def read_block(t: Transport, lba: int, block_size: int = 512) -> bytes:
    return run(t, cdbs.read10_cdb(lba, 1), data_in_len=block_size,
               what=f"{t.path}: READ(10) LBA {lba}").data
