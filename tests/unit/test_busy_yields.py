"""A BUSY answer is waited out through the action's loop, not by stopping its thread.

Every path of an action runs as a job on one thread (hamon.lib.transport.loop); a
``time.sleep`` in one job's BUSY retry would hold up every other path for the pause.
"""
from __future__ import annotations

import time

import pytest

from hamon.lib import command
from hamon.lib.disk import run_parallel
from hamon.lib.scsi import cdb as cdbs
from hamon.lib.scsi.errors import Busy
from hamon.lib.scsi.status import Status
from hamon.lib.transport import loop
from hamon.lib.transport.base import CommandResult, Transport


class Scripted(Transport):
    """Answers from a list of statuses (GOOD after the list), logging each command."""

    def __init__(self, path: str, statuses: list[int] | None = None,
                 log: list[tuple[str, float]] | None = None) -> None:
        super().__init__(path)
        self.statuses = [] if statuses is None else statuses
        self.log = [] if log is None else log

    def execute(self, cdb: bytes, data_out: bytes | None = None, data_in_len: int = 0,
                timeout: float | None = None) -> CommandResult:
        status = self.statuses.pop(0) if self.statuses else Status.GOOD
        self.log.append((f"{self.path}:{status:#x}", time.monotonic()))
        return CommandResult(int(status))


def test_a_path_waiting_out_busy_lets_another_paths_command_through(monkeypatch):
    monkeypatch.setattr(command, "BUSY_PAUSE", 0.3)
    log: list[tuple[str, float]] = []
    busy = Scripted("busy", statuses=[Status.BUSY], log=log)
    other = Scripted("other", log=log)

    def other_job() -> None:
        loop.current().sleep(0.05)  # type: ignore[union-attr]  # after busy's first try
        command.test_unit_ready(other)

    t0 = time.monotonic()
    out = run_parallel([lambda: command.test_unit_ready(busy), other_job])
    assert not [r for r in out if isinstance(r, Exception)], out
    order = [what for what, _ in log]
    assert order == ["busy:0x8", "other:0x0", "busy:0x0"], order
    when = dict(log)
    assert when["other:0x0"] - t0 < 0.25  # not held up by busy's 0.3 s pause
    assert when["busy:0x0"] - when["busy:0x8"] >= 0.29  # the pause itself was kept


def test_busy_outside_a_loop_still_pauses_and_retries(monkeypatch):
    monkeypatch.setattr(command, "BUSY_PAUSE", 0.05)
    t = Scripted("alone", statuses=[Status.BUSY, Status.TASK_SET_FULL])
    t0 = time.monotonic()
    command.run(t, cdbs.test_unit_ready_cdb())
    assert [w for w, _ in t.log] == ["alone:0x8", "alone:0x28", "alone:0x0"]
    assert time.monotonic() - t0 >= 0.05 + 0.10 - 0.01  # 1 x and 2 x the pause


def test_busy_retries_are_bounded(monkeypatch):
    monkeypatch.setattr(command, "BUSY_PAUSE", 0.0)
    t = Scripted("stuck", statuses=[Status.BUSY] * 10)
    with pytest.raises(Busy):
        command.test_unit_ready(t)
    assert len(t.log) == command.BUSY_RETRIES + 1
