"""``hamon recover``: HA Monitor's recovery procedure after a shared-disk failure
(manual §7.5.8), from the journal the agents keep and the disks as they are now.

What applies when is :func:`hamon.lib.recovery.plan.build`'s (pure); this module gathers its
inputs, prints the plan and runs the failback commands only when the administrator
confirms (or gave ``--yes``). See docs/recovery.md.
"""
from __future__ import annotations

import argparse
import shlex
import sys

from hamon.cli import render
from hamon.cli.common import (
    EXIT_FAILED,
    EXIT_OK,
    EXIT_USAGE,
    CliError,
    close,
    journal,
    known_nodes,
    look,
    membership,
    resolver,
)
from hamon.lib import failback
from hamon.lib.disk import DeviceError, split_operands
from hamon.lib.journal import Journal
from hamon.lib.multipath import hdlm
from hamon.lib.recovery import kernel_log
from hamon.lib.recovery.observed import DiskNow
from hamon.lib.recovery.plan import Plan, build
from hamon.lib.recovery.selection import (
    Selection,
    concerns,
    entry_disks,
    failed_paths,
    operands_of,
    select,
)


def _resolve_now(args: argparse.Namespace, operands: list[str],
                 kind: str | None) -> list[DiskNow]:
    try:
        ds = resolver(args).resolve(operands)
    except DeviceError as err:
        return [DiskNow(operands[0], kind, error=str(err))]
    try:
        return look(ds, args.timeout)
    finally:
        close(ds)


def cmd_recover(args: argparse.Namespace) -> int:
    j, records = journal(args)
    device = args.device
    now: list[DiskNow] = []
    wwid = None
    if device is not None:
        try:
            ds = resolver(args).resolve(split_operands(device))
        except DeviceError as err:
            if select(records, device).entry is None:
                raise CliError(str(err), EXIT_USAGE) from None
            ds = []
            now = [DiskNow(device, None, error=str(err))]
        if ds:
            wwid = ds[0].wwid
            try:
                now = look(ds, args.timeout)
            finally:
                close(ds)
    sel = select(records, device, wwid)
    if sel.entry is None and device is None:
        return _nothing_recorded(args, j, sel)
    if sel.entry is not None and device is None:
        kinds = {str(d.get("disk")): d.get("kind") for d in entry_disks(sel.entry)}
        for ops in operands_of(sel.entry):
            now += _resolve_now(args, ops, kinds.get(ops[0]))
    elif sel.entry is not None and now and now[0].kind is None:
        kinds = [d.get("kind") for d in entry_disks(sel.entry)
                 if concerns({"disks": [d]}, device, wwid)]
        now[0] = DiskNow(now[0].disk, kinds[0] if kinds else None,
                                  error=now[0].error)
    failed_devs = {str(p.get("path")) for d in entry_disks(sel.entry or {})
                   for p in failed_paths(d)}
    failed_devs |= {p.name for d in now for p in d.paths if not p.answers}
    kernel = kernel_log.kernel_messages(sorted(failed_devs),
                                      (sel.entry or {}).get("time"))
    nodes = known_nodes(args, membership(), records)
    plan = build(sel, now, device=device, nodes=nodes, kernel=kernel,
                 dlnkmgr=hdlm.dlnkmgr() or "dlnkmgr", cluster=args.cluster_name)
    return _present(args, plan)


def _nothing_recorded(args: argparse.Namespace, j: Journal,
                      sel: Selection) -> int:
    warnings = [f"journal line {r.line}: {r.problem}; not trusted" for r in sel.torn]
    if args.json:
        render.print_json({"device": None, "entry": None, "journal": j.path,
                           "warnings": warnings, "steps": []})
        return EXIT_OK
    for w in warnings:
        print(f"warning: {w}")
    print(f"No disk failure is recorded in {j.path}: nothing hamon knows to "
          "recover. To walk through the procedure for one disk: hamon recover DEV")
    return EXIT_OK


def _confirmed(count: int) -> bool:
    """Ask on the terminal; no terminal is no."""
    if not sys.stdin.isatty():
        print("Failback commands not run: no terminal to confirm on. Run them yourself, "
              "or rerun with --yes.")
        return False
    try:
        answer = input(f"Run the {count} failback command(s) of step 3 now? [y/N] ")
    except EOFError:
        answer = ""
    if answer.strip().lower() in ("y", "yes"):
        return True
    print("Not run.")
    return False


def _present(args: argparse.Namespace, plan: Plan) -> int:
    commands = plan.failback_commands
    results: list[failback.Result] = []
    run_note = ""
    if args.json:
        if args.yes:
            results = failback.run(commands)
        else:
            run_note = "not run: give --yes to run the failback commands"
        render.print_json({**plan.as_dict(), "journal": args.journal or Journal().path,
                           "failback": {"run": bool(results), "note": run_note,
                                        "results": [r.as_dict() for r in results]}})
        return EXIT_FAILED if any(not r.ok for r in results) else EXIT_OK
    render.plan(plan)
    if not commands:
        return EXIT_OK
    print()
    if not (args.yes or _confirmed(len(commands))):
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
