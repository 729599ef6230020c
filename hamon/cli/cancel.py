"""``hamon reservation cancel`` and ``hamon monscsiclr``: HA Monitor's "canceling SCSI
reservation for shared disk" (§7.5.12) and its ``monscsiclr`` (§9.21).

The decision (who is alive, when to refuse, what CLEAR drops) is
:mod:`hamon.lib.cancel`'s, over facts gathered here: the disks' PR IN, the cluster's
membership, the hamon_disk resources active here, the configured node_keys. This module
gathers, acts (PERSISTENT RESERVE OUT CLEAR, registering this node again), records
(HAMN953-W, the journal) and prints.
"""
from __future__ import annotations

import argparse
import dataclasses
import sys
from typing import Any

from hamon.cli import render
from hamon.cli.common import (
    EXIT_FAILED,
    EXIT_OK,
    EXIT_REFUSED,
    EXIT_USAGE,
    CliError,
    close,
    known_nodes,
    node,
    records_for_names,
    resolver,
    status,
)
from hamon.lib import cancel, cluster, config
from hamon.lib import keys as keymod
from hamon.lib import reservation as rsv
from hamon.lib.devcheck import check_device
from hamon.lib.disk import DeviceError, Disk, run_parallel
from hamon.lib.journal import Journal
from hamon.lib.messages import emit

RERUN = "check crm_mon, then rerun with --force if the holder is really gone"


def _my_key(args: argparse.Namespace) -> int:
    try:
        return keymod.resolve_key(args.key, node(args), args.cluster_name)
    except ValueError as err:
        raise CliError(str(err), EXIT_USAGE) from None


def _facts(args: argparse.Namespace, my_key: int,
           explicit: dict[int, str] | None = None) -> cancel.Facts:
    """Who is alive and the names to describe keys with (what runs here is asked later,
    only when a disk needs it: :func:`_with_here`)."""
    mem, unknown_why = cancel.ask_membership(cluster.TIMEOUT)
    online = mem.online() if mem is not None else set()
    nodes = known_nodes(args, mem, records_for_names(args))
    return cancel.Facts(node(args), my_key, frozenset(online), unknown_why,
                        explicit=explicit or {}, nodes=tuple(nodes), force=args.force,
                        cluster=args.cluster_name)


def _with_here(facts: cancel.Facts, holders: list[cancel.Holder],
               asked: list[bool]) -> cancel.Facts:
    """The facts with the hamon_disk resources active here, asked once, when needed."""
    if asked or not cancel.needs_here(facts, holders):
        return facts
    asked.append(True)
    active, why = cancel.ask_here(facts.me, cluster.TIMEOUT)
    return dataclasses.replace(facts, active_here=active, here_why=why)


def _emit_cancelled(disk: str, holder: str, me: str, overrides: tuple[str, ...]) -> None:
    emit("HAMN953", device=disk, holder=holder,
         by=f"{me} ({', '.join(overrides)})" if overrides else me)


# -- reservation cancel ------------------------------------------------------------------
def cmd_cancel(args: argparse.Namespace) -> int:
    """HA Monitor's "canceling SCSI reservation for shared disk" (§7.5.12), guarded: one
    refused disk refuses the command, and nothing is changed."""
    my_key = _my_key(args)
    ds, out = status(args, full=False)
    try:
        unread = out.failed()
        if unread:
            r = unread[0]
            raise CliError(f"{r.disk.name}: cannot read the reservation through any path "
                           f"({r.error or r.detail}); nothing was changed")
        holders = [cancel.Holder(r.disk.name, r.value.reservation.held,
                                 r.value.reservation.key, tuple(r.value.keys))
                   for r in out.results]
        explicit = config.configured_node_keys(cluster.TIMEOUT) \
            if cancel.needs_node_keys(holders, args.cluster_name) else {}
        facts = _with_here(_facts(args, my_key, explicit), holders, [])
        decision = cancel.decide(facts, holders)
        if decision.refused:
            raise CliError("refused: " + "; ".join(decision.refusals) + ". Nothing was "
                           f"changed; {RERUN}", EXIT_REFUSED)
        return _do_cancel(args, facts, decision,
                          [(r.disk, r.value) for r in out.results])
    finally:
        close(ds)


def _do_cancel(args: argparse.Namespace, facts: cancel.Facts, decision: cancel.Decision,
               plan: list[tuple[Disk, rsv.LunStatus]]) -> int:
    overrides = decision.overrides
    rows: list[dict[str, Any]] = []
    failed = False
    for (disk, st), dd in zip(plan, decision.disks, strict=True):
        res = st.reservation
        row: dict[str, Any] = {"disk": disk.name, "wwid": disk.wwid, "holder": res.key,
                               "holder_desc": dd.holder,
                               "holder_node": (facts.explicit.get(res.key)
                                               or keymod.owner_of(res.key, list(facts.nodes),
                                                                  facts.cluster))
                               if res.key else None,
                               "type": res.type.short if res.type else None,
                               "keys_before": list(st.keys)}
        if dd.action is cancel.Action.NOTHING:
            row.update(result="nothing to cancel", ok=True)
            rows.append(row)
            continue
        r = rsv.clear([disk], facts.my_key).results[0]
        if not r.ok:
            failed = True
            row.update(result=f"not cancelled: {r.error or r.detail}", ok=False)
            rows.append(row)
            continue
        row.update(result="cancelled", ok=True, via=r.paths[0].path if r.paths else "?")
        if dd.reregister:  # CLEAR took this node's own registration too: restore it
            row["reregistered"] = rsv.register([disk], facts.my_key).ok
        row["dropped_live_registrations"] = [
            n for n in dd.live_registrants
            if not (n == facts.me and row.get("reregistered"))]
        _emit_cancelled(disk.name, dd.holder, facts.me, overrides)
        rows.append(row)
    cancelled = [r for r in rows if r.get("result") == "cancelled"]
    journal_error = None
    if cancelled:
        entries = [{k: v for k, v in r.items() if k != "holder_desc"} for r in cancelled]
        for e in entries:
            e.update(holder=render.key(e["holder"]), keys_before=render.keys(e["keys_before"]))
        try:
            Journal(args.journal).append("cancel", node=facts.me, forced=bool(overrides),
                                         overrides=list(overrides), disks=entries)
        except OSError as err:
            journal_error = f"the journal could not be updated: {err.strerror}"
    render.cancelled(rows, overrides, journal_error, args.json)
    if journal_error:
        raise CliError(f"reservation cancelled, but {journal_error}")
    return EXIT_FAILED if failed else EXIT_OK


