"""SCSI answers that are not GOOD, as exceptions a caller can catch by meaning.

These mean "the target answered, and the answer was no". A path that gave no answer at
all is a :class:`~hamon.lib.transport.base.PathError`, deliberately not a subclass of
:class:`ScsiError`: a fence agent must never mistake a dead path for a refusal, or the
other way round.
"""
from __future__ import annotations

from hamon.lib.scsi.sense import Sense, SenseFormatError, SenseKey, parse_sense
from hamon.lib.scsi.status import Status, status_name


class ScsiError(Exception):
    """The target answered with a status other than GOOD."""

    def __init__(self, status: int, sense: Sense | None = None, what: str = "",
                 cdb: bytes = b"") -> None:
        self.status = status
        self.sense = sense
        self.what = what
        #: The command that got this answer (empty when the engine itself raised it as a
        #: verdict, e.g. "our key is not registered"): the fault classification needs to
        #: know whether RESERVATION CONFLICT came from PR OUT (an answer) or not (a fault).
        self.cdb = bytes(cdb)
        detail = status_name(status)
        if sense is not None:
            detail += f" ({sense})"
        super().__init__(f"{what}: {detail}" if what else detail)


class ReservationConflict(ScsiError):
    """Status 0x18: a persistent reservation (or our missing registration) forbids this."""


class Busy(ScsiError):
    """BUSY or TASK SET FULL: the target may accept the same command a moment later."""


class TaskAborted(ScsiError):
    """TASK ABORTED: another initiator's PREEMPT AND ABORT (or a reset) ended the command."""


class CheckCondition(ScsiError):
    """CHECK CONDITION with sense data; subclasses by sense key."""

    @property
    def asc(self) -> int:
        return self.sense.asc if self.sense else 0

    @property
    def ascq(self) -> int:
        return self.sense.ascq if self.sense else 0


class UnitAttention(CheckCondition):
    """Sense key 6: an event to report, e.g. 2A/03 RESERVATIONS PREEMPTED, 29/xx reset.

    The command was not executed; resending it is how SPC-4 expects an initiator to go on.
    """


class IllegalRequest(CheckCondition):
    """Sense key 5: the target does not support this command or field (e.g. tgt and
    PREEMPT AND ABORT, APTPL, ALL_TG_PT)."""


class NotReady(CheckCondition):
    """Sense key 2: the logical unit cannot be accessed now."""


_BY_SENSE_KEY: dict[int, type[CheckCondition]] = {
    SenseKey.UNIT_ATTENTION: UnitAttention,
    SenseKey.ILLEGAL_REQUEST: IllegalRequest,
    SenseKey.NOT_READY: NotReady,
}


def error_for(status: int, sense_bytes: bytes, what: str = "",
              cdb: bytes = b"") -> ScsiError | None:
    """The exception for a (status, sense) answer, or None when the answer is GOOD.

    CONDITION MET counts as GOOD. A CHECK CONDITION whose sense cannot be decoded is still
    a CheckCondition (with ``sense=None``), never silently success.
    """
    if status in (Status.GOOD, Status.CONDITION_MET):
        return None
    if status == Status.RESERVATION_CONFLICT:
        return ReservationConflict(status, None, what, cdb)
    if status in (Status.BUSY, Status.TASK_SET_FULL):
        return Busy(status, None, what, cdb)
    if status == Status.TASK_ABORTED:
        return TaskAborted(status, None, what, cdb)
    if status == Status.CHECK_CONDITION:
        try:
            sense = parse_sense(sense_bytes)
        except SenseFormatError:
            return CheckCondition(status, None, what, cdb)
        return _BY_SENSE_KEY.get(sense.key, CheckCondition)(status, sense, what, cdb)
    return ScsiError(status, None, what, cdb)
