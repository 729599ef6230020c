"""One action of hamon_disk on one resource: its settings, its collaborators, the shared steps.

Why a context object: start, stop and monitor (:mod:`.start`, :mod:`.stop`,
:mod:`.monitor`) are plain functions of it, and every collaborator that touches the world
(the resolver that opens the disks, the OS terminator, the journal, the node attributes,
the termination-kind detection, the cluster's node names) is a field that unit tests
replace, so the in-memory target and tgtd drive the same code as Pacemaker does. The
steps more than one action takes live here: resolving the operands, checking the paths,
reading the reservation, publishing the path attribute, naming a key's node.
"""
from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from hamon.lib import cluster, messages
from hamon.lib import keys as keymod
from hamon.lib import reservation as rsv
from hamon.lib.disk import DeviceError, Disk, run_in_threads, run_parallel
from hamon.lib.faults import DetailsCode
from hamon.lib.journal import Journal
from hamon.lib.multipath.resolve import Resolver, refuse_same_lun_twice
from hamon.lib.pacemaker import attributes, termination_kind
from hamon.lib.pacemaker.termination_kind import Detection
from hamon.lib.scsi.pr import format_key
from hamon.lib.termination import DiskFailure, FailedPath, OsTerminator, record

from .settings import ConfigError, Settings
from .state import State


def live(d: Disk) -> Disk:
    """The same disk with only the paths that answered: an operation never waits for a
    path already known dead (its Path objects are shared, so states stay in step)."""
    return Disk(d.name, d.kind, d.up_paths(), d.wwid)


def _missing_failure(operand: str, parameter: str, err: Exception) -> DiskFailure:
    kind = "scsi" if parameter == "scsi_device" else "dmmp"
    return DiskFailure(operand, kind, None, 1,
                       (FailedPath(operand, operand, str(err), DetailsCode.OPEN),))


