"""What fence_hamon_scsi does to the disks, without fencing.py: unfence, fence, status.

:mod:`hamon.fence` is the fencing.py glue (options, stdin, metadata, exit codes); this
module holds the decisions, so that unit tests drive them on the in-memory target and
the integration tier on tgtd, with no agent process in between.

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
from dataclasses import dataclass, field

from hamon.lib import keys as keymod
from hamon.lib import messages
from hamon.lib import reservation as rsv
from hamon.lib.disk import (
    DeviceError,
    Disk,
    run_parallel,
)
from hamon.lib.identity import default_initiator
from hamon.lib.multipath.resolve import Resolver, refuse_same_lun_twice
from hamon.lib.scsi import command
from hamon.lib.scsi.errors import ReservationConflict, ScsiError
from hamon.lib.scsi.pr import ReservationType, format_key
from hamon.lib.transport.base import PathError

log = logging.getLogger("fence_hamon_scsi")

DEFAULT_TYPE = ReservationType.WRITE_EXCLUSIVE_REGISTRANTS_ONLY
DEFAULT_SCSI_TIMEOUT = 5.0
#: the server alias KAMN messages of the fence agent carry when none is configured
DEFAULT_ALIAS = "fence_hamon_scsi"


class FenceError(Exception):
    """The action failed. The text is one line for the administrator: which device or
    option, what happened, and what to do."""


ResolverFactory = Callable[[str, float], Resolver]


def default_resolver(initiator: str, timeout: float) -> Resolver:
    return Resolver(initiator=initiator, timeout=timeout)


@dataclass(frozen=True)
class Node:
    """A cluster node as the agent acts for it: its name, key and iSCSI initiator name."""

    name: str
    key: int
    initiator: str

    def __str__(self) -> str:
        return f"{self.name} (key {format_key(self.key)})"


@dataclass
class Settings:
    """The agent's configuration, already parsed and validated (see :func:`parse_pairs`)."""

    devices: list[str]
    local_node: str
    rtype: ReservationType = DEFAULT_TYPE
    aptpl: bool = False
    scsi_timeout: float = DEFAULT_SCSI_TIMEOUT
    node_keys: dict[str, int] = field(default_factory=dict)
    initiators: dict[str, str] = field(default_factory=dict)
    local_initiator: str | None = None
    #: the server field of KAMN messages: the stonith device's alias, never the victim
    alias: str = DEFAULT_ALIAS

    #: corosync's cluster name for derived keys (None: asked from corosync, hamon.lib.keys)
    cluster: str | None = None

    def key_of(self, node: str) -> int:
        """An explicit key from ``node_keys`` wins; else the key derived from the cluster
        and node names."""
        return self.node_keys.get(node) or keymod.key_for_node(node, self.cluster)

    def initiator_of(self, node: str) -> str:
        """``iscsi_initiator=node=iqn,...`` entry, else a single ``iscsi_initiator`` for
        the local node, else the name derived from the node name."""
        if node in self.initiators:
            return self.initiators[node]
        if self.local_initiator and node == self.local_node:
            return self.local_initiator
        return default_initiator(node)

    def node(self, name: str, key: int | None = None) -> Node:
        return Node(name, key if key is not None else self.key_of(name), self.initiator_of(name))


def parse_pairs(text: str, what: str) -> dict[str, str]:
    """``node1=v1,node2=v2`` (commas or spaces) -> dict; ValueError names the bad entry."""
    out: dict[str, str] = {}
    for item in text.replace(",", " ").split():
        name, sep, value = item.partition("=")
        if not sep or not name or not value:
            raise ValueError(f"{what}: {item!r} is not NODE=VALUE "
                             f"(e.g. {what}=\"node1=...,node2=...\")")
        if name in out:
            raise ValueError(f"{what}: node {name!r} is listed twice")
        out[name] = value
    return out


# --------------------------------------------------------------------------- results
@dataclass
class DiskState:
    """What one READ KEYS + READ RESERVATION said about one disk (or why it did not)."""

    disk: Disk
    keys: tuple[int, ...] = ()
    holder: int | None = None
    rtype: ReservationType | None = None
    error: str | None = None

    @property
    def readable(self) -> bool:
        return self.error is None

    @property
    def reserved(self) -> bool:
        return self.rtype is not None


@dataclass
class Report:
    """The outcome of an action: a summary line, and warnings worth a log line each."""

    summary: str
    warnings: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


