"""start: the standby switching over, HA Monitor's way (the ``start`` handler).

Why these steps, in this order: TEST UNIT READY through every path first, so that a path
already dead is not waited on by every later command; then register this node's key
through every working path, reserve, and when another key holds the disk preempt it (the
standby forcibly obtains the disk, HAMN951-W); then remove every other registered key
(HAMN956-W), because under a registrants-only reservation each of them could write; then
read back: exit 0 only when the LUN itself says our key holds it. A key of no node of
this cluster is never taken (HA Monitor §7.5.11): the start fails with KAMN725-W
ALREADY-RESERVATION and nothing preempted. If every path of a disk failed the switchover
fails (KAMN725-W, KAMN726-E), and ``active`` is saved before the first command, because
from then on this node may hold keys.
"""
from __future__ import annotations

import contextlib
import shlex
from collections.abc import Mapping
from typing import Any

from hamon.lib import keys as keymod
from hamon.lib import messages
from hamon.lib import reservation as rsv
from hamon.lib.disk import Disk
from hamon.lib.faults import DetailsCode
from hamon.lib.pacemaker.ocf_call import ExitStatus
from hamon.lib.scsi.errors import ReservationConflict
from hamon.lib.scsi.pr import format_key
from hamon.lib.termination import DiskFailure, Phase, Verdict, act, decide, failures_of

from .context import DiskAgent, live
from .state import path_states


def start(agent: DiskAgent) -> int:
    """Register through every live path, reserve, take over from another holder."""
    agent.state.update(active=True)  # before the first command: we may hold keys now
    disks, missing = agent.resolve()
    try:
        return _start(agent, disks, missing)
    finally:
        for d in disks:
            d.close()


def _start(agent: DiskAgent, disks: list[Disk], missing: list[DiskFailure]) -> int:
    """TEST UNIT READY every path, then acquire; the seed's table (switchover) over
    every path fault met on the way, logged once at the end."""
    s = agent.settings
    agent.check_paths(disks)
    early = decide(Phase.SWITCHOVER, missing + failures_of(disks))
    problem = None if early.verdict is Verdict.FAIL else _acquire(agent, disks)
    decision = decide(Phase.SWITCHOVER, missing + failures_of(disks))
    act(decision, alias=s.alias, host=s.node, hostkey=s.key, journal=agent.journal,
        terminator=None,
        resource=s.resource, details={"action": "start"})
    agent.publish(disks, missing, fresh=True)
    with contextlib.suppress(OSError):
        agent.state.update(paths=path_states(disks))
    if decision.verdict is Verdict.FAIL:
        bad = decision.all_failed_disks
        for f in bad:
            messages.emit("HAMN955", device=f.disk, reason="every path failed",
                          alias=s.alias)
        unsupported = all(p.code == DetailsCode.IOCTL for f in bad for p in f.failed)
        return agent.fail(ExitStatus.ERR_INSTALLED if unsupported
                          else ExitStatus.ERR_GENERIC,
                          f"every path of {', '.join(f.disk for f in bad)} failed"
                          + ("; the device does not support persistent reservations"
                             if unsupported else "; the switchover fails"))
    if problem is not None:
        return agent.fail(ExitStatus.ERR_GENERIC, problem)
    return int(ExitStatus.SUCCESS)


def _acquire(agent: DiskAgent, disks: list[Disk]) -> str | None:
    """Register through every working path, reserve, take over from another holder,
    remove every other key, verify by reading back. Returns why it failed, or None."""
    s = agent.settings
    before = agent.status(disks)
    foreign = _foreign(agent, before)
    if foreign:
        return foreign
    reg = rsv.register([live(d) for d in disks], s.key)
    if not reg.ok:  # every path of the disk failed: the caller's table says so
        return "cannot register the key: " + "; ".join(
            f"{r.disk.name}: {r.error}" for r in reg.failed())
    working = [live(d) for d in disks]   # without the paths that failed REGISTER
    problems: list[str] = []
    record: dict[str, dict[str, Any]] = {d.name: {"disk": d.name} for d in working}
    res = rsv.reserve(working, s.key, s.rtype)
    for r in res.results:
        if not r.ok:
            why = _take_over(agent, r, record[r.disk.name])
            if why:
                problems.append(f"{r.disk.name}: {why}")
    if problems:
        for p in problems:
            messages.emit("HAMN955", device=p.split(":", 1)[0], reason=p.split(": ", 1)[1],
                          alias=s.alias)
        return "; ".join(problems)
    _remove_others(agent, working, record)
    after = agent.status(disks)
    for d in working:
        r = after.get(d.name)
        if r is None or not r.ok or not agent.holds(r.value):
            why = "no path works" if r is None or not r.ok else \
                f"held by {format_key(r.value.reservation.key or 0)} after reserving"
            messages.emit("HAMN955", device=d.name, reason=why, alias=s.alias)
            problems.append(f"{d.name}: {why}")
            continue
        b = before.get(d.name)
        if b is None or not b.ok or not agent.holds(b.value):
            messages.emit("HAMN950", device=d.name, key=format_key(s.key),
                          type=s.rtype.short, alias=s.alias)
            record[d.name]["acquired"] = True
    if problems:
        return "; ".join(problems)
    agent.write_journal("start", disks=[record[d.name] | {
        "paths_up": len(d.up_paths()), "paths_total": len(d.paths)} for d in disks])
    return None


