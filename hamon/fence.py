"""fence_hamon_scsi on fence-agents' fencing.py: options, stdin, metadata, exit codes.

Built the way every ClusterLabs agent is (fence_scsi is the closest peer): new entries
in ``all_opt``, ``process_input`` (command line, or ``key=value`` lines on stdin as
Pacemaker sends them), ``check_input``, ``show_docs`` (``-h``, ``-o metadata``,
``-o manpage``), and ``fence_action`` with ``get_power_status`` / ``set_power_status`` /
``get_outlet_list``. So options, the stdin protocol and the exit codes are exactly
fencing.py's: 0 success, 1 failure, and for ``status`` 0 = on, 2 = off, 1 = unknown.

The decisions (which device first, when to stop) are in :mod:`hamon.fence_core`.
Option names follow fence_scsi where the meaning is the same (``devices``, ``key``,
``nodename``, ``aptpl``, ``logfile``, ``corosync_cmap_path``); see docs/fence_hamon_scsi.md.

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

TYPE_CHECKING = False  # typing itself costs milliseconds at every start; annotations only
if TYPE_CHECKING:  # loaded by _load_core() when an action needs them, not for metadata
    from collections.abc import Callable
    from typing import Any

    from hamon.fence_core import (
        FenceError,
        Fencer,
        Node,
        ResolverFactory,
        Settings,
        parse_pairs,
    )
    from hamon.lib import keys as keymod
    from hamon.lib.devcheck import check_device
    from hamon.lib.disk import DeviceError, split_operands
    from hamon.lib.identity import check_iscsi_name, local_node_name
    from hamon.lib.scsi.pr import ReservationType, format_key

#: fence_core's defaults as the metadata shows them, without importing the engine for
#: ``-o metadata`` (tests/unit/test_fence_agent.py checks they agree with fence_core).
DEFAULT_ALIAS = "fence_hamon_scsi"
DEFAULT_SCSI_TIMEOUT = 5.0
DEFAULT_TYPE_SHORT = "WE-RO"

FENCING_LIB = "/usr/share/fence"
AGENT = "fence_hamon_scsi"
#: Where ``on`` records what it registered, for the watchdog hook (fence_hamon_scsi_check).
STATE_FILE = "/run/hamon/fence_hamon_scsi.state"
STATE_ENV = "HAMON_FENCE_STATE"
EC_OK, EC_FAILED = 0, 1
#: scsi_timeout's range (seconds): a bound of one command must be a real, finite one.
SCSI_TIMEOUT_MIN, SCSI_TIMEOUT_MAX = 1, 300

log = logging.getLogger("fence_hamon_scsi")

#: Replaceable by tests (the in-memory target); the agent uses :func:`lean_resolver`.
resolver_factory: ResolverFactory | None = None
_core_loaded = False
#: What _load_core() binds as globals of this module (and PEP 562 serves on access).
_LAZY = frozenset({"FenceError", "Fencer", "Node", "ResolverFactory", "Settings",
                   "default_resolver", "parse_pairs", "keymod", "check_device",
                   "DeviceError", "split_operands", "check_iscsi_name", "local_node_name",
                   "ReservationType", "format_key", "ConfigError", "lean_resolver"})


def _load_core() -> None:
    """Import the engine (fence_core, hamon.lib): every action but the documentation
    needs it; ``-o metadata`` (run by pcs and Pacemaker often) does not, and starts as
    fast as fence_scsi's does without it."""
    global _core_loaded, resolver_factory
    global FenceError, Fencer, Node, ResolverFactory, Settings, default_resolver
    global parse_pairs, keymod, check_device, DeviceError, split_operands
    global check_iscsi_name, local_node_name, ReservationType, format_key, ConfigError
    global lean_resolver
    if _core_loaded:
        return
    from hamon.fence_core import (
        FenceError,
        Fencer,
        Node,
        ResolverFactory,
        Settings,
        default_resolver,
        parse_pairs,
    )
    from hamon.lib import keys as keymod
    from hamon.lib.devcheck import check_device
    from hamon.lib.disk import DeviceError, split_operands
    from hamon.lib.identity import check_iscsi_name, local_node_name
    from hamon.lib.multipath.resolve import Resolver
    from hamon.lib.scsi.pr import ReservationType, format_key

    class ConfigError(FenceError):  # type: ignore[no-redef]
        """A bad option value (validate-all reports these)."""

    ConfigError.__module__ = __name__
    ConfigError.__qualname__ = "ConfigError"

    def lean_resolver(initiator: str, timeout: float) -> Resolver:
        """fence_core's resolver, logging in on one path per LUN (``off`` needs one
        working path per LUN; the others are used when it faults)."""
        return Resolver(initiator=initiator, timeout=timeout, one_path_per_lun=True)

    if resolver_factory is None:
        resolver_factory = lean_resolver
    _core_loaded = True


