"""The one cluster adapter: every question hamon asks Pacemaker or corosync, bounded.

``run`` is the only way hamon starts a cluster tool (crm_node, crm_mon, cibadmin,
corosync-cmapctl, attrd_updater): always with a time bound, never raising, so a hung CIB
manager can neither hang an agent action (a stop that hangs is a stop that times out, and
a stop timeout is a fence) nor the administrator's command at 3 a.m. ``TIMEOUT`` is the
one bound, for agents and the command alike: a cluster that has not answered in five
seconds will not answer usefully in ten.

Membership (who is alive) comes from ``crm_node -l`` (every known node with its state;
``member`` is alive) with ``crm_node -q`` for quorum, falling back to
``crm_mon -1 --output-as=xml``. A partition without quorum cannot tell a dead node from
one on the other side of a split, so its answer is not trusted for destructive decisions.
Whether this node's own reservation is legitimate is a different question (it is alive,
it is running the command): crm_mon says whether a hamon_disk resource is active here.
The node names come from the same ``crm_node -l`` parser, or from corosync's nodelist
where Pacemaker may not run (the fence agent's ``list``), or from corosync.conf's
nodelist where corosync does not run either (a node rebooted after a failure, before it
rejoins: where ``hamon recover`` runs).
"""
from __future__ import annotations

import os
import re
import shutil
import subprocess
from collections.abc import Callable
from typing import TYPE_CHECKING, NamedTuple

if TYPE_CHECKING:
    from xml.etree.ElementTree import Element

#: Bound for every cluster tool call (seconds).
TIMEOUT = 5.0
#: corosync's configuration: the cluster name and the nodelist when corosync is not
#: running (hamon.lib.keys reads the name from it too).
COROSYNC_CONF = "/etc/corosync/corosync.conf"
_CONF_NODE = re.compile(r"\bnode\s*\{([^{}]*)\}")
_CONF_FIELD = re.compile(r"^\s*(name|ring0_addr|nodeid)\s*:\s*(\S+)\s*$", re.MULTILINE)

#: (argv, timeout) -> (exit code, stdout, stderr); replaceable so tests need no cluster.
Runner = Callable[[list[str], float], tuple[int, str, str]]


class ClusterUnavailable(RuntimeError):
    """The cluster could not be asked; the text says why."""


