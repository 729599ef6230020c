"""HA Monitor's semantics for shared-disk failures, as a decision table, and OS termination.

The table (HA Monitor manual §7.5.7-7.5.10, the seed in ``shared/seed``):

=============  ==========================  ===================================  ==========
phase          some paths of a disk fail   every path of a disk fails            (messages)
=============  ==========================  ===================================  ==========
terminating    finish the termination      KAMN726-E, terminate the OS           725, 726
switchover     go on (as while running)    KAMN726-E, the switchover fails       725, 726
standby        resume processing           resume processing (no termination)    725, 726
running        degraded                    failure (Pacemaker recovers)          725, 726
=============  ==========================  ===================================  ==========

A disk with a single path whose path fails is "every path". KAMN725-W is logged for each
failed path, naming it as HA Monitor does (``mpatha(/dev/sdc)`` for DMMP).

:func:`decide` is pure: it reads path states and returns a :class:`Decision`. :func:`act`
logs, journals and terminates. The OS terminator is an object so tests observe the call
instead of suffering it.
"""
from __future__ import annotations

import contextlib
import os
import sys
import syslog
import threading
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from enum import StrEnum
from typing import Any

from hamon.lib import cluster, messages
from hamon.lib.disk import Disk, PathState
from hamon.lib.faults import DetailsCode
from hamon.lib.journal import Journal


class Phase(StrEnum):
    TERMINATING = "terminating"  # the active server stops (§7.5.8)
    SWITCHOVER = "switchover"    # the standby becomes active (§7.5.10)
    STANDBY = "standby"          # standby starting, on standby, terminating; probes (§7.5.9)
    RUNNING = "running"          # the active server's periodic reservation check (§7.5.7)


class TerminationKind(StrEnum):
    """What kind of termination a stop is; decides step 4 of the recovery procedure."""

    NORMAL = "normal"      # the service stops and starts nowhere else
    PLANNED = "planned"    # a switchover: moved, migrated, node put in standby
    ABNORMAL = "abnormal"  # recovery after a failure
    UNKNOWN = "unknown"


class Verdict(StrEnum):
    CONTINUE = "continue"
    DEGRADED = "degraded"
    FAIL = "fail"
    TERMINATE_OS = "terminate-os"


@dataclass(frozen=True)
class FailedPath:
    label: str   # as the messages print it
    path: str
    reason: str
    code: str


@dataclass(frozen=True)
class DiskFailure:
    disk: str
    kind: str
    wwid: str | None
    paths_total: int
    failed: tuple[FailedPath, ...]

    @property
    def all_failed(self) -> bool:
        return len(self.failed) == self.paths_total


@dataclass(frozen=True)
class Decision:
    phase: Phase
    verdict: Verdict
    failures: tuple[DiskFailure, ...] = ()

    @property
    def all_failed_disks(self) -> list[DiskFailure]:
        return [f for f in self.failures if f.all_failed]

    def as_dict(self) -> dict[str, Any]:
        return {"phase": str(self.phase), "verdict": str(self.verdict),
                "disks": [{**asdict(f), "all_failed": f.all_failed,
                           "failed": [asdict(p) for p in f.failed]} for f in self.failures]}


def failures_of(disks: list[Disk]) -> list[DiskFailure]:
    """The disks with at least one failed path, from their recorded path states (each
    failed path with the details code of its fault, :mod:`hamon.lib.faults`)."""
    out = []
    for d in disks:
        failed = tuple(FailedPath(d.path_label(p), p.name, p.reason,
                                  p.code or DetailsCode.IO_ERR)
                       for p in d.paths if p.state is PathState.FAILED)
        if failed:
            out.append(DiskFailure(d.name, str(d.kind), d.wwid, len(d.paths), failed))
    return out


