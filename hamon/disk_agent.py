"""What ``ocf:hamon:hamon_disk`` does to the shared disks: HA Monitor's rules, on Pacemaker.

:mod:`hamon.ocf` is the resource-agents glue (``ocf.py``: metadata, actions, exit
reasons); this module holds every decision, so unit tests drive it on the in-memory
target and the integration tier on tgtd, with no agent process in between.

Who may write, and therefore who is registered
----------------------------------------------
HA Monitor lets only the active server write a shared disk. The default reservation type
is *Write Exclusive - Registrants Only* (WE-RO, 5), because it is the only family that
works with multipath: SPC-4 registrations are per I_T nexus, so every path of the active
node registers the key, and with WE-RO every registered nexus may write; plain WE/EA let
only the one nexus that reserved write, so a multipath failover would meet RESERVATION
CONFLICT. The price of WE-RO is that *any* registrant may write. hamon_disk therefore
keeps exactly one node registered, the active one:

* start registers this node's key through every path that answers, reserves, and when
  another key holds the reservation preempts it (the standby forcibly obtains the disk,
  HAMN951-W, as HA Monitor's standby does on a switchover); then it removes every other
  key still registered (HAMN956-W), because each of them could write;
* stop releases the reservation and removes this node's key from every path, so a
  stopped node cannot write any more. When some paths are dead the key cannot be removed
  through them, so stop first PREEMPTs its own key through a live path: SPC-4 removes
  every other nexus registered with that key, the dead ones included, and moves the
  reservation onto the live nexus, which then releases and unregisters;
* the standby is not registered at all: its monitor (a probe) reports "not running".

Start preempts whatever other key holds the disk. It cannot know whether that node still
runs the service: Pacemaker stops the resource there first (or fences the node) before it
starts it here, and HA Monitor's standby preempts in the same situation. The victim's key,
and the node it belongs to when the cluster can say, are logged and journalled.

Failures (the seed's table, :mod:`hamon.lib.termination`)
---------------------------------------------------------
stop = the active server terminating: some paths of a disk failed -> KAMN725-W, the stop
completes (exit 0); every path of a disk failed -> KAMN725-W + KAMN726-E, the journal
entry is made durable, the OS is terminated (``os_termination``). start = the standby
switching over: every path of a disk failed -> KAMN725-W + KAMN726-E and start fails.
monitor = the running server's periodic check: some paths failed -> degraded, every path
-> failure; a failed path that answers again -> KAMN727-I ONLINE_CHECK, and when it lost
the key, ONLINE_CHECK(NO_KEY) and the key is registered on it again. A probe or a monitor
on a node that does not hold the disk is the standby (§7.5.9): messages only, never a
termination, never a change on the disk.
"""
from __future__ import annotations

import contextlib
import json
import os
import re
import shlex
import sys
import tempfile
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from hamon.lib import cluster, messages
from hamon.lib import keys as keymod
from hamon.lib import pacemaker as pcmk
from hamon.lib import reservation as rsv
from hamon.lib.disk import (
    DeviceError,
    Disk,
    PathFaulted,
    PathState,
    run_in_threads,
    run_parallel,
)
from hamon.lib.identity import check_iscsi_name, default_initiator, local_node_name
from hamon.lib.journal import Journal
from hamon.lib.messages import DetailsCode, RecoveryCode
from hamon.lib.multipath.resolve import Resolver, refuse_same_lun_twice
from hamon.lib.pacemaker import Detection, ExitStatus
from hamon.lib.scsi.errors import ReservationConflict, ScsiError
from hamon.lib.scsi.pr import ReservationType, format_key
from hamon.lib.termination import (
    Decision,
    DiskFailure,
    FailedPath,
    OsAction,
    OsTerminator,
    Phase,
    TerminationKind,
    Verdict,
    act,
    decide,
    failures_of,
    record,
)

