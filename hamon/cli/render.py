"""How ``hamon`` prints: for people by default, JSON with ``--json``.

Commands hand over plain data (keys as integers, rows as dicts); only here is a key
formatted (``0x...``) or described with its owner (:func:`observed.describe_key`).
"""
from __future__ import annotations

import json
import shlex
import sys
import textwrap
from collections.abc import Mapping, Sequence
from typing import Any

from hamon.lib import reservation as rsv
from hamon.lib.disk import Disk
from hamon.lib.recovery import observed, steps
from hamon.lib.recovery import plan as recovery_plan
from hamon.lib.scsi.pr import format_key


def print_json(obj: object) -> None:
    json.dump(obj, sys.stdout, indent=2, default=str)
    sys.stdout.write("\n")


def wrap(text: str, indent: str = "  ") -> str:
    return textwrap.fill(text, width=92, initial_indent=indent, subsequent_indent=indent)


def key(k: int | None) -> str | None:
    """A key as hamon prints it (``0x...``); None stays None (JSON null)."""
    return format_key(k) if k is not None else None


def keys(ks: Sequence[int]) -> list[str]:
    """Registered keys as printed, each once, in the target's order."""
    return [format_key(k) for k in dict.fromkeys(ks)]


# -- paths / keys / reservation --------------------------------------------------------------
def paths(disks: Sequence[Disk]) -> None:
    for d in disks:
        up = len(d.up_paths())
        wwid = f", wwid {d.wwid}" if d.wwid else ""
        print(f"{d.name}  ({d.kind}{wwid})  {up}/{len(d.paths)} paths up")
        for p in d.paths:
            extra = "; ".join(x for x in (p.reason, p.os_state) if x)
            print(f"  {p.name:<40} {p.state:<7} {extra}".rstrip())


def registered_keys(results: Sequence[rsv.DiskResult], nodes: Sequence[str],
                    as_json: bool, cluster: str | None = None) -> None:
    if as_json:
        print_json([{**r.as_dict(), "generation": r.value.generation if r.ok else None,
                     "keys": [format_key(k) for k in r.value.keys] if r.ok else None}
                    for r in results])
        return
    for r in results:
        if not r.ok:
            print(f"{r.disk.name}: cannot read keys: {r.error}")
            continue
        st: rsv.LunStatus = r.value
        print(f"{r.disk.name}: PR generation 0x{st.generation:x}, "
              f"{len(st.keys)} registered key(s)")
        if st.full:
            for e in st.full.entries:
                holder = "  holder" if e.holder else ""
                print(f"  {observed.describe_key(e.key, nodes, cluster=cluster)}  "
                      f"{e.initiator or '?'}  port {e.relative_target_port}{holder}")
        else:
            for k in st.keys:
                print(f"  {observed.describe_key(k, nodes, cluster=cluster)}")


def reservations(rows: Sequence[Mapping[str, Any]], as_json: bool) -> None:
    """Rows: disk, ok, error, held, type, key (int), holder (node or None)."""
    if as_json:
        print_json([{**row, "key": key(row.get("key"))} if row["ok"] else row
                    for row in rows])
        return
    for row in rows:
        if not row["ok"]:
            print(f"{row['disk']}: cannot read the reservation: {row['error']}")
        elif not row["held"]:
            print(f"{row['disk']}: no persistent reservation")
        else:
            who = f" ({row['holder']})" if row["holder"] else ""
            print(f"{row['disk']}: reserved {row['type']} by key {key(row['key'])}{who}")


# -- reservation cancel -------------------------------------------------------------------
def cancelled(rows: Sequence[Mapping[str, Any]], overrides: Sequence[str],
              journal_error: str | None, as_json: bool) -> None:
    """Rows: disk, wwid, holder (int), holder_desc, holder_node, type, keys_before
    (ints), result, ok, via, reregistered, dropped_live_registrations."""
    if as_json:
        out = [{k: v for k, v in row.items() if k != "holder_desc"} for row in rows]
        for row in out:
            row.update(holder=key(row["holder"]), keys_before=keys(row["keys_before"]))
        print_json({"disks": out, "forced": bool(overrides), "overrides": list(overrides),
                    "journal_error": journal_error})
        return
    for row in rows:
        if row["result"] == "nothing to cancel":
            print(f"{row['disk']}: no reservation is held: nothing to cancel")
        elif row["ok"]:
            print(f"{row['disk']}: reservation cancelled (was held by "
                  f"{row['holder_desc']} {row['type']}; cleared through {row['via']})")
            for n in row["dropped_live_registrations"]:
                print(f"  note: the registration of live node {n} was cleared too; "
                      f"restore it with: stonith_admin --unfence {shlex.quote(n)}")
        else:
            print(f"{row['disk']}: {row['result']}")


