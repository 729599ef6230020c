"""fence_hamon_scsi_check: the watchdog test that reboots a node fenced off its disks.

A node fenced by fence_hamon_scsi is not powered off: its writes get RESERVATION
CONFLICT, but it keeps running, maybe holding stale state. Like fence_scsi_check, this
script is run by the ``watchdog`` daemon (``test-binary`` or a script in
``/etc/watchdog.d``, called with ``test``) and answers:

* exit 0: this node's key is registered on at least one device that answers, or the
  node was never unfenced (no state file: nothing to protect yet), or no device answers
  at all (a storage outage is not a fence: the node cannot write anyway, and the verdict
  comes once a device answers again);
* exit 2: every device that answers has lost this node's key: the node has been fenced.
  The watchdog daemon then reboots the node (its normal repair path). Installed or linked
  under a name ending in ``_hardreboot`` the script reboots the node itself at once
  (``reboot -f`` semantics through SysRq), because a clean shutdown may hang on I/O
  to the disks it was fenced from.

``repair CODE`` (the watchdog's repair call) returns CODE: nothing can repair a fence.

It needs to know the devices, key and initiator without parameters, so ``on`` records
them in a small state file (:mod:`.state`); ``off`` never needs it.
Optional settings in ``/etc/sysconfig/stonith`` as for fence_scsi_check: ``retry``,
``retry-sleep`` (seconds) and ``verbose=yes``.
"""
from __future__ import annotations

import logging
import os
import re
import sys
import time
from collections.abc import Callable

from hamon.agents.fence.state import read_state, state_path
from hamon.lib import defaults
from hamon.lib import reservation as rsv
from hamon.lib.disk import DeviceError, run_parallel
from hamon.lib.multipath.resolve import Resolver
from hamon.lib.scsi.pr import format_key
from hamon.lib.termination import OsAction, OsTerminator
from hamon.lib.transport.base import Transport

log = logging.getLogger("fence_hamon_scsi_check")

#: Tests and demos: append the reboot request to this file instead of rebooting.
EXIT_OK, EXIT_FENCED = 0, 2


def read_sysconfig(path: str = defaults.STONITH_SYSCONFIG.default) -> dict[str, str]:
    """fence_scsi_check's ``/etc/sysconfig/stonith``: ``name=value`` lines."""
    try:
        with open(path) as f:
            text = f.read()
    except OSError:
        return {}
    return {m[1].lower(): m[2] for m in re.finditer(r"^\s*([\w-]+)\s*=\s*(\S*)", text,
                                                    re.MULTILINE)}


#: The I_T nexus role of the check's iSCSI sessions (see :func:`default_resolver`).
ISID_ROLE = "watchdog"


def default_resolver(initiator: str, timeout: float) -> Resolver:
    """Devices as the agent resolves them, but ``iscsi://`` paths through a nexus of
    their own: the watchdog runs this check every few seconds while the agent may be
    fencing or monitoring through the node's own sessions, and a login with the same
    ISID would reinstate (close) those on targets that implement reinstatement (LIO).
    Reading keys needs no registration, so the check's nexus never registers; the
    initiator name stays the node's, which the array's access lists know."""

    def open_iscsi(url: str, ini: str, t: float) -> Transport:
        from hamon.lib.transport.iscsi import IscsiTransport

        if not ini:
            raise DeviceError(f"{url}: no iSCSI initiator name recorded; run the on "
                              "action (unfence) again")
        return IscsiTransport(path=url, initiator=ini, timeout=t, role=ISID_ROLE)

    return Resolver(initiator=initiator, timeout=timeout, iscsi_opener=open_iscsi)


def check(state_file: str, *, retries: int = 0, retry_sleep: float = 1.0,
          resolver_factory: Callable[[str, float], Resolver] | None = None) -> int:
    """0 = keep running, 2 = fenced (see module doc). Never raises.

    ``resolver_factory`` (initiator, timeout) -> Resolver: :func:`default_resolver`
    unless given (tests give the in-memory target's)."""
    try:
        rec = read_state(state_file)
    except FileNotFoundError:
        log.debug("%s: not unfenced yet, nothing to check", state_file)
        return EXIT_OK
    except (OSError, ValueError, KeyError, TypeError) as err:
        log.error("%s: unreadable (%s); run the on action (unfence) again to rewrite it",
                  state_file, err)
        return EXIT_OK
    factory = resolver_factory or default_resolver
    for attempt in range(retries + 1):
        if attempt:
            time.sleep(retry_sleep)
        verdict = _once(factory(rec.initiator, rec.scsi_timeout), rec.devices, rec.key)
        if verdict != EXIT_FENCED:
            return verdict
    return EXIT_FENCED


def _once(resolver: Resolver, devices: list[str], key: int) -> int:
    try:
        disks = resolver.resolve(devices)
    except DeviceError as err:
        log.error("%s; no verdict", err)
        return EXIT_OK
    try:
        out = rsv.read_status(disks)
    finally:
        run_parallel([p.close for d in disks for p in d.paths])
    answered = [r for r in out.results if r.ok]
    for r in out.failed():
        log.warning("%s: no answer (%s)", r.disk.name, r.error or r.detail)
    if not answered:
        log.warning("no device answers; no verdict until one does")
        return EXIT_OK
    holding = [r.disk.name for r in answered if key in r.value.keys]
    if holding:
        log.debug("key %s registered on %s", format_key(key), ", ".join(holding))
        return EXIT_OK
    log.error("key %s of this node is gone from every device that answers (%s): this "
              "node has been fenced", format_key(key), ", ".join(r.disk.name for r in answered))
    return EXIT_FENCED


def main(argv: list[str] | None = None) -> int:
    """The watchdog's call: ``test`` (or no argument) -> 0 or 2, ``repair CODE`` -> CODE."""
    argv = sys.argv if argv is None else argv
    if len(argv) >= 3 and argv[1] == "repair":
        try:
            return int(argv[2])
        except ValueError:
            return EXIT_FENCED
    conf = read_sysconfig(defaults.STONITH_SYSCONFIG.get())
    logging.basicConfig(level=logging.DEBUG if conf.get("verbose") == "yes"
                        else logging.INFO, format="fence_hamon_scsi_check: %(message)s")
    try:
        retries = max(0, int(conf.get("retry", "0")))
        retry_sleep = max(0.0, float(conf.get("retry-sleep", "1")))
    except ValueError:
        log.error("%s: retry and retry-sleep must be numbers; using 0 and 1",
                  defaults.STONITH_SYSCONFIG.get())
        retries, retry_sleep = 0, 1.0
    try:
        verdict = check(state_path(), retries=retries, retry_sleep=retry_sleep)
    except Exception as err:  # never a traceback, never a reboot because of a bug
        log.error("check failed unexpectedly: %s: %s", type(err).__name__, err)
        return EXIT_OK
    if verdict == EXIT_FENCED and os.path.basename(argv[0]).endswith("_hardreboot"):
        dry = defaults.CHECK_DRY_RUN.get()
        t = OsTerminator(OsAction.REBOOT, dry_run_file=dry)
        if not t.terminate("fence_hamon_scsi_check: this node's key is gone from every device"):
            log.error("could not reboot (%s); the exit code still tells the watchdog daemon "
                      "to reset this node", t.failure)
    return verdict
