"""``hamon``'s command line: every command, its options, and the options they share.

Options shared by several commands are defined once, as argparse parent parsers: the
global ones (:func:`_common`), the journal, the configured disks (``--disks-file``,
``--no-cib``: status, monscsiclr) and the cancel safety (``--force``, ``--key``:
reservation cancel, monscsiclr). man/hamon.8 documents each of them
(tests/unit/test_cli_manpage.py keeps it so).
"""
from __future__ import annotations

import argparse
from collections.abc import Callable, Sequence
from typing import NoReturn

from hamon.cli.cancel import cmd_monscsiclr
from hamon.cli.check_disk import cmd_check_disk
from hamon.cli.common import EXIT_USAGE
from hamon.cli.recover import cmd_recover
from hamon.cli.show import cmd_key, cmd_keys, cmd_paths, cmd_reservation, cmd_status
from hamon.lib.identity import check_iscsi_name

TIMEOUT_MIN, TIMEOUT_MAX = 1, 300

DEVICE_HELP = ("device(s): /dev/sdX, /dev/mapper/NAME, /dev/dm-N, /dev/sddlmXX, "
               "iscsi://host[:port]/iqn/lun; comma lists ok")


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


def _group(*options: tuple[str, dict[str, object]]) -> argparse.ArgumentParser:
    """A parent parser with ``options``: options shared by several commands, once."""
    g = argparse.ArgumentParser(add_help=False)
    for name, kw in options:
        g.add_argument(name, **kw)  # type: ignore[arg-type]
    return g


JOURNAL = _group(("--journal", {"metavar": "FILE", "help": "the journal (default "
                                "$HAMON_JOURNAL, else /var/lib/hamon/journal)"}))
CONFIGURED = _group(
    ("--disks-file", {"metavar": "FILE",
                      "help": "disks file (default $HAMON_DISKS_FILE, else /etc/hamon/disks)"}),
    ("--no-cib", {"action": "store_true",
                  "help": "do not read the hamon_disk resources in the CIB"}))
CANCEL = _group(
    ("--force", {"action": "store_true",
                 "help": "cancel (release) even when a live node holds the reservation, or "
                         "when hamon cannot tell who is alive; on record in HAMN953-W and "
                         "the journal"}),
    ("--key", {"help": "this node's key, when not derived from its name"}))


def build_parser() -> argparse.ArgumentParser:
    common = _common(top=False)
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
    add("reservation", cmd_reservation,
        "show who holds the persistent reservation, or cancel it "
        "(HA Monitor's 'canceling SCSI reservation for shared disk')",
        parents=[JOURNAL, CANCEL],
        usage="hamon reservation [show] DEV...\n"
              "       hamon reservation cancel DEV... [--force] [--key KEY]")
    m = add("monscsiclr", cmd_monscsiclr, "release the reservation of every device of a "
            "server alias (HA Monitor's monscsiclr), with the safety of reservation cancel",
            device=None, parents=[JOURNAL, CANCEL, CONFIGURED])
    m.add_argument("alias", metavar="ALIAS", help="the server alias: a hamon_disk "
                   "resource's alias parameter (default its resource id), or alias= in the "
                   "disks file")
    k = add("key", cmd_key, "show the reservation key hamon derives for a node",
            device=None)
    k.add_argument("node_name", nargs="?", metavar="NODE")
    k.add_argument("--key", help="an explicit key (checked and printed as hamon uses it)")
    add("status", cmd_status, "every configured shared disk: paths, keys, holder and "
        "the last journal entry", device="*", parents=[JOURNAL, CONFIGURED])
    rc = add("recover", cmd_recover, "walk through HA Monitor's recovery procedure after "
             "a shared-disk failure, and fail back recovered paths", device="?",
             parents=[JOURNAL])
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
