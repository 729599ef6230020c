"""What fence_hamon_scsi does to the disks, without fencing.py: unfence, fence, status.

:mod:`.agent` and :mod:`.actions` are the fencing.py glue (options, stdin, metadata,
exit codes); this module holds the decisions, so that unit tests drive them on the
in-memory target and the integration tier on tgtd, with no agent process in between.
What the target answered is turned into states and error clauses by :mod:`.outcome`.

The rule that makes mutual fencing safe (the *arbiter rule*)
-------------------------------------------------------------
Two nodes that lose sight of each other both run ``off`` against the other at once. With
one LUN the target serialises the two PREEMPTs: the first removes the other key, the
second arrives from a nexus that is no longer registered and gets RESERVATION CONFLICT.
With several LUNs that alone is not enough: the PREEMPTs may be ordered one way on LUN 1
and the other way on LUN 2, leaving A's key on one LUN and B's on the other, each node
"fenced" by half the storage (ClusterLabs/fence-agents#278). So:

1. Every node orders the devices the same way: by LUN identity (INQUIRY VPD 0x83, the
   WWID), never by the operand, which may differ between nodes (``/dev/sdb`` on one is
   ``/dev/sdc`` on the other). A device whose identity cannot be read fails the action
   before anything is changed: an order that depends on what one node can see would give
   two nodes two arbiters.
2. The first device is the arbiter. PREEMPT (AND ABORT) runs there alone, first.
3. Only when that succeeded, i.e. our own key was still registered on the arbiter when
   the target executed our PREEMPT, do we touch the other devices (in parallel). If our
   key is gone from the arbiter we stop at once, change nothing else, and fail.

Why exactly one key survives everywhere: the arbiter executes the two PREEMPTs in some
order; the first succeeds and removes the other node's key; the second fails (its sender
is no longer registered). So exactly one node, the winner W, passes step 3, and the
loser L issues no command that changes anything on any other device. On every other
device only W acts, removing L: L's key is gone from all devices and W's remains on all.
No interleaving of the two processes changes that, because the only decision point is
one command on one LUN that the target executes atomically.

Every SCSI command is bounded (``scsi_timeout`` per command through one path), so each
action ends in bounded time whatever the storage does.
"""
from __future__ import annotations

import logging
import time
from collections.abc import Callable

from hamon.agents.fence.errors import FenceError
from hamon.agents.fence.outcome import (
    DiskState,
    Report,
    fence_problems,
    join,
    path_warnings,
    raise_unreadable,
    unreachable,
    why,
)
from hamon.agents.fence.settings import Node, Settings
from hamon.lib import command
from hamon.lib import reservation as rsv
from hamon.lib.disk import DeviceError, Disk, run_parallel
from hamon.lib.faults import DetailsCode
from hamon.lib.multipath.resolve import Resolver, refuse_same_lun_twice
from hamon.lib.reservation import fencing
from hamon.lib.scsi.errors import ReservationConflict, ScsiError
from hamon.lib.scsi.pr import ReservationType, format_key
from hamon.lib.transport.base import PathError

log = logging.getLogger("fence_hamon_scsi")

ResolverFactory = Callable[[str, float], Resolver]


def default_resolver(initiator: str, timeout: float) -> Resolver:
    """Every path of every device logged in (tools and tests; the agent's own runs use
    :func:`.actions.resolver`, one path per LUN)."""
    return Resolver(initiator=initiator, timeout=timeout)


