"""What the agent was told, validated: fencing.py's options -> :class:`Settings`.

Every option value is checked here, once, before anything touches a disk, and a bad one
is a :class:`~.errors.ConfigError` naming the option and the fix (validate-all reports
exactly these). :class:`Node` is a cluster node as the agent acts for it (name, key,
initiator); keys are derived from the node name unless ``node_keys`` or ``key`` gives
one, so the fencing node computes both keys without a key file.

The defaults come from :mod:`.options`, the table the metadata shows: one source. No
dataclass here (a fence's room; why: docs/architecture.md, "What a fence loads").
"""
from __future__ import annotations

from typing import Any, NamedTuple

from hamon.agents.fence.errors import ConfigError
from hamon.agents.fence.options import (
    DEFAULT_ALIAS,
    DEFAULT_SCSI_TIMEOUT,
    DEFAULT_TYPE_SHORT,
    SCSI_TIMEOUT_MAX,
    SCSI_TIMEOUT_MIN,
)
from hamon.lib import keys as keymod
from hamon.lib.disk import split_operands
from hamon.lib.identity import check_iscsi_name, default_initiator, local_node_name
from hamon.lib.scsi.pr import ReservationType, format_key

DEFAULT_TYPE = ReservationType.parse(DEFAULT_TYPE_SHORT)


class Node(NamedTuple):
    """A cluster node as the agent acts for it: its name, key and iSCSI initiator name."""

    name: str
    key: int
    initiator: str

    def __str__(self) -> str:
        return f"{self.name} (key {format_key(self.key)})"


class Settings:
    """The agent's configuration, already parsed and validated (see :func:`parse_pairs`).

    ``alias``: the server field of KAMN messages, the stonith device's alias, never the
    victim. ``cluster``: corosync's cluster name for derived keys (None: asked from
    corosync, hamon.lib.keys).
    """

    def __init__(self, devices: list[str], local_node: str,
                 rtype: ReservationType = DEFAULT_TYPE, aptpl: bool = False,
                 scsi_timeout: float = DEFAULT_SCSI_TIMEOUT,
                 node_keys: dict[str, int] | None = None,
                 initiators: dict[str, str] | None = None,
                 local_initiator: str | None = None, alias: str = DEFAULT_ALIAS,
                 cluster: str | None = None) -> None:
        self.devices = devices
        self.local_node = local_node
        self.rtype = rtype
        self.aptpl = aptpl
        self.scsi_timeout = scsi_timeout
        self.node_keys: dict[str, int] = {} if node_keys is None else node_keys
        self.initiators: dict[str, str] = {} if initiators is None else initiators
        self.local_initiator = local_initiator
        self.alias = alias
        self.cluster = cluster

    def __repr__(self) -> str:
        return ("Settings(" + ", ".join(f"{k}={v!r}" for k, v in vars(self).items()) + ")")

    def key_of(self, node: str) -> int:
        """An explicit key from ``node_keys`` wins; else the key derived from the cluster
        and node names."""
        return self.node_keys.get(node) or keymod.key_for_node(node, self.cluster)

    def initiator_of(self, node: str) -> str:
        """``iscsi_initiator=node=iqn,...`` entry, else a single ``iscsi_initiator`` for
        the local node, else the name derived from the node name."""
        if node in self.initiators:
            return self.initiators[node]
        if self.local_initiator and node == self.local_node:
            return self.local_initiator
        return default_initiator(node)

    def node(self, name: str, key: int | None = None) -> Node:
        return Node(name, key if key is not None else self.key_of(name), self.initiator_of(name))


def parse_pairs(text: str, what: str) -> dict[str, str]:
    """``node1=v1,node2=v2`` (commas or spaces) -> dict; ValueError names the bad entry."""
    out: dict[str, str] = {}
    for item in text.replace(",", " ").split():
        name, sep, value = item.partition("=")
        if not sep or not name or not value:
            raise ValueError(f"{what}: {item!r} is not NODE=VALUE "
                             f"(e.g. {what}=\"node1=...,node2=...\")")
        if name in out:
            raise ValueError(f"{what}: node {name!r} is listed twice")
        out[name] = value
    return out



