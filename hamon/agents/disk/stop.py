"""stop: the active server terminating (the ``stop`` handler), and HA Monitor's rules when
the disk fails meanwhile.

Why stop unregisters, not only releases: with a registrants-only reservation any
registered node may write, so a stopped node must not stay registered. When some paths
are dead the key cannot be removed through them; :func:`hamon.lib.reservation.withdraw`
first PREEMPTs our own key through a live path, which removes every other nexus
registered with it, the dead ones included. The seed's table (:mod:`hamon.lib.termination`)
then decides: some paths of a disk failed -> KAMN725-W, the stop completes; every path
failed -> KAMN725-W + KAMN726-E, the journal entry made durable, the OS terminated
(``os_termination``), so the standby can take the disk over safely. The kind of
termination (normal, planned, abnormal) is looked up in parallel, bounded, and journalled
for ``hamon recover``.
"""
from __future__ import annotations

import contextlib
import threading

from hamon.lib import cluster, messages
from hamon.lib import reservation as rsv
from hamon.lib.disk import Disk, run_in_threads
from hamon.lib.pacemaker import attributes
from hamon.lib.pacemaker.ocf_call import ExitStatus
from hamon.lib.pacemaker.termination_kind import Detection
from hamon.lib.reservation.withdrawal import withdraw
from hamon.lib.scsi.pr import format_key
from hamon.lib.termination import (
    DiskFailure,
    Phase,
    TerminationKind,
    Verdict,
    act,
    decide,
    failures_of,
)

from .context import DiskAgent
from .settings import ConfigError
from .state import path_states


def stop(agent: DiskAgent) -> int:
    """Release and unregister; the seed's table when the disk fails meanwhile."""
    box: dict[str, Detection] = {}

    def detect() -> None:
        assert agent.detect is not None
        try:
            box["d"] = agent.detect()
        except Exception as err:  # detection must never break a stop
            box["d"] = Detection(TerminationKind.UNKNOWN, f"detection failed: {err}")

    worker = threading.Thread(target=detect, name="termination-kind", daemon=True)
    worker.start()
    active = bool(agent.state.load().get("active"))
    try:
        disks, missing = agent.resolve()
    except ConfigError:
        if active:
            raise
        return int(ExitStatus.SUCCESS)  # never started here: nothing of ours to release
    try:
        return _stop(agent, disks, missing, active, worker, box)
    finally:
        for d in disks:
            d.close()


def _stop(agent: DiskAgent, disks: list[Disk], missing: list[DiskFailure], active: bool,
          worker: threading.Thread, box: dict[str, Detection]) -> int:
    """Leave every disk (:func:`hamon.lib.reservation.withdraw`), then the seed's table.

    Exit 0 only where the LUN, read back through a working path after the release,
    lists neither our key nor our reservation. A path that ends a command abnormally
    is a failed path (KAMN725-W); a disk none of whose paths works is every path
    failed (KAMN726-E and the OS termination, when this node may hold it); a LUN
    that answers but keeps our key fails the stop, so Pacemaker escalates.
    """
    s = agent.settings
    agent.check_paths(disks)
    usable = [d for d in disks if any(not p.failed for p in d.paths)]
    out = withdraw(usable, s.key, s.rtype) if usable else rsv.Outcome("withdraw", [])
    steps: dict[str, str] = {d.name: "no path works" for d in disks}
    leftover: list[str] = []
    ours: list[str] = []
    for r in out.results:
        name = r.disk.name
        steps[name] = r.detail if r.ok else str(r.error)
        if r.ok and r.value.had_ours:
            ours.append(name)
            messages.emit("HAMN952", device=name, key=format_key(s.key), alias=s.alias)
        elif not r.ok and not r.path_failure:  # the LUN answered, and kept our key
            leftover.append(f"{name}: {r.error}")
    may_hold = active or bool(ours) or bool(leftover)
    failures = missing + failures_of(disks)
    phase = Phase.TERMINATING if may_hold else Phase.STANDBY
    decision = decide(phase, failures)
    worker.join(cluster.TIMEOUT + 1.0)
    detection = box.get("d") or Detection(
        TerminationKind.UNKNOWN, "the termination kind was not known in time")
    details = {"action": "stop", "termination_reason": detection.reason,
               "termination_signals": list(detection.signals),
               "key": format_key(s.key), "steps": steps, "leftover": leftover}
    _unpublish_names(agent, disks, missing)
    if decision.failures:
        requested = act(decision, alias=s.alias, host=s.node, hostkey=s.key,
                        journal=agent.journal,
                        terminator=agent.terminator if phase is Phase.TERMINATING
                        else None, termination_kind=detection.kind,
                        resource=s.resource, details=details)
    else:
        requested = False
        if may_hold:
            agent.write_journal("stop", termination=str(detection.kind), **details)
    if may_hold:
        agent.say(f"stop: {detection.kind} termination ({detection.reason})")
    with contextlib.suppress(OSError):
        agent.state.update(paths=path_states(disks))
    if decision.verdict is Verdict.TERMINATE_OS:
        dead = ", ".join(f.disk for f in decision.all_failed_disks)
        dry = agent.terminator.dry_run_file if agent.terminator else None
        if requested and dry:
            why = f"every path of {dead} failed: OS termination ({s.os_action}) " \
                  f"requested in dry run ({dry})"
        elif requested:
            why = f"every path of {dead} failed: the OS is being terminated"
        elif agent.terminator and agent.terminator.failure:
            why = f"every path of {dead} failed and the OS could not be terminated " \
                  f"({agent.terminator.failure}): the stop fails so that Pacemaker " \
                  "fences this node"
        else:
            why = f"every path of {dead} failed and os_termination=none: the stop " \
                  "fails so that Pacemaker fences this node"
        return agent.fail(ExitStatus.ERR_GENERIC, why)
    if leftover:
        return agent.fail(ExitStatus.ERR_GENERIC, "; ".join(leftover))
    agent.state.update(active=False)
    return int(ExitStatus.SUCCESS)


def _unpublish_names(agent: DiskAgent, disks: list[Disk], missing: list[DiskFailure]
                     ) -> None:
    """Delete the path attributes: a stopped resource shows no paths in crm_mon -A."""
    assert agent.attributes is not None
    names = attributes.path_attribute_names([d.name for d in disks] + [m.disk for m in missing])
    run_in_threads([lambda n=n: agent.attributes.delete(n)  # type: ignore[union-attr]
                    for n in names])
    with contextlib.suppress(OSError):  # deleted: the next monitor writes them again
        agent.state.update(published=None)
