"""hamon_disk's parameters, parsed once into a typed :class:`Settings`.

Why a room of its own: every action starts from the same parameters, and a parameter that
cannot work must be refused before anything touches a disk (OCF_ERR_CONFIGURED, with a
text that names the parameter and the fix). Parsing does no I/O on the devices: it checks
forms only (:func:`check_operands`); whether a device exists is the validate action's
question (:mod:`hamon.agents.disk.validate`).

The names are the metadata's (:mod:`hamon.agents.disk.metadata`), without ``OCF_RESKEY_``.
"""
from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field

from hamon.lib import defaults
from hamon.lib import keys as keymod
from hamon.lib.disk import split_operands
from hamon.lib.identity import check_iscsi_name, default_initiator, local_node_name
from hamon.lib.pacemaker import ocf_call
from hamon.lib.scsi.pr import ReservationType
from hamon.lib.termination import OsAction

DEFAULT_TYPE = ReservationType.WRITE_EXCLUSIVE_REGISTRANTS_ONLY
DEFAULT_COMMAND_TIMEOUT = 5
#: command_timeout's range (seconds), as the metadata states it.
COMMAND_TIMEOUT_MIN, COMMAND_TIMEOUT_MAX = 1, 300
#: Tests, demos and ocf-tester: the OS termination is appended to a file instead of
#: being carried out. Read as a parameter (the tests' ``OCF_RESKEY_...``, ``pcs ... --force``)
#: or from HAMON_OS_TERMINATION_DRY_RUN; deliberately absent from the metadata and the man
#: page, which are what administrators read (:data:`HIDDEN_PARAMETERS`).
DRY_RUN_PARAMETER = "os_termination_dry_run"
#: Parameters the agent reads but does not advertise: test hooks, not for production.
HIDDEN_PARAMETERS = (DRY_RUN_PARAMETER,)
#: Parameters that name files: absolute paths without control characters.
_PATH_PARAMS = ("journal", "state_dir", DRY_RUN_PARAMETER)
OS_ACTIONS = tuple(str(a) for a in OsAction)


class ConfigError(ValueError):
    """The parameters cannot work as given (OCF_ERR_CONFIGURED); the text says the fix."""


@dataclass(frozen=True)
class Settings:
    """The resource's parameters, parsed and validated."""

    operands: tuple[str, ...]
    parameter: str                 # scsi_device | dmmp_device
    key: int
    rtype: ReservationType
    initiator: str
    os_action: OsAction
    dry_run_file: str | None
    alias: str
    resource: str
    node: str
    journal: str
    state_dir: str
    command_timeout: float
    #: corosync's cluster name for derived keys (None: asked from corosync)
    cluster: str | None = None
    #: explicit keys of the cluster's nodes (node_keys), members as their derived keys
    node_keys: Mapping[str, int] = field(default_factory=dict)
    #: start may preempt keys of no node of this cluster (migrations from HA Monitor)
    allow_foreign_keys: bool = False


def _get(params: Mapping[str, str | None], name: str) -> str:
    return (params.get(name) or "").strip()


def check_operands(parameter: str, operands: list[str]) -> None:
    """Each operand's form fits its parameter (no I/O): a multipath map given as
    scsi_device, or a plain SCSI disk given as dmmp_device, is a mistake worth naming."""
    for op in operands:
        if op.startswith("iscsi://"):
            continue
        if not op.startswith("/dev/"):
            raise ConfigError(f"{parameter}: {op!r} is not a device; give /dev/sdX, "
                              "/dev/mapper/NAME, /dev/dm-N, /dev/sddlmXX or iscsi:// URLs")
        multipath = op.startswith(("/dev/mapper/", "/dev/dm-", "/dev/sddlm"))
        if parameter == "scsi_device" and op.startswith(("/dev/mapper/", "/dev/dm-")):
            raise ConfigError(f"scsi_device: {op} is a device-mapper multipath disk; "
                              "give it as dmmp_device")
        if parameter == "dmmp_device" and not multipath:
            raise ConfigError(f"dmmp_device: {op} is a single-path SCSI disk; give it as "
                              "scsi_device (or give the multipath map /dev/mapper/NAME)")
    if len(set(operands)) != len(operands):
        raise ConfigError(f"{parameter}: a device is listed twice")


def _operands(params: Mapping[str, str | None]) -> tuple[str, list[str]]:
    """(scsi_device | dmmp_device, its operands): exactly one of the two, each well formed."""
    scsi, dmmp = _get(params, "scsi_device"), _get(params, "dmmp_device")
    if bool(scsi) == bool(dmmp):
        raise ConfigError("give exactly one of scsi_device (single-path disks) and "
                          "dmmp_device (multipath disks: DMMP or HDLM)"
                          + ("; both are set" if scsi else "; neither is set"))
    parameter = "scsi_device" if scsi else "dmmp_device"
    operands = split_operands(scsi or dmmp)
    if not operands:
        raise ConfigError(f"{parameter} {scsi or dmmp!r} names no device; give the shared "
                          "disks separated by commas or blanks")
    check_operands(parameter, operands)
    return parameter, operands