DEFAULT_TYPE = ReservationType.WRITE_EXCLUSIVE_REGISTRANTS_ONLY
DEFAULT_COMMAND_TIMEOUT = 5
#: command_timeout's range (seconds), as the metadata states it.
COMMAND_TIMEOUT_MIN, COMMAND_TIMEOUT_MAX = 1, 300
#: Parameters that name files: absolute paths without control characters.
_PATH_PARAMS = ("journal", "state_dir", "os_termination_dry_run")
DEFAULT_STATE_DIR = "/run/hamon"
#: Tests, demos and ocf-tester: the OS termination is appended to this file instead.
DRY_RUN_ENV = "HAMON_OS_TERMINATION_DRY_RUN"
OS_ACTIONS = tuple(str(a) for a in OsAction)


class ConfigError(ValueError):
    """The parameters cannot work as given (OCF_ERR_CONFIGURED); the text says the fix."""


# -- settings -----------------------------------------------------------------------------
@dataclass(frozen=True)
class Settings:
    """The resource's parameters, parsed and validated."""

    operands: tuple[str, ...]
    parameter: str                 # scsi_device | dmmp_device
    key: int
    rtype: ReservationType
    initiator: str
    os_action: OsAction
    dry_run_file: str | None
    alias: str
    resource: str
    node: str
    journal: str
    state_dir: str
    command_timeout: float
    #: corosync's cluster name for derived keys (None: asked from corosync)
    cluster: str | None = None
    #: explicit keys of the cluster's nodes (node_keys), members as their derived keys
    node_keys: Mapping[str, int] = field(default_factory=dict)
    #: start may preempt keys of no node of this cluster (migrations from HA Monitor)
    allow_foreign_keys: bool = False


def _get(params: Mapping[str, str | None], name: str) -> str:
    return (params.get(name) or "").strip()


def check_operands(parameter: str, operands: list[str]) -> None:
    """Each operand's form fits its parameter (no I/O): a multipath map given as
    scsi_device, or a plain SCSI disk given as dmmp_device, is a mistake worth naming."""
    for op in operands:
        if op.startswith("iscsi://"):
            continue
        if not op.startswith("/dev/"):
            raise ConfigError(f"{parameter}: {op!r} is not a device; give /dev/sdX, "
                              "/dev/mapper/NAME, /dev/dm-N, /dev/sddlmXX or iscsi:// URLs")
        multipath = op.startswith(("/dev/mapper/", "/dev/dm-", "/dev/sddlm"))
        if parameter == "scsi_device" and op.startswith(("/dev/mapper/", "/dev/dm-")):
            raise ConfigError(f"scsi_device: {op} is a device-mapper multipath disk; "
                              "give it as dmmp_device")
        if parameter == "dmmp_device" and not multipath:
            raise ConfigError(f"dmmp_device: {op} is a single-path SCSI disk; give it as "
                              "scsi_device (or give the multipath map /dev/mapper/NAME)")
    if len(set(operands)) != len(operands):
        raise ConfigError(f"{parameter}: a device is listed twice")


