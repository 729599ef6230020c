"""``hamon check-disk``: every persistent-reservation operation hamon relies on, tested
before go-live (docs/check-disk.md). The logic is :mod:`hamon.lib.compliance`; this
only parses the type, prints and picks the exit code."""
from __future__ import annotations

import argparse
import sys

from hamon.cli import render
from hamon.cli.common import EXIT_FAILED, EXIT_OK, EXIT_REFUSED, EXIT_USAGE, CliError, node
from hamon.lib.disk import split_operands
from hamon.lib.identity import default_initiator


def cmd_check_disk(args: argparse.Namespace) -> int:
    from hamon.lib.compliance import check, report  # the check's own weight, only for this command
    from hamon.lib.scsi.pr import ReservationType
    try:
        rtype = ReservationType.parse(args.type)
    except ValueError as err:
        raise CliError(f"--type: {err}", EXIT_USAGE) from None
    operands = [o for d in args.device for o in split_operands(d)]
    initiator = args.initiator or default_initiator(node(args))
    reports = check.check_devices(
        operands, initiator=initiator, second_initiator=args.second_initiator,
        timeout=args.timeout, rtype=rtype, read_only=args.read_only, force=args.force)
    if args.json:
        render.print_json([r.as_dict() for r in reports])
    else:
        print("\n".join(report.render(reports, rtype, read_only=args.read_only)))
    for r in reports:
        for problem in r.problems():
            print(f"hamon: {problem}", file=sys.stderr)
    if any(r.failed(args.read_only) for r in reports):
        return EXIT_FAILED
    return EXIT_REFUSED if any(r.refused for r in reports) else EXIT_OK
