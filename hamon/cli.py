"""``hamon``: the administrator's command for shared disks, keys and reservations.

Every subcommand takes devices in any form the agents accept (``/dev/sdX``,
``/dev/mapper/NAME``, ``/dev/dm-N``, ``/dev/sddlmXX``, ``iscsi://`` URLs), alone or as a
comma list, prints for people by default and JSON with ``--json``. Bad input gives one
line naming the device and the fix, exit 2; a target that fails gives exit 1. Never a
traceback: an administrator at 3 a.m. needs the sentence, not the stack.
"""
from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Sequence
from typing import Any

from hamon.lib import keys as keymod
from hamon.lib import reservation as rsv
from hamon.lib.disk import DeviceError, Disk, Resolver, split_operands
from hamon.lib.identity import default_initiator, local_node_name
from hamon.lib.scsi.pr import format_key
from hamon.lib.transport.base import PathError

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2


class CliError(Exception):
    def __init__(self, message: str, code: int = EXIT_FAILED) -> None:
        super().__init__(message)
        self.code = code


def _resolver(args: argparse.Namespace) -> Resolver:
    initiator = args.initiator or default_initiator(args.node or local_node_name())
    return Resolver(initiator=initiator, timeout=args.timeout)


def _disks(args: argparse.Namespace) -> list[Disk]:
    operands = [o for d in args.device for o in split_operands(d)]
    try:
        return _resolver(args).resolve(operands)
    except DeviceError as err:
        raise CliError(str(err), EXIT_USAGE) from None


def _owner(k: int, nodes: list[str]) -> str:
    who = keymod.owner_of(k, nodes)
    if who:
        return f" ({who})"
    return " (hamon key)" if keymod.is_hamon_key(k) else ""


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


def _status(args: argparse.Namespace) -> tuple[list[Disk], rsv.Outcome]:
    disks = _disks(args)
    return disks, rsv.read_status(disks, full=True)


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
    node = args.node_name or args.node or local_node_name()
    try:
        k = keymod.resolve_key(args.key, node)
    except ValueError as err:
        raise CliError(str(err), EXIT_USAGE) from None
    if args.json:
        _print_json({"node": node, "key": format_key(k)})
    else:
        print(f"{node}: {format_key(k)}")
    return EXIT_OK


def _close(disks: list[Disk]) -> None:
    for d in disks:
        d.close()


def _print_json(obj: object) -> None:
    json.dump(obj, sys.stdout, indent=2, default=str)
    sys.stdout.write("\n")


def build_parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--json", action="store_true", help="machine-readable output")
    common.add_argument("--initiator", help="iSCSI initiator name for iscsi:// devices "
                        "(default: derived from the node name)")
    common.add_argument("--node", help="this node's cluster name (default: crm_node -n)")
    common.add_argument("--timeout", type=float, default=10.0,
                        help="seconds per SCSI command (default 10)")
    common.add_argument("--nodes", help="comma list of node names, to name key owners")
    p = argparse.ArgumentParser(prog="hamon", description=__doc__.split("\n\n")[0],
                                parents=[common])
    sub = p.add_subparsers(dest="command", metavar="COMMAND", required=True)

    def add(name: str, fn: Callable[[argparse.Namespace], int], help_: str,
            device: bool = True) -> argparse.ArgumentParser:
        sp = sub.add_parser(name, help=help_, parents=[common], description=help_)
        if device:
            sp.add_argument("device", nargs="+", metavar="DEV",
                            help="device(s): /dev/sdX, /dev/mapper/NAME, /dev/dm-N, "
                                 "/dev/sddlmXX, iscsi://host[:port]/iqn/lun; comma lists ok")
        sp.set_defaults(func=fn)
        return sp

    add("paths", cmd_paths, "show each disk's paths and whether they answer")
    add("keys", cmd_keys, "show the registered reservation keys")
    add("reservation", cmd_reservation, "show who holds the persistent reservation")
    k = add("key", cmd_key, "show the reservation key hamon derives for a node",
            device=False)
    k.add_argument("node_name", nargs="?", metavar="NODE")
    k.add_argument("--key", help="an explicit key (checked and printed as hamon uses it)")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except CliError as err:
        print(f"hamon: {err}", file=sys.stderr)
        return err.code
    except PathError as err:
        print(f"hamon: {err}", file=sys.stderr)
        return EXIT_FAILED
    except KeyboardInterrupt:
        return 130
