"""The commands that only read: ``paths``, ``keys``, ``reservation [show]``, ``key``,
``status``. None of them changes a disk: PR IN, TEST UNIT READY and INQUIRY only."""
from __future__ import annotations

import argparse
from typing import Any

from hamon.cli import render
from hamon.cli.cancel import cmd_cancel
from hamon.cli.common import (
    EXIT_FAILED,
    EXIT_OK,
    EXIT_USAGE,
    CliError,
    close,
    disks,
    journal,
    known_nodes,
    look,
    membership,
    resolver,
    status,
)
from hamon.lib import cluster, config
from hamon.lib import keys as keymod
from hamon.lib.disk import DeviceError, Disk, run_parallel, split_operands
from hamon.lib.identity import local_node_name
from hamon.lib.recovery.observed import describe_key
from hamon.lib.recovery.selection import last_entry, summarize
from hamon.lib.scsi.pr import format_key


def cmd_paths(args: argparse.Namespace) -> int:
    ds = disks(args)
    run_parallel([lambda d=d: d.check_paths(args.timeout) for d in ds])
    if args.json:
        render.print_json([d.as_dict() for d in ds])
    else:
        render.paths(ds)
    close(ds)
    return EXIT_OK if all(d.up_paths() for d in ds) else EXIT_FAILED


def cmd_keys(args: argparse.Namespace) -> int:
    ds, out = status(args)
    render.registered_keys(out.results, split_operands(args.nodes or ""), args.json,
                           args.cluster_name)
    close(ds)
    return EXIT_OK if out.ok else EXIT_FAILED


def cmd_reservation(args: argparse.Namespace) -> int:
    """``hamon reservation [show] DEV...`` or ``hamon reservation cancel DEV...``."""
    devices = list(args.device)
    verb = devices.pop(0) if devices[0] in ("show", "cancel") else "show"
    if not devices:
        raise CliError(f"reservation {verb}: name at least one device", EXIT_USAGE)
    if verb == "show" and (args.force or args.key):
        raise CliError("--force and --key belong to 'hamon reservation cancel DEV'",
                       EXIT_USAGE)
    args.device = devices
    return cmd_cancel(args) if verb == "cancel" else show_reservation(args)


def show_reservation(args: argparse.Namespace) -> int:
    ds, out = status(args)
    nodes = split_operands(args.nodes or "")
    rows = []
    for r in out.results:
        row: dict[str, Any] = {"disk": r.disk.name, "ok": r.ok,
                               "error": str(r.error) if r.error else None}
        if r.ok:
            res = r.value.reservation
            row.update(held=res.held, type=res.type.short if res.type else None,
                       key=res.key,
                       holder=keymod.owner_of(res.key, nodes, args.cluster_name) if res.key
                       else None)
        rows.append(row)
    render.reservations(rows, args.json)
    close(ds)
    return EXIT_OK if out.ok else EXIT_FAILED


def cmd_key(args: argparse.Namespace) -> int:
    """The key of a node: the cluster part and the node part, and the old key."""
    node = args.node_name or args.node or local_node_name()
    try:
        if args.key:
            k = keymod.resolve_key(args.key, node, args.cluster_name)
            if args.json:
                render.print_json({"node": node, "key": format_key(k), "explicit": True})
            else:
                print(f"{node}: {format_key(k)} (explicit)")
            return EXIT_OK
        p = keymod.parts(node, args.cluster_name)
        old = keymod.legacy_key(node)
    except ValueError as err:
        raise CliError(str(err), EXIT_USAGE) from None
    if args.json:
        render.print_json({"node": node, "key": format_key(p.key), "cluster": p.cluster,
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


# -- status --------------------------------------------------------------------------------
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
    j, records = journal(args)
    ds: list[Disk] = []
    origins: dict[int, str] = {}
    errors: list[dict[str, Any]] = []
    seen_wwids: set[str] = set()
    for ops, origin, initiator in groups:
        try:
            found = resolver(args, initiator).resolve(ops)
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
            ds.append(d)
    try:
        now = look(ds, args.timeout)
    finally:
        close(ds)
    nodes = known_nodes(args, membership(), records)
    rows = []
    for d, n in zip(ds, now, strict=True):
        last = last_entry(records, d.name, d.wwid)
        rows.append({**n.as_dict(), "origin": origins[id(d)],
                     "paths_up": sum(p.answers for p in n.paths),
                     "paths_total": len(n.paths),
                     "holder": describe_key(n.reservation.key, nodes,
                                            cluster=args.cluster_name)
                     if n.reservation and n.reservation.held else None,
                     "last_entry": last,
                     "last_entry_summary": summarize(last) if last else None})
    torn = [{"line": r.line, "problem": r.problem} for r in records if not r.valid]
    ok = not errors and all(r["paths_up"] == r["paths_total"] and r["reservation"]
                            for r in rows)
    if args.json:
        render.print_json({"disks": rows, "unresolved": errors, "notes": notes,
                           "journal": {"path": j.path, "torn": torn}})
    else:
        render.status(rows, now, nodes, errors, j.path, torn, notes, args.cluster_name)
    return EXIT_OK if ok else EXIT_FAILED
