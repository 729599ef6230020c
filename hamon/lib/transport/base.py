"""The contract every transport fulfils (sgio, iscsi, sim).

No dataclass here (docs/architecture.md, "What a fence loads"): a result is a
``NamedTuple``, a transport a plain class (a resource: identity equality).
"""
from __future__ import annotations

import abc
from typing import NamedTuple

#: Default bound for one SCSI command. A fence action must never hang: every transport
#: enforces its own per-command timeout, and callers pass a smaller one when they can.
DEFAULT_TIMEOUT = 10.0


class CommandResult(NamedTuple):
    """What came back for one CDB: the status byte, raw sense and data-in, as sent."""

    status: int
    sense: bytes = b""
    data: bytes = b""


class PathError(Exception):
    """The path could not carry the command: no SCSI answer was received.

    ``path`` names the path (a device node or a URL) so every message can say which one.
    """

    def __init__(self, path: str, reason: str) -> None:
        super().__init__(f"{path}: {reason}")
        self.path = path
        self.reason = reason


class PathTimeout(PathError):
    """No answer within the command's time bound."""


class OpenError(PathError):
    """The device could not be opened at all (HA Monitor's details code OPEN)."""


class Transport(abc.ABC):
    """One path to one LUN (its I_T nexus may carry other LUNs too: an iSCSI session).
    Open lazily, close explicitly (or use ``with``).

    ``_closed`` is a class default too, so a subclass that does not call this
    ``__init__`` (a test's scripted transport) still starts open.
    """

    _closed = False

    def __init__(self, path: str, timeout: float = DEFAULT_TIMEOUT) -> None:
        self.path = path
        self.timeout = timeout
        self._closed = False

    def __repr__(self) -> str:
        return f"{type(self).__name__}(path={self.path!r}, timeout={self.timeout!r})"

    @abc.abstractmethod
    def execute(
        self,
        cdb: bytes,
        data_out: bytes | None = None,
        data_in_len: int = 0,
        timeout: float | None = None,
    ) -> CommandResult:
        """Send ``cdb`` and return the target's answer; raise PathError if none came."""

    def pause(self, seconds: float) -> None:
        """Wait before sending again (a BUSY answer): yields to the action's loop when
        the caller is one of its jobs, so the other paths go on meanwhile."""
        from hamon.lib.transport import loop  # the loop module loads greenlet: lazily

        loop.pause(seconds)

    def close(self) -> None:
        """Release the path (file descriptor, iSCSI session)."""
        self._closed = True

    def __enter__(self) -> Transport:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
