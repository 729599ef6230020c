"""``hamon``: the administrator's command for shared disks, keys and reservations.

Every subcommand takes devices in any form the agents accept (``/dev/sdX``,
``/dev/mapper/NAME``, ``/dev/dm-N``, ``/dev/sddlmXX``, ``iscsi://`` URLs), alone or as a
comma list, prints for people by default and JSON with ``--json``. Bad input gives one
line naming the device and the fix, exit 2; a target that fails gives exit 1; a refused
``reservation cancel`` gives exit 3. Never a traceback: an administrator at 3 a.m. needs
the sentence, not the stack.

``recover``, ``status`` and ``reservation cancel`` implement HA Monitor's manual recovery
(manual §7.5.8, §7.5.12) on top of the journal the agents keep: see
:mod:`hamon.lib.recovery` for which step applies when, and docs/recovery.md.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import os
import shlex
import sys
import textwrap
from collections.abc import Callable, Sequence
from typing import Any, NoReturn

from hamon.lib import cancel, cluster, config, failback, recovery
from hamon.lib import keys as keymod
from hamon.lib import reservation as rsv
from hamon.lib.devcheck import check_device
from hamon.lib.disk import DeviceError, Disk, run_parallel, split_operands
from hamon.lib.identity import check_iscsi_name, default_initiator, local_node_name
from hamon.lib.journal import Journal, JournalError, Record
from hamon.lib.messages import emit
from hamon.lib.multipath.resolve import Resolver
from hamon.lib.scsi.pr import format_key
from hamon.lib.transport.base import PathError

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_REFUSED = 0, 1, 2, 3


class CliError(Exception):
    def __init__(self, message: str, code: int = EXIT_FAILED) -> None:
        super().__init__(message)
        self.code = code


def _resolver(args: argparse.Namespace, initiator: str | None = None) -> Resolver:
    initiator = initiator or args.initiator or default_initiator(_node(args))
    return Resolver(initiator=initiator, timeout=args.timeout)


def _node(args: argparse.Namespace) -> str:
    if not getattr(args, "_node_name", None):
        args._node_name = args.node or local_node_name()
    return args._node_name


def _operands(args: argparse.Namespace) -> list[str]:
    """The device operands, each one a possible shared disk (exit 2 naming it if not)."""
    operands = [o for d in args.device for o in split_operands(d)]
    if not operands:
        raise CliError("no device named; give /dev/sdX, /dev/mapper/NAME, ... or "
                       "iscsi:// URLs", EXIT_USAGE)
    for op in operands:
        try:
            check_device(op, "this node")
        except DeviceError as err:
            raise CliError(str(err), EXIT_USAGE) from None
    return operands


def _disks(args: argparse.Namespace) -> list[Disk]:
    operands = _operands(args)
    try:
        return _resolver(args).resolve(operands)
    except DeviceError as err:
        raise CliError(str(err), EXIT_USAGE) from None


def _owner(k: int, nodes: list[str]) -> str:
    who = keymod.owner_label(k, nodes)
    if who:
        return f" ({who})"
    return " (hamon key)" if keymod.is_hamon_key(k) else ""


def _journal(args: argparse.Namespace) -> tuple[Journal, list[Record]]:
    j = Journal(args.journal)
    try:
        return j, j.records()
    except JournalError as err:  # a FIFO, a device, a directory, too large: wrong name
        raise CliError(f"{j.path}: cannot read the journal: {err.strerror}; give the "
                       "journal file (--journal FILE)", EXIT_USAGE) from None
    except OSError as err:
        raise CliError(f"{j.path}: cannot read the journal: {err.strerror}") from None


def _membership(args: argparse.Namespace) -> cluster.Membership | None:
    """Best effort, for naming key owners: None when the cluster cannot say."""
    try:
        return cluster.membership(cluster.TIMEOUT)
    except cluster.ClusterUnavailable:
        return None


def _known_nodes(args: argparse.Namespace, mem: cluster.Membership | None = None,
                 records: Sequence[Record] = ()) -> list[str]:
    """Node names to name key owners with: --nodes, this node, the cluster's, and every
    node the journal mentions (a dead node is often known only from there)."""
    names = [*split_operands(args.nodes or ""), _node(args)]
    names += [str(r.entry["node"]) for r in records
              if r.valid and r.entry and r.entry.get("node")]
    if mem is not None:
        names += list(mem.nodes)
    return list(dict.fromkeys(n for n in names if n))


def _look(disks: list[Disk], timeout: float) -> list[recovery.DiskNow]:
    """Check every path and read keys and holder: the state of ``disks`` now."""
    run_parallel([lambda d=d: d.check_paths(timeout) for d in disks])
    out = rsv.read_status(disks)
    return [recovery.disk_now(d, r) for d, r in zip(disks, out.results, strict=True)]


def _close(disks: list[Disk]) -> None:
    """Close every path, after naming on stderr each path that failed in this command
    while another path of its disk worked (hamon.lib.faults): the answer read through
    the other path is true, but the administrator must learn that a path ended a command
    abnormally. A disk none of whose paths worked is the command's own error line."""
    for d in disks:
        failed = d.failed_paths()
        for p in failed if len(failed) < len(d.paths) else ():
            print(f"hamon: {d.path_label(p)}: path failed ({p.code or 'IO-ERR'}): "
                  f"{p.reason}", file=sys.stderr)
        d.close()


def _print_json(obj: object) -> None:
    json.dump(obj, sys.stdout, indent=2, default=str)
    sys.stdout.write("\n")


def _wrap(text: str, indent: str = "  ") -> str:
    return textwrap.fill(text, width=92, initial_indent=indent, subsequent_indent=indent)