def settings_from(options: dict[str, Any]) -> Settings:
    """fencing.py's options dict -> validated Settings; ConfigError names the option."""
    devices = split_operands(options.get("--devices", "") or "")
    if not devices:
        raise ConfigError("devices is required: give the shared disks, e.g. "
                          "devices=/dev/mapper/mpatha,/dev/mapper/mpathb")
    try:
        rtype = ReservationType.parse(options.get("--reservation-type") or DEFAULT_TYPE_SHORT)
    except ValueError as err:
        raise ConfigError(f"reservation_type: {err}") from None
    node_keys: dict[str, int] = {}
    try:
        for node, text in parse_pairs(options.get("--node-keys", "") or "",
                                      "node_keys").items():
            node_keys[node] = keymod.parse_key(text)
    except ValueError as err:
        raise ConfigError(f"node_keys: {err}") from None
    initiators: dict[str, str] = {}
    single = None
    ini = (options.get("--iscsi-initiator") or "").strip()
    try:
        if "=" in ini:
            initiators = parse_pairs(ini, "iscsi_initiator")
            for node, name in initiators.items():
                check_iscsi_name(name, f"iscsi_initiator of {node}")
        elif ini:
            single = check_iscsi_name(ini)
    except ValueError as err:
        raise ConfigError(str(err)) from None
    text = str(options.get("--scsi-timeout") or DEFAULT_SCSI_TIMEOUT)
    try:
        timeout = float(text)
    except ValueError:
        timeout = -1.0
    if not SCSI_TIMEOUT_MIN <= timeout <= SCSI_TIMEOUT_MAX:  # nan and inf too
        raise ConfigError(f"scsi_timeout {text!r}: seconds, {SCSI_TIMEOUT_MIN} to "
                          f"{SCSI_TIMEOUT_MAX}")
    local = (options.get("--local-node") or "").strip() or local_node_name()
    alias = (options.get("--alias") or "").strip() or DEFAULT_ALIAS
    if not alias.isprintable():
        raise ConfigError(f"alias {alias!r}: printable characters only")
    cluster = (options.get("--cluster-name") or "").strip() or None
    if cluster is not None and not cluster.isprintable():
        raise ConfigError(f"cluster_name {cluster!r}: printable characters only")
    s = Settings(devices=devices, local_node=local, rtype=rtype, alias=alias,
                 cluster=cluster, aptpl=_flag(options, "--aptpl"), scsi_timeout=timeout,
                 node_keys=node_keys, initiators=initiators, local_initiator=single)
    known = dict.fromkeys([local, *node_keys])
    try:
        keymod.check_unique({n: s.key_of(n) for n in known})
    except ValueError as err:
        raise ConfigError(f"node_keys: {err}") from None
    return s


def target_of(options: dict[str, Any], s: Settings) -> Node | None:
    """The node acted on: ``nodename`` (what Pacemaker passes), else ``plug``/``port``."""
    name = (options.get("--nodename") or options.get("--plug") or "").strip()
    explicit = (options.get("--key") or "").strip()
    if not name and not explicit:
        return None
    try:
        key = keymod.parse_key(explicit) if explicit else None
    except ValueError as err:
        raise ConfigError(f"key: {err}") from None
    if not name:  # only a key, as fence_scsi allows: on = this node, off = its owner
        if options.get("--action") in ("on", "enable"):
            name = s.local_node
        else:
            name = keymod.owner_of(key, list(s.node_keys), s.cluster) or format_key(key)
    return s.node(name, key)


def _flag(options: dict[str, Any], name: str) -> bool:
    return str(options.get(name, "0")).lower() in ("1", "yes", "on", "true", "")