class Fencer:
    """The devices of one agent run, opened lazily with one initiator name and closed once.

    One initiator per run: the iSCSI transport derives the session's ISID from the
    initiator name and the path, so the nexus (and therefore the registration) is the
    same in every run of every process of this node; see hamon.lib.transport.iscsi.
    """

    def __init__(self, settings: Settings,
                 resolver_factory: ResolverFactory = default_resolver) -> None:
        self.settings = settings
        self._factory = resolver_factory
        self._disks: dict[str, list[Disk]] = {}
        self._verified: tuple[int, int] | None = None
        self._reported: set[tuple[str, str]] = set()

    # -- devices ------------------------------------------------------------------
    def disks(self, initiator: str) -> list[Disk]:
        """The configured devices as disks, ordered by LUN identity (see module doc)."""
        if initiator in self._disks:
            return self._disks[initiator]
        resolver = self._factory(initiator, self.settings.scsi_timeout)
        try:
            disks = resolver.resolve(list(self.settings.devices))
        except DeviceError as err:
            raise FenceError(str(err)) from None
        self._disks[initiator] = disks
        _identify(disks)  # single sd disks get their WWID only here: check again
        try:
            refuse_same_lun_twice(disks)
        except DeviceError as err:
            raise FenceError(f"devices: {err}") from None
        disks.sort(key=lambda d: (d.wwid is None, d.wwid or "", d.name))
        return disks

    def path_faults(self) -> list[str]:
        """KAMN725-W for every path that failed in this run and was not reported yet
        (exactly once per path and run), and the same as warning lines for the log.

        A failed path is routed around (:mod:`hamon.lib.faults`); the action's result
        says whether the disk as a whole was done. Server: the stonith device's alias
        (``alias``), not the victim; host address: this node, and in brackets the key it
        registered, the one that §7.5.12's check compares with the reservation holder."""
        me = self.settings.node(self.settings.local_node)
        out = []
        for d in (d for ds in self._disks.values() for d in ds):
            for p in d.failed_paths():
                if (d.name, p.name) in self._reported:
                    continue
                self._reported.add((d.name, p.name))
                label = d.path_label(p)
                from hamon.lib import messages  # only when there is something to say

                messages.emit("KAMN725", stderr=False, device=label,
                              code=p.code or DetailsCode.IO_ERR,
                              alias=self.settings.alias, host=me.name, hostkey=me.key)
                out.append(f"{label}: path failed: {p.reason}")
        return out

    def close(self) -> None:
        """Log out of every session, in parallel (each logout is bounded)."""
        paths = [p for ds in self._disks.values() for d in ds for p in d.paths]
        run_parallel([p.close for p in paths])
        self._disks.clear()

    def states(self, disks: list[Disk]) -> list[DiskState]:
        out = rsv.read_status(disks)
        states = []
        for r in out.results:
            if not r.ok:
                states.append(DiskState(r.disk, error=why(r)))
                continue
            states.append(DiskState.of(r.disk, r.value))
        return states

    # -- on -----------------------------------------------------------------------
    def unfence(self, node: Node) -> Report:
        """Register ``node``'s key on every path of every device; reserve where free.

        REGISTER AND IGNORE EXISTING KEY through each path replaces whatever that nexus
        held before. A *different* nexus left over with our key (an old ISID or an old
        initiator name: fence-agents#517/#576) is found by counting: READ KEYS lists one
        entry per registered nexus, so more entries with our key than paths we registered
        means a stale one. PREEMPT with our own key as the victim removes every other
        nexus holding it (and moves a reservation it held to us); the live paths are then
        registered again. Only where every path answered: a path that is down may hold
        one of those entries legitimately.
        """
        s = self.settings
        disks = self.disks(node.initiator)
        report = Report("")
        reg = rsv.register(disks, node.key, aptpl=s.aptpl)
        report.warnings += path_warnings(reg)
        bad = reg.failed()
        if bad:
            raise FenceError(join(f"{r.disk.name}: could not register key "
                                   f"{format_key(node.key)} on any path ({why(r)})"
                                   for r in bad))
        registered = {r.disk.name: sum(p.ok for p in r.paths) for r in reg.results}
        every_path = {r.disk.name for r in reg.results if all(p.ok for p in r.paths)}
        states = self.states(disks)
        raise_unreadable(states, "after registering")
        extra = [st.disk for st in states
                 if st.keys.count(node.key) > registered[st.disk.name]]
        # Where a path did not answer, an extra entry may be that path's own, still valid
        # registration (it returns as the same I_T nexus): removing it would make writes
        # through it conflict after a failover. Replace stale ones only where every path
        # registered again.
        stale = [d for d in extra if d.name in every_path]
        for d in extra:
            if d.name not in every_path:
                report.notes.append(f"{d.name}: key {format_key(node.key)} has more "
                                    "registrations than paths that answered; kept, as one "
                                    "may be the failed path's own (run on again once it "
                                    "is back to replace stale ones)")
        if stale:
            for d in stale:
                report.notes.append(f"{d.name}: key {format_key(node.key)} was also "
                                       "registered through an old I_T nexus (a previous "
                                       "session or initiator name); replacing it")
            pre = rsv.preempt(stale, node.key, node.key, s.rtype, abort=False)
            again = rsv.register(stale, node.key, aptpl=s.aptpl)
            for r in pre.failed() + again.failed():
                raise FenceError(f"{r.disk.name}: could not replace the stale "
                                 f"registration of key {format_key(node.key)}: {why(r)}")
            states = self.states(disks)
            raise_unreadable(states, "after replacing stale registrations")
        free = [st.disk for st in states if not st.reserved]
        if free:
            res = rsv.reserve(free, node.key, s.rtype)
            for r in res.failed():
                if not isinstance(r.error, ReservationConflict):  # someone was faster: ok
                    raise FenceError(f"{r.disk.name}: could not reserve ({s.rtype.short}) "
                                     f"with key {format_key(node.key)}: {why(r)}")
            states = self.states(disks)
            raise_unreadable(states, "after reserving")
        missing = [st.disk.name for st in states if node.key not in st.keys]
        if missing:
            raise FenceError(f"key {format_key(node.key)} of {node.name} is not registered "
                             f"on {', '.join(missing)} although REGISTER succeeded; another "
                             "node may be fencing this one right now")
        unreserved = [st.disk.name for st in states if not st.reserved]
        if unreserved:
            raise FenceError(f"no reservation is held on {', '.join(unreserved)}: writes "
                             "are not restricted to registered nodes; check the target's "
                             "persistent-reservation support")
        report.summary = (f"registered {node} on {len(disks)} device(s)"
                          + (f", reserved {len(free)}" if free else ""))
        return report

    # -- off ----------------------------------------------------------------------
    def fence(self, me: Node, victim: Node) -> Report:
        """Remove ``victim``'s key from every device, by the arbiter rule (module doc)."""
        s = self.settings
        if me.key == victim.key:
            raise FenceError(f"{victim.name} and this node {me.name} have the same key "
                             f"{format_key(me.key)}: a node cannot fence itself; run the "
                             "fence action on another node (or fix key/node_keys)")
        disks = self.disks(me.initiator)
        unknown = [d for d in disks if d.wwid is None]
        if unknown:
            raise FenceError(
                "the LUN identity (VPD 0x83) of " + join(unreachable(d) for d in unknown)
                + " could not be read, so the devices cannot be put in the cluster-wide "
                "order; nothing was changed. Restore a path and fence again")
        arbiter, rest = disks[0], disks[1:]
        first, first_state = _fence_all([arbiter], me, victim, s.rtype)[0]
        if not first.ok:
            if isinstance(first.error, OwnKeyMissing):
                raise FenceError(
                    f"{arbiter.name}: the key {format_key(me.key)} of this node {me.name} is "
                    "not registered on the first device (the arbiter): this node has been "
                    "fenced itself (or was never unfenced), so it must not fence "
                    f"{victim.name}; the other devices were not touched")
            raise FenceError(f"{arbiter.name} (the arbiter, first by LUN identity): "
                             f"{why(first)}; the other devices were not touched")
        log.debug("arbiter %s: %s", arbiter.name, first.detail)
        done = [(first, first_state)]
        if rest:
            done += _fence_all(rest, me, victim, s.rtype)
        results = [r for r, _ in done]
        states = [st for _, st in done]
        for _ in range(VERIFY_RETRIES):
            again = [st.disk for st in states if st.readable and victim.key in st.keys
                     and me.key in st.keys]
            if not again:
                break
            # The loser of a race may have registered its own session for a moment before
            # it found its key gone (see _guarded_preempt) and is about to undo that: the
            # victim's key is back, so remove it again.
            time.sleep(VERIFY_PAUSE)
            _fence_all(again, me, victim, s.rtype)
            states = self.states(disks)
        errors = [f"{r.disk.name}: {why(r)}" for r in results if not r.ok]
        for st in states:
            errors += fence_problems(st, me, victim)
        if errors:
            raise FenceError(f"fencing {victim.name} is incomplete: " + join(dict.fromkeys(
                errors)))
        self._verified = (me.key, victim.key)
        kinds = {r.value for r in results if r.ok}
        how = (rsv.Preemption.PREEMPT_AND_ABORT
               if kinds <= {rsv.Preemption.PREEMPT_AND_ABORT, rsv.Preemption.ABSENT}
               else rsv.Preemption.PREEMPT)
        return Report(f"removed {victim} from {len(disks)} device(s) ({how}); "
                      f"arbiter {arbiter.name}")

    def fenced(self, me: Node, victim: Node) -> bool:
        """True when ``victim`` cannot write any device: its key is gone, ours is there and
        a reservation restricts writes, on every device. Anything less is 'not yet'.

        Right after :meth:`fence` succeeded this is its verification (it read every LUN
        after the last change a moment ago), so fencing.py's status call after ``off``
        costs nothing. Before, the arbiter is read first: a victim still registered there
        is the common case and answers 'not yet' without reading every LUN.
        """
        if self._verified == (me.key, victim.key):
            self._verified = None
            return True
        disks = self.disks(me.initiator)
        head = self.states(disks[:1])
        if fence_problems(head[0], me, victim):
            return False
        return all(not fence_problems(st, me, victim) for st in self.states(disks[1:]))

    # -- status / monitor / list -----------------------------------------------------
    def registered_on(self, reader: Node, key: int) -> tuple[list[str], list[str], list[str]]:
        """(devices with ``key``, devices without, unreadable devices with the reason)."""
        on, off, bad = [], [], []
        for st in self.states(self.disks(reader.initiator)):
            if not st.readable:
                bad.append(f"{st.disk.name}: {st.error}")
            elif key in st.keys:
                on.append(st.disk.name)
            else:
                off.append(st.disk.name)
        return on, off, bad

    def status(self, reader: Node, target: Node) -> str:
        """"on" if ``target``'s key is registered on any device (it may still write
        there), "off" if on none; FenceError if that cannot be known."""
        on, off, bad = self.registered_on(reader, target.key)
        if on:
            if off or bad:
                log.warning("key %s of %s is registered on %s but not on %s",
                            format_key(target.key), target.name, ", ".join(on),
                            ", ".join(off + bad))
            return "on"
        if bad:
            raise FenceError(f"cannot tell whether {target} is registered: " + join(bad))
        return "off"

    def monitor(self, reader: Node) -> Report:
        """Every device answers through at least one path (a failed path is a warning)."""
        disks = self.disks(reader.initiator)
        run_parallel([lambda d=d: d.check_paths(self.settings.scsi_timeout) for d in disks])
        report = Report(f"{len(disks)} device(s) reachable")
        dead = []
        for d in disks:
            failed = d.failed_paths()
            if failed and len(failed) == len(d.paths):
                dead.append(f"{d.name}: no path answers ("
                            + "; ".join(f"{p.name}: {p.reason}" for p in failed) + ")")
            for p in failed:
                report.warnings.append(f"{d.path_label(p)}: path failed: {p.reason}")
        if dead:
            raise FenceError(join(dead))
        return report

    def registrants(self, reader: Node) -> dict[int, list[str]]:
        """Every registered key -> the devices it is registered on."""
        found: dict[int, list[str]] = {}
        bad = []
        for st in self.states(self.disks(reader.initiator)):
            if not st.readable:
                bad.append(f"{st.disk.name}: {st.error}")
            for k in dict.fromkeys(st.keys):
                found.setdefault(k, []).append(st.disk.name)
        if bad and not found:
            raise FenceError("cannot read the registrations: " + join(bad))
        return found



