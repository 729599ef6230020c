"""The actions of fence_hamon_scsi, as fencing.py calls them: plain functions of
``(conn, options)``, the shape of every ClusterLabs agent.

fence-agents' ``fence_action(conn, options, set_power_status, get_power_status,
get_outlet_list)`` hands the same ``conn`` to every callback; for a power switch it is
the login session, for this agent it is a :class:`Storage`: the validated settings, the
:class:`~.fencer.Fencer` holding the storage sessions, and this node. :func:`login`
opens it (it only parses; sessions open on the first command), :func:`logout` closes
every session, as fencing.py's ``fence_login`` / ``fence_logout`` do for a switch.

This module is the engine's door: :mod:`.agent` imports it only after ``-o metadata``
and ``-h`` have been answered, so a documentation run never loads the reservation
library or libiscsi; and no action loads ``dataclasses`` or a room it does not run (the
engine's records are NamedTuples and plain classes, what an action may not need is
imported where it is used: tests/unit/test_lean_start.py).
"""
from __future__ import annotations

import logging
from typing import Any

from hamon.agents.fence.errors import EC_OK, ConfigError
from hamon.agents.fence.fencer import Fencer
from hamon.agents.fence.settings import Node, Settings, settings_from, target_of
from hamon.lib.disk import DeviceError
from hamon.lib.multipath.resolve import Resolver
from hamon.lib.scsi.pr import format_key

log = logging.getLogger("fence_hamon_scsi")


def resolver(initiator: str, timeout: float) -> Resolver:
    """The agent's resolver: one path per LUN logged in (``off`` needs one working path
    per LUN; the others are used when it faults)."""
    return Resolver(initiator=initiator, timeout=timeout, one_path_per_lun=True)


class Storage:
    """fencing.py's ``conn`` for this agent: settings, fencer, and this node."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.fencer = Fencer(settings, resolver)
        self.me = settings.node(settings.local_node)

    def target(self, options: dict[str, Any]) -> Node:
        """The node acted on; ConfigError when the options name none."""
        t = target_of(options, self.settings)
        if t is None:
            raise ConfigError("nodename or key is required: name the node to act on "
                              "(plug/port, as Pacemaker passes it)")
        return t

    def acting(self, target: Node) -> Node:
        """``on`` registers through the target's own nexus: for /dev devices that is this
        host's, so the target must be this node (Pacemaker runs unfencing there)."""
        if target.name != self.settings.local_node and any(
                not d.startswith("iscsi://") for d in self.settings.devices):
            raise ConfigError(
                f"on registers {target.name}'s key through this host's own paths, but this "
                f"node is {self.settings.local_node}: run it on {target.name} (Pacemaker's "
                "unfencing does), or set local_node if the name is wrong")
        return target


def login(options: dict[str, Any]) -> Storage:
    """Parse and validate the options (ConfigError names the bad one)."""
    return Storage(settings_from(options))


def logout(conn: Storage, succeeded: bool) -> None:
    """KAMN725-W (syslog) once per failed path; a warning line per path only when the
    action succeeded around them (a failure is one line naming them); then log out of
    every session."""
    faults = conn.fencer.path_faults()
    if succeeded:
        _warn(faults)
    conn.fencer.close()


# -------------------------------------------------------------- fence_action callbacks
def get_power_status(conn: Storage, options: dict[str, Any]) -> str:
    target = conn.target(options)
    if options["--action"] == "off":
        # "off" only when the fence holds on every device; otherwise set_power runs
        # (and fails with the reason if this node cannot fence).
        return "off" if conn.fencer.fenced(conn.me, target) else "on"
    if options["--action"] == "on":
        on, off, bad = conn.fencer.registered_on(conn.acting(target), target.key)
        return "on" if on and not off and not bad else "off"
    # Reads do not depend on the nexus: this node's initiator reads for everyone.
    return conn.fencer.status(conn.me, target)


def set_power_status(conn: Storage, options: dict[str, Any]) -> None:
    target = conn.target(options)
    if options["--action"] == "on":
        report = conn.fencer.unfence(conn.acting(target))
        _warn(report.warnings)
        for note in report.notes:
            log.info("%s", note)
        log.info("%s", report.summary)
        if target.name == conn.settings.local_node:
            # json, tempfile: only this node's own unfencing writes the state file
            from hamon.agents.fence.state import write_state

            write_state(conn.settings, target)
    elif options["--action"] == "off":
        report = conn.fencer.fence(conn.me, target)
        _warn(report.warnings)
        log.info("%s", report.summary)


def get_outlet_list(conn: Storage, options: dict[str, Any]) -> dict[str, tuple]:
    """list: the cluster's nodes (corosync) and every registrant, with keys and status
    (on = registered somewhere). monitor: the devices answer."""
    if options.get("--original-action", options["--action"]) == "monitor":
        report = conn.fencer.monitor(conn.me)
        _warn(report.warnings)
        log.debug("%s", report.summary)
        return {}
    s = conn.settings
    regs = conn.fencer.registrants(conn.me)
    from hamon.lib import cluster  # only `list` asks corosync: not loaded for off

    tool = options.get("--corosync-cmap-path") or "/usr/sbin/corosync-cmapctl"
    names = dict.fromkeys([*cluster.corosync_nodes(tool), s.local_node, *s.node_keys])
    out: dict[str, tuple[str, str]] = {}
    for name in names:
        k = s.key_of(name)
        out[name] = (format_key(k), "ON" if k in regs else "OFF")
    known = {s.key_of(n) for n in names}
    for k in regs:
        if k not in known:
            out[format_key(k)] = (format_key(k), "ON")
    return out


# ------------------------------------------------------------------------- validate-all
def validate(options: dict[str, Any]) -> int:
    """validate-all: the options parse, and every device resolves and answers.

    Reaching the devices is part of it because a device that does not exist is the most
    likely configuration error, and pcs runs validate-all when the device is created.
    """
    s = settings_from(options)
    target_of(options, s)  # a bad key fails here
    from hamon.lib.devcheck import check_device  # validate-all only

    for device in s.devices:  # a directory, FIFO, /dev/null, loop device... is no disk
        try:
            check_device(device, s.local_node)
        except DeviceError as err:
            raise ConfigError(str(err)) from None
    fencer = Fencer(s, resolver)
    try:
        fencer.monitor(s.node(s.local_node))
    finally:
        fencer.close()
    return EC_OK


def _warn(warnings: list[str]) -> None:
    for w in warnings:
        log.warning("%s", w)