def __getattr__(name: str) -> Any:
    """The engine's names, loaded on first access from outside (tests, fence_check)."""
    if name in _LAZY:
        _load_core()
        return globals()[name]
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

DEVICE_OPT = ["no_login", "no_password", "devices", "nodename", "port", "no_port", "key",
              "aptpl", "fabric_fencing", "on_target", "force_on", "logfile",
              "corosync_cmap_path", "reservation_type", "node_keys", "local_node",
              "iscsi_initiator", "scsi_timeout", "alias", "cluster_name"]

DOCS = {
    "shortdesc": "Fence agent for SCSI-3 persistent reservations on every path "
                 "(HA Monitor style)",
    "longdesc": (
        "fence_hamon_scsi is an I/O fencing agent that uses SCSI-3 persistent reservations "
        "to keep a fenced node off shared disks, as Hitachi HA Monitor does. Every node "
        "registers its key on every path of every device when it is unfenced (action on, "
        "run by Pacemaker on the node itself), and a \"write exclusive, registrants only\" "
        "reservation keeps unregistered nodes from writing. Action off removes the target "
        "node's key with PREEMPT AND ABORT (PREEMPT where the target lacks it); the node that "
        "fences must itself be registered, otherwise the action fails. The node that is "
        "fenced is not rebooted: its writes get RESERVATION CONFLICT; combine with "
        "fence_hamon_scsi_check as a watchdog test to reboot it."
        "\n.P\n"
        "Devices: /dev/sdX, /dev/mapper/NAME and /dev/dm-N (device-mapper multipath: the key "
        "is registered through each path), /dev/sddlmXX (HDLM), or "
        "iscsi://host[:port]/target-iqn/lun URLs (userspace iSCSI, one URL per path, grouped "
        "into disks by LUN identity). Keys are derived from the node name (0x686d followed by "
        "6 bytes of its SHA-256), so no key file is needed: the fencing node computes both "
        "keys. When two nodes fence each other at once, exactly one survives on every device: "
        "devices are ordered by LUN identity and the first one decides (see "
        "docs/fence_hamon_scsi.md in the hamon sources)."
        "\n.P\n"
        "Watchdog: fence_hamon_scsi_check (installed in /usr/share/hamon) exits 2 once this "
        "node's key is gone from every device that answers, 0 otherwise; link it into "
        "/etc/watchdog.d/ so that the watchdog daemon reboots a fenced node, or link it as "
        "fence_hamon_scsi_check_hardreboot to reboot at once. It reads what the on action "
        "recorded in /run/hamon/fence_hamon_scsi.state; retry, retry-sleep and verbose=yes "
        "in /etc/sysconfig/stonith work as for fence_scsi_check."),
    "vendorurl": "",
}