def parse_settings(params: Mapping[str, str | None], env: Mapping[str, str] | None = None,
                   node: str | None = None) -> Settings:
    """The parameters (names as in the metadata, without ``OCF_RESKEY_``) -> Settings."""
    env = os.environ if env is None else env
    scsi, dmmp = _get(params, "scsi_device"), _get(params, "dmmp_device")
    if bool(scsi) == bool(dmmp):
        raise ConfigError("give exactly one of scsi_device (single-path disks) and "
                          "dmmp_device (multipath disks: DMMP or HDLM)"
                          + ("; both are set" if scsi else "; neither is set"))
    parameter = "scsi_device" if scsi else "dmmp_device"
    from hamon.lib.disk import split_operands

    operands = split_operands(scsi or dmmp)
    if not operands:
        raise ConfigError(f"{parameter} {scsi or dmmp!r} names no device; give the shared "
                          "disks separated by commas or blanks")
    check_operands(parameter, operands)
    try:
        rtype = ReservationType.parse(_get(params, "reservation_type") or DEFAULT_TYPE.short)
    except ValueError as err:
        raise ConfigError(f"reservation_type: {err}") from None
    if parameter == "dmmp_device" and not (rtype.registrants_only or rtype.all_registrants):
        raise ConfigError(f"reservation_type {rtype.short}: only the one path that reserved "
                          "could write a multipath disk; use WE-RO (the default), EA-RO, "
                          "WE-AR or EA-AR")
    action_text = (_get(params, "os_termination") or "reboot").lower()
    if action_text not in OS_ACTIONS:
        raise ConfigError(f"os_termination {action_text!r}: choose one of "
                          f"{', '.join(OS_ACTIONS)}")
    timeout_text = _get(params, "command_timeout") or str(DEFAULT_COMMAND_TIMEOUT)
    try:
        timeout = float(timeout_text)
    except ValueError:
        timeout = -1.0
    if not (COMMAND_TIMEOUT_MIN <= timeout <= COMMAND_TIMEOUT_MAX):  # nan and inf too
        raise ConfigError(f"command_timeout {timeout_text!r}: seconds, "
                          f"{COMMAND_TIMEOUT_MIN} to {COMMAND_TIMEOUT_MAX}")
    initiator = _get(params, "iscsi_initiator")
    if initiator:
        try:
            check_iscsi_name(initiator)
        except ValueError as err:
            raise ConfigError(str(err)) from None
    alias = _get(params, "alias")
    for name, value in (("alias", alias), *((n, _get(params, n)) for n in _PATH_PARAMS)):
        if any(not c.isprintable() for c in value):
            raise ConfigError(f"{name} {value!r}: has control characters; give plain text")
    for name in _PATH_PARAMS:
        value = _get(params, name)
        if value and not os.path.isabs(value):
            raise ConfigError(f"{name} {value!r}: give an absolute path (the agent's "
                              "working directory is not defined)")
    node = node or local_node_name()
    cluster = _get(params, "cluster_name") or None
    if cluster is not None and not cluster.isprintable():
        raise ConfigError(f"cluster_name {cluster!r}: has control characters; give plain "
                          "text")
    try:
        key = keymod.resolve_key(_get(params, "reservation_key") or None, node, cluster)
    except ValueError as err:
        raise ConfigError(f"reservation_key: {err}") from None
    try:
        node_keys = keymod.parse_node_keys(_get(params, "node_keys"))
    except ValueError as err:
        raise ConfigError(f"node_keys: {err}") from None
    foreign = _get(params, "allow_foreign_keys").lower() or "false"
    if foreign not in ("true", "false", "yes", "no", "1", "0", "on", "off"):
        raise ConfigError(f"allow_foreign_keys {foreign!r}: true or false")
    resource = env.get("OCF_RESOURCE_INSTANCE") or "hamon_disk"
    return Settings(
        operands=tuple(operands), parameter=parameter, key=key, rtype=rtype,
        initiator=initiator or default_initiator(node),
        os_action=OsAction(action_text),
        dry_run_file=_get(params, "os_termination_dry_run") or env.get(DRY_RUN_ENV) or None,
        alias=alias or pcmk.resource_id(resource),
        resource=resource, node=node,
        journal=_get(params, "journal") or env.get("HAMON_JOURNAL") or
        "/var/lib/hamon/journal",
        state_dir=_get(params, "state_dir") or env.get("HAMON_STATE_DIR") or DEFAULT_STATE_DIR,
        command_timeout=timeout, cluster=cluster, node_keys=node_keys,
        allow_foreign_keys=foreign in ("true", "yes", "1", "on"))


# -- local state -----------------------------------------------------------------------------
_UNSAFE = re.compile(r"[^A-Za-z0-9_.-]+")


