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

The rooms: :mod:`.parser` (the command line), :mod:`.show` (paths, keys, reservation,
key, status), :mod:`.cancel` (reservation cancel, monscsiclr; the policy is
:mod:`hamon.lib.cancel`), :mod:`.recover`, :mod:`.check_disk`, :mod:`.render` (text and
JSON), :mod:`.common` (errors, exit codes, the resolver seam, the journal).
"""
from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Sequence

from hamon.cli.common import (
    EXIT_FAILED,
    EXIT_OK,
    EXIT_REFUSED,
    EXIT_USAGE,
    CliError,
    ResolverFactory,
    default_resolver,
)
from hamon.cli.parser import build_parser
from hamon.lib import config, defaults
from hamon.lib.disk import DeviceError
from hamon.lib.transport.base import PathError

__all__ = ["EXIT_BROKEN_PIPE", "EXIT_FAILED", "EXIT_OK", "EXIT_REFUSED", "EXIT_USAGE",
           "CliError", "ResolverFactory", "build_parser", "main", "monscsiclr_main"]

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


def main(argv: Sequence[str] | None = None, *,
         resolver_factory: ResolverFactory | None = None) -> int:
    """Run ``hamon ARGV``; the exit status.

    ``resolver_factory`` (initiator, timeout) -> Resolver turns device operands into
    disks; the default asks this machine (sysfs, multipathd, dlnkmgr, iSCSI targets).
    Another one puts, e.g., an in-memory SAN behind every command.
    """
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
        args.resolver_factory = resolver_factory or default_resolver
        # --cluster-name reaches every key derivation as an argument (args.cluster_name)
        rc = int(args.func(args))
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
        if defaults.DEBUG.get():
            raise
        print(f"hamon: internal error: {type(err).__name__}: {err} (HAMON_DEBUG=1 shows "
              "the traceback; please report it)", file=sys.stderr)
        return EXIT_FAILED


def monscsiclr_main(argv: Sequence[str] | None = None) -> int:
    """``monscsiclr ALIAS [options]``: HA Monitor's command name for ``hamon monscsiclr``,
    so HA Monitor runbooks run unchanged."""
    return main(["monscsiclr", *(sys.argv[1:] if argv is None else argv)])