# -- paths / keys / reservation / key ----------------------------------------------------
def cmd_paths(args: argparse.Namespace) -> int:
    disks = _disks(args)
    rsv.run_parallel([lambda d=d: d.check_paths(args.timeout) for d in disks])
    if args.json:
        _print_json([d.as_dict() for d in disks])
    else:
        for d in disks:
            up = len(d.up_paths())
            wwid = f", wwid {d.wwid}" if d.wwid else ""
            print(f"{d.name}  ({d.kind}{wwid})  {up}/{len(d.paths)} paths up")
            for p in d.paths:
                extra = "; ".join(x for x in (p.reason, p.os_state) if x)
                print(f"  {p.name:<40} {p.state:<7} {extra}".rstrip())
    _close(disks)
    return EXIT_OK if all(d.up_paths() for d in disks) else EXIT_FAILED


def _status(args: argparse.Namespace, full: bool = True) -> tuple[list[Disk], rsv.Outcome]:
    disks = _disks(args)
    return disks, rsv.read_status(disks, full=full)


def cmd_keys(args: argparse.Namespace) -> int:
    disks, out = _status(args)
    nodes = split_operands(args.nodes or "")
    if args.json:
        _print_json([{**r.as_dict(), "generation": r.value.generation if r.ok else None,
                      "keys": [format_key(k) for k in r.value.keys] if r.ok else None}
                     for r in out.results])
    else:
        for r in out.results:
            if not r.ok:
                print(f"{r.disk.name}: cannot read keys: {r.error}")
                continue
            st: rsv.LunStatus = r.value
            print(f"{r.disk.name}: PR generation 0x{st.generation:x}, "
                  f"{len(st.keys)} registered key(s)")
            if st.full:
                for e in st.full.entries:
                    holder = "  holder" if e.holder else ""
                    print(f"  {format_key(e.key)}{_owner(e.key, nodes)}  "
                          f"{e.initiator or '?'}  port {e.relative_target_port}{holder}")
            else:
                for k in st.keys:
                    print(f"  {format_key(k)}{_owner(k, nodes)}")
    _close(disks)
    return EXIT_OK if out.ok else EXIT_FAILED


def cmd_reservation(args: argparse.Namespace) -> int:
    """``hamon reservation [show] DEV...`` or ``hamon reservation cancel DEV...``."""
    devices = list(args.device)
    verb = devices.pop(0) if devices[0] in ("show", "cancel") else "show"
    if not devices:
        raise CliError(f"reservation {verb}: name at least one device", EXIT_USAGE)
    if verb == "show" and (args.force or args.key or args.nodes_online is not None):
        raise CliError("--force, --key and --nodes-online belong to "
                       "'hamon reservation cancel DEV'", EXIT_USAGE)
    args.device = devices
    return cmd_cancel(args) if verb == "cancel" else _show_reservation(args)


def _show_reservation(args: argparse.Namespace) -> int:
    disks, out = _status(args)
    nodes = split_operands(args.nodes or "")
    rows = []
    for r in out.results:
        row: dict[str, Any] = {"disk": r.disk.name, "ok": r.ok,
                               "error": str(r.error) if r.error else None}
        if r.ok:
            res = r.value.reservation
            row.update(held=res.held, type=res.type.short if res.type else None,
                       key=format_key(res.key) if res.key is not None else None,
                       holder=keymod.owner_of(res.key, nodes) if res.key else None)
        rows.append(row)
    if args.json:
        _print_json(rows)
    else:
        for row in rows:
            if not row["ok"]:
                print(f"{row['disk']}: cannot read the reservation: {row['error']}")
            elif not row["held"]:
                print(f"{row['disk']}: no persistent reservation")
            else:
                who = f" ({row['holder']})" if row["holder"] else ""
                print(f"{row['disk']}: reserved {row['type']} by key {row['key']}{who}")
    _close(disks)
    return EXIT_OK if out.ok else EXIT_FAILED


def cmd_key(args: argparse.Namespace) -> int:
    """The key of a node: the cluster part and the node part, and the old key."""
    node = args.node_name or args.node or local_node_name()
    try:
        if args.key:
            k = keymod.resolve_key(args.key, node)
            if args.json:
                _print_json({"node": node, "key": format_key(k), "explicit": True})
            else:
                print(f"{node}: {format_key(k)} (explicit)")
            return EXIT_OK
        p = keymod.parts(node)
        old = keymod.legacy_key(node)
    except ValueError as err:
        raise CliError(str(err), EXIT_USAGE) from None
    if args.json:
        _print_json({"node": node, "key": format_key(p.key), "cluster": p.cluster,
                     "cluster_part": p.cluster_hex, "node_part": p.node_hex,
                     "old_key": format_key(old)})
    else:
        print(f"{node}: {format_key(p.key)}")
        if p.cluster:
            print(f"  cluster {p.cluster}: {p.cluster_hex} (sha256 of the cluster name, "
                  "first 4 bytes)")
            print(f"  node {node}: {p.node_hex} (sha256 of the node name, first 4 bytes)")
        else:
            print("  no cluster name known (no corosync configuration, no --cluster-name):"
                  " the old derivation")
        print(f"  old key (before cluster names, still recognised): {format_key(old)}")
    return EXIT_OK


# -- reservation cancel ------------------------------------------------------------------
def _liveness(args: argparse.Namespace) -> tuple[cluster.Membership | None, str]:
    """Who is alive: the --nodes-online test hook, else the cluster; (None, why) if unknown.

    The hook names exactly the live nodes, this one included or not: that is what lets a
    test (or an administrator who has looked at crm_mon) say "this node runs nothing".
    """
    if args.nodes_online is not None:
        names = set(split_operands(args.nodes_online))
        return cluster.Membership(dict.fromkeys(names, True), True, "--nodes-online"), ""
    try:
        mem = cluster.membership(cluster.TIMEOUT)
    except cluster.ClusterUnavailable as err:
        return None, f"the cluster cannot be asked who is alive ({err})"
    if mem.quorate is False:
        return mem, ("this partition has no quorum: a node it sees as lost may be alive "
                     "on the other side of a split")
    return mem, ""


