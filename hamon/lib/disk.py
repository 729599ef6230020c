"""A shared disk: one LUN reached through 1..n paths, as values every floor above uses.

``Disk`` and ``Path`` (with a path's fault state for the current action), the errors that
name a device, and the operand list syntax. How an operand becomes a ``Disk`` is
:mod:`hamon.lib.multipath.resolve`'s job: it needs the multipath flavours, which need
these types, so keeping both here made a loop.

Every error here is a :class:`DeviceError` whose text names the operand and says what to
fix; the agents print it as it is.

``Disk`` and ``Path`` are plain classes, not dataclasses: they are resources of one action
(a path holds a session), compared by identity (docs/architecture.md, "What a fence
loads").
"""
from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable
from enum import StrEnum
from typing import TypeVar

from hamon.lib import command
from hamon.lib.faults import PathFault, classify
from hamon.lib.transport.base import PathError, Transport

T = TypeVar("T")


class DeviceError(ValueError):
    """An operand that cannot be a shared disk, with the reason and the fix."""


class PathFaulted(PathError):
    """A path fault ended a step on one path (:mod:`hamon.lib.faults`)."""

    def __init__(self, path: str, fault: PathFault) -> None:
        super().__init__(path, fault.reason)
        self.fault = fault


class NoWorkingPath(PathError):
    """Every path of a disk faulted in this action: the step could not be done at all."""

    def __init__(self, disk: str, faults: list[tuple[str, str]]) -> None:
        text = "; ".join(f"{p}: {why}" for p, why in faults) or "the disk has no paths"
        super().__init__(disk, f"no path works ({text})")
        self.faults = faults


class DiskKind(StrEnum):
    SCSI = "scsi"    # one path: /dev/sdX, /dev/sgN
    DMMP = "dmmp"    # device-mapper multipath
    HDLM = "hdlm"    # Hitachi Dynamic Link Manager
    ISCSI = "iscsi"  # userspace iSCSI URLs, grouped by LUN identity


class PathState(StrEnum):
    UP = "up"
    FAILED = "failed"
    UNKNOWN = "unknown"


class Path:
    """One I_T nexus to the LUN. ``os_state`` is what the OS/multipath software says.

    A Path lives for one action. Its first fault (:mod:`hamon.lib.faults`) makes it a
    failed path for the rest of that action, even if a later command through it goes
    through: HA Monitor's KAMN725-W is about a command that *ended abnormally*, and an
    action must not report a path as healthy that failed it a moment ago.
    """

    def __init__(self, name: str, opener: Callable[[], Transport],
                 os_state: str | None = None, os_failed: bool = False,
                 state: PathState = PathState.UNKNOWN, reason: str = "", code: str = "",
                 path_id: str | None = None) -> None:
        self.name = name
        self.opener = opener
        self.os_state = os_state
        self.os_failed = os_failed
        self.state = state
        self.reason = reason
        #: HA Monitor's details code of the fault (OPEN, IOCTL, IO-ERR)
        self.code = code
        #: the multipath software's own id of the path (HDLM PathID)
        self.path_id = path_id
        self._transport: Transport | None = None
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return (f"Path(name={self.name!r}, os_state={self.os_state!r}, "
                f"os_failed={self.os_failed!r}, state={self.state!r}, "
                f"reason={self.reason!r}, code={self.code!r}, path_id={self.path_id!r})")

    def transport(self) -> Transport:
        from hamon.lib.transport import loop

        loop.acquire(self._lock)  # cooperatively: the opener may wait in the action's loop
        try:
            if self._transport is None:
                self._transport = self.opener()
            return self._transport
        finally:
            self._lock.release()

    def close(self) -> None:
        from hamon.lib.transport import loop

        loop.acquire(self._lock)
        try:
            if self._transport is not None:
                try:
                    self._transport.close()
                finally:
                    self._transport = None
        finally:
            self._lock.release()

    @property
    def failed(self) -> bool:
        return self.state is PathState.FAILED

    def mark(self, state: PathState, reason: str = "") -> None:
        """Record ``state``; a path that failed in this action stays failed."""
        if self.failed and state is not PathState.FAILED:
            return
        if state is PathState.FAILED and self.failed:
            return  # keep the first fault: it is the cause
        self.state, self.reason = state, reason

    def fail(self, fault: PathFault) -> None:
        """This path met a path fault: failed for the rest of the action, session closed
        (a path that swallowed a command may answer it late, into the next one)."""
        if not self.failed:
            reason = fault.reason.removeprefix(f"{self.name}: ")  # messages name the path
            self.state, self.reason, self.code = PathState.FAILED, reason, fault.code
        with contextlib.suppress(Exception):
            self.close()

    def attempt(self, fn: Callable[[Path], T]) -> T:
        """Run ``fn`` through this path, classifying what ends abnormally.

        Returns fn's value (the path is up), re-raises an answer of the PR protocol (the
        path is up: it answered), and on a path fault marks the path failed and raises
        :class:`PathFaulted`.
        """
        try:
            value = fn(self)
        except Exception as err:
            fault = classify(err)
            if fault is None:
                self.mark(PathState.UP)
                raise
            self.fail(fault)
            raise PathFaulted(self.name, fault) from err
        self.mark(PathState.UP)
        return value

    def check(self, timeout: float | None = None) -> PathState:
        """TEST UNIT READY through this path; records and returns up/failed with why.

        Any abnormal end is a failed path (the fault classification): no answer, NOT
        READY, HARDWARE ERROR, ... The OS's own verdict (sysfs device state, multipathd)
        is reported alongside, not trusted blindly. A check is a new look at the path:
        what an earlier step of the same object saw is replaced by what it says now.
        """
        self.state, self.reason, self.code = PathState.UNKNOWN, "", ""
        with contextlib.suppress(PathFaulted):
            self.attempt(lambda p: command.test_unit_ready(p.transport(), timeout=timeout))
        if self.state is PathState.UP and self.os_failed:
            self.reason = f"answers, but {self.os_state}"
        elif self.failed and self.os_state and self.os_failed and "(OS: " not in self.reason:
            # The transport's errno alone (ENXIO on open) does not say what the OS knows:
            # "offline" or "dm failed" points the administrator at the fix.
            self.reason = f"{self.reason} (OS: {self.os_state})"
        return self.state

    def as_dict(self) -> dict[str, object]:
        return {"path": self.name, "state": str(self.state), "reason": self.reason,
                "os_state": self.os_state}