def _reservation_type(params: Mapping[str, str | None], parameter: str) -> ReservationType:
    try:
        rtype = ReservationType.parse(_get(params, "reservation_type") or DEFAULT_TYPE.short)
    except ValueError as err:
        raise ConfigError(f"reservation_type: {err}") from None
    if parameter == "dmmp_device" and not (rtype.registrants_only or rtype.all_registrants):
        raise ConfigError(f"reservation_type {rtype.short}: only the one path that reserved "
                          "could write a multipath disk; use WE-RO (the default), EA-RO, "
                          "WE-AR or EA-AR")
    return rtype


def _command_timeout(params: Mapping[str, str | None]) -> float:
    timeout_text = _get(params, "command_timeout") or str(DEFAULT_COMMAND_TIMEOUT)
    try:
        timeout = float(timeout_text)
    except ValueError:
        timeout = -1.0
    if not (COMMAND_TIMEOUT_MIN <= timeout <= COMMAND_TIMEOUT_MAX):  # nan and inf too
        raise ConfigError(f"command_timeout {timeout_text!r}: seconds, "
                          f"{COMMAND_TIMEOUT_MIN} to {COMMAND_TIMEOUT_MAX}")
    return timeout


def _check_texts(params: Mapping[str, str | None]) -> None:
    """alias and the file parameters: printable; the files absolute."""
    for name in ("alias", *_PATH_PARAMS):
        value = _get(params, name)
        if any(not c.isprintable() for c in value):
            raise ConfigError(f"{name} {value!r}: has control characters; give plain text")
    for name in _PATH_PARAMS:
        value = _get(params, name)
        if value and not os.path.isabs(value):
            raise ConfigError(f"{name} {value!r}: give an absolute path (the agent's "
                              "working directory is not defined)")


def parse_settings(params: Mapping[str, str | None], env: Mapping[str, str] | None = None,
                   node: str | None = None) -> Settings:
    """The parameters (names as in the metadata, without ``OCF_RESKEY_``) -> Settings."""
    env = os.environ if env is None else env
    parameter, operands = _operands(params)
    rtype = _reservation_type(params, parameter)
    action_text = (_get(params, "os_termination") or "reboot").lower()
    if action_text not in OS_ACTIONS:
        raise ConfigError(f"os_termination {action_text!r}: choose one of "
                          f"{', '.join(OS_ACTIONS)}")
    timeout = _command_timeout(params)
    initiator = _get(params, "iscsi_initiator")
    if initiator:
        try:
            check_iscsi_name(initiator)
        except ValueError as err:
            raise ConfigError(str(err)) from None
    _check_texts(params)
    node = node or local_node_name()
    cluster = _get(params, "cluster_name") or None
    if cluster is not None and not cluster.isprintable():
        raise ConfigError(f"cluster_name {cluster!r}: has control characters; give plain "
                          "text")
    try:
        key = keymod.resolve_key(_get(params, "reservation_key") or None, node, cluster)
    except ValueError as err:
        raise ConfigError(f"reservation_key: {err}") from None
    try:
        node_keys = keymod.parse_node_keys(_get(params, "node_keys"))
    except ValueError as err:
        raise ConfigError(f"node_keys: {err}") from None
    foreign = _get(params, "allow_foreign_keys").lower() or "false"
    if foreign not in ("true", "false", "yes", "no", "1", "0", "on", "off"):
        raise ConfigError(f"allow_foreign_keys {foreign!r}: true or false")
    resource = env.get("OCF_RESOURCE_INSTANCE") or "hamon_disk"
    return Settings(
        operands=tuple(operands), parameter=parameter, key=key, rtype=rtype,
        initiator=initiator or default_initiator(node),
        os_action=OsAction(action_text),
        dry_run_file=_get(params, DRY_RUN_PARAMETER)
        or defaults.OS_TERMINATION_DRY_RUN.get(env) or None,
        alias=_get(params, "alias") or ocf_call.resource_id(resource),
        resource=resource, node=node,
        journal=_get(params, "journal") or defaults.JOURNAL.get(env),
        state_dir=state_dir(params, env),
        command_timeout=timeout, cluster=cluster, node_keys=node_keys,
        allow_foreign_keys=foreign in ("true", "yes", "1", "on"))


def state_dir(params: Mapping[str, str | None], env: Mapping[str, str]) -> str:
    """Where the state file lives: also asked when the other parameters cannot work (a
    stop must still learn whether a start began here)."""
    return _get(params, "state_dir") or defaults.STATE_DIR.get(env)