def _held_here(args: argparse.Namespace, online: set[str]) -> tuple[bool | None, str]:
    """Does this node hold its reservation legitimately, i.e. run a hamon_disk resource?

    After a failure terminated this node's OS, its key still holds the reservation when
    it boots again: that reservation is stale, and cancelling it here is the procedure.
    """
    me = _node(args)
    if args.nodes_online is not None:
        return me in online, "listed in --nodes-online"
    try:
        active = cluster.active_disk_resources(me, cluster.TIMEOUT)
    except cluster.ClusterUnavailable as err:
        return None, f"crm_mon cannot say whether a hamon_disk resource runs here ({err})"
    return bool(active), f"hamon_disk {', '.join(active)} active here"


def cmd_cancel(args: argparse.Namespace) -> int:
    """HA Monitor's "canceling SCSI reservation for shared disk" (§7.5.12), guarded."""
    me = _node(args)
    try:
        my_key = keymod.resolve_key(args.key, me)
    except ValueError as err:
        raise CliError(str(err), EXIT_USAGE) from None
    disks, out = _status(args, full=False)
    try:
        unread = out.failed()
        if unread:
            r = unread[0]
            raise CliError(f"{r.disk.name}: cannot read the reservation through any path "
                           f"({r.error or r.detail}); nothing was changed")
        mem, unknown_why = _liveness(args)
        try:  # names only: an unreadable journal must not stand in the cancel's way
            records = _journal(args)[1]
        except CliError:
            records = []
        nodes = _known_nodes(args, mem, records)
        online = mem.online() if mem is not None and not unknown_why else set()
        here: list[tuple[bool | None, str]] = []

        def held_here() -> tuple[bool | None, str]:
            if not here:
                here.append(_held_here(args, online))
            return here[0]

        live = cancel.Liveness(me, frozenset(online), unknown_why)
        explicit: dict[int, str] | None = None
        plan = []
        refusals: list[str] = []
        for r in out.results:
            st: rsv.LunStatus = r.value
            res = st.reservation
            h = cancel.Holder(r.disk.name, res.held, res.key, tuple(st.keys))
            if res.held and explicit is None and not all(
                    keymod.is_hamon_key(k) for k in h.holder_keys):
                explicit = config.configured_node_keys(cluster.TIMEOUT)  # node_keys
            why = cancel.refusal(h, my_key=my_key, live=live, explicit=explicit or {},
                                 describe=recovery.describe_key(res.key, nodes,
                                                                explicit or {})
                                 if res.held else "",
                                 held_here=held_here)
            if why:
                refusals.append(why)
            plan.append((r.disk, st))
        if refusals and not args.force:
            raise CliError("refused: " + "; ".join(refusals) + ". Nothing was changed; "
                           "check crm_mon, then rerun with --force if the holder is "
                           "really gone", EXIT_REFUSED)
        return _do_cancel(args, plan, my_key, nodes, online, forced=bool(refusals),
                          explicit=explicit or {})
    finally:
        _close(disks)


def _do_cancel(args: argparse.Namespace, plan: list[tuple[Disk, rsv.LunStatus]],
               my_key: int, nodes: list[str], online: set[str], forced: bool,
               explicit: dict[int, str]) -> int:
    me = _node(args)
    # What overrode hamon's own judgement, journalled as forced: --force over a refusal,
    # and --nodes-online over the cluster's word on who is alive.
    overrides = (["--force"] if forced else []) + (
        [f"--nodes-online {','.join(sorted(online)) or '(none)'}"]
        if args.nodes_online is not None else [])
    rows: list[dict[str, Any]] = []
    failed = False
    for disk, st in plan:
        res = st.reservation
        row: dict[str, Any] = {"disk": disk.name, "wwid": disk.wwid,
                               "holder": format_key(res.key) if res.key is not None else None,
                               "holder_node": (explicit.get(res.key)
                                               or keymod.owner_of(res.key, nodes))
                               if res.key else None,
                               "type": res.type.short if res.type else None,
                               "keys_before": [format_key(k) for k in dict.fromkeys(st.keys)]}
        if not res.held:
            row.update(result="nothing to cancel", ok=True)
            rows.append(row)
            continue
        out = rsv.clear([disk], my_key)
        r = out.results[0]
        if not r.ok:
            failed = True
            row.update(result=f"not cancelled: {r.error or r.detail}", ok=False)
            rows.append(row)
            continue
        via = r.paths[0].path if r.paths else "?"
        row.update(result="cancelled", ok=True, via=via)
        if my_key in st.keys:  # CLEAR took this node's own registration too: restore it
            again = rsv.register([disk], my_key)
            row["reregistered"] = again.ok
        dropped = sorted(({n for n in online if keymod.key_for_node(n) in st.keys}
                          | {n for k, n in explicit.items() if k in st.keys and n in online})
                         - ({me} if row.get("reregistered") else set()))
        row["dropped_live_registrations"] = dropped
        holder = recovery.describe_key(res.key, nodes, explicit)
        emit("HAMN953", device=disk.name, holder=holder,
             by=f"{me} ({', '.join(overrides)})" if overrides else me)
        rows.append(row)
    cancelled = [r for r in rows if r.get("result") == "cancelled"]
    journal_error = None
    if cancelled:
        try:
            Journal(args.journal).append("cancel", node=me, forced=bool(overrides),
                                         overrides=overrides, disks=cancelled)
        except OSError as err:
            journal_error = f"the journal could not be updated: {err.strerror}"
    if args.json:
        _print_json({"disks": rows, "forced": bool(overrides), "overrides": overrides,
                     "journal_error": journal_error})
    else:
        for row in rows:
            if row["result"] == "nothing to cancel":
                print(f"{row['disk']}: no reservation is held: nothing to cancel")
            elif row["ok"]:
                print(f"{row['disk']}: reservation cancelled (was held by "
                      f"{recovery.describe_key(int(row['holder'], 16), nodes, explicit)} "
                      f"{row['type']}; cleared through {row['via']})")
                for n in row["dropped_live_registrations"]:
                    print(f"  note: the registration of live node {n} was cleared too; "
                          f"restore it with: stonith_admin --unfence {shlex.quote(n)}")
            else:
                print(f"{row['disk']}: {row['result']}")
    if journal_error:
        raise CliError(f"reservation cancelled, but {journal_error}")
    return EXIT_FAILED if failed else EXIT_OK


