"""One I_T nexus to an in-memory logical unit: the :class:`Transport` the unit tests use.

It honours the LUN's simulated path faults (failed or hung target ports, injected
:class:`~hamon.lib.sim.faults.FaultRule`) exactly as a real path would end: PathError,
PathTimeout, or an abnormal SCSI answer.
"""
from __future__ import annotations

from hamon.lib.scsi.status import Status
from hamon.lib.sim.faults import FAULT_STATUS, FaultKind, corrupt_pr_in
from hamon.lib.sim.target import SimLun
from hamon.lib.transport.base import (
    DEFAULT_TIMEOUT,
    CommandResult,
    PathError,
    PathTimeout,
    Transport,
)


class SimTransport(Transport):
    """One I_T nexus to a :class:`SimLun`: ``initiator`` through target port ``port``.

    A plain class like the :class:`Transport` it stands in for (issue 14)."""

    def __init__(self, path: str, timeout: float = DEFAULT_TIMEOUT, lun: SimLun | None = None,
                 initiator: str = "iqn.2026-11.org.hamon:sim", port: int = 1) -> None:
        super().__init__(path, timeout)
        self.lun = SimLun() if lun is None else lun
        self.initiator = initiator
        self.port = port

    def execute(self, cdb: bytes, data_out: bytes | None = None, data_in_len: int = 0,
                timeout: float | None = None) -> CommandResult:
        if self._closed:
            raise PathError(self.path, "transport is closed")
        if self.port in self.lun.hung_ports:
            raise PathTimeout(self.path, f"no answer within {timeout or self.timeout:g} s")
        if self.port in self.lun.failed_ports:
            raise PathError(self.path, "connection refused (simulated path failure)")
        rule = self.lun.take_fault(self.port, cdb)
        if rule is None:
            return self.lun.execute((self.initiator, self.port), cdb, data_out, data_in_len)
        # A faulted command changes no state: the LUN never sees it (except CORRUPT,
        # which executes and then mangles the answer).
        if rule.kind == FaultKind.SWALLOW:
            raise PathTimeout(self.path, f"no answer within {timeout or self.timeout:g} s "
                              "(injected: swallowed)")
        if rule.kind == FaultKind.DROP:
            raise PathError(self.path, "connection lost (injected: dropped)")
        if rule.kind == FaultKind.CORRUPT:
            result = self.lun.execute((self.initiator, self.port), cdb, data_out, data_in_len)
            if result.status != Status.GOOD:
                return result
            return CommandResult(result.status, result.sense, corrupt_pr_in(cdb, result.data))
        return CommandResult(FAULT_STATUS[rule.kind], rule.sense(), b"")
