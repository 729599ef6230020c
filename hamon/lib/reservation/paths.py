"""How a step reaches its disks: all disks at once, each through the first path that works.

A path fault marks the path failed for the action and the step is tried again through the
next path; an answer of the PR protocol ends the attempt (see the package docstring).
"""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

from hamon.lib import command
from hamon.lib.disk import Disk, NoWorkingPath, Path, PathFaulted, PathState, run_parallel
from hamon.lib.faults import DetailsCode, PathFault
from hamon.lib.reservation.results import DiskResult, Outcome, PathResult, V
from hamon.lib.scsi.errors import IllegalRequest, ScsiError
from hamon.lib.transport.base import PathError


def ua_text(answer: command.Answer) -> list[str]:
    return [str(ua.sense) for ua in answer.unit_attentions if ua.sense]


def on_any_path(disk: Disk, fn: Callable[[Path], Any]) -> tuple[Path, Any]:
    """Run ``fn`` through the first path that works; NoWorkingPath if none does.

    Paths known to be up are tried first, then unknown ones. A path that faulted in this
    action is not tried again: it is a failed path for the action (KAMN725-W), and a path
    that swallows commands must not cost its timeout twice. An answer of the PR protocol
    propagates (the LUN has spoken; another path would say the same).
    """
    order = sorted((p for p in disk.paths if not p.failed),
                   key=lambda p: p.state is not PathState.UP)
    for p in order:
        try:
            return p, p.attempt(fn)
        except PathFaulted:
            continue
    raise NoWorkingPath(disk.name, [(p.name, p.reason) for p in disk.paths if p.failed])


def refusal_fault(err: ScsiError) -> PathFault:
    """An answer that is a refusal where the step expects success (REGISTER AND IGNORE
    EXISTING KEY answered RESERVATION CONFLICT): the command ended abnormally."""
    code = DetailsCode.IOCTL if isinstance(err, IllegalRequest) else DetailsCode.IO_ERR
    return PathFault(str(err), code, err)


def for_each_disk(action: str, disks: list[Disk],
                   fn: Callable[[Disk], DiskResult]) -> Outcome:
    results = run_parallel([lambda d=d: fn(d) for d in disks])
    out = []
    for d, r in zip(disks, results, strict=True):
        if isinstance(r, Exception):  # a bug or an unexpected error: report, never hide
            r = DiskResult(d, False, f"{type(r).__name__}: {r}", r)
        out.append(r)
    return Outcome(action, out)


def on_one_path(action: str, disks: list[Disk],
                fn: Callable[[Disk, Path], tuple[str, V]]) -> Outcome[V]:
    """Run ``fn`` on every disk in parallel, each through one working path
    (:func:`on_any_path`): (detail, value) becomes a DiskResult, an answer of the PR
    protocol a failed one, no working path a path failure."""

    def one_disk(d: Disk) -> DiskResult[V]:
        try:
            p, (detail, value) = on_any_path(d, lambda p: fn(d, p))
        except PathError as err:
            return DiskResult(d, False, "no path works", err)
        except ScsiError as err:
            return DiskResult(d, False, str(err), err)
        return DiskResult(d, True, detail, None, [PathResult(p.name, True, detail)], value)

    return for_each_disk(action, disks, one_disk)