# -- monscsiclr ---------------------------------------------------------------------------
def _alias_disks(args: argparse.Namespace, groups: Sequence[tuple[tuple[str, ...], str,
                                                                  str | None]]
                 ) -> list[tuple[str, Disk | None, str]]:
    """(name, disk or None, why not) for every device of the alias: a group that cannot
    be resolved as a whole is resolved operand by operand, so one missing device does
    not hide the others (monscsiclr carries on past a failed device)."""
    out: list[tuple[str, Disk | None, str]] = []
    for ops, _, ini in groups:
        resolver = _resolver(args, ini)
        try:
            out.extend((d.name, d, "") for d in resolver.resolve(list(ops)))
            continue
        except DeviceError:
            pass
        for op in ops:
            try:
                check_device(op, "this node")
                out.extend((d.name, d, "") for d in resolver.resolve([op]))
            except DeviceError as err:
                out.append((op, None, str(err)))
    return out


def cmd_monscsiclr(args: argparse.Namespace) -> int:
    """HA Monitor's ``monscsiclr server-alias-name`` (§9.21), with cancel's safety.

    Every device of the hamon_disk resource(s) with that alias (from the CIB, or the disks
    file's ``alias=`` lines when the cluster does not run): KAMN107-I, one line per
    device (``CLEARED DEV``, or ``FAILED DEV: why``), KAMN108-I with SUCCESS or FAILURE.
    A device is released when, read back after the CLEAR, no reservation is held; a
    failed device does not stop the others; exit 0 only when every device was released.
    """
    alias = args.alias
    if not alias or not alias.isprintable():
        raise CliError(f"server alias {alias!r}: give the alias of a hamon_disk resource",
                       EXIT_USAGE)
    me = _node(args)
    try:
        my_key = keymod.resolve_key(args.key, me)
        conf = config.configured_disks(args.disks_file, cib=not args.no_cib,
                                       timeout=cluster.TIMEOUT)
    except ValueError as err:  # config.ConfigError too
        raise CliError(str(err), EXIT_USAGE) from None
    found = cancel.devices_of_alias(conf.sources, alias)
    if not found.groups:
        known = sorted({s.alias for s in conf.sources if s.alias})
        raise CliError(f"no hamon_disk resource and no disks-file line has alias "
                       f"{alias!r} (known: {', '.join(known) or 'none'}; "
                       f"{'; '.join(conf.notes) or 'CIB and disks file read'})", EXIT_USAGE)

    def say(msg_id: str, **fields: object) -> None:
        m = emit(msg_id, stderr=False, **fields)   # syslog, and here in order with the rest
        if not args.json:
            print(m, flush=True)

    say("KAMN107", command="monscsiclr", alias=alias)
    mem, unknown_why = _liveness(args)
    try:
        records = _journal(args)[1]
    except CliError:
        records = []
    nodes = _known_nodes(args, mem, records)
    online = mem.online() if mem is not None and not unknown_why else set()
    live = cancel.Liveness(me, frozenset(online), unknown_why)
    here: list[tuple[bool | None, str]] = []

    def held_here() -> tuple[bool | None, str]:
        if not here:
            here.append(_held_here(args, online))
        return here[0]

    explicit = config.configured_node_keys(cluster.TIMEOUT)
    overrides = (["--force"] if args.force else []) + (
        [f"--nodes-online {','.join(sorted(online)) or '(none)'}"]
        if args.nodes_online is not None else [])
    rows: list[dict[str, Any]] = []
    items = _alias_disks(args, found.groups)
    try:
        for name, disk, why_not in items:
            row: dict[str, Any] = {"disk": name, "released": False}
            rows.append(row)
            row["result"] = why_not if disk is None else _release_one(
                args, disk, my_key, live, explicit, nodes, held_here, overrides, row)
            if not args.json:
                print(f"CLEARED {name}" if row["released"] else
                      f"FAILED {name}: {row['result']}", flush=True)
        cleared = [r for r in rows if r.get("how") == "cleared"]
        journal_error = None
        if cleared:
            try:
                Journal(args.journal).append("cancel", node=me, command="monscsiclr",
                                             alias=alias, forced=bool(overrides),
                                             overrides=overrides, disks=cleared)
            except OSError as err:
                journal_error = f"the journal could not be updated: {err.strerror}"
        result = cancel.verdict([r["released"] for r in rows])
    finally:
        _close([d for _, d, _ in items if d is not None])
    if args.json:
        _print_json({"alias": alias, "devices": rows, "result": result,
                     "overrides": overrides, "journal_error": journal_error})
    say("KAMN108", command="monscsiclr", result=result, alias=alias)
    if journal_error:
        print(f"hamon: released, but {journal_error}", file=sys.stderr)
        return EXIT_FAILED
    return EXIT_OK if result == "SUCCESS" else EXIT_FAILED