# --------------------------------------------------------------------------- preempt
OwnKeyMissing = fencing.OwnKeyMissing
VERIFY_RETRIES = 3
VERIFY_PAUSE = 0.02


def _fence_all(disks: list[Disk], me: Node, victim: Node,
               rtype: ReservationType) -> list[tuple[rsv.DiskResult, DiskState]]:
    """Fence on every disk in parallel (:func:`hamon.lib.reservation.fence`): the guarded
    preempt, a reservation where none is held, the read-back, through one working path
    per disk; a path fault moves the job to the next path of that disk."""
    out = []
    for r in fencing.fence(disks, me.key, victim.key, rtype).results:
        if not r.ok:
            out.append((r, DiskState(r.disk, error=why(r))))
            continue
        how, st = r.value
        out.append((rsv.DiskResult(r.disk, True, r.detail, None, r.paths, how),
                    DiskState.of(r.disk, st)))
    return out


# --------------------------------------------------------------------------- helpers
def _identify(disks: list[Disk]) -> None:
    """Give every disk without a WWID (single SCSI devices) its VPD 0x83 identity, so all
    kinds sort by the same thing. Unreachable disks keep None (fence refuses them)."""
    todo = [d for d in disks if d.wwid is None]

    def ident(d: Disk) -> None:
        try:
            _, wwid = rsv.on_any_path(d, lambda p: command.lun_identity(p.transport()))
        except (PathError, ScsiError) as err:  # a fault marked the path; fence refuses
            log.debug("%s: no LUN identity: %s", d.name, err)
            return
        d.wwid = wwid

    run_parallel([lambda d=d: ident(d) for d in todo])