# --------------------------------------------------------------------------- the agent
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
                messages.emit("KAMN725", stderr=False, device=label,
                              code=p.code or messages.DetailsCode.IO_ERR,
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
                states.append(DiskState(r.disk, error=_why(r)))
                continue
            st: rsv.LunStatus = r.value
            res = st.reservation
            states.append(DiskState(r.disk, st.keys, res.key if res.held else None,
                                    res.type if res.held else None))
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
        report.warnings += _path_warnings(reg, node)
        bad = reg.failed()
        if bad:
            raise FenceError(_join(f"{r.disk.name}: could not register key "
                                   f"{format_key(node.key)} on any path ({_why(r)})"
                                   for r in bad))
        registered = {r.disk.name: sum(p.ok for p in r.paths) for r in reg.results}
        every_path = {r.disk.name for r in reg.results if all(p.ok for p in r.paths)}
        states = self.states(disks)
        _raise_unreadable(states, "after registering")
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
                                 f"registration of key {format_key(node.key)}: {_why(r)}")
            states = self.states(disks)
            _raise_unreadable(states, "after replacing stale registrations")
        free = [st.disk for st in states if not st.reserved]
        if free:
            res = rsv.reserve(free, node.key, s.rtype)
            for r in res.failed():
                if not isinstance(r.error, ReservationConflict):  # someone was faster: ok
                    raise FenceError(f"{r.disk.name}: could not reserve ({s.rtype.short}) "
                                     f"with key {format_key(node.key)}: {_why(r)}")
            states = self.states(disks)
            _raise_unreadable(states, "after reserving")
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
                "the LUN identity (VPD 0x83) of " + _join(_unreachable(d) for d in unknown)
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
                             f"{_why(first)}; the other devices were not touched")
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
        errors = [f"{r.disk.name}: {_why(r)}" for r in results if not r.ok]
        for st in states:
            errors += _fence_problems(st, me, victim)
        if errors:
            raise FenceError(f"fencing {victim.name} is incomplete: " + _join(dict.fromkeys(
                errors)))
        self._verified = (me.key, victim.key)
        kinds = {str(r.value) for r in results if r.ok}
        how = ("preempt-and-abort" if kinds <= {"preempt-and-abort", "absent"} else "preempt")
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
        if _fence_problems(head[0], me, victim):
            return False
        return all(not _fence_problems(st, me, victim) for st in self.states(disks[1:]))

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
            raise FenceError(f"cannot tell whether {target} is registered: " + _join(bad))
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
            raise FenceError(_join(dead))
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
            raise FenceError("cannot read the registrations: " + _join(bad))
        return found



# --------------------------------------------------------------------------- preempt
OwnKeyMissing = rsv.OwnKeyMissing
VERIFY_RETRIES = 3
VERIFY_PAUSE = 0.02


def _fence_all(disks: list[Disk], me: Node, victim: Node,
               rtype: ReservationType) -> list[tuple[rsv.DiskResult, DiskState]]:
    """Fence on every disk in parallel (:func:`hamon.lib.reservation.fence`): the guarded
    preempt, a reservation where none is held, the read-back, through one working path
    per disk; a path fault moves the job to the next path of that disk."""
    out = []
    for r in rsv.fence(disks, me.key, victim.key, rtype).results:
        if not r.ok:
            out.append((r, DiskState(r.disk, error=_why(r))))
            continue
        how, st = r.value
        res = st.reservation
        out.append((rsv.DiskResult(r.disk, True, r.detail, None, r.paths, how),
                    DiskState(r.disk, st.keys, res.key if res.held else None,
                              res.type if res.held else None)))
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


def _unreachable(d: Disk) -> str:
    """``name (path: reason, ...)``: why a disk gave no answer, path by path."""
    why = ", ".join(f"{p.name}: {p.reason}" if p.name != d.name else p.reason
                    for p in d.paths if p.reason)
    return f"{d.name} ({why})" if why else d.name


def _fence_problems(st: DiskState, me: Node, victim: Node) -> list[str]:
    name = st.disk.name
    if not st.readable:
        return [f"{name}: {st.error}"]
    out = []
    if victim.key in st.keys:
        out.append(f"{name}: key {format_key(victim.key)} of {victim.name} is still "
                   "registered")
    if me.key not in st.keys:
        out.append(f"{name}: the key {format_key(me.key)} of this node {me.name} is not "
                   "registered (this node may have been fenced)")
    if not st.reserved:
        out.append(f"{name}: no reservation is held, so unregistered nodes may still write")
    return out


def _why(r: rsv.DiskResult) -> str:
    """A DiskResult's failure, as one clause (what the target or the path said)."""
    if r.path_failure:
        return f"no path answered ({r.error})"
    err = str(r.error) if r.error else r.detail
    return err.replace(f"{r.disk.name}: ", "", 1) if err.startswith(r.disk.name) else err


def _raise_unreadable(states: list[DiskState], when: str) -> None:
    bad = [f"{st.disk.name}: {st.error}" for st in states if not st.readable]
    if bad:
        raise FenceError(f"cannot read the registrations {when}: " + _join(bad))


def _path_warnings(out: rsv.Outcome, node: Node) -> list[str]:
    """One warning per path that did not take the key (KAMN725-W in syslog too)."""
    warnings = []
    for r in out.results:
        if not r.ok:
            continue  # the disk as a whole failed: that is the error, not a warning
        for p in r.paths:
            if p.ok:
                continue
            path = next((x for x in r.disk.paths if x.name == p.path), None)
            label = r.disk.path_label(path) if path else p.path
            warnings.append(f"{label}: {p.detail}: {p.error}; the key is missing on this "
                            "path, register again (unfence) once it is back")
    return warnings


def _join(items) -> str:  # type: ignore[no-untyped-def]
    return "; ".join(items)
