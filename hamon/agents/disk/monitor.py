"""monitor: the running server's periodic check, and the standby's probe (the ``monitor``
handler).

Why running means *our key holds the reservation*: that is what lets this node, and no
other, write; a disk that answers is not enough. Some paths failed -> degraded (OCF 1.1's
190, or running with a note for an older caller), every path -> a failure; a failure is
logged once per change (KAMN725-W), not every interval, by comparing with the state
file. A path that answers again is checked for its key (:mod:`.probe`). A probe, or a
monitor on a node that does not hold the disk, is the standby (HA Monitor §7.5.9):
messages only, never a termination, never a change on the disk.
"""
from __future__ import annotations

from typing import Any

from hamon.lib.disk import Disk
from hamon.lib.pacemaker import ocf_call
from hamon.lib.pacemaker.ocf_call import ExitStatus
from hamon.lib.termination import Decision, DiskFailure, Phase, Verdict, act, decide, failures_of

from .context import DiskAgent
from .probe import recovered
from .settings import ConfigError
from .state import path_states


def monitor(agent: DiskAgent, probe: bool = False) -> int:
    """Running = this node's key holds the reservation of every disk and at least one
    path of each answers. A probe changes nothing and never terminates anything."""
    previous = agent.state.load()
    try:
        disks, missing = agent.resolve()
    except ConfigError:
        if probe:
            return int(ExitStatus.NOT_RUNNING)
        raise
    try:
        return _monitor(agent, disks, missing, probe, previous)
    finally:
        for d in disks:
            d.close()


def _monitor(agent: DiskAgent, disks: list[Disk], missing: list[DiskFailure], probe: bool,
             previous: dict[str, Any]) -> int:
    s = agent.settings
    active = bool(previous.get("active"))
    prev_paths: dict[str, dict[str, str]] = previous.get("paths") or {}
    agent.check_paths(disks)
    status = agent.status(disks)
    readable = {n: r for n, r in status.items() if r.ok}
    ours = [n for n, r in readable.items() if agent.holds(r.value)]
    running = bool(ours) or (active and len(readable) < len(disks) + len(missing))
    phase = Phase.RUNNING if running else Phase.STANDBY
    recovered(agent, disks, prev_paths, running and not probe, set(ours))
    failures = missing + failures_of(disks)
    decision = decide(phase, failures)
    changed = _changed(failures, prev_paths)
    act(Decision(phase, decision.verdict, tuple(changed)), alias=s.alias, host=s.node,
        hostkey=s.key,
        journal=None if probe or not running else agent.journal, terminator=None,
        resource=s.resource, details={"action": "probe" if probe else "monitor"})
    agent.publish(disks, missing)
    try:
        agent.state.update(paths=path_states(disks)
                          | {m.disk: {m.disk: "failed"} for m in missing})
    except OSError as err:  # only the dedup of messages suffers; the answer stands
        agent.say(f"state {agent.state.path}: {err}")
    if not running:
        if active and not probe:
            # started here, never stopped, and another key holds it now: HA Monitor's
            # "reserved by the other system after a switchover"
            agent.already_reserved(readable)
        return int(ExitStatus.NOT_RUNNING)
    refused = [f"{n}: {r.error}" for n, r in status.items()
               if not r.ok and not r.path_failure]
    if refused:  # a path answers, but not to READ KEYS / READ RESERVATION
        return agent.fail(ExitStatus.ERR_GENERIC, "cannot read the reservation: "
                          + "; ".join(refused))
    others = [n for n, r in readable.items() if n not in ours]
    if others:
        agent.already_reserved({n: readable[n] for n in others})
        held = "; ".join(f"{n}: {agent.holder_text(readable[n].value)}" for n in others)
        return agent.fail(ExitStatus.ERR_GENERIC, f"the reservation is not ours: {held}")
    if decision.verdict is Verdict.FAIL:
        dead = ", ".join(f.disk for f in decision.all_failed_disks)
        return agent.fail(ExitStatus.ERR_GENERIC, f"every path of {dead} failed")
    if decision.verdict is Verdict.DEGRADED:
        lost = "; ".join(f"{f.disk}: {f.paths_total - len(f.failed)}/{f.paths_total} "
                         "paths up" for f in decision.failures)
        agent.reason = f"degraded: {lost}"
        if ocf_call.supports_degraded(agent.env):
            return int(ExitStatus.DEGRADED)
        agent.say(f"{agent.reason} (reported as running: the caller predates OCF 1.1)")
    return int(ExitStatus.SUCCESS)


def _changed(failures: list[DiskFailure], previous: dict[str, dict[str, str]]
             ) -> list[DiskFailure]:
    """The failures whose set of failed paths differs from the last check's."""
    out = []
    for f in failures:
        before = {p for p, st in previous.get(f.disk, {}).items() if st == "failed"}
        if {p.path for p in f.failed} != before:
            out.append(f)
    return out
