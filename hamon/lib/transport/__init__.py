"""Transports: how one CDB reaches one LUN through ONE path (I_T nexus).

A transport knows nothing of reservations. It sends a CDB, with an optional data-out
buffer, waits at most ``timeout`` seconds, and returns the SCSI status byte, the sense
bytes exactly as the target sent them, and the data-in bytes. Anything that prevents a
SCSI answer (no device, connection refused, login failed, timeout) raises
:class:`~hamon.lib.transport.base.PathError`, never a SCSI error: the caller must be able
to tell "the target said no" from "the path is gone".
"""
from hamon.lib.transport.base import CommandResult, PathError, PathTimeout, Transport

__all__ = ["CommandResult", "PathError", "PathTimeout", "Transport"]