def _release_one(args: argparse.Namespace, disk: Disk, my_key: int,
                 live: cancel.Liveness, explicit: dict[int, str], nodes: list[str],
                 held_here: cancel.HeldHere, overrides: list[str],
                 row: dict[str, Any]) -> str:
    """Release one device as ``reservation cancel`` does; fills ``row``; the result
    text. Released means: read back afterwards, no reservation is held."""
    run_parallel([lambda: disk.check_paths(args.timeout)])
    r = rsv.read_status([disk]).results[0]
    if not r.ok:
        return f"cannot read the reservation through any path ({r.error or r.detail})"
    st: rsv.LunStatus = r.value
    res = st.reservation
    desc = recovery.describe_key(res.key, nodes, explicit) if res.held else ""
    row.update(holder=format_key(res.key) if res.key else None,
               keys_before=[format_key(k) for k in dict.fromkeys(st.keys)])
    if not res.held:
        row.update(released=True, how="nothing held")
        return "no reservation was held"
    why = cancel.refusal(cancel.Holder(disk.name, res.held, res.key, tuple(st.keys)),
                         my_key=my_key, live=live, explicit=explicit, describe=desc,
                         held_here=held_here)
    if why and not args.force:
        return f"refused: {why}; check crm_mon, then rerun with --force if the holder " \
               "is really gone"
    out = rsv.clear([disk], my_key).results[0]
    if not out.ok:
        return f"not cleared: {out.error or out.detail}"
    if my_key in st.keys:  # CLEAR took this node's own registration too: restore it
        row["reregistered"] = rsv.register([disk], my_key).ok
    after = rsv.read_status([disk]).results[0]
    if not after.ok:
        return f"cleared, but the reservation cannot be read back ({after.error})"
    if after.value.reservation.held:
        return (f"still held by {format_key(after.value.reservation.key or 0)} after the "
                "CLEAR")
    row.update(released=True, how="cleared", via=out.paths[0].path if out.paths else "?")
    emit("HAMN953", device=disk.name, holder=desc,
         by=f"{live.me} ({', '.join(overrides)})" if overrides else live.me)
    return f"released (was held by {desc})"


# -- status ------------------------------------------------------------------------------
def _configured(args: argparse.Namespace) -> tuple[list[tuple[list[str], str, str | None]],
                                                   list[str]]:
    if args.device:
        return [([o for d in args.device for o in split_operands(d)], "command line",
                 None)], []
    conf = config.configured_disks(args.disks_file, cib=not args.no_cib,
                                   timeout=cluster.TIMEOUT)
    groups: list[tuple[list[str], str, str | None]] = []
    seen: set[str] = set()
    for s in conf.sources:
        ops = [o for o in s.operands if o not in seen]
        seen.update(ops)
        if ops:
            groups.append((ops, s.origin, s.initiator))
    if not groups:
        raise CliError("no configured shared disk found (" + "; ".join(conf.notes) +
                       "); name the devices: hamon status DEV...", EXIT_USAGE)
    return groups, conf.notes


def cmd_status(args: argparse.Namespace) -> int:
    groups, notes = _configured(args)
    journal, records = _journal(args)
    disks: list[Disk] = []
    origins: dict[int, str] = {}
    errors: list[dict[str, Any]] = []
    seen_wwids: set[str] = set()
    for ops, origin, initiator in groups:
        try:
            found = _resolver(args, initiator).resolve(ops)
        except DeviceError as err:
            if origin == "command line":
                raise CliError(str(err), EXIT_USAGE) from None
            errors.append({"disk": ",".join(ops), "origin": origin, "error": str(err)})
            continue
        for d in found:
            if d.wwid and d.wwid in seen_wwids:  # one LUN named by two resources
                d.close()
                continue
            if d.wwid:
                seen_wwids.add(d.wwid)
            origins[id(d)] = origin
            disks.append(d)
    try:
        now = _look(disks, args.timeout)
    finally:
        _close(disks)
    nodes = _known_nodes(args, _membership(args), records)
    rows = []
    for d, n in zip(disks, now, strict=True):
        last = recovery.last_entry(records, d.name, d.wwid)
        rows.append({**n.as_dict(), "origin": origins[id(d)],
                     "paths_up": sum(p.answers for p in n.paths),
                     "paths_total": len(n.paths),
                     "holder": recovery.describe_key(n.reservation.key, nodes)
                     if n.reservation and n.reservation.held else None,
                     "last_entry": last,
                     "last_entry_summary": recovery.summarize(last) if last else None})
    torn = [{"line": r.line, "problem": r.problem} for r in records if not r.valid]
    ok = not errors and all(r["paths_up"] == r["paths_total"] and r["reservation"]
                            for r in rows)
    if args.json:
        _print_json({"disks": rows, "unresolved": errors, "notes": notes,
                     "journal": {"path": journal.path, "torn": torn}})
        return EXIT_OK if ok else EXIT_FAILED
    for row in rows:
        wwid = f", wwid {row['wwid']}" if row["wwid"] else ""
        print(f"{row['disk']}  ({row['kind']}{wwid})  {row['paths_up']}/"
              f"{row['paths_total']} paths up  [{row['origin']}]")
        for p in row["paths"]:
            extra = p["reason"] if p["os_state"] and p["os_state"] in p["reason"] else \
                "; ".join(x for x in (p["reason"], p["os_state"]) if x)
            print(f"  path    {p['name']:<40} {p['state']:<7} {extra}".rstrip())
        res = row["reservation"]
        if res is None:
            print(f"  keys    cannot be read: {row['reservation_error']}")
        else:
            counts: dict[str, int] = {}
            for k in res["keys"]:
                counts[k] = counts.get(k, 0) + 1
            keys = ", ".join(recovery.describe_key(int(k, 16), nodes)
                             + (f" x{c}" if c > 1 else "") for k, c in counts.items())
            print(f"  keys    {keys or 'none registered'}")
            print(f"  holder  {row['holder'] + ', ' + res['type'] if res['held'] else 'none'}")
        print(f"  journal {row['last_entry_summary'] or 'no entry'}")
    for e in errors:
        print(f"{e['disk']}  [{e['origin']}]: cannot be resolved: {e['error']}")
    if torn:
        lines = ", ".join(str(t["line"]) for t in torn)
        print(f"journal {journal.path}: {len(torn)} torn or damaged line(s) ({lines}), "
              "not trusted")
    for note in notes:
        print(f"note: {note}")
    return EXIT_OK if ok else EXIT_FAILED