class Disk:
    """One LUN. ``name`` is the operand as given, so messages use the admin's words."""

    def __init__(self, name: str, kind: DiskKind, paths: list[Path],
                 wwid: str | None = None) -> None:
        self.name = name
        self.kind = kind
        self.paths = paths
        self.wwid = wwid

    def __repr__(self) -> str:
        return (f"Disk(name={self.name!r}, kind={self.kind!r}, paths={self.paths!r}, "
                f"wwid={self.wwid!r})")

    @property
    def multipath(self) -> bool:
        return self.kind in (DiskKind.DMMP, DiskKind.HDLM) or len(self.paths) > 1

    def path_label(self, path: Path) -> str:
        """Device naming as HA Monitor prints it: ``mpatha(/dev/sdc)`` for DMMP paths."""
        if self.kind is DiskKind.DMMP:
            return f"{self.name.rsplit('/', 1)[-1]}({path.name})"
        if len(self.paths) == 1 and path.name == self.name:
            return self.name
        return f"{self.name}({path.name})"

    def up_paths(self) -> list[Path]:
        return [p for p in self.paths if p.state is PathState.UP]

    def failed_paths(self) -> list[Path]:
        return [p for p in self.paths if p.state is PathState.FAILED]

    def check_paths(self, timeout: float | None = None) -> None:
        """Check every path (in parallel: a dead path must not delay the live ones)."""
        run_parallel([lambda p=p: p.check(timeout) for p in self.paths])

    def close(self) -> None:
        for p in self.paths:
            p.close()

    def as_dict(self) -> dict[str, object]:
        up = len(self.up_paths())
        return {"disk": self.name, "kind": str(self.kind), "wwid": self.wwid,
                "paths_up": up, "paths_total": len(self.paths),
                "paths": [p.as_dict() for p in self.paths]}


def run_parallel(jobs: list[Callable[[], object]], max_workers: int = 64) -> list[object]:
    """Run jobs concurrently, return results (or the exception raised) in order.

    One thread, one poll loop for every path of the action
    (:mod:`hamon.lib.transport.loop`): the jobs are greenlets that give the loop their
    waits; a job that runs jobs itself joins the same loop. Without greenlet, threads
    (at most ``max_workers``), never processes: a fence action must not fork per command.
    """
    from hamon.lib.transport import loop

    return loop.parallel(jobs, max_workers)


def run_in_threads(jobs: list[Callable[[], object]], max_workers: int = 16) -> list[object]:
    """Like :func:`run_parallel`, in threads: for jobs that block outside the action's
    loop (a process such as attrd_updater, which a loop job would wait for alone)."""
    from hamon.lib.transport import loop

    return loop.threads(jobs, max_workers)


def split_operands(text: str) -> list[str]:
    """``a,b c`` -> [a, b, c]: Pacemaker users write lists with commas or spaces."""
    return [t for t in text.replace(",", " ").split() if t]