def decide(phase: Phase, failures: list[DiskFailure]) -> Decision:
    """Apply the table. Pure: no message, no journal, no termination."""
    any_all = any(f.all_failed for f in failures)
    if not failures:
        verdict = Verdict.CONTINUE
    elif phase is Phase.TERMINATING:
        verdict = Verdict.TERMINATE_OS if any_all else Verdict.CONTINUE
    elif phase in (Phase.SWITCHOVER, Phase.RUNNING):
        verdict = Verdict.FAIL if any_all else Verdict.DEGRADED
    else:
        verdict = Verdict.CONTINUE
    return Decision(phase, verdict, tuple(failures))


class OsAction(StrEnum):
    REBOOT = "reboot"
    POWEROFF = "poweroff"
    CRASH = "crash"
    NONE = "none"


KMSG = "/dev/kmsg"
_SYSRQ = {OsAction.REBOOT: "b", OsAction.POWEROFF: "o", OsAction.CRASH: "c"}
_FALLBACK = {OsAction.REBOOT: ["reboot", "-f"], OsAction.POWEROFF: ["poweroff", "-f"]}
#: Bound for the fallback command: ``reboot -f`` returns at once or never matters.
FALLBACK_TIMEOUT = 30.0


@dataclass
class OsTerminator:
    """Terminates the OS at once, as HA Monitor does, or records that it would (dry run).

    Immediate (magic SysRq b/o/c) and without ``sync``: with every path of a shared disk
    failed, a sync can block forever on that disk's queued I/O, and the point is to stop
    this node from touching the disk before the standby takes it. The journal entry is
    already fsync-ed on the local disk by then.
    ``dry_run_file``: append the request there instead (tests, demos, workstations).
    """

    action: OsAction = OsAction.REBOOT
    dry_run_file: str | None = None
    requested: list[str] = field(default_factory=list)
    #: Why the last request was not taken (SysRq and the fallback both refused).
    failure: str = ""

    def terminate(self, reason: str, last_words: Sequence[str] = ()) -> bool:
        """Request termination. False when action is none or when neither SysRq nor the
        fallback command took the request (``failure`` says why): the caller must fail.

        ``last_words`` (the KAMN725-W/726-E that decided it) go to the kernel log before
        the reason: they were logged to syslog and stderr, and both can be lost with the
        OS (no syslog daemon, or one that had not written yet; pacemaker-execd copies an
        agent's stderr into the cluster log only when the action returns, which a stop
        that terminates the OS never does: seen 2026-12-02 in the VM cluster)."""
        if self.action is OsAction.NONE:
            return False
        self.requested.append(reason)
        if self.dry_run_file:
            with open(self.dry_run_file, "a") as f:
                f.write(f"{self.action} {reason}\n")
                f.flush()
                os.fsync(f.fileno())
            return True
        for line in last_words:
            _to_kernel_log(f"hamon: {line}")
        _to_kernel_log(f"hamon: terminating the OS ({self.action}): {reason}")
        try:
            with open("/proc/sysrq-trigger", "w") as f:
                f.write(_SYSRQ[self.action])
            return True
        except OSError as err:
            why = f"/proc/sysrq-trigger: {err.strerror or err}"
        cmd = _FALLBACK.get(self.action)
        if cmd:
            rc, _, err_text = cluster.run(cmd, FALLBACK_TIMEOUT)
            if rc == 0:
                return True
            why += f"; {' '.join(cmd)}: {cluster.first_line(err_text) or f'exit {rc}'}"
        # Neither way worked: the caller must not claim the OS is going down (the stop
        # fails, so that Pacemaker fences this node instead).
        self.failure = why
        _to_kernel_log(f"hamon: the OS could not be terminated: {why}")
        return False


def _to_kernel_log(text: str) -> None:
    """The last word before a reset goes to the kernel log as well: syslog may not get to
    disk in time, while the kernel log reaches the serial console, netconsole and pstore,
    which is where an administrator looks after the node rebooted. Best effort."""
    try:
        with open(KMSG, "w") as f:
            f.write("<2>" + text.replace("\n", " ")[:900] + "\n")
    except OSError:
        pass


#: How long :func:`act` waits for the journal entry to be durable (seconds). The entry is
#: the record recovery reads; the termination is the protection and must not wait longer
#: on a journal whose file system hangs (the fsync runs on in a daemon thread).
JOURNAL_TIMEOUT = 5.0


