"""What hamon_disk tells Pacemaker and pcs about itself: descriptions, parameters, actions.

Why apart from the glue (:mod:`.agent`): this is the agent's public contract, read by
administrators (``pcs resource describe``, the man page generated from it by
``tools/gen-docs``) and checked in as ``metadata/hamon_disk.xml``; it changes when the
contract does, not when the mechanics of running an action do.

resource-agents' ``ocf.py`` builds the XML by string concatenation without escaping, so
every description and default goes through :func:`xml_text`/:func:`xml_attr` first (a ``<`` or
``&`` would otherwise make the metadata invalid). It has no OCF 1.1 attributes, which is
what ``ra-api-1.dtd`` (the schema ocf-tester validates with) wants: content types are
those both ``ra-api-1.dtd`` and ``metadata.rng`` accept (string, integer), so
``os_termination`` is a string whose values are listed in its description, not a
``select``. Test hooks (:data:`.settings.HIDDEN_PARAMETERS`) are not listed.
"""
from __future__ import annotations

import importlib
import os
import sys
from types import ModuleType

from hamon.lib import defaults

from .settings import DEFAULT_COMMAND_TIMEOUT, DEFAULT_TYPE

AGENT_NAME = "hamon_disk"
#: The agent's own version (the metadata's resource-agent version attribute).
AGENT_VERSION = "0.1.0"
OCF_VERSION = "1.1"

#: Suggested action timeouts (seconds). Stop must cover the path check, the release and
#: the unregister (each bounded by command_timeout per path) plus the termination-kind
#: lookup (bounded by 5 s, in parallel): 60 s leaves room for command_timeout up to ~10 s.
TIMEOUTS = {"start": 60, "stop": 60, "monitor": 30, "validate-all": 30, "meta-data": 5}
MONITOR_INTERVAL = 30


def xml_text(s: str) -> str:
    """Escape element text for ocf.py, which does not (as xml.sax.saxutils.escape does;
    importing that module pulls in urllib.request, http.client and email at every start
    of the agent: tens of milliseconds of every monitor)."""
    return s.replace("&", "&amp;").replace(">", "&gt;").replace("<", "&lt;")


def xml_attr(s: str) -> str:
    """Escape an attribute value for ocf.py (it writes ``default="..."`` as given)."""
    return xml_text(s).replace('"', "&quot;")


def load_ocf() -> ModuleType:
    """resource-agents' ``ocf`` module, found as its own Python agents find it."""
    root = os.environ.get("OCF_ROOT") or "/usr/lib/ocf"
    for d in (os.environ.get("OCF_FUNCTIONS_DIR"), os.path.join(root, "lib", "heartbeat"),
              "/usr/lib/ocf/lib/heartbeat"):
        if d and d not in sys.path:
            sys.path.append(d)
    return importlib.import_module("ocf")


LONGDESC = """\
Holds the SCSI-3 persistent reservation of one or more shared disks for the node that \
runs the service, with Hitachi HA Monitor's semantics and messages (KAMN725-W, \
KAMN726-E, KAMN727-I). Group it before the file system and the service.

start: registers this node's reservation key through every path of every disk and \
reserves it (default type Write Exclusive, Registrants Only). When another node's key \
holds the disk, the start forcibly obtains it (PREEMPT, HAMN951-W), as HA Monitor's \
standby does; every other key still registered is removed (HAMN956-W), so that only \
the active node can write. A key of no node of this cluster (another cluster, a host \
outside Pacemaker, HA Monitor itself) is never taken: the start fails with KAMN725-W \
ALREADY-RESERVATION and nothing preempted, until the administrator has checked and \
cancelled it (hamon reservation cancel, monscsiclr) or set allow_foreign_keys. If \
every path of a disk failed, the switchover fails \
(KAMN725-W, KAMN726-E).

stop: releases the reservation and removes this node's key from every path, so a \
stopped node can no longer write. If some paths of a disk failed (KAMN725-W), the stop \
completes. If every path of a disk failed (KAMN725-W, KAMN726-E), the failure is \
written durably to the journal and the OS is terminated (os_termination), so that the \
standby can take the disk over safely; with os_termination=none the stop fails instead \
and Pacemaker fences the node. The kind of termination (normal, planned, abnormal) is \
inferred from the cluster configuration and journalled for the recovery procedure \
(hamon recover).

monitor: running means this node's key holds the reservation of every disk and at \
least one path of each answers. The node attribute hamon-paths-DISK shows up/total \
paths (crm_mon -A). Some paths failed: degraded (OCF 1.1 exit code 190). Every path \
failed: a failure. A failed path that answers again: KAMN727-I, and the key is \
registered on it again when it was lost. A probe never changes the disk.

Messages go to syslog and to stderr (the cluster log); see docs/messages.md."""

SHORTDESC = "Shared-disk SCSI reservation with HA Monitor semantics"