def run(argv: list[str], timeout: float = TIMEOUT) -> tuple[int, str, str]:
    """Run a tool with a bound; never raises (127 missing, 124 timed out). The one
    runner: cluster tools, and also journalctl for recovery and the OS termination's
    fallback command."""
    if not shutil.which(argv[0]):
        return 127, "", f"{argv[0]}: not installed"
    try:
        p = subprocess.run(argv, capture_output=True, text=True, timeout=timeout,
                           check=False, stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired:
        return 124, "", f"{argv[0]} did not answer within {timeout:g} s"
    except OSError as err:
        return 126, "", f"{argv[0]}: {err.strerror}"
    return p.returncode, p.stdout, p.stderr


def _xml(text: str) -> Element:
    """Parse crm_mon's XML; ElementTree is imported here, not by every agent start (the
    fence agent's ``off`` imports this module for the cluster name only)."""
    import xml.etree.ElementTree as ET

    return ET.fromstring(text)


def first_line(text: str) -> str:
    """The first non-blank line of a tool's output (its error, usually)."""
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    return lines[0] if lines else ""


# -- membership --------------------------------------------------------------------------
class Membership(NamedTuple):
    """Known nodes and whether each is alive, as one source saw it."""

    nodes: dict[str, bool]      # name -> online
    quorate: bool | None        # None: the source does not say
    source: str

    def online(self) -> set[str]:
        return {n for n, up in self.nodes.items() if up}


def parse_crm_node_list(text: str) -> dict[str, bool]:
    """``crm_node -l``: ``<id> <name> <state>`` per line; state ``member`` is alive."""
    nodes = {}
    for line in text.splitlines():
        parts = line.split()
        if len(parts) >= 3 and parts[0].isdigit():
            nodes[parts[1]] = parts[2] == "member"
        elif len(parts) == 2 and parts[0].isdigit():
            nodes[parts[1]] = False  # a node with no known state is not known alive
    return nodes


def parse_crm_mon_xml(text: str) -> tuple[dict[str, bool], bool | None]:
    try:
        root = _xml(text)
    except SyntaxError as err:  # ElementTree.ParseError
        raise ClusterUnavailable(f"crm_mon gave unreadable XML: {err}") from None
    nodes = {n.get("name", ""): n.get("online") == "true" for n in root.iter("node")
             if n.get("name") and n.get("type", "member") == "member"}
    dc = root.find(".//current_dc")
    quorate = None if dc is None or dc.get("with_quorum") is None else \
        dc.get("with_quorum") == "true"
    return nodes, quorate


def membership(timeout: float = TIMEOUT, runner: Runner | None = None
               ) -> Membership:
    """Ask the cluster who is alive; ClusterUnavailable (with every reason) if it cannot."""
    runner = runner or run
    rc, out, err = runner(["crm_node", "-l"], timeout)
    reasons = []
    if rc == 0:
        nodes = parse_crm_node_list(out)
        if nodes:
            _, qout, _ = runner(["crm_node", "-q"], timeout)
            quorate = {"1": True, "0": False}.get(qout.strip())  # exit code varies by version
            return Membership(nodes, quorate, "crm_node -l")
        reasons.append("crm_node -l listed no node")
    else:
        reasons.append(first_line(err) or f"crm_node -l exit {rc}")
    rc, out, err = runner(["crm_mon", "-1", "--output-as=xml"], timeout)
    if rc == 0:
        nodes, quorate = parse_crm_mon_xml(out)
        if nodes:
            return Membership(nodes, quorate, "crm_mon")
        reasons.append("crm_mon listed no node")
    else:
        reasons.append(first_line(err) or f"crm_mon exit {rc}")
    raise ClusterUnavailable("; ".join(dict.fromkeys(reasons)))


def parse_active_resources(xml_text: str, node: str,
                           agent: str = "ocf:hamon:hamon_disk") -> list[str]:
    """Resources of ``agent`` that crm_mon shows active on ``node``."""
    try:
        root = _xml(xml_text)
    except SyntaxError as err:  # ElementTree.ParseError
        raise ClusterUnavailable(f"crm_mon gave unreadable XML: {err}") from None
    return [r.get("id", "?") for r in root.iter("resource")
            if r.get("resource_agent") == agent and r.get("active") == "true"
            and any(n.get("name") == node for n in r.findall("node"))]


def active_disk_resources(node: str, timeout: float = TIMEOUT,
                          runner: Runner | None = None) -> list[str]:
    """The hamon_disk resources active on ``node`` (``crm_mon -1 --output-as=xml``).

    Why: after a failure terminated a node, its own key still holds the reservation when
    it boots again; that reservation is stale exactly when no hamon_disk resource is
    active there. ClusterUnavailable when crm_mon cannot say.
    """
    rc, out, err = (runner or run)(["crm_mon", "-1", "--output-as=xml"], timeout)
    if rc != 0:
        raise ClusterUnavailable(first_line(err) or f"crm_mon exit {rc}")
    return parse_active_resources(out, node)


def read_cib(timeout: float = TIMEOUT, runner: Runner = run) -> tuple[str | None, str]:
    """The whole CIB (``cibadmin -Q``; ``CIB_file`` is honoured by cibadmin itself)."""
    rc, out, err = runner(["cibadmin", "-Q"], timeout)
    if rc != 0:
        return None, (err.strip().splitlines() or [f"cibadmin exit {rc}"])[0]
    return out, ""


def node_names(timeout: float = TIMEOUT, runner: Runner = run) -> list[str]:
    """This cluster's node names (``crm_node -l``), to name the owner of a key and to
    tell a node of this cluster from a host outside it; [] if nothing says.

    Where Pacemaker cannot answer within ``timeout`` (a loaded node: crm_node took 5.7-7.7
    s in the VM cluster's guests during a takeover) the names come from corosync.conf's
    nodelist: who is *configured*, which is the question here, never who is alive.
    Without it a standby's start found the failed active node's key "foreign" and
    refused the takeover exactly when the cluster was under stress."""
    rc, out, _ = runner(["crm_node", "-l"], timeout)
    names = list(parse_crm_node_list(out)) if rc == 0 else []
    return names or conf_nodes()


def corosync_nodes(tool: str = "/usr/sbin/corosync-cmapctl", timeout: float = TIMEOUT,
                   runner: Runner = run) -> list[str]:
    """Node names from ``corosync-cmapctl nodelist`` (name, else ring0_addr), in node-id
    order; [] if corosync cannot say. For the fence agent's ``list``, which must work
    where Pacemaker's tools cannot answer (fenced asks before the cluster is up)."""
    if not os.access(tool, os.X_OK):
        return []
    rc, out, _ = runner([tool, "nodelist"], timeout)
    if rc != 0:
        return []
    by_id: dict[str, dict[str, str]] = {}
    for m in re.finditer(r"^nodelist\.node\.(\d+)\.(name|ring0_addr) \(str\) = (\S+)$",
                         out, re.MULTILINE):
        by_id.setdefault(m[1], {})[m[2]] = m[3]
    return [v.get("name") or v["ring0_addr"]
            for _, v in sorted(by_id.items(), key=lambda x: int(x[0]))]


def conf_nodes(text: str | None = None) -> list[str]:
    """Node names from corosync.conf's nodelist (``name``, else ``ring0_addr``), in the
    file's order; [] if the file is absent or lists none. ``text``: the file's contents
    (default: read :data:`COROSYNC_CONF`). Who is configured, not who is alive: to name
    key owners and to tell this cluster's nodes from other hosts, never to decide
    whether a node is up."""
    if text is None:
        try:
            with open(COROSYNC_CONF, encoding="utf-8", errors="replace") as f:
                text = f.read(1 << 20)
        except OSError:
            return []
    names = []
    for block in _CONF_NODE.finditer(text):
        fields = dict(m.groups() for m in _CONF_FIELD.finditer(block[1]))
        name = fields.get("name") or fields.get("ring0_addr")
        if name:
            names.append(name)
    return names