# -- recover -----------------------------------------------------------------------------
LABELS = {recovery.Applies.YES: "TO DO", recovery.Applies.NO: "not applicable",
          recovery.Applies.DONE: "done", recovery.Applies.UNKNOWN: "CHECK"}


def _resolve_now(args: argparse.Namespace, operands: list[str],
                 kind: str | None) -> list[recovery.DiskNow]:
    try:
        disks = _resolver(args).resolve(operands)
    except DeviceError as err:
        return [recovery.DiskNow(operands[0], kind, error=str(err))]
    try:
        return _look(disks, args.timeout)
    finally:
        _close(disks)


def cmd_recover(args: argparse.Namespace) -> int:
    journal, records = _journal(args)
    device = args.device
    now: list[recovery.DiskNow] = []
    wwid = None
    if device is not None:
        try:
            disks = _resolver(args).resolve(split_operands(device))
        except DeviceError as err:
            if recovery.select(records, device).entry is None:
                raise CliError(str(err), EXIT_USAGE) from None
            disks = []
            now = [recovery.DiskNow(device, None, error=str(err))]
        if disks:
            wwid = disks[0].wwid
            try:
                now = _look(disks, args.timeout)
            finally:
                _close(disks)
    sel = recovery.select(records, device, wwid)
    if sel.entry is None and device is None:
        return _nothing_recorded(args, journal, sel)
    if sel.entry is not None and device is None:
        kinds = {str(d.get("disk")): d.get("kind") for d in recovery.entry_disks(sel.entry)}
        for ops in recovery.operands_of(sel.entry):
            now += _resolve_now(args, ops, kinds.get(ops[0]))
    elif sel.entry is not None and now and now[0].kind is None:
        kinds = [d.get("kind") for d in recovery.entry_disks(sel.entry)
                 if recovery.concerns({"disks": [d]}, device, wwid)]
        now[0] = recovery.DiskNow(now[0].disk, kinds[0] if kinds else None,
                                  error=now[0].error)
    failed_devs = {str(p.get("path")) for d in recovery.entry_disks(sel.entry or {})
                   for p in recovery.failed_paths(d)}
    failed_devs |= {p.name for d in now for p in d.paths if not p.answers}
    kernel = recovery.kernel_messages(sorted(failed_devs),
                                      (sel.entry or {}).get("time"))
    nodes = _known_nodes(args, _membership(args), records)
    from hamon.lib.multipath import hdlm
    plan = recovery.build(sel, now, device=device, nodes=nodes, kernel=kernel,
                          dlnkmgr=hdlm.dlnkmgr() or "dlnkmgr")
    return _present(args, plan)


def _nothing_recorded(args: argparse.Namespace, journal: Journal,
                      sel: recovery.Selection) -> int:
    warnings = [f"journal line {r.line}: {r.problem}; not trusted" for r in sel.torn]
    if args.json:
        _print_json({"device": None, "entry": None, "journal": journal.path,
                     "warnings": warnings, "steps": []})
        return EXIT_OK
    for w in warnings:
        print(f"warning: {w}")
    print(f"No disk failure is recorded in {journal.path}: nothing hamon knows to "
          "recover. To walk through the procedure for one disk: hamon recover DEV")
    return EXIT_OK


def _present(args: argparse.Namespace, plan: recovery.Plan) -> int:
    commands = plan.failback_commands
    results: list[failback.Result] = []
    run_note = ""
    if args.json:
        if args.yes:
            results = failback.run(commands)
        else:
            run_note = "not run: give --yes to run the failback commands"
        _print_json({**plan.as_dict(), "journal": args.journal or Journal().path,
                     "failback": {"run": bool(results), "note": run_note,
                                  "results": [r.as_dict() for r in results]}})
        return EXIT_FAILED if any(not r.ok for r in results) else EXIT_OK
    _print_plan(plan)
    if not commands:
        return EXIT_OK
    print()
    if args.yes:
        go = True
    elif sys.stdin.isatty():
        try:
            answer = input(f"Run the {len(commands)} failback command(s) of step 3 now? "
                           "[y/N] ")
        except EOFError:
            answer = ""
        go = answer.strip().lower() in ("y", "yes")
        if not go:
            print("Not run.")
    else:
        go = False
        print("Failback commands not run: no terminal to confirm on. Run them yourself, "
              "or rerun with --yes.")
    if not go:
        return EXIT_OK
    results = failback.run(commands)
    for r in results:
        state = "ok" if r.ok else f"FAILED (exit {r.exit_code})"
        print(f"$ {r.command.shell}: {state}{': ' + r.output if r.output else ''}")
    if any(not r.ok for r in results):
        raise CliError(f"{sum(not r.ok for r in results)} of {len(results)} failback "
                       "command(s) failed; see above")
    print("Check the paths: " + shlex.join(["hamon", "paths", *dict.fromkeys(
        c.disk for c in commands)]))
    return EXIT_OK


