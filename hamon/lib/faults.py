"""Which answers of a path are path faults: the one classification every action uses.

HA Monitor's rule (§7.5.8) is about a SCSI command to the shared disk that *ends
abnormally*, not only about a path that goes silent. So, for every command hamon sends,
each path's outcome is exactly one of:

* success (GOOD);
* an **answer of the persistent-reservation protocol** that the step expects and acts
  on: RESERVATION CONFLICT to PERSISTENT RESERVE OUT (not registered, reserved by
  another key), ILLEGAL REQUEST to a service action the target may lack and hamon has a
  fallback for (PREEMPT AND ABORT -> PREEMPT, READ FULL STATUS -> READ KEYS + READ
  RESERVATION). The LUN has spoken; another path would say the same;
* a **path fault**: everything else. No answer within the timeout, a lost connection, a
  transport error; CHECK CONDITION with NOT READY, MEDIUM ERROR, HARDWARE ERROR,
  ABORTED COMMAND or any sense not expected; BUSY or TASK SET FULL still there after the
  bounded retries of :mod:`hamon.lib.command`; UNIT ATTENTION that does not stop; a
  PR IN answer that is short or malformed; RESERVATION CONFLICT to a command other than
  PR OUT; an unexpected status; and an exception from the code that drove the path (a
  path whose check raised is a failed path, with the reason, never a silent "unknown").

A path fault means: the path is a failed path for this action (KAMN725-W with the
details code), and the step is tried through the next path of the same disk. Unit
attentions and BUSY are retried below this layer (SPC-4 expects that), so what arrives
here is final.

Details codes are HA Monitor's: OPEN (the device could not be opened), IOCTL (the device
does not support SCSI reservation: ILLEGAL REQUEST to a PR command without a fallback),
IO-ERR (every other abnormal end).
"""
from __future__ import annotations

from enum import StrEnum
from typing import NamedTuple

from hamon.lib.scsi.errors import IllegalRequest, ReservationConflict, ScsiError
from hamon.lib.scsi.pr import PERSISTENT_RESERVE_IN, PERSISTENT_RESERVE_OUT, ResponseError
from hamon.lib.scsi.pr import PrInServiceAction as In
from hamon.lib.scsi.pr import PrOutServiceAction as Out
from hamon.lib.transport.base import OpenError, PathError

#: (opcode, service action) pairs whose ILLEGAL REQUEST is "the target lacks it": the
#: caller has a fallback, so the answer is not a fault.
OPTIONAL_SERVICE_ACTIONS = frozenset({
    (PERSISTENT_RESERVE_OUT, int(Out.PREEMPT_AND_ABORT)),
    (PERSISTENT_RESERVE_IN, int(In.READ_FULL_STATUS)),
})


class DetailsCode(StrEnum):
    """KAMN725-W details codes (HA Monitor's); :mod:`hamon.lib.messages` re-exports them."""

    OPEN = "OPEN"                      # the device could not be opened / does not exist
    IOCTL = "IOCTL"                    # the device does not support SCSI reservation
    ALREADY_RESERVATION = "ALREADY-RESERVATION"  # reserved by another system
    IO_ERR = "IO-ERR"                  # an I/O error


class LunAnswer(Exception):
    """What the LUN reported, read back, contradicts the step (our key still registered
    after we removed it): the LUN has spoken, so it is not a fault of the path, and
    trying another path would read the same."""


class PathFault(NamedTuple):
    """Why one path failed one action: the reason as one clause, and HA Monitor's code."""

    reason: str
    code: DetailsCode
    error: BaseException

    def __str__(self) -> str:
        return self.reason


def _op(err: ScsiError) -> tuple[int, int] | None:
    if not err.cdb:
        return None
    return err.cdb[0], (err.cdb[1] & 0x1F if len(err.cdb) > 1 else 0)


def is_answer(err: BaseException) -> bool:
    """True when ``err`` is an answer of the PR protocol, not a fault of the path."""
    if isinstance(err, LunAnswer):
        return True
    if isinstance(err, ReservationConflict):
        op = _op(err)
        # raised by the engine itself as a verdict (no command), or PR OUT's answer
        return op is None or op[0] == PERSISTENT_RESERVE_OUT
    if isinstance(err, IllegalRequest):
        return _op(err) in OPTIONAL_SERVICE_ACTIONS
    return False


def classify(err: BaseException) -> PathFault | None:
    """The path fault ``err`` is, or None when it is an answer the step acts on."""
    if is_answer(err):
        return None
    if isinstance(err, OpenError):
        return PathFault(err.reason, DetailsCode.OPEN, err)
    if isinstance(err, PathError):
        return PathFault(err.reason, DetailsCode.IO_ERR, err)
    if isinstance(err, IllegalRequest) and (_op(err) or (None,))[0] in (
            PERSISTENT_RESERVE_IN, PERSISTENT_RESERVE_OUT):
        return PathFault(str(err), DetailsCode.IOCTL, err)
    if isinstance(err, ScsiError):
        return PathFault(str(err), DetailsCode.IO_ERR, err)
    if isinstance(err, ResponseError):
        return PathFault(f"malformed answer: {err}", DetailsCode.IO_ERR, err)
    return PathFault(f"{type(err).__name__}: {err}", DetailsCode.IO_ERR, err)