def record(journal: Journal, kind: str, timeout: float | None = None,
           **data: Any) -> bool:
    """Append one journal entry within ``timeout``; never raises, never blocks longer.

    A journal that cannot be written (full or read-only file system, a FIFO or a symlink
    in its place, a hung disk) is logged to stderr and syslog, and False is returned:
    the caller goes on, because what follows (the OS termination) protects the shared
    disk and the record does not.
    """
    limit = JOURNAL_TIMEOUT if timeout is None else timeout
    box: dict[str, BaseException | None] = {}

    def write() -> None:
        try:
            journal.append(kind, **data)
            box["error"] = None
        except BaseException as err:  # reported below, whatever it is
            box["error"] = err

    worker = threading.Thread(target=write, name="hamon-journal", daemon=True)
    worker.start()
    worker.join(limit)
    if "error" not in box:
        why = f"not written within {limit:g} s"
    elif box["error"] is not None:
        err = box["error"]
        why = err.strerror if isinstance(err, OSError) and err.strerror else str(err)
    else:
        return True
    text = (f"hamon: journal {journal.path}: the {kind} entry could not be recorded "
            f"({why}); going on without it")
    with contextlib.suppress(OSError, ValueError):
        print(text, file=sys.stderr, flush=True)
    with contextlib.suppress(OSError, ValueError):
        syslog.syslog(syslog.LOG_ERR, text)
    return False


def act(
    decision: Decision,
    *,
    alias: str,
    host: str,
    journal: Journal | None,
    hostkey: int | None = None,
    terminator: OsTerminator | None,
    termination_kind: TerminationKind = TerminationKind.UNKNOWN,
    resource: str = "",
    details: dict[str, Any] | None = None,
) -> bool:
    """Log KAMN725-W/726-E, journal the failure, terminate the OS where the table says.

    Returns True when the OS termination was requested (in dry run too). Order matters:
    messages, then the durable journal entry, then the termination. The journal entry is
    bounded (:func:`record`): a journal that cannot be written is logged and the
    termination proceeds. ``details`` are
    extra journal fields (why the termination kind is what it is, the key, ...): recovery
    reads them from the same entry that records the failure. ``host`` and ``hostkey`` are
    this node and the key it registers: KAMN725-W's host address (§7.5.12 compares that
    key with the holder's).
    With the OS action ``none`` HAMN957-E says that the OS stays up (HAMN954-E would
    announce a termination that does not come) and False is returned: the caller fails.
    """
    said: list[str] = []
    for f in decision.failures:
        for p in f.failed:
            if p.code in (DetailsCode.OPEN, DetailsCode.IOCTL):
                # HA Monitor precedes KAMN725-W OPEN/IOCTL with KAMN601-W
                messages.emit("KAMN601", device=p.label, reason=p.reason or p.code,
                              alias=alias)
            said.append(str(messages.emit("KAMN725", device=p.label, code=p.code,
                                          alias=alias, host=host, hostkey=hostkey)))
        if f.all_failed:
            said.append(str(messages.emit("KAMN726", device=f.disk, alias=alias,
                                          failed=",".join(p.path for p in f.failed))))
    if journal is not None and decision.failures:
        if hostkey is not None:
            details = {"key": f"0x{hostkey:x}", **(details or {})}
        record(journal, "failure", phase=str(decision.phase), verdict=str(decision.verdict),
               termination=str(termination_kind), alias=alias, node=host,
               resource=resource, os_action=str(terminator.action) if terminator
               else None, disks=decision.as_dict()["disks"], **(details or {}))
    if decision.verdict is not Verdict.TERMINATE_OS or terminator is None:
        return False
    disks = ",".join(f.disk for f in decision.all_failed_disks)
    if terminator.action is OsAction.NONE:
        messages.emit("HAMN957", alias=alias, device=disks)
        return False
    messages.emit("HAMN954", action=str(terminator.action), alias=alias, device=disks)
    return terminator.terminate(f"all paths failed: {disks}", last_words=said)