def define_new_opts(all_opt: dict[str, dict[str, Any]]) -> None:
    """fence_scsi's options where the meaning is the same, and ours."""
    all_opt["devices"] = {
        "getopt": "d:",
        "longopt": "devices",
        "help": "-d, --devices=[devices]        Shared devices: /dev/sdX, /dev/mapper/NAME, "
                "/dev/dm-N, /dev/sddlmXX or iscsi:// URLs (comma-separated)",
        "required": "1",
        "shortdesc": "Shared devices, comma-separated: /dev/sdX, /dev/mapper/NAME, /dev/dm-N "
                     "(multipath: the key is registered through every path), /dev/sddlmXX "
                     "(HDLM) or iscsi://host[:port]/target-iqn/lun (one URL per path). Every "
                     "device must support SCSI-3 persistent reservations. Every node must list "
                     "the same LUNs (by whatever names it has for them).",
        "order": 1,
    }
    all_opt["nodename"] = {  # Pacemaker passes the target's name as nodename; as fence_scsi
        "getopt": ":",
        "longopt": "nodename",
        "help": "",
        "required": "0",
        "shortdesc": "",
        "order": 1,
    }
    all_opt["key"] = {
        "getopt": "k:",
        "longopt": "key",
        "help": "-k, --key=[key]                Key of the target node (hex; default: derived "
                "from its name)",
        "required": "0",
        "shortdesc": "Reservation key of the target node, 1 to 16 hex digits, not 0 (for "
                     "on: this node's key; for off: the key to remove). Default: derived from "
                     "the node name (0x686d + 6 bytes of SHA-256 of the name). For a cluster "
                     "prefer node_keys or the derived keys: one key for every node would "
                     "make fencing one node fence all of them.",
        "order": 1,
    }
    all_opt["aptpl"] = {
        "getopt": "a",
        "longopt": "aptpl",
        "help": "-a, --aptpl                    Use the APTPL flag for registrations",
        "required": "0",
        "shortdesc": "Use the APTPL flag for registrations (they survive a power loss of "
                     "the storage). Only used by the on action; some targets (tgt) refuse it.",
        "order": 1,
    }
    all_opt["reservation_type"] = {
        "getopt": ":",
        "longopt": "reservation-type",
        "help": "--reservation-type=[type]      Reservation type: WE-RO (default), EA-RO, "
                "WE-AR, EA-AR, WE or EA",
        "required": "0",
        "shortdesc": "Persistent reservation type taken on unfencing and moved to the "
                     "fencing node on fencing: WE-RO (write exclusive, registrants only; "
                     "default), EA-RO, WE-AR, EA-AR, WE, EA, or the SPC-4 code (1-8).",
        "default": DEFAULT_TYPE_SHORT,
        "order": 2,
    }
    all_opt["node_keys"] = {
        "getopt": ":",
        "longopt": "node-keys",
        "help": "--node-keys=[node=key,...]     Explicit keys per node instead of "
                "derived ones",
        "required": "0",
        "shortdesc": "Explicit reservation keys per node, e.g. node1=0x1001,node2=0x1002, "
                     "for arrays or runbooks that need fixed keys. Nodes not listed use the "
                     "derived key. All keys must differ.",
        "order": 2,
    }
    all_opt["cluster_name"] = {
        "getopt": ":",
        "longopt": "cluster-name",
        "help": "--cluster-name=[name]          The cluster name keys are derived with "
                "(default: corosync's totem.cluster_name)",
        "required": "0",
        "shortdesc": "The cluster name derived keys start with (a hash of it, as "
                     "fence_scsi's keys). Default: corosync's totem.cluster_name "
                     "(corosync-cmapctl, else /etc/corosync/corosync.conf). Give the same "
                     "on every device and hamon_disk resource, or leave it unset.",
        "order": 2,
    }
    all_opt["alias"] = {
        "getopt": ":",
        "longopt": "alias",
        "help": "--alias=[name]                 The server alias KAMN messages carry "
                "(default: fence_hamon_scsi)",
        "required": "0",
        "shortdesc": "The server alias in KAMN725-W's server field, as HA Monitor's alias: "
                     "set it to the stonith resource's name. Default: fence_hamon_scsi. "
                     "The host address field is this node and the key it registered.",
        "default": DEFAULT_ALIAS,
        "order": 2,
    }
    all_opt["local_node"] = {
        "getopt": ":",
        "longopt": "local-node",
        "help": "--local-node=[name]            This node's cluster name (default: "
                "crm_node -n)",
        "required": "0",
        "shortdesc": "The name of the node running the agent, whose key must be registered "
                     "for off to succeed. Default: what Pacemaker calls this node "
                     "(crm_node -n), else the host name.",
        "order": 2,
    }
    all_opt["iscsi_initiator"] = {
        "getopt": ":",
        "longopt": "iscsi-initiator",
        "help": "--iscsi-initiator=[iqn]        This node's initiator name for iscsi:// "
                "devices, or node=iqn,...",
        "required": "0",
        "shortdesc": "iSCSI initiator name used for iscsi:// devices: one name (this node's) "
                     "or node=iqn pairs, comma-separated. Default: "
                     "iqn.2026-11.org.hamon:NODENAME, derived from the node name.",
        "order": 2,
    }
    all_opt["scsi_timeout"] = {
        "getopt": ":",
        "longopt": "scsi-timeout",
        "type": "second",
        "help": "--scsi-timeout=[seconds]       Bound for one SCSI command through one path",
        "required": "0",
        "shortdesc": "Seconds one SCSI command (for iscsi:// including connect and login) "
                     "may take through one path before the path counts as failed and the "
                     "next path is tried. Bounds every action.",
        "default": str(int(DEFAULT_SCSI_TIMEOUT)),
        "order": 200,
    }
    all_opt["logfile"] = {
        "getopt": ":",
        "longopt": "logfile",
        "help": "-f, --logfile                  Log output (stdout and stderr) to file",
        "required": "0",
        "shortdesc": "Log output (stdout and stderr) to file",
        "order": 6,
    }
    all_opt["corosync_cmap_path"] = {
        "getopt": ":",
        "longopt": "corosync-cmap-path",
        "help": "--corosync-cmap-path=[path]    Path to corosync-cmapctl binary",
        "required": "0",
        "shortdesc": "Path to corosync-cmapctl binary (list names the cluster's nodes "
                     "from the corosync node list)",
        "default": "/usr/sbin/corosync-cmapctl",
        "order": 300,
    }
    all_opt["port"]["help"] = "-n, --plug=[nodename]          Name of the node to be fenced"
    all_opt["port"]["shortdesc"] = (
        "Name of the node to be fenced (off) or unfenced (on). Its key is derived from this "
        "name unless key or node_keys gives one.")
    all_opt["delay"]["getopt"] = "H:"


