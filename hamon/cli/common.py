"""What every ``hamon`` command shares: exit codes, the one error type, the resolver
seam, the node, the operands, the journal, key owners' names, closing paths.

Errors are :class:`CliError` with the exit code they end with; :func:`hamon.cli.main`
turns one into a single ``hamon: ...`` line, never a traceback.
"""
from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence

from hamon.lib import cluster
from hamon.lib import reservation as rsv
from hamon.lib.devcheck import check_device
from hamon.lib.disk import DeviceError, Disk, run_parallel, split_operands
from hamon.lib.identity import default_initiator, local_node_name
from hamon.lib.journal import Journal, JournalError, Record
from hamon.lib.multipath.resolve import Resolver
from hamon.lib.recovery import observed

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_REFUSED = 0, 1, 2, 3

#: (initiator, timeout) -> the Resolver that turns operands into disks. ``main`` takes
#: one (``resolver_factory=``): the seam through which tests put an in-memory SAN behind
#: every command; the default asks the OS, multipathd, dlnkmgr and iSCSI targets.
ResolverFactory = Callable[[str, float], Resolver]


def default_resolver(initiator: str, timeout: float) -> Resolver:
    return Resolver(initiator=initiator, timeout=timeout)


class CliError(Exception):
    """A sentence for the administrator and the exit code it ends with."""

    def __init__(self, message: str, code: int = EXIT_FAILED) -> None:
        super().__init__(message)
        self.code = code


def node(args: argparse.Namespace) -> str:
    """This node's name: --node, else the cluster's (asked once per command)."""
    if not getattr(args, "node_name_cache", None):
        args.node_name_cache = args.node or local_node_name()
    return str(args.node_name_cache)


def resolver(args: argparse.Namespace, initiator: str | None = None) -> Resolver:
    """A resolver for this command (``initiator``: a configured one, for iscsi://)."""
    initiator = initiator or args.initiator or default_initiator(node(args))
    factory: ResolverFactory = getattr(args, "resolver_factory", None) or default_resolver
    return factory(initiator, args.timeout)


def operands(args: argparse.Namespace) -> list[str]:
    """The device operands, each one a possible shared disk (exit 2 naming it if not)."""
    ops = [o for d in args.device for o in split_operands(d)]
    if not ops:
        raise CliError("no device named; give /dev/sdX, /dev/mapper/NAME, ... or "
                       "iscsi:// URLs", EXIT_USAGE)
    for op in ops:
        try:
            check_device(op, "this node")
        except DeviceError as err:
            raise CliError(str(err), EXIT_USAGE) from None
    return ops


def disks(args: argparse.Namespace) -> list[Disk]:
    ops = operands(args)
    try:
        return resolver(args).resolve(ops)
    except DeviceError as err:
        raise CliError(str(err), EXIT_USAGE) from None


def status(args: argparse.Namespace, full: bool = True) -> tuple[list[Disk], rsv.Outcome]:
    """The named disks and their PR status (keys, reservation; ``full``: READ FULL
    STATUS too)."""
    ds = disks(args)
    return ds, rsv.read_status(ds, full=full)


def journal(args: argparse.Namespace) -> tuple[Journal, list[Record]]:
    j = Journal(args.journal)
    try:
        return j, j.records()
    except JournalError as err:  # a FIFO, a device, a directory, too large: wrong name
        raise CliError(f"{j.path}: cannot read the journal: {err.strerror}; give the "
                       "journal file (--journal FILE)", EXIT_USAGE) from None
    except OSError as err:
        raise CliError(f"{j.path}: cannot read the journal: {err.strerror}") from None


def records_for_names(args: argparse.Namespace) -> list[Record]:
    """The journal's records, to name nodes with only: an unreadable journal must not
    stand in the way of a cancel."""
    try:
        return journal(args)[1]
    except CliError:
        return []


def membership() -> cluster.Membership | None:
    """Best effort, for naming key owners: None when the cluster cannot say."""
    try:
        return cluster.membership(cluster.TIMEOUT)
    except cluster.ClusterUnavailable:
        return None


def known_nodes(args: argparse.Namespace, mem: cluster.Membership | None = None,
                records: Sequence[Record] = ()) -> list[str]:
    """Node names to name key owners with: --nodes, this node, the cluster's, every node
    the journal mentions (a dead node is often known only from there) and corosync.conf's
    nodelist (a node rebooted after a failure runs ``hamon recover`` before its cluster
    is up: the peer holding the disk is named from there)."""
    names = [*split_operands(args.nodes or ""), node(args)]
    names += [str(r.entry["node"]) for r in records
              if r.valid and r.entry and r.entry.get("node")]
    if mem is not None:
        names += list(mem.nodes)
    names += cluster.conf_nodes()
    return list(dict.fromkeys(n for n in names if n))


def look(ds: list[Disk], timeout: float) -> list[observed.DiskNow]:
    """Check every path and read keys and holder: the state of ``ds`` now."""
    run_parallel([lambda d=d: d.check_paths(timeout) for d in ds])
    out = rsv.read_status(ds)
    return [observed.disk_now(d, r) for d, r in zip(ds, out.results, strict=True)]


def close(ds: Sequence[Disk]) -> None:
    """Close every path, after naming on stderr each path that failed in this command
    while another path of its disk worked (hamon.lib.faults): the answer read through
    the other path is true, but the administrator must learn that a path ended a command
    abnormally. A disk none of whose paths worked is the command's own error line."""
    for d in ds:
        failed = d.failed_paths()
        for p in failed if len(failed) < len(d.paths) else ():
            print(f"hamon: {d.path_label(p)}: path failed ({p.code or 'IO-ERR'}): "
                  f"{p.reason}", file=sys.stderr)
        d.close()