@dataclass
class DiskAgent:
    """One action on one resource. Every collaborator is injectable for tests."""

    settings: Settings
    resolver: Resolver | None = None
    terminator: OsTerminator | None = None
    journal: Journal | None = None
    attributes: attributes.Attributes | None = None
    detect: Callable[[], Detection] | None = None
    node_names: Callable[[], list[str]] | None = None
    env: Mapping[str, str] = field(default_factory=lambda: os.environ)
    log: Callable[[str], None] | None = None
    reason: str = ""   # the exit reason of a failed action, for Pacemaker

    def __post_init__(self) -> None:
        s = self.settings
        if self.resolver is None:
            self.resolver = Resolver(initiator=s.initiator, timeout=s.command_timeout)
        if self.terminator is None:
            self.terminator = OsTerminator(s.os_action, dry_run_file=s.dry_run_file)
        if self.journal is None:
            self.journal = Journal(s.journal)
        if self.attributes is None:
            self.attributes = attributes.Attributes(
                node=self.env.get("OCF_RESKEY_CRM_meta_on_node"))
        if self.detect is None:
            self.detect = lambda: termination_kind.detect_termination(s.resource, s.node,
                                                                      env=self.env)
        if self.node_names is None:
            self.node_names = cluster.node_names
        self.state = State(s.state_dir, s.resource)

    # -- speaking ---------------------------------------------------------------------------
    def say(self, text: str) -> None:
        """A line for the cluster log (stderr, which pacemaker-execd copies there)."""
        if self.log is not None:
            self.log(text)
        else:
            with contextlib.suppress(OSError):
                print(f"hamon_disk({self.settings.resource}): {text}", file=sys.stderr,
                      flush=True)

    def fail(self, code: int, reason: str) -> int:
        """Return ``code``, keeping ``reason`` as the exit reason Pacemaker shows."""
        self.reason = reason
        return int(code)

    def write_journal(self, kind: str, **data: Any) -> None:
        s = self.settings
        assert self.journal is not None
        # bounded and never raising: the journal is a record, the action goes on
        record(self.journal, kind, **{"resource": s.resource, "alias": s.alias,
                                      "node": s.node, "key": format_key(s.key),
                                      "type": s.rtype.short, **data})

    # -- the disks --------------------------------------------------------------------------
    def resolve(self) -> tuple[list[Disk], list[DiskFailure]]:
        """Every operand as a disk; an operand that cannot be opened becomes a failed
        disk (KAMN725-W OPEN) instead of hiding the others: a stop must release what it
        can even when one device node vanished."""
        s = self.settings
        assert self.resolver is not None
        disks: list[Disk] = []
        missing: list[DiskFailure] = []
        urls = [o for o in s.operands if o.startswith("iscsi://")]
        for op in s.operands:
            if op in urls:
                continue
            try:
                disks.extend(self.resolver.resolve([op]))
            except DeviceError as err:
                missing.append(_missing_failure(op, s.parameter, err))
        if urls:
            try:
                disks.extend(self.resolver.resolve(urls))
            except DeviceError as err:
                raise ConfigError(str(err)) from None
        try:  # operands resolved one by one: the resolver could not compare them
            refuse_same_lun_twice(disks)
        except DeviceError as err:
            for x in disks:
                x.close()
            raise ConfigError(str(err)) from None
        if s.parameter == "scsi_device":
            for d in disks:
                if len(d.paths) > 1 and not s.rtype.registrants_only \
                        and not s.rtype.all_registrants:
                    for x in disks:
                        x.close()
                    raise ConfigError(f"{d.name} has {len(d.paths)} paths, but reservation "
                                      f"type {s.rtype.short} lets only one of them write; "
                                      "use WE-RO")
        return disks, missing

    def check_paths(self, disks: list[Disk]) -> None:
        """TEST UNIT READY through every path of every disk, in parallel."""
        run_parallel([lambda d=d: d.check_paths(self.settings.command_timeout)
                      for d in disks])

    def status(self, disks: list[Disk]) -> dict[str, rsv.DiskResult]:
        """READ KEYS + READ RESERVATION of the disks with a live path, by disk name."""
        alive = [live(d) for d in disks if d.up_paths()]
        return {r.disk.name: r for r in rsv.read_status(alive).results} if alive else {}

    def holds(self, st: rsv.LunStatus) -> bool:
        """Our key holds the reservation (any registrant does under an AR type)."""
        res = st.reservation
        if not res.held:
            return False
        if res.type is not None and res.type.all_registrants:
            return self.settings.key in st.keys
        return res.key == self.settings.key

    # -- node attributes --------------------------------------------------------------------
    def publish(self, disks: list[Disk], missing: list[DiskFailure], *,
                fresh: bool = False) -> None:
        """``hamon-paths-<disk>`` = up/total for crm_mon -A; never fails the action.

        Only the values that changed since the last write (the State file's
        ``published``) cost an ``attrd_updater`` process: a 16-LUN monitor ran 16 of them
        every interval. ``fresh`` (start) writes every value and forgets the record, so
        the first monitor after a start writes every value again (attrd may have lost
        them meanwhile: a restart of the node's attribute manager). A write that failed
        is not recorded, so the next monitor tries it again."""
        assert self.attributes is not None
        names = [d.name for d in disks] + [m.disk for m in missing]
        values = [f"{len(d.up_paths())}/{len(d.paths)}" for d in disks] + \
            ["0/1" for _ in missing]
        wanted = dict(zip(attributes.path_attribute_names(names), values, strict=True))
        before = None if fresh else self.state.load().get("published")
        if not isinstance(before, dict):
            before = {}
            first = True
        else:
            first = False
        todo = [(n, v) for n, v in wanted.items() if first or before.get(n) != v]
        ok = run_in_threads([lambda n=n, v=v: self.attributes.set(n, v)  # type: ignore[union-attr]
                             for n, v in todo])
        done = {n: v for (n, v), r in zip(todo, ok, strict=True) if r is True}
        saved = None if fresh else {n: v for n, v in ({**before, **done}).items()
                                     if n in wanted}
        with contextlib.suppress(OSError):  # only the saving of writes suffers
            self.state.update(published=saved)

    # -- whose key --------------------------------------------------------------------------
    def node_of(self, key: int) -> str:
        """The node of the cluster whose key this is (``node1, old key`` for the old
        derivation), or ``-``."""
        assert self.node_names is not None
        s = self.settings
        named = {k: n for n, k in s.node_keys.items()}
        if key in named:
            return named[key]
        try:
            names = list(dict.fromkeys([*self.node_names(), s.node]))
            return keymod.owner_label(key, names, s.cluster) or "-"
        except Exception:
            return "-"

    def already_reserved(self, results: Mapping[str, rsv.DiskResult]) -> None:
        """KAMN725-W ALREADY-RESERVATION for each disk another key holds; the host
        address is the holder's: its node when the cluster can say (else ``-``) and, in
        brackets, its key."""
        s = self.settings
        for name, r in results.items():
            res = r.value.reservation
            if not res.held or self.holds(r.value):
                continue
            messages.emit("KAMN725", device=name, code=DetailsCode.ALREADY_RESERVATION,
                          alias=s.alias, host=self.node_of(res.key or 0),
                          hostkey=res.key or 0)

    def holder_text(self, st: rsv.LunStatus) -> str:
        res = st.reservation
        if not res.held:
            return "no reservation is held"
        node = self.node_of(res.key or 0)
        return f"held by key {format_key(res.key or 0)}" + ("" if node == "-"
                                                           else f" ({node})")
