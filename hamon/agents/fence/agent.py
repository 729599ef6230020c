"""fence_hamon_scsi as a process: fencing.py's flow, the time bound, a fast way out.

Built the way every ClusterLabs agent's ``main`` is (fence_scsi is the closest peer):
``process_input`` (command line, or ``key=value`` lines on stdin as Pacemaker sends
them), ``check_input``, ``show_docs`` (``-h``, ``-o metadata``, ``-o manpage``),
``run_delay`` and ``fence_action`` with the callbacks of :mod:`.actions`. So options,
the stdin protocol and the exit codes are exactly fencing.py's: 0 success, 1 failure,
and for ``status`` 0 = on, 2 = off, 1 = unknown.

A lean start (issue 14): this module imports only :mod:`.options` (the table the
metadata shows) and :mod:`.errors`, both import-free. The engine (:mod:`.actions` and
through it the fencer, the reservation library, libiscsi) is imported in :func:`run`
once fencing.py has answered ``-o metadata`` and ``-h``, which pcs and Pacemaker run
often and which start as fast as fence_scsi's do.

Errors: every failure this agent detects is one line on stderr (and syslog) naming the
device or option and what to do, exit 1, no traceback. A traceback only with ``-v``,
where a developer wants it.
"""
from __future__ import annotations

import contextlib
import logging
import os
import signal
import sys

from hamon.agents.fence.errors import EC_FAILED, FenceError
from hamon.agents.fence.options import AGENT, DEVICE_OPT, DOCS, define_new_opts

TYPE_CHECKING = False  # typing itself costs milliseconds at every start; annotations only
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any

FENCING_LIB = "/usr/share/fence"

log = logging.getLogger("fence_hamon_scsi")


def import_fencing() -> Any:
    """fence-agents' fencing.py (not a Python package: a module in /usr/share/fence)."""
    if FENCING_LIB not in sys.path:
        sys.path.append(FENCING_LIB)
    try:
        import fencing
    except ImportError as err:
        print(f"{AGENT}: cannot import fence-agents' fencing.py from {FENCING_LIB} ({err}); "
              "install the fence-agents package", file=sys.stderr)
        raise SystemExit(EC_FAILED) from None
    return fencing


def _deadline(options: dict[str, Any]) -> Callable[[], None]:
    """A hard stop at power_timeout + delay when power_timeout is set (> 0).

    Every SCSI command is bounded already; this is the backstop for the whole run. Under
    Pacemaker fencing.py sets power_timeout to 0 (Pacemaker enforces its own timeout).
    """
    try:
        limit = int(options.get("--power-timeout") or 0)
        delay = int(options.get("--delay") or 0)
    except ValueError:
        return lambda: None
    if limit <= 0 or options.get("--action") in ("metadata", "manpage"):
        return lambda: None

    def expire(_sig: int, _frame: object) -> None:
        log.error("%s did not finish within power_timeout (%d s): the devices do not answer "
                  "in time; check the storage paths or raise power_timeout",
                  options.get("--action"), limit)
        with contextlib.suppress(Exception):
            sys.stdout.flush()
            sys.stderr.flush()
        os._exit(EC_FAILED)

    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, limit + delay)

    def cancel() -> None:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)

    return cancel


def main() -> int:
    """The agent's process: :func:`run`, then fencing.py's atexit_handler, a flush of
    the logs and the standard streams, and os._exit, without the interpreter's shutdown
    (module teardown, garbage collection of every object: milliseconds a fence does not
    need). It does not return. Every session is logged out and closed before
    (:func:`.actions.logout`), and nothing else this process started outlives it; a
    SystemExit from fencing.py (``-o metadata``, a bad option) takes the same way out
    with its code."""
    fencing = None
    try:
        fencing = import_fencing()
        rc = run(fencing)
    except SystemExit as err:
        rc = _exit_code(err)
    _leave(rc, fencing)
    return rc  # not reached


def _exit_code(err: SystemExit) -> int:
    if err.code is None:
        return 0
    if isinstance(err.code, int):
        return err.code
    print(err.code, file=sys.stderr)
    return 1


def _leave(rc: int, fencing: Any) -> None:
    """fencing.py's atexit_handler (it closes stdout and turns a failed close into exit
    1), then flush and os._exit(rc)."""
    if fencing is not None:
        try:
            fencing.atexit_handler()
        except SystemExit as err:
            rc = _exit_code(err)
    logging.shutdown()  # flushes and closes every handler (syslog, logfile)
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
    os._exit(rc)


def run(fencing: Any = None) -> int:
    """One run of the agent in this process, returning its exit code (fencing.py's
    SystemExit for ``-o metadata``, ``-h`` or a bad option passes through). It leaves
    stdout open: closing it is fencing.py's atexit_handler's job, which :func:`main`
    runs at the process's exit (in-process tests call this instead)."""
    fencing = fencing or import_fencing()
    device_opt = list(DEVICE_OPT)
    define_new_opts(fencing.all_opt)
    options = fencing.check_input(device_opt, fencing.process_input(device_opt),
                                  other_conditions=True)
    fencing.show_docs(options, dict(DOCS))
    if "--logfile" in options:  # fence_scsi's backward-compatible logfile
        try:
            logfile = open(options["--logfile"], "a")  # noqa: SIM115 (lives until exit)
        except OSError as err:
            log.error("logfile %s: %s; give a writable path", options["--logfile"],
                      err.strerror)
            return EC_FAILED
        sys.stdout = sys.stderr = logfile
        for h in logging.getLogger().handlers:
            if isinstance(h, logging.StreamHandler) and not isinstance(
                    h, logging.FileHandler):
                h.setStream(logfile)
    verbose = "--verbose" in options
    action = options["--action"]
    try:
        from hamon.agents.fence import actions  # the engine: every action but the docs

        cancel = _deadline(options)
        try:
            if action == "validate-all":
                return actions.validate(options)
            conn = actions.login(options)
            result = EC_FAILED
            try:
                fencing.run_delay(options)
                result = int(fencing.fence_action(conn, options, actions.set_power_status,
                                                  actions.get_power_status,
                                                  actions.get_outlet_list) or 0)
                return result
            finally:
                actions.logout(conn, succeeded=result == 0)
        finally:
            cancel()
    except FenceError as err:
        log.error("%s", err)
        return EC_FAILED
    except KeyboardInterrupt:
        log.error("interrupted")
        return EC_FAILED
    except Exception as err:  # a bug: still one line, the trace only with -v
        log.error("%s failed unexpectedly: %s: %s (run with -v for the trace and report it)",
                  action, type(err).__name__, err, exc_info=verbose)
        return EC_FAILED