#: (name, shortdesc, longdesc, content type, unique, default)
PARAMETERS: list[tuple[str, str, str, str, bool, str | None]] = [
    ("scsi_device", "Single-path shared disks",
     "Single-path shared disks (HA Monitor's scsi_device operand): /dev/sdX or /dev/sgN, "
     "several separated by commas or blanks. For userspace iSCSI (tests, the demo) an "
     "iscsi://host[:port]/target-iqn/lun URL. Give exactly one of scsi_device and "
     "dmmp_device.", "string", True, None),
    ("dmmp_device", "Multipath shared disks (DMMP, HDLM)",
     "Multipath shared disks (HA Monitor's dmmp_device operand): /dev/mapper/NAME or "
     "/dev/dm-N (device-mapper multipath), /dev/sddlmXX (HDLM), several separated by "
     "commas or blanks. The key is registered through every path of each. iscsi:// URLs "
     "of the same LUN through several portals are the paths of one disk. Give exactly "
     "one of scsi_device and dmmp_device.", "string", True, None),
    ("reservation_key", "Reservation key of this node",
     "This node's reservation key, 1 to 16 hex digits, not 0. Default: derived from the "
     "Pacemaker node name (hamon key NODE prints it), the same derivation as "
     "fence_hamon_scsi. An explicit key must differ on every node, so it is usually "
     "left unset.", "string", False, None),
    ("cluster_name", "Cluster name keys are derived with",
     "Derived keys start with a hash of the cluster name, as fence_scsi's do, so that a "
     "key of another cluster is recognisable. Default: corosync's totem.cluster_name "
     "(corosync-cmapctl, else /etc/corosync/corosync.conf). Give the same value to "
     "fence_hamon_scsi, or leave both unset.", "string", False, None),
    ("node_keys", "Explicit keys of the cluster's nodes",
     "node=key pairs (node1=0x1001,node2=0x1002) for nodes whose key is set explicitly "
     "(fence_hamon_scsi node_keys, reservation_key): start takes a disk over only from "
     "keys of this cluster's nodes, derived from their names or listed here.",
     "string", False, None),
    ("allow_foreign_keys", "Take disks from keys of no node of this cluster",
     "false (default): start refuses a disk reserved or registered by a key that is no "
     "node's of this cluster (KAMN725-W ALREADY-RESERVATION, nothing preempted). true: "
     "start preempts such keys too, e.g. once when migrating from HA Monitor whose keys "
     "are still on the disks. Set it back to false afterwards.", "boolean", False,
     "false"),
    ("reservation_type", "Persistent reservation type",
     "WE-RO (5, Write Exclusive Registrants Only; the default), EA-RO (6), WE-AR (7), "
     "EA-AR (8), or for single-path disks WE (1) and EA (3). With the RO and AR types "
     "every registered path may write; the agent keeps only the active node registered. "
     "WE and EA let only the one path that reserved write, so multipath disks refuse "
     "them.", "string", False, DEFAULT_TYPE.short),
    ("iscsi_initiator", "iSCSI initiator name of this node",
     "This node's iSCSI initiator name for iscsi:// devices. Default: "
     "iqn.2026-11.org.hamon:NODE, derived from the node name as fence_hamon_scsi does.",
     "string", False, None),
    ("os_termination", "How the OS is terminated when every path failed during stop",
     "reboot (default), poweroff, crash (a kernel crash dump, where kdump is set up) or "
     "none. The termination is immediate (magic SysRq), without sync, which could hang "
     "on the failed disk. With none the OS keeps running, KAMN726-E and HAMN957-E are "
     "logged and the stop fails, so that Pacemaker fences the node instead.",
     "string", False, "reboot"),
    ("alias", "Server alias in messages",
     "The server alias that KAMN messages carry (HA Monitor's alias). Default: the "
     "resource id.", "string", False, None),
    ("command_timeout", "Bound of one SCSI command, seconds",
     "How long one SCSI command through one path may take before the path counts as "
     "failed. Paths are checked in parallel. Keep the stop timeout above 4 times this "
     "value plus 10 seconds.", "integer", False, str(DEFAULT_COMMAND_TIMEOUT)),
    ("journal", "Journal file",
     "Where failures and terminations are recorded durably (fsync) for hamon recover. "
     f"Default: the HAMON_JOURNAL environment variable, else {defaults.JOURNAL.default}.",
     "string", False, defaults.JOURNAL.default),
    ("state_dir", "Directory of the agent's small state files",
     "Where the agent remembers path states between monitors and whether this node "
     "started the resource (a tmpfs: nothing of it must survive a reboot). Default: "
     "the HAMON_STATE_DIR environment variable, else " + defaults.STATE_DIR.default + ".",
     "string", False, defaults.STATE_DIR.default),
]


def build_agent(ocf: ModuleType) -> object:
    """The ``ocf.Agent`` with every parameter and action (the handlers: :mod:`.agent`)."""
    agent = ocf.Agent(AGENT_NAME, shortdesc=xml_text(SHORTDESC), longdesc=xml_text(LONGDESC),
                      version=AGENT_VERSION, ocf_version=OCF_VERSION)
    for name, short, long, ctype, unique, default in PARAMETERS:
        agent.add_parameter(name, shortdesc=xml_text(short), longdesc=xml_text(long),
                            content_type=ctype, unique=unique, required=False,
                            default=None if default is None else xml_attr(default))
    agent.add_action("start", timeout=TIMEOUTS["start"])
    agent.add_action("stop", timeout=TIMEOUTS["stop"])
    agent.add_action("monitor", timeout=TIMEOUTS["monitor"], interval=MONITOR_INTERVAL,
                     depth=0)
    agent.add_action("validate-all", timeout=TIMEOUTS["validate-all"])
    agent.add_action("meta-data", timeout=TIMEOUTS["meta-data"])
    return agent


def metadata() -> str:
    """The metadata XML exactly as ``hamon_disk meta-data`` prints it."""
    return build_agent(load_ocf()).to_xml() + "\n"  # type: ignore[attr-defined]

