"""REGISTER and unregister: on every path, because registrations are per I_T nexus.
"""
from __future__ import annotations

from hamon.lib import command
from hamon.lib.disk import Disk, NoWorkingPath, Path, PathFaulted, run_parallel
from hamon.lib.reservation.paths import (
    for_each_disk,
    refusal_fault,
    ua_text,
)
from hamon.lib.reservation.results import DiskResult, Outcome, PathResult
from hamon.lib.scsi.errors import ReservationConflict, ScsiError
from hamon.lib.scsi.pr import PrOutServiceAction as Out


def register(disks: list[Disk], key: int, *, aptpl: bool = False,
             all_tg_pt: bool = False) -> Outcome:
    """REGISTER AND IGNORE EXISTING KEY with ``key`` on every path of every disk.

    IGNORE EXISTING KEY makes it idempotent and makes it replace whatever key a previous
    incarnation of this I_T nexus left (a reboot, a changed key). A disk is ok when at
    least one path holds the key; each failed path is listed.
    """

    def one_path(p: Path) -> PathResult:
        try:
            a = p.attempt(lambda p: command.pr_out(
                p.transport(), Out.REGISTER_AND_IGNORE_EXISTING_KEY, 0, key, aptpl=aptpl,
                all_tg_pt=all_tg_pt))
        except PathFaulted as err:
            return PathResult(p.name, False, "failed", err.__cause__ or err)
        except ScsiError as err:  # no answer but GOOD is expected of this command
            p.fail(refusal_fault(err))
            return PathResult(p.name, False, "refused", err)
        return PathResult(p.name, True, "registered", unit_attentions=ua_text(a))

    def one_disk(d: Disk) -> DiskResult:
        prs = [r if isinstance(r, PathResult) else PathResult("?", False, str(r), r)
               for r in run_parallel([lambda p=p: one_path(p) for p in d.paths])]
        ok = [r for r in prs if r.ok]
        if not ok:
            err = NoWorkingPath(d.name, [(p.name, p.reason) for p in d.paths if p.failed])
            return DiskResult(d, False, "not registered on any path", err, prs)
        detail = f"registered on {len(ok)}/{len(prs)} paths"
        return DiskResult(d, True, detail, None, prs)

    return for_each_disk("register", disks, one_disk)


def unregister(disks: list[Disk], key: int) -> Outcome:
    """Remove ``key`` from every path (REGISTER with service action key 0).

    A path where the key is not registered answers RESERVATION CONFLICT to REGISTER with
    a non-matching key: that is already the desired state, so it counts as done.
    """

    def one_path(p: Path) -> PathResult:
        try:
            p.attempt(lambda p: command.pr_out(p.transport(), Out.REGISTER, key, 0))
        except ReservationConflict:
            return PathResult(p.name, True, "was not registered")
        except PathFaulted as err:
            return PathResult(p.name, False, "failed", err.__cause__ or err)
        except ScsiError as err:
            p.fail(refusal_fault(err))
            return PathResult(p.name, False, "refused", err)
        return PathResult(p.name, True, "unregistered")

    def one_disk(d: Disk) -> DiskResult:
        prs = list(run_parallel([lambda p=p: one_path(p) for p in d.paths]))
        bad = [r for r in prs if not r.ok]
        err = bad[0].error if bad else None
        return DiskResult(d, not bad, "unregistered" if not bad else "some paths failed",
                          err, prs)

    return for_each_disk("unregister", disks, one_disk)