class State:
    """A small JSON file per resource in a tmpfs (``/run/hamon``): what this node did.

    ``active``: start has begun here and no stop completed since: this node may hold
    registrations even when no path answers (then a stop must treat the failure as the
    active server's). ``paths``: each path's last state, so that a monitor sees a path
    *recover* (KAMN727-I) and logs KAMN725-W once per change, not every interval.
    A tmpfs because none of it must survive a reboot: after a reboot the disk itself says
    whether this node's key is still there.
    """

    def __init__(self, directory: str, resource: str) -> None:
        self.path = os.path.join(directory, f"{_UNSAFE.sub('_', resource) or 'hamon'}.json")

    def load(self) -> dict[str, Any]:
        try:
            with open(self.path) as f:
                data = json.load(f)
        except (OSError, ValueError):
            return {}
        return data if isinstance(data, dict) else {}

    def save(self, data: dict[str, Any]) -> None:
        directory = os.path.dirname(self.path)
        os.makedirs(directory, mode=0o755, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".state-", dir=directory)
        try:
            with os.fdopen(fd, "w") as f:
                json.dump(data, f, sort_keys=True)
            os.replace(tmp, self.path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise

    def update(self, **changes: Any) -> dict[str, Any]:
        data = {**self.load(), **changes}
        self.save(data)
        return data


def path_states(disks: list[Disk]) -> dict[str, dict[str, str]]:
    return {d.name: {p.name: str(p.state) for p in d.paths} for d in disks}


# -- the agent -------------------------------------------------------------------------------
def _live(d: Disk) -> Disk:
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
    attributes: pcmk.Attributes | None = None
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
            self.attributes = pcmk.Attributes(node=self.env.get("OCF_RESKEY_CRM_meta_on_node"))
        if self.detect is None:
            self.detect = lambda: pcmk.detect_termination(s.resource, s.node, env=self.env)
        if self.node_names is None:
            self.node_names = cluster.node_names
        self.state = State(s.state_dir, s.resource)

    # -- helpers ---------------------------------------------------------------------------
    def _say(self, text: str) -> None:
        if self.log is not None:
            self.log(text)
        else:
            with contextlib.suppress(OSError):
                print(f"hamon_disk({self.settings.resource}): {text}", file=sys.stderr,
                      flush=True)

    def _fail(self, code: int, reason: str) -> int:
        self.reason = reason
        return int(code)

    def _resolve(self) -> tuple[list[Disk], list[DiskFailure]]:
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

    def _check(self, disks: list[Disk]) -> None:
        run_parallel([lambda d=d: d.check_paths(self.settings.command_timeout)
                      for d in disks])

    def _status(self, disks: list[Disk]) -> dict[str, rsv.DiskResult]:
        """READ KEYS + READ RESERVATION of the disks with a live path, by disk name."""
        live = [_live(d) for d in disks if d.up_paths()]
        return {r.disk.name: r for r in rsv.read_status(live).results} if live else {}

    def _holds(self, st: rsv.LunStatus) -> bool:
        res = st.reservation
        if not res.held:
            return False
        if res.type is not None and res.type.all_registrants:
            return self.settings.key in st.keys
        return res.key == self.settings.key

    def _publish(self, disks: list[Disk], missing: list[DiskFailure], *,
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
        wanted = dict(zip(pcmk.path_attribute_names(names), values, strict=True))
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
        record = None if fresh else {n: v for n, v in ({**before, **done}).items()
                                      if n in wanted}
        with contextlib.suppress(OSError):  # only the saving of writes suffers
            self.state.update(published=record)

    def _node_of(self, key: int) -> str:
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

    def _foreign(self, before: Mapping[str, rsv.DiskResult]) -> str | None:
        """Keys on the disks that belong to no node of this cluster: start does not take a
        disk from them (HA Monitor §7.5.11: a restart with a reservation left held fails
        until the administrator has checked and cancelled it). Returns the exit reason,
        after KAMN725-W ALREADY-RESERVATION per foreign key; None when there is none."""
        s = self.settings
        if s.allow_foreign_keys:
            return None
        assert self.node_names is not None
        try:
            names = self.node_names()
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

    def _changed(self, failures: list[DiskFailure], previous: dict[str, dict[str, str]]
                 ) -> list[DiskFailure]:
        """The failures whose set of failed paths differs from the last check's."""
        out = []
        for f in failures:
            before = {p for p, st in previous.get(f.disk, {}).items() if st == "failed"}
            if {p.path for p in f.failed} != before:
                out.append(f)
        return out

    # -- start ------------------------------------------------------------------------------
    def start(self) -> int:
        """Register through every live path, reserve, take over from another holder."""
        self.state.update(active=True)  # before the first command: we may hold keys now
        disks, missing = self._resolve()
        try:
            return self._start(disks, missing)
        finally:
            for d in disks:
                d.close()

    def _start(self, disks: list[Disk], missing: list[DiskFailure]) -> int:
        """TEST UNIT READY every path, then acquire; the seed's table (switchover) over
        every path fault met on the way, logged once at the end."""
        s = self.settings
        self._check(disks)
        early = decide(Phase.SWITCHOVER, missing + failures_of(disks))
        problem = None if early.verdict is Verdict.FAIL else self._acquire(disks)
        decision = decide(Phase.SWITCHOVER, missing + failures_of(disks))
        act(decision, alias=s.alias, host=s.node, hostkey=s.key, journal=self.journal,
            terminator=None,
            resource=s.resource, details={"action": "start"})
        self._publish(disks, missing, fresh=True)
        with contextlib.suppress(OSError):
            self.state.update(paths=path_states(disks))
        if decision.verdict is Verdict.FAIL:
            bad = decision.all_failed_disks
            for f in bad:
                messages.emit("HAMN955", device=f.disk, reason="every path failed",
                              alias=s.alias)
            unsupported = all(p.code == DetailsCode.IOCTL for f in bad for p in f.failed)
            return self._fail(ExitStatus.ERR_INSTALLED if unsupported
                              else ExitStatus.ERR_GENERIC,
                              f"every path of {', '.join(f.disk for f in bad)} failed"
                              + ("; the device does not support persistent reservations"
                                 if unsupported else "; the switchover fails"))
        if problem is not None:
            return self._fail(ExitStatus.ERR_GENERIC, problem)
        return int(ExitStatus.SUCCESS)

    def _acquire(self, disks: list[Disk]) -> str | None:
        """Register through every working path, reserve, take over from another holder,
        remove every other key, verify by reading back. Returns why it failed, or None."""
        s = self.settings
        before = self._status(disks)
        foreign = self._foreign(before)
        if foreign:
            return foreign
        reg = rsv.register([_live(d) for d in disks], s.key)
        if not reg.ok:  # every path of the disk failed: the caller's table says so
            return "cannot register the key: " + "; ".join(
                f"{r.disk.name}: {r.error}" for r in reg.failed())
        live = [_live(d) for d in disks]   # without the paths that failed REGISTER
        problems: list[str] = []
        record: dict[str, dict[str, Any]] = {d.name: {"disk": d.name} for d in live}
        res = rsv.reserve(live, s.key, s.rtype)
        for r in res.results:
            if not r.ok:
                why = self._take_over(r, record[r.disk.name])
                if why:
                    problems.append(f"{r.disk.name}: {why}")
        if problems:
            for p in problems:
                messages.emit("HAMN955", device=p.split(":", 1)[0], reason=p.split(": ", 1)[1],
                              alias=s.alias)
            return "; ".join(problems)
        self._remove_others(live, record)
        after = self._status(disks)
        for d in live:
            r = after.get(d.name)
            if r is None or not r.ok or not self._holds(r.value):
                why = "no path works" if r is None or not r.ok else \
                    f"held by {format_key(r.value.reservation.key or 0)} after reserving"
                messages.emit("HAMN955", device=d.name, reason=why, alias=s.alias)
                problems.append(f"{d.name}: {why}")
                continue
            b = before.get(d.name)
            if b is None or not b.ok or not self._holds(b.value):
                messages.emit("HAMN950", device=d.name, key=format_key(s.key),
                              type=s.rtype.short, alias=s.alias)
                record[d.name]["acquired"] = True
        if problems:
            return "; ".join(problems)
        self._journal("start", disks=[record[d.name] | {
            "paths_up": len(d.up_paths()), "paths_total": len(d.paths)} for d in disks])
        return None

    def _take_over(self, r: rsv.DiskResult, rec: dict[str, Any]) -> str | None:
        """RESERVE was refused: ours already (another path reserved), free by now, or
        another key's, which the standby forcibly obtains. Returns why it failed, or None."""
        s = self.settings
        if not isinstance(r.error, ReservationConflict):
            return str(r.error or r.detail)
        d = r.disk
        st = rsv.read_status([d]).results[0]
        if not st.ok:
            return f"cannot read the reservation: {st.error}"
        held = st.value.reservation
        if held.held and self._holds(st.value):
            return None
        if not held.held:
            again = rsv.reserve([d], s.key, s.rtype).results[0]
            return None if again.ok else str(again.error)
        victim = held.key or 0
        out = rsv.preempt([d], s.key, victim, s.rtype).results[0]
        if not out.ok:
            self._already_reserved({d.name: st})
            return f"cannot preempt {format_key(victim)}: {out.error}"
        node = self._node_of(victim)
        messages.emit("HAMN951", device=d.name, key=format_key(s.key),
                      victim=format_key(victim) + ("" if node == "-" else f" ({node})"),
                      alias=s.alias)
        rec["preempted"] = {"key": format_key(victim), "node": node, "how": out.value}
        return None

    def _remove_others(self, live: list[Disk], record: dict[str, dict[str, Any]]) -> None:
        """Every other registered key could write under a registrants-only reservation:
        remove them (PREEMPT of a non-holder key only drops its registrations)."""
        s = self.settings
        for name, r in self._status(live).items():
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
                    self._say(f"{name}: could not remove key {format_key(victim)}: "
                              f"{out.error}")

    # -- stop -------------------------------------------------------------------------------
    def stop(self) -> int:
        """Release and unregister; the seed's table when the disk fails meanwhile."""
        box: dict[str, Detection] = {}

        def detect() -> None:
            assert self.detect is not None
            try:
                box["d"] = self.detect()
            except Exception as err:  # detection must never break a stop
                box["d"] = Detection(TerminationKind.UNKNOWN, f"detection failed: {err}")

        worker = threading.Thread(target=detect, name="termination-kind", daemon=True)
        worker.start()
        active = bool(self.state.load().get("active"))
        try:
            disks, missing = self._resolve()
        except ConfigError:
            if active:
                raise
            return int(ExitStatus.SUCCESS)  # never started here: nothing of ours to release
        try:
            return self._stop(disks, missing, active, worker, box)
        finally:
            for d in disks:
                d.close()

    def _stop(self, disks: list[Disk], missing: list[DiskFailure], active: bool,
              worker: threading.Thread, box: dict[str, Detection]) -> int:
        """Leave every disk (:func:`hamon.lib.reservation.withdraw`), then the seed's table.

        Exit 0 only where the LUN, read back through a working path after the release,
        lists neither our key nor our reservation. A path that ends a command abnormally
        is a failed path (KAMN725-W); a disk none of whose paths works is every path
        failed (KAMN726-E and the OS termination, when this node may hold it); a LUN
        that answers but keeps our key fails the stop, so Pacemaker escalates.
        """
        s = self.settings
        self._check(disks)
        usable = [d for d in disks if any(not p.failed for p in d.paths)]
        out = rsv.withdraw(usable, s.key, s.rtype) if usable else rsv.Outcome("withdraw", [])
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
        self._unpublish_names(disks, missing)
        if decision.failures:
            requested = act(decision, alias=s.alias, host=s.node, hostkey=s.key,
                            journal=self.journal,
                            terminator=self.terminator if phase is Phase.TERMINATING
                            else None, termination_kind=detection.kind,
                            resource=s.resource, details=details)
        else:
            requested = False
            if may_hold:
                self._journal("stop", termination=str(detection.kind), **details)
        if may_hold:
            self._say(f"stop: {detection.kind} termination ({detection.reason})")
        with contextlib.suppress(OSError):
            self.state.update(paths=path_states(disks))
        if decision.verdict is Verdict.TERMINATE_OS:
            dead = ", ".join(f.disk for f in decision.all_failed_disks)
            dry = self.terminator.dry_run_file if self.terminator else None
            if requested and dry:
                why = f"every path of {dead} failed: OS termination ({s.os_action}) " \
                      f"requested in dry run ({dry})"
            elif requested:
                why = f"every path of {dead} failed: the OS is being terminated"
            else:
                why = f"every path of {dead} failed and os_termination=none: the stop " \
                      "fails so that Pacemaker fences this node"
            return self._fail(ExitStatus.ERR_GENERIC, why)
        if leftover:
            return self._fail(ExitStatus.ERR_GENERIC, "; ".join(leftover))
        self.state.update(active=False)
        return int(ExitStatus.SUCCESS)

    def _unpublish_names(self, disks: list[Disk], missing: list[DiskFailure]) -> None:
        assert self.attributes is not None
        names = pcmk.path_attribute_names([d.name for d in disks] + [m.disk for m in missing])
        run_in_threads([lambda n=n: self.attributes.delete(n)  # type: ignore[union-attr]
                        for n in names])
        with contextlib.suppress(OSError):  # deleted: the next monitor writes them again
            self.state.update(published=None)

    # -- monitor ----------------------------------------------------------------------------
    def monitor(self, probe: bool = False) -> int:
        """Running = this node's key holds the reservation of every disk and at least one
        path of each answers. A probe changes nothing and never terminates anything."""
        previous = self.state.load()
        try:
            disks, missing = self._resolve()
        except ConfigError:
            if probe:
                return int(ExitStatus.NOT_RUNNING)
            raise
        try:
            return self._monitor(disks, missing, probe, previous)
        finally:
            for d in disks:
                d.close()

    def _monitor(self, disks: list[Disk], missing: list[DiskFailure], probe: bool,
                 previous: dict[str, Any]) -> int:
        s = self.settings
        active = bool(previous.get("active"))
        prev_paths: dict[str, dict[str, str]] = previous.get("paths") or {}
        self._check(disks)
        status = self._status(disks)
        readable = {n: r for n, r in status.items() if r.ok}
        ours = [n for n, r in readable.items() if self._holds(r.value)]
        running = bool(ours) or (active and len(readable) < len(disks) + len(missing))
        phase = Phase.RUNNING if running else Phase.STANDBY
        self._recovered(disks, prev_paths, running and not probe, set(ours))
        failures = missing + failures_of(disks)
        decision = decide(phase, failures)
        changed = self._changed(failures, prev_paths)
        act(Decision(phase, decision.verdict, tuple(changed)), alias=s.alias, host=s.node,
            hostkey=s.key,
            journal=None if probe or not running else self.journal, terminator=None,
            resource=s.resource, details={"action": "probe" if probe else "monitor"})
        self._publish(disks, missing)
        try:
            self.state.update(paths=path_states(disks)
                              | {m.disk: {m.disk: "failed"} for m in missing})
        except OSError as err:  # only the dedup of messages suffers; the answer stands
            self._say(f"state {self.state.path}: {err}")
        if not running:
            if active and not probe:
                # started here, never stopped, and another key holds it now: HA Monitor's
                # "reserved by the other system after a switchover"
                self._already_reserved(readable)
            return int(ExitStatus.NOT_RUNNING)
        refused = [f"{n}: {r.error}" for n, r in status.items()
                   if not r.ok and not r.path_failure]
        if refused:  # a path answers, but not to READ KEYS / READ RESERVATION
            return self._fail(ExitStatus.ERR_GENERIC, "cannot read the reservation: "
                              + "; ".join(refused))
        others = [n for n, r in readable.items() if n not in ours]
        if others:
            self._already_reserved({n: readable[n] for n in others})
            held = "; ".join(f"{n}: {self._holder_text(readable[n].value)}" for n in others)
            return self._fail(ExitStatus.ERR_GENERIC, f"the reservation is not ours: {held}")
        if decision.verdict is Verdict.FAIL:
            dead = ", ".join(f.disk for f in decision.all_failed_disks)
            return self._fail(ExitStatus.ERR_GENERIC, f"every path of {dead} failed")
        if decision.verdict is Verdict.DEGRADED:
            lost = "; ".join(f"{f.disk}: {f.paths_total - len(f.failed)}/{f.paths_total} "
                             "paths up" for f in decision.failures)
            self.reason = f"degraded: {lost}"
            if pcmk.supports_degraded(self.env):
                return int(ExitStatus.DEGRADED)
            self._say(f"{self.reason} (reported as running: the caller predates OCF 1.1)")
        return int(ExitStatus.SUCCESS)

    def _already_reserved(self, results: Mapping[str, rsv.DiskResult]) -> None:
        """KAMN725-W ALREADY-RESERVATION for each disk another key holds; the host
        address is the holder's: its node when the cluster can say (else ``-``) and, in
        brackets, its key."""
        s = self.settings
        for name, r in results.items():
            res = r.value.reservation
            if not res.held or self._holds(r.value):
                continue
            messages.emit("KAMN725", device=name, code=DetailsCode.ALREADY_RESERVATION,
                          alias=s.alias, host=self._node_of(res.key or 0),
                          hostkey=res.key or 0)

    def _holder_text(self, st: rsv.LunStatus) -> str:
        res = st.reservation
        if not res.held:
            return "no reservation is held"
        node = self._node_of(res.key or 0)
        return f"held by key {format_key(res.key or 0)}" + ("" if node == "-"
                                                           else f" ({node})")

    def _recovered(self, disks: list[Disk], prev: dict[str, dict[str, str]],
                   fix: bool, ours: set[str]) -> list[str]:
        """KAMN727-I for each path that failed last time and answers now.

        On the active node (``fix``) the path is asked whether it still carries our key:
        REGISTER with our key as both the old and the new key succeeds only through a
        nexus registered with it, and changes nothing else; RESERVATION CONFLICT means
        the key was lost (a target reset, a replaced port): ONLINE_CHECK(NO_KEY), and
        REGISTER AND IGNORE EXISTING KEY puts it back, or failover to this path would
        meet RESERVATION CONFLICT. On the standby (probes) it is STANDBY_CHECK.
        """
        s = self.settings
        out = []
        for d in disks:
            for p in d.paths:
                if p.state is not PathState.UP or prev.get(d.name, {}).get(p.name) != "failed":
                    continue
                label = d.path_label(p)
                if not fix or d.name not in ours:
                    messages.emit("KAMN727", device=label, code=RecoveryCode.STANDBY_CHECK
                                  if d.name not in ours else RecoveryCode.ONLINE_CHECK,
                                  alias=s.alias)
                    out.append(label)
                    continue
                code = RecoveryCode.ONLINE_CHECK
                try:
                    if not rsv.key_on_path(p, s.key):
                        code = RecoveryCode.ONLINE_CHECK_NO_KEY
                        rsv.register_path(p, s.key)
                        self._say(f"{label}: key {format_key(s.key)} registered again")
                except PathFaulted:  # it failed again: not recovered (KAMN725-W follows)
                    continue
                except ScsiError as err:  # an answer the check does not expect
                    self._say(f"{label}: key check failed: {err}")
                messages.emit("KAMN727", device=label, code=code, alias=s.alias)
                out.append(label)
        return out

    # -- validate ---------------------------------------------------------------------------
    def validate(self) -> int:
        """Parameters were parsed already (ConfigError otherwise); every ``/dev`` operand
        exists on this node and is a shared SCSI disk (OCF_ERR_INSTALLED otherwise)."""
        return self.check_devices(missing_ok=False)

    def check_devices(self, missing_ok: bool) -> int:
        """OCF_ERR_INSTALLED, with the reason, for the first ``/dev`` operand that is not
        a shared SCSI disk on this node (a directory, FIFO, regular file, /dev/null, a
        loop device, a partition: see :mod:`hamon.lib.devcheck`), or that is missing
        unless ``missing_ok`` (a start meets a vanished path as KAMN725-W OPEN)."""
        from hamon.lib.devcheck import NoDevice, NotADisk, check_device

        for op in self.settings.operands:
            try:
                check_device(op, self.settings.node)
            except NoDevice as err:
                if not missing_ok:
                    return self._fail(ExitStatus.ERR_INSTALLED, str(err))
            except NotADisk as err:
                return self._fail(ExitStatus.ERR_INSTALLED, str(err))
        return int(ExitStatus.SUCCESS)

    # -- journal ----------------------------------------------------------------------------
    def _journal(self, kind: str, **data: Any) -> None:
        s = self.settings
        assert self.journal is not None
        # bounded and never raising: the journal is a record, the action goes on
        record(self.journal, kind, **{"resource": s.resource, "alias": s.alias,
                                      "node": s.node, "key": format_key(s.key),
                                      "type": s.rtype.short, **data})