def _take_over(agent: DiskAgent, r: rsv.DiskResult, rec: dict[str, Any]) -> str | None:
    """RESERVE was refused: ours already (another path reserved), free by now, or
    another key's, which the standby forcibly obtains. Returns why it failed, or None."""
    s = agent.settings
    if not isinstance(r.error, ReservationConflict):
        return str(r.error or r.detail)
    d = r.disk
    st = rsv.read_status([d]).results[0]
    if not st.ok:
        return f"cannot read the reservation: {st.error}"
    held = st.value.reservation
    if held.held and agent.holds(st.value):
        return None
    if not held.held:
        again = rsv.reserve([d], s.key, s.rtype).results[0]
        return None if again.ok else str(again.error)
    victim = held.key or 0
    out = rsv.preempt([d], s.key, victim, s.rtype).results[0]
    if not out.ok:
        agent.already_reserved({d.name: st})
        return f"cannot preempt {format_key(victim)}: {out.error}"
    node = agent.node_of(victim)
    messages.emit("HAMN951", device=d.name, key=format_key(s.key),
                  victim=format_key(victim) + ("" if node == "-" else f" ({node})"),
                  alias=s.alias)
    rec["preempted"] = {"key": format_key(victim), "node": node, "how": out.value}
    return None


def _remove_others(agent: DiskAgent, working: list[Disk],
                   record: dict[str, dict[str, Any]]) -> None:
    """Every other registered key could write under a registrants-only reservation:
    remove them (PREEMPT of a non-holder key only drops its registrations)."""
    s = agent.settings
    for name, r in agent.status(working).items():
        if not r.ok:
            continue
        others = sorted(set(r.value.keys) - {s.key})
        d = r.disk
        for victim in others:
            out = rsv.preempt([d], s.key, victim, s.rtype).results[0]
            if out.ok:
                messages.emit("HAMN956", device=name, key=format_key(s.key),
                              victim=format_key(victim), alias=s.alias)
                record[name].setdefault("removed", []).append(format_key(victim))
            else:
                agent.say(f"{name}: could not remove key {format_key(victim)}: "
                          f"{out.error}")


def _foreign(agent: DiskAgent, before: Mapping[str, rsv.DiskResult]) -> str | None:
    """Keys on the disks that belong to no node of this cluster: start does not take a
    disk from them (HA Monitor §7.5.11: a restart with a reservation left held fails
    until the administrator has checked and cancelled it). Returns the exit reason,
    after KAMN725-W ALREADY-RESERVATION per foreign key; None when there is none."""
    s = agent.settings
    if s.allow_foreign_keys:
        return None
    assert agent.node_names is not None
    try:
        names = agent.node_names()
    except Exception:
        names = []
    members = keymod.member_keys(list(dict.fromkeys([*names, s.node])),
                                 dict(s.node_keys), s.cluster)
    members[s.key] = s.node
    found: list[str] = []
    refused: list[str] = []
    for name, r in before.items():
        if not r.ok:
            continue
        res = r.value.reservation
        holder = res.key if res.held and res.key else None
        for k in dict.fromkeys([*([holder] if holder else []), *r.value.keys]):
            if k in members:
                continue
            messages.emit("KAMN725", device=name,
                          code=DetailsCode.ALREADY_RESERVATION, alias=s.alias,
                          host="-", hostkey=k)
            found.append(f"{name}: {'reserved' if k == holder else 'registered'} by "
                         f"key {format_key(k)}, which belongs to no node of this "
                         "cluster")
            refused.append(name)
    if not found:
        return None
    who = ", ".join(sorted(set(names) | {s.node})) if names else \
        f"{s.node} only: the cluster's node list could not be read"
    return ("; ".join(found) + f" (nodes: {who}). Nothing was preempted. Make sure "
            "the owner of that key is stopped, then clear it with: hamon reservation "
            f"cancel {' '.join(shlex.quote(n) for n in dict.fromkeys(refused))} (or "
            f"monscsiclr {shlex.quote(s.alias)}); to take over from HA Monitor set "
            "allow_foreign_keys=true")