def _print_plan(plan: recovery.Plan) -> None:
    target = plan.device or ", ".join(d.disk for d in plan.disks) or "-"
    if plan.entry is not None:
        print(f"Recovery of {target}: failure recorded {plan.entry.get('time', '?')} "
              f"(journal line {plan.entry_line}), termination: {plan.termination}")
    else:
        print(f"Recovery of {target}: no failure recorded for it in the journal")
    for w in plan.warnings:
        print(_wrap(f"warning: {w}", ""))
    for s in plan.steps:
        print()
        print(f"Step {s.number}. {s.title}  [{LABELS[s.applies]}]")
        print(_wrap(s.why))
        for line in s.details:
            print(f"    {line}")
        for c in s.commands:
            print(f"    $ {c.shell}")
        for c in s.suggested:
            print(f"    run: {c}")


# -- check-disk (the logic is hamon.lib.compliance_run; this only prints) -----------------
def cmd_check_disk(args: argparse.Namespace) -> int:
    from hamon.lib import compliance_run
    from hamon.lib.scsi.pr import ReservationType
    try:
        rtype = ReservationType.parse(args.type)
    except ValueError as err:
        raise CliError(f"--type: {err}", EXIT_USAGE) from None
    operands = [o for d in args.device for o in split_operands(d)]
    initiator = args.initiator or default_initiator(_node(args))
    reports = compliance_run.check_devices(
        operands, initiator=initiator, second_initiator=args.second_initiator,
        timeout=args.timeout, rtype=rtype, read_only=args.read_only, force=args.force)
    if args.json:
        _print_json([r.as_dict() for r in reports])
    else:
        print("\n".join(compliance_run.render(reports, rtype, read_only=args.read_only)))
    for r in reports:
        for problem in r.problems():
            print(f"hamon: {problem}", file=sys.stderr)
    if any(r.failed(args.read_only) for r in reports):
        return EXIT_FAILED
    return EXIT_REFUSED if any(r.refused for r in reports) else EXIT_OK


# -- the parser ----------------------------------------------------------------------------
TIMEOUT_MIN, TIMEOUT_MAX = 1, 300


def _seconds(text: str) -> float:
    """--timeout: a finite number of seconds in range (nan, inf, 0, 1e300 never reach a
    transport, where they would make a bound that is none)."""
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not TIMEOUT_MIN <= value <= TIMEOUT_MAX:
        raise argparse.ArgumentTypeError(f"{text!r}: seconds, {TIMEOUT_MIN} to "
                                         f"{TIMEOUT_MAX}")
    return value


def _iscsi_name(text: str) -> str:
    try:
        return check_iscsi_name(text, "initiator")
    except ValueError as err:
        raise argparse.ArgumentTypeError(str(err).removeprefix("initiator: ")) from None


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line (and exit 2), like every other error."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_USAGE, f"{self.prog}: {message} (see {self.prog} --help)\n")


DEVICE_HELP = ("device(s): /dev/sdX, /dev/mapper/NAME, /dev/dm-N, /dev/sddlmXX, "
               "iscsi://host[:port]/iqn/lun; comma lists ok")


def _common(top: bool) -> argparse.ArgumentParser:
    """The options every command takes, before or after its name.

    The copy given to the subcommands has SUPPRESS defaults: otherwise argparse lets a
    subcommand's default overwrite what was given before the command name
    (``hamon --json status`` would lose ``--json``).
    """
    def d(value: object) -> object:
        return value if top else argparse.SUPPRESS

    c = argparse.ArgumentParser(add_help=False)
    c.add_argument("--json", action="store_true", default=d(False),
                   help="machine-readable output")
    c.add_argument("--initiator", default=d(None), type=_iscsi_name,
                   help="iSCSI initiator name for iscsi:// devices (default: derived from "
                   "the node name)")
    c.add_argument("--node", default=d(None),
                   help="this node's cluster name (default: crm_node -n)")
    c.add_argument("--timeout", type=_seconds, default=d(10.0),
                   help=f"seconds per SCSI command, {TIMEOUT_MIN} to {TIMEOUT_MAX} "
                   "(default 10)")
    c.add_argument("--nodes", default=d(None),
                   help="comma list of node names, to name key owners")
    c.add_argument("--cluster-name", default=d(None),
                   help="the cluster name derived keys start with (default: corosync's "
                        "totem.cluster_name, else $HAMON_CLUSTER_NAME)")
    return c


