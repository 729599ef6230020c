"""One disk's check: when it refuses, the run, and the judgement; and the CLI's entry.

The check never disturbs a disk in use: a disk holding registrations or a reservation is
refused unless ``--force`` (and a reservation not of the check is refused even then),
one with a single nexus is refused (what two nexuses must show cannot be shown), and
whatever the check changed is restored in a ``finally`` (:meth:`.run.Run.restore`).
An early end is judged from what was seen, and never passes.
"""
from __future__ import annotations

from hamon.lib import command
from hamon.lib.compliance.nexus import ISCSI_ROLE, Refused, Setup, open_iscsi, setup_for
from hamon.lib.compliance.report import DiskReport
from hamon.lib.compliance.run import Run, Stopped, hex_keys, lun_state, reservation_text
from hamon.lib.compliance.verdict import CHECK_KEYS, NEEDS_TWO_NEXUSES, OPS_BY_ID, Verdict, decide
from hamon.lib.disk import DiskKind
from hamon.lib.scsi.errors import ScsiError
from hamon.lib.scsi.pr import ReservationType
from hamon.lib.transport.base import PathError


def check(s: Setup, rtype: ReservationType = ReservationType.WRITE_EXCLUSIVE_REGISTRANTS_ONLY,
          *, read_only: bool = False, force: bool = False, lba: int = 0) -> DiskReport:
    """Check one disk; never raises for what the target answers (it is in the report)."""
    rep = DiskReport(s.disk, [n.name for n in s.everyone()])
    run = Run(s, rtype, lba)
    try:
        keys = run.reads()
        rep.before = lun_state(run.a0)
        if read_only:
            rep.judgement = decide(run.obs, read_only=True)
            rep.after = lun_state(run.a0)
            return rep
        res = command.read_reservation(run.a0)
        foreign = [k for k in keys.keys if k not in CHECK_KEYS]
        if s.b is None:
            raise Refused(
                f"{s.disk}: only one I_T nexus (one path): "
                + ", ".join(OPS_BY_ID[o].label for o in NEEDS_TWO_NEXUSES)
                + " cannot be tested. Give the multipath map (/dev/mapper/NAME) or the "
                "disk's iscsi:// URLs, or check what one path can show with --read-only")
        if (keys.keys or res.held) and not force:
            leftover = keys.keys and not foreign
            raise Refused(
                f"{s.disk}: holds registrations ({hex_keys(keys.keys)}) or a reservation "
                f"({reservation_text(res)}): check-disk never disturbs a disk in use. "
                + ("These are check-disk's own keys, left by an interrupted run: "
                   "--force removes them" if leftover else
                   "Stop the cluster's use of it first, or --force if they are stale"))
        ours = res.key in CHECK_KEYS or bool(res.type and res.type.all_registrants
                                             and keys.keys and not foreign)
        if res.held and not ours:
            raise Refused(f"{s.disk}: {reservation_text(res)}, a key not of the check; even with "
                          "--force the check does not preempt it. Release it first "
                          "(hamon reservation cancel)")
        try:
            if any(k in CHECK_KEYS for k in keys.keys):
                run.changed = True
                ok, detail = run.restore()
                if not ok:
                    raise Stopped(f"the earlier run's keys could not be removed: {detail}")
            run.full()
        finally:
            if run.changed:
                rep.restored, rep.restore_detail = run.restore()
        rep.judgement = decide(run.obs)
        rep.after = lun_state(run.a0)
    except Refused as err:
        rep.refused = str(err)
        rep.judgement = None
    except Stopped as err:
        rep.judgement = decide(run.obs, read_only=read_only)
        _stopped(rep, run, read_only, str(err))
    except PathError as err:
        _stopped(rep, run, read_only, f"no answer: {err}")
    return rep


def _stopped(rep: DiskReport, run: Run, read_only: bool, why: str) -> None:
    """The check ended early: what was seen is judged, and an early end is never a pass."""
    j = decide(run.obs, read_only=read_only)
    j.why = f"{why}; {j.why}"
    if j.verdict is not Verdict.UNFIT:
        j.verdict = Verdict.INCOMPLETE
    rep.judgement = j
    try:
        rep.after = lun_state(run.a0)
    except (ScsiError, PathError):
        rep.after = {}


# -- from operands (what the CLI calls) ---------------------------------------------------
def check_devices(operands: list[str], *, initiator: str | None,
                  second_initiator: str | None = None, timeout: float = 10.0,
                  rtype: ReservationType = ReservationType.WRITE_EXCLUSIVE_REGISTRANTS_ONLY,
                  read_only: bool = False, force: bool = False) -> list[DiskReport]:
    """Resolve ``operands`` (DeviceError for a bad one) and check each disk in turn.

    iscsi:// paths are opened with the check's own ISID role, also while resolving, so a
    live agent's session is never reinstated (closed) by the check's login.
    """
    from hamon.lib.multipath.resolve import Resolver

    resolver = Resolver(initiator=initiator, timeout=timeout,
                        iscsi_opener=lambda url, ini, t: open_iscsi(url, ini, ISCSI_ROLE, t))
    disks = resolver.resolve(operands)
    reports = []
    try:
        for d in disks:
            try:
                s = setup_for(d, initiator=initiator, second_initiator=second_initiator,
                              timeout=timeout)
            except Refused as err:
                reports.append(DiskReport(d.name, [], refused=str(err)))
                continue
            if d.kind is DiskKind.ISCSI:
                d.close()  # the setup has sessions of its own with the same ISIDs
            try:
                reports.append(check(s, rtype, read_only=read_only, force=force))
            finally:
                s.close()
    finally:
        for d in disks:
            d.close()
    return reports