# -- monscsiclr ---------------------------------------------------------------------------
def _alias_disks(args: argparse.Namespace, groups: tuple[tuple[tuple[str, ...], str,
                                                               str | None], ...]
                 ) -> list[tuple[str, Disk | None, str]]:
    """(name, disk or None, why not) for every device of the alias: a group that cannot
    be resolved as a whole is resolved operand by operand, so one missing device does
    not hide the others (monscsiclr carries on past a failed device)."""
    out: list[tuple[str, Disk | None, str]] = []
    for ops, _, ini in groups:
        res = resolver(args, ini)
        try:
            out.extend((d.name, d, "") for d in res.resolve(list(ops)))
            continue
        except DeviceError:
            pass
        for op in ops:
            try:
                check_device(op, "this node")
                out.extend((d.name, d, "") for d in res.resolve([op]))
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
    my_key = _my_key(args)
    try:
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
    facts = _facts(args, my_key, config.configured_node_keys(cluster.TIMEOUT))
    # monscsiclr decides device by device: --force is on record for every device
    overrides: tuple[str, ...] = ("--force",) if args.force else ()
    asked: list[bool] = []
    rows: list[dict[str, Any]] = []
    items = _alias_disks(args, found.groups)
    try:
        for name, disk, why_not in items:
            row: dict[str, Any] = {"disk": name, "released": False}
            rows.append(row)
            if disk is None:
                row["result"] = why_not
            else:
                facts, row["result"] = _release_one(args, disk, facts, asked, overrides,
                                                    row)
            if not args.json:
                print(f"CLEARED {name}" if row["released"] else
                      f"FAILED {name}: {row['result']}", flush=True)
        cleared = [r for r in rows if r.get("how") == "cleared"]
        journal_error = None
        if cleared:
            entries = [{**r, "holder": render.key(r["holder"]),
                        "keys_before": render.keys(r["keys_before"])} for r in cleared]
            try:
                Journal(args.journal).append("cancel", node=facts.me, command="monscsiclr",
                                             alias=alias, forced=bool(overrides),
                                             overrides=list(overrides), disks=entries)
            except OSError as err:
                journal_error = f"the journal could not be updated: {err.strerror}"
        result = cancel.verdict([r["released"] for r in rows])
    finally:
        close([d for _, d, _ in items if d is not None])
    if args.json:
        render.released(alias, rows, result, overrides, journal_error)
    say("KAMN108", command="monscsiclr", result=result, alias=alias)
    if journal_error:
        print(f"hamon: released, but {journal_error}", file=sys.stderr)
        return EXIT_FAILED
    return EXIT_OK if result == "SUCCESS" else EXIT_FAILED


def _release_one(args: argparse.Namespace, disk: Disk, facts: cancel.Facts,
                 asked: list[bool], overrides: tuple[str, ...], row: dict[str, Any]
                 ) -> tuple[cancel.Facts, str]:
    """Release one device as ``reservation cancel`` does; fills ``row``; the facts (with
    what runs here, once asked) and the result text. Released means: read back
    afterwards, no reservation is held."""
    run_parallel([lambda: disk.check_paths(args.timeout)])
    r = rsv.read_status([disk]).results[0]
    if not r.ok:
        return facts, f"cannot read the reservation through any path ({r.error or r.detail})"
    st: rsv.LunStatus = r.value
    res = st.reservation
    row.update(holder=res.key if res.key else None, keys_before=list(st.keys))
    h = cancel.Holder(disk.name, res.held, res.key, tuple(st.keys))
    facts = _with_here(facts, [h], asked)
    dd = cancel.judge(facts, h)
    if dd.action is cancel.Action.NOTHING:
        row.update(released=True, how="nothing held")
        return facts, "no reservation was held"
    if dd.action is cancel.Action.REFUSE:
        return facts, f"refused: {dd.refusal}; {RERUN}"
    out = rsv.clear([disk], facts.my_key).results[0]
    if not out.ok:
        return facts, f"not cleared: {out.error or out.detail}"
    if dd.reregister:  # CLEAR took this node's own registration too: restore it
        row["reregistered"] = rsv.register([disk], facts.my_key).ok
    after = rsv.read_status([disk]).results[0]
    if not after.ok:
        return facts, f"cleared, but the reservation cannot be read back ({after.error})"
    if after.value.reservation.held:
        return facts, (f"still held by {render.key(after.value.reservation.key or 0)} "
                       "after the CLEAR")
    row.update(released=True, how="cleared", via=out.paths[0].path if out.paths else "?")
    _emit_cancelled(disk.name, dd.holder, facts.me, overrides)
    return facts, f"released (was held by {dd.holder})"