def build_parser() -> argparse.ArgumentParser:
    common = _common(top=False)
    journal = argparse.ArgumentParser(add_help=False)
    journal.add_argument("--journal", metavar="FILE",
                         help="the journal (default $HAMON_JOURNAL, else "
                              "/var/lib/hamon/journal)")
    p = _Parser(prog="hamon", parents=[_common(top=True)],
                description="The administrator's command for hamon's shared disks: paths, "
                            "keys, reservations, status and recovery. See hamon(8).")
    sub = p.add_subparsers(dest="command", metavar="COMMAND", required=True,
                           parser_class=_Parser)

    def add(name: str, fn: Callable[[argparse.Namespace], int], help_: str,
            device: str | None = "+", parents: Sequence[argparse.ArgumentParser] = (),
            usage: str | None = None) -> argparse.ArgumentParser:
        sp = sub.add_parser(name, help=help_, parents=[common, *parents], description=help_,
                            usage=usage)
        if device:
            sp.add_argument("device", nargs=device, metavar="DEV", help=DEVICE_HELP)
        sp.set_defaults(func=fn)
        return sp

    add("paths", cmd_paths, "show each disk's paths and whether they answer")
    add("keys", cmd_keys, "show the registered reservation keys")
    r = add("reservation", cmd_reservation,
            "show who holds the persistent reservation, or cancel it "
            "(HA Monitor's 'canceling SCSI reservation for shared disk')",
            parents=[journal],
            usage="hamon reservation [show] DEV...\n"
                  "       hamon reservation cancel DEV... [--force] [--key KEY] "
                  "[--nodes-online NODES]")
    r.add_argument("--force", action="store_true",
                   help="cancel: even when a live node holds the reservation, or when "
                        "hamon cannot tell who is alive")
    r.add_argument("--key", help="cancel: this node's key, when not derived from its name")
    r.add_argument("--nodes-online", metavar="NODES",
                   help="cancel: treat exactly these nodes (comma list) as alive instead "
                        "of asking the cluster; a test hook, and for a cluster whose tools "
                        "do not answer")
    m = add("monscsiclr", cmd_monscsiclr, "release the reservation of every device of a "
            "server alias (HA Monitor's monscsiclr), with the safety of reservation cancel",
            device=None, parents=[journal])
    m.add_argument("alias", metavar="ALIAS", help="the server alias: a hamon_disk "
                   "resource's alias parameter (default its resource id), or alias= in the "
                   "disks file")
    m.add_argument("--force", action="store_true",
                   help="release even when a live node holds a device, or when hamon "
                        "cannot tell who is alive")
    m.add_argument("--key", help="this node's key, when not derived from its name")
    m.add_argument("--nodes-online", metavar="NODES",
                   help="treat exactly these nodes (comma list) as alive instead of asking "
                        "the cluster")
    m.add_argument("--disks-file", metavar="FILE",
                   help="disks file (default $HAMON_DISKS_FILE, else /etc/hamon/disks)")
    m.add_argument("--no-cib", action="store_true",
                   help="do not read the hamon_disk resources in the CIB")
    k = add("key", cmd_key, "show the reservation key hamon derives for a node",
            device=None)
    k.add_argument("node_name", nargs="?", metavar="NODE")
    k.add_argument("--key", help="an explicit key (checked and printed as hamon uses it)")
    s = add("status", cmd_status, "every configured shared disk: paths, keys, holder and "
            "the last journal entry", device="*", parents=[journal])
    s.add_argument("--disks-file", metavar="FILE",
                   help="disks file (default $HAMON_DISKS_FILE, else /etc/hamon/disks)")
    s.add_argument("--no-cib", action="store_true",
                   help="do not read the disks configured in the CIB")
    rc = add("recover", cmd_recover, "walk through HA Monitor's recovery procedure after "
             "a shared-disk failure, and fail back recovered paths", device="?",
             parents=[journal])
    rc.add_argument("--yes", action="store_true",
                    help="run the failback commands without asking (for scripts)")
    cd = add("check-disk", cmd_check_disk, "test every persistent-reservation operation "
             "hamon relies on, before go-live (docs/check-disk.md)")
    cd.add_argument("--read-only", action="store_true", help="only TEST UNIT READY, "
                    "INQUIRY and PERSISTENT RESERVE IN: change nothing")
    cd.add_argument("--force", action="store_true",
                    help="run even though the disk holds registrations")
    cd.add_argument("--type", default="WE-RO", help="reservation type to test "
                    "(default WE-RO, as the agents)")
    cd.add_argument("--second-initiator", metavar="NAME", help="iscsi://: the initiator "
                    "name playing the other node (default: this node's name + .check)")
    return p


#: Exit status when the reader of stdout went away (``hamon keys DEV | head``): 128 +
#: SIGPIPE, what a shell reports for ``cat``/``yes`` in the same place, so that a script
#: with ``set -o pipefail`` sees a cut output as it sees any other tool's.
EXIT_BROKEN_PIPE = 141


def _quiet_broken_pipe() -> int:
    """stdout's reader is gone: no message (there is nobody to read it; stderr may be
    the same pipe), and stdout pointed at /dev/null so that the interpreter's final
    flush does not raise again."""
    with contextlib.suppress(OSError):
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    return EXIT_BROKEN_PIPE


def _with_cluster_name(args: argparse.Namespace) -> int:
    """Run the command with ``--cluster-name`` as the name every key it derives starts
    with (hamon.lib.keys reads it from the environment), restored afterwards."""
    if not args.cluster_name:
        return int(args.func(args))
    before = os.environ.get(keymod.CLUSTER_ENV)
    os.environ[keymod.CLUSTER_ENV] = args.cluster_name
    try:
        return int(args.func(args))
    finally:
        if before is None:
            os.environ.pop(keymod.CLUSTER_ENV, None)
        else:
            os.environ[keymod.CLUSTER_ENV] = before


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
        rc = _with_cluster_name(args)
        sys.stdout.flush()  # a closed pipe shows here, inside the handler below
        return rc
    except BrokenPipeError:
        return _quiet_broken_pipe()
    except CliError as err:
        print(f"hamon: {err}", file=sys.stderr)
        return err.code
    except (DeviceError, config.ConfigError) as err:
        print(f"hamon: {err}", file=sys.stderr)
        return EXIT_USAGE
    except PathError as err:
        print(f"hamon: {err}", file=sys.stderr)
        return EXIT_FAILED
    except KeyboardInterrupt:
        return 130
    except Exception as err:  # the promise: one line, never a traceback
        if os.environ.get("HAMON_DEBUG"):
            raise
        print(f"hamon: internal error: {type(err).__name__}: {err} (HAMON_DEBUG=1 shows "
              "the traceback; please report it)", file=sys.stderr)
        return EXIT_FAILED


def monscsiclr_main(argv: Sequence[str] | None = None) -> int:
    """``monscsiclr ALIAS [options]``: HA Monitor's command name for ``hamon monscsiclr``,
    so HA Monitor runbooks run unchanged."""
    return main(["monscsiclr", *(sys.argv[1:] if argv is None else argv)])