# --------------------------------------------------------------------------- options
def settings_from(options: dict[str, Any]) -> Settings:
    """fencing.py's options dict -> validated Settings; ConfigError names the option."""
    _load_core()
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
    _load_core()
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


# --------------------------------------------------------------------------- actions
class Agent:
    """One run: settings, the fencer, and the three callbacks fence_action calls."""

    def __init__(self, options: dict[str, Any]) -> None:
        _load_core()
        self.options = options
        self.settings = settings_from(options)
        self.fencer = Fencer(self.settings, resolver_factory)
        self.me = self.settings.node(self.settings.local_node)

    def target(self) -> Node:
        t = target_of(self.options, self.settings)
        if t is None:
            raise ConfigError("nodename or key is required: name the node to act on "
                              "(plug/port, as Pacemaker passes it)")
        return t

    def reader(self) -> Node:
        """Whose initiator reads: this node's (reads do not depend on the nexus)."""
        return self.me

    # fence_action callbacks ---------------------------------------------------------
    def get_power_status(self, _conn: object, options: dict[str, Any]) -> str:
        target = self.target()
        if options["--action"] == "off":
            # "off" only when the fence holds on every device; otherwise set_power runs
            # (and fails with the reason if this node cannot fence).
            return "off" if self.fencer.fenced(self.me, target) else "on"
        if options["--action"] == "on":
            on, off, bad = self.fencer.registered_on(self._acting(target), target.key)
            return "on" if on and not off and not bad else "off"
        return self.fencer.status(self.reader(), target)

    def set_power_status(self, _conn: object, options: dict[str, Any]) -> None:
        target = self.target()
        if options["--action"] == "on":
            report = self.fencer.unfence(self._acting(target))
            self._warn(report.warnings)
            for note in report.notes:
                log.info("%s", note)
            log.info("%s", report.summary)
            if target.name == self.settings.local_node:
                write_state(self.settings, target)
        elif options["--action"] == "off":
            report = self.fencer.fence(self.me, target)
            self._warn(report.warnings)
            log.info("%s", report.summary)

    def get_outlet_list(self, _conn: object, options: dict[str, Any]) -> dict[str, tuple]:
        """list: the cluster's nodes (corosync) and every registrant, with keys and
        status (on = registered somewhere). monitor: the devices answer."""
        if options.get("--original-action", options["--action"]) == "monitor":
            report = self.fencer.monitor(self.reader())
            self._warn(report.warnings)
            log.debug("%s", report.summary)
            return {}
        regs = self.fencer.registrants(self.reader())
        from hamon.lib import cluster  # only `list` asks corosync

        tool = options.get("--corosync-cmap-path") or "/usr/sbin/corosync-cmapctl"
        names = dict.fromkeys([*cluster.corosync_nodes(tool), self.settings.local_node,
                               *self.settings.node_keys])
        out: dict[str, tuple[str, str]] = {}
        for name in names:
            k = self.settings.key_of(name)
            out[name] = (format_key(k), "ON" if k in regs else "OFF")
        known = {self.settings.key_of(n) for n in names}
        for k in regs:
            if k not in known:
                out[format_key(k)] = (format_key(k), "ON")
        return out

    # helpers ---------------------------------------------------------------------
    def _acting(self, target: Node) -> Node:
        """``on`` registers through the target's own nexus: for /dev devices that is this
        host's, so the target must be this node (Pacemaker runs unfencing there)."""
        if target.name != self.settings.local_node and any(
                not d.startswith("iscsi://") for d in self.settings.devices):
            raise ConfigError(
                f"on registers {target.name}'s key through this host's own paths, but this "
                f"node is {self.settings.local_node}: run it on {target.name} (Pacemaker's "
                "unfencing does), or set local_node if the name is wrong")
        return target

    @staticmethod
    def _warn(warnings: list[str]) -> None:
        for w in warnings:
            log.warning("%s", w)