def released(alias: str, rows: Sequence[Mapping[str, Any]], result: str,
             overrides: Sequence[str], journal_error: str | None) -> None:
    """monscsiclr's JSON (its text is printed device by device, as it goes)."""
    out = []
    for row in rows:
        row = dict(row)
        if "holder" in row:
            row["holder"] = key(row["holder"]) if row["holder"] else None
        if "keys_before" in row:
            row["keys_before"] = keys(row["keys_before"])
        out.append(row)
    print_json({"alias": alias, "devices": out, "result": result,
                "overrides": list(overrides), "journal_error": journal_error})


# -- status --------------------------------------------------------------------------------
def status(rows: Sequence[Mapping[str, Any]], nows: Sequence[observed.DiskNow],
           nodes: Sequence[str], errors: Sequence[Mapping[str, Any]],
           journal_path: str, torn: Sequence[Mapping[str, Any]],
           notes: Sequence[str], cluster: str | None = None) -> None:
    """``hamon status`` for people; ``nows`` are the rows' disks as read (keys as ints)."""
    for row, now in zip(rows, nows, strict=True):
        wwid = f", wwid {row['wwid']}" if row["wwid"] else ""
        print(f"{row['disk']}  ({row['kind']}{wwid})  {row['paths_up']}/"
              f"{row['paths_total']} paths up  [{row['origin']}]")
        for p in now.paths:
            extra = p.reason if p.os_state and p.os_state in p.reason else \
                "; ".join(x for x in (p.reason, p.os_state) if x)
            print(f"  path    {p.name:<40} {p.state:<7} {extra}".rstrip())
        res = now.reservation
        if res is None:
            print(f"  keys    cannot be read: {now.reservation_error}")
        else:
            counts: dict[int, int] = {}
            for k in res.keys:
                counts[k] = counts.get(k, 0) + 1
            described = ", ".join(observed.describe_key(k, nodes, cluster=cluster)
                                  + (f" x{c}" if c > 1 else "") for k, c in counts.items())
            print(f"  keys    {described or 'none registered'}")
            print(f"  holder  {row['holder'] + ', ' + str(res.type) if res.held else 'none'}")
        print(f"  journal {row['last_entry_summary'] or 'no entry'}")
    for e in errors:
        print(f"{e['disk']}  [{e['origin']}]: cannot be resolved: {e['error']}")
    if torn:
        lines = ", ".join(str(t["line"]) for t in torn)
        print(f"journal {journal_path}: {len(torn)} torn or damaged line(s) ({lines}), "
              "not trusted")
    for note in notes:
        print(f"note: {note}")


# -- recover -------------------------------------------------------------------------------
LABELS = {steps.Applies.YES: "TO DO", steps.Applies.NO: "not applicable",
          steps.Applies.DONE: "done", steps.Applies.UNKNOWN: "CHECK"}


def plan(p: recovery_plan.Plan) -> None:
    target = p.device or ", ".join(d.disk for d in p.disks) or "-"
    if p.entry is not None:
        print(f"Recovery of {target}: failure recorded {p.entry.get('time', '?')} "
              f"(journal line {p.entry_line}), termination: {p.termination}")
    else:
        print(f"Recovery of {target}: no failure recorded for it in the journal")
    for w in p.warnings:
        print(wrap(f"warning: {w}", ""))
    for s in p.steps:
        print()
        print(f"Step {s.number}. {s.title}  [{LABELS[s.applies]}]")
        print(wrap(s.why))
        for line in s.details:
            print(f"    {line}")
        for c in s.commands:
            print(f"    $ {c.shell}")
        for c in s.suggested:
            print(f"    run: {c}")
