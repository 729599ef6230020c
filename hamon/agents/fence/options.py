"""fence_hamon_scsi's face: the option table, the defaults and the docs fencing.py shows.

Why a module of its own: ``-o metadata`` is run by pcs and Pacemaker often, and by
``stonith_admin`` before every device is used; it needs this table and nothing else. So
this module imports nothing (not even ``typing``): the agent loads it at start, and the
engine (:mod:`.actions`, the reservation library, libiscsi) only for an action that
touches the disks. tests/unit/test_lean_start.py keeps it so.

Built the way every ClusterLabs agent declares itself (fence_scsi is the closest peer):
new entries in fencing.py's ``all_opt`` (:func:`define_new_opts`), the agent's
``device_opt`` list (:data:`DEVICE_OPT`) and the ``docs`` dict (:data:`DOCS`). Option
names follow fence_scsi where the meaning is the same (``devices``, ``key``,
``nodename``, ``aptpl``, ``logfile``, ``corosync_cmap_path``); see
docs/fence_hamon_scsi.md.
"""
from __future__ import annotations

TYPE_CHECKING = False  # typing itself costs milliseconds at every start; annotations only
if TYPE_CHECKING:
    from typing import Any

AGENT = "fence_hamon_scsi"
#: The defaults, as the metadata shows them and :mod:`.settings` applies them (one source).
DEFAULT_ALIAS = "fence_hamon_scsi"
DEFAULT_SCSI_TIMEOUT = 5.0
DEFAULT_TYPE_SHORT = "WE-RO"
#: scsi_timeout's range (seconds): a bound of one command must be a real, finite one.
SCSI_TIMEOUT_MIN, SCSI_TIMEOUT_MAX = 1, 300

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