def state_path() -> str:
    return os.environ.get(STATE_ENV) or STATE_FILE


def write_state(s: Settings, node: Node) -> None:
    """What ``on`` registered, for the watchdog hook: devices, key, initiator.

    Not needed by ``off`` (it derives both keys); only fence_hamon_scsi_check reads it,
    because a watchdog test script gets no parameters. Best effort: a failure to write it
    is a warning, never a failed unfencing. Written as a whole or not at all: a temporary
    file of a unique name (``mkstemp``: created, never opened through a symlink someone
    left there) in the same directory, then ``os.replace`` (which replaces a symlink at
    the final name, never writes through it). The directory is created 0755 whatever
    the umask, and a directory that is a symlink is refused.
    """
    _load_core()
    import json
    import stat
    import tempfile

    path = state_path()
    directory = os.path.dirname(os.path.abspath(path))
    data = {"node": node.name, "key": format_key(node.key), "initiator": node.initiator,
            "devices": s.devices, "scsi_timeout": s.scsi_timeout}
    try:
        try:
            os.mkdir(directory, 0o755)
            os.chmod(directory, 0o755)  # mkdir's mode is masked by the umask
        except FileExistsError:
            pass
        except FileNotFoundError:
            os.makedirs(directory, 0o755, exist_ok=True)
            os.chmod(directory, 0o755)
        if stat.S_ISLNK(os.lstat(directory).st_mode):
            raise OSError(0, f"{directory} is a symbolic link; not following it")
        fd, tmp = tempfile.mkstemp(prefix=".fence_hamon_scsi.", suffix=".tmp",
                                   dir=directory)
        try:
            with os.fdopen(fd, "w") as f:
                os.fchmod(f.fileno(), 0o644)
                json.dump(data, f, indent=1)
                f.write("\n")
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise
    except OSError as err:
        log.warning("could not record the unfencing for fence_hamon_scsi_check in %s: %s",
                    path, err.strerror or err)


# --------------------------------------------------------------------------- main
def _import_fencing() -> Any:
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


def main(register_atexit: bool = True) -> int:
    """The agent. ``register_atexit`` is False only for in-process tests: fencing.py's
    atexit_handler closes stdout, which is the agent's job at exit and nobody else's.

    As the process's entry point (``register_atexit``) it does not return: it runs
    fencing.py's atexit_handler itself, flushes the logs and the standard streams and
    leaves with os._exit, without the interpreter's shutdown (module teardown, garbage
    collection of every object: milliseconds a fence does not need). Every session is
    logged out and closed before (Fencer.close), and nothing else this process started
    outlives it; a SystemExit from fencing.py (``-o metadata``, a bad option) takes the
    same way out with its code."""
    if not register_atexit:
        return _main()
    fencing = None
    try:
        fencing = _import_fencing()
        rc = _main(fencing)
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


def _main(fencing: Any = None) -> int:
    fencing = fencing or _import_fencing()
    device_opt = list(DEVICE_OPT)
    define_new_opts(fencing.all_opt)
    options = fencing.check_input(device_opt, fencing.process_input(device_opt),
                                  other_conditions=True)
    fencing.show_docs(options, dict(DOCS))
    _load_core()
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
        cancel = _deadline(options)
        try:
            if action == "validate-all":
                return validate(options)
            agent = Agent(options)
            result = EC_FAILED
            try:
                fencing.run_delay(options)
                result = int(fencing.fence_action(None, options, agent.set_power_status,
                                                  agent.get_power_status,
                                                  agent.get_outlet_list) or 0)
                return result
            finally:
                # KAMN725-W (syslog) once per failed path; a warning line per path only
                # when the action succeeded around them: a failure is one line naming them
                faults = agent.fencer.path_faults()
                if result == 0:
                    agent._warn(faults)
                agent.fencer.close()
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


def validate(options: dict[str, Any],
             check: Callable[[Fencer, Node], object] | None = None) -> int:
    """validate-all: the options parse, and every device resolves and answers.

    Reaching the devices is part of it because a device that does not exist is the most
    likely configuration error, and pcs runs validate-all when the device is created.
    """
    _load_core()
    s = settings_from(options)
    target_of(options, s)  # a bad key fails here
    for device in s.devices:  # a directory, FIFO, /dev/null, loop device... is no disk
        try:
            check_device(device, s.local_node)
        except DeviceError as err:
            raise ConfigError(str(err)) from None
    fencer = Fencer(s, resolver_factory)
    try:
        me = s.node(s.local_node)
        (check or (lambda f, n: f.monitor(n)))(fencer, me)
    finally:
        fencer.close()
    return EC_OK
