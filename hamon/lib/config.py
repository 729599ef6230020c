"""What the administrator configured and what the cluster says: shared disks, live nodes.

``hamon status`` shows "every configured disk", and ``hamon reservation cancel`` must know
which nodes are alive. Neither is stored by hamon itself: Pacemaker already holds the
truth, so it is asked, always with a time bound (a hung CIB manager must not hang the
administrator's command at 3 a.m.).

Configured disks come from two sources, both read, neither required:

1. **The CIB**: every ``ocf:hamon:hamon_disk`` primitive (parameters ``scsi_device``,
   ``dmmp_device``, ``iscsi_initiator``) and every ``stonith:fence_hamon_scsi`` primitive
   (``devices``, ``iscsi_initiator``), read with ``cibadmin -Q -o resources``. Pacemaker's
   own ``CIB_file=/path/cib.xml`` makes cibadmin read a saved CIB instead of the live one
   (that is how the tests feed one, and how a CIB from a crm_report can be inspected).
2. **A disks file**, ``/etc/hamon/disks`` (``$HAMON_DISKS_FILE``), for disks outside the
   cluster configuration or a node where Pacemaker is down: one shared disk per line,
   operands separated by commas or blanks (``iscsi://`` URLs on one line are the paths
   of one LUN), an optional ``initiator=IQN`` and ``alias=NAME`` (the server alias, for
   ``hamon monscsiclr``); ``#`` starts a comment::

       /dev/mapper/mpatha alias=svc
       iscsi://10.0.0.1/iqn.2026-11.org.example:t1/1 iscsi://10.0.1.1/iqn.2026-11.org.example:t1/1

Why not only the CIB: the CIB cannot be read while Pacemaker is down, which is exactly
when a disk failure has just terminated a node; why not only a file: a second list that
must be kept in step with the CIB goes stale. The union of both is shown, each disk once.

Membership (who is alive) comes from ``crm_node -l`` (every known node with its state;
``member`` is alive) with ``crm_node -q`` for quorum, falling back to
``crm_mon -1 --output-as=xml``. A partition without quorum cannot tell a dead node from
one on the other side of a split, so its answer is not trusted for destructive decisions.
Whether this node's own reservation is legitimate is a different question (it is alive,
it is running the command): crm_mon says whether a hamon_disk resource is active here.
"""
from __future__ import annotations

import errno
import os
import shutil
import subprocess
import xml.etree.ElementTree as ET
from collections.abc import Callable
from dataclasses import dataclass, field

from hamon.lib import keys as keymod
from hamon.lib.disk import split_operands
from hamon.lib.regular_file import NotRegularFile, read_regular

DEFAULT_DISKS_FILE = "/etc/hamon/disks"
CLUSTER_TIMEOUT = 10.0

#: (argv, timeout) -> (exit code, stdout, stderr); replaceable so tests need no cluster.
Runner = Callable[[list[str], float], tuple[int, str, str]]

#: Which primitive parameters name shared disks, per agent (class, provider, type).
DISK_PARAMS = {
    ("ocf", "hamon", "hamon_disk"): ("scsi_device", "dmmp_device"),
    ("stonith", None, "fence_hamon_scsi"): ("devices",),
}


class ConfigError(ValueError):
    """A configuration source that cannot be read as it stands (file and line named)."""


class ClusterUnavailable(RuntimeError):
    """The cluster could not be asked; the text says why."""


def run(argv: list[str], timeout: float) -> tuple[int, str, str]:
    """Run a cluster tool with a bound; never raises (127: missing, 124: timed out)."""
    if not shutil.which(argv[0]):
        return 127, "", f"{argv[0]}: not installed"
    try:
        p = subprocess.run(argv, capture_output=True, text=True, timeout=timeout,
                           check=False)
    except subprocess.TimeoutExpired:
        return 124, "", f"{argv[0]} did not answer within {timeout:g} s"
    except OSError as err:
        return 126, "", f"{argv[0]}: {err.strerror}"
    return p.returncode, p.stdout, p.stderr


def _first_line(text: str) -> str:
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    return lines[0] if lines else ""


# -- configured disks ----------------------------------------------------------------------
@dataclass(frozen=True)
class DiskSource:
    """Operands that make up one or more shared disks, and where they were configured."""

    operands: tuple[str, ...]
    origin: str                 # "/etc/hamon/disks:3", "CIB shared-disk (ocf:hamon:hamon_disk)"
    initiator: str | None = None
    #: the server alias (hamon_disk's ``alias``, else its resource id; ``alias=`` in the
    #: disks file); None for a fence device, which serves no alias
    alias: str | None = None


@dataclass
class Configured:
    sources: list[DiskSource] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # what could not be read, and why

    def operands(self) -> list[str]:
        seen: list[str] = []
        for s in self.sources:
            seen.extend(o for o in s.operands if o not in seen)
        return seen


#: The largest disks file read (bytes): a few hundred lines are a few kB; more is not a
#: disks file (``--disks-file /dev/zero``) and must not fill memory.
MAX_DISKS_FILE = 1024 * 1024


def read_bounded(path: str, limit: int = MAX_DISKS_FILE) -> str:
    """A regular file's text, at most ``limit`` bytes; ConfigError for a FIFO, a device,
    a directory or a larger file (opened without blocking: a FIFO never hangs us)."""
    try:
        raw = read_regular(path, limit)
    except NotRegularFile as err:
        raise ConfigError(f"{path}: larger than {limit // 1024} kB: not a disks file"
                          if err.errno == errno.EFBIG else
                          f"{path}: not a regular file; give the disks file") from None
    try:
        return raw.decode()
    except UnicodeDecodeError as err:
        raise ConfigError(f"{path}: not text ({err.reason} at byte {err.start})") from None


def disks_file_path() -> str:
    return os.environ.get("HAMON_DISKS_FILE") or DEFAULT_DISKS_FILE


def parse_disks_file(text: str, origin: str) -> list[DiskSource]:
    """The disks file, one disk per line; unknown ``name=value`` words are errors."""
    out = []
    for n, raw in enumerate(text.splitlines(), 1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        settings: dict[str, str] = {}
        operands = []
        for word in split_operands(line):
            if "=" in word and "://" not in word:
                name, _, value = word.partition("=")
                if name not in ("initiator", "alias") or not value:
                    raise ConfigError(f"{origin}:{n}: unknown setting {word!r}; a line "
                                      "holds device operands and optionally initiator=IQN "
                                      "and alias=NAME")
                settings[name] = value
            else:
                operands.append(word)
        if not operands:
            raise ConfigError(f"{origin}:{n}: no device on this line")
        out.append(DiskSource(tuple(operands), f"{origin}:{n}", settings.get("initiator"),
                              settings.get("alias")))
    return out


def parse_cib(xml_text: str) -> list[DiskSource]:
    """hamon primitives' disk operands from a CIB (whole, or its resources section)."""
    try:
        root = ET.fromstring(xml_text)
    except ET.ParseError as err:
        raise ConfigError(f"the CIB is not readable XML: {err}") from None
    out = []
    for prim in root.iter("primitive"):
        cls, prov, typ = prim.get("class"), prim.get("provider"), prim.get("type")
        params = DISK_PARAMS.get((cls or "", prov if cls == "ocf" else None, typ or ""))
        if params is None:
            continue
        values: dict[str, str] = {}
        for attrs in prim.findall("instance_attributes"):
            for nv in attrs.findall("nvpair"):
                name, value = nv.get("name"), nv.get("value")
                if name and value is not None:
                    values.setdefault(name, value)
        operands = [o for p in params for o in split_operands(values.get(p, ""))]
        if not operands:
            continue
        agent = f"{cls}:{prov}:{typ}" if cls == "ocf" else f"{cls}:{typ}"
        alias = (values.get("alias") or prim.get("id")) if cls == "ocf" else None
        out.append(DiskSource(tuple(operands), f"CIB {prim.get('id')} ({agent})",
                              values.get("iscsi_initiator") or None, alias))
    return out


def parse_node_keys(xml_text: str) -> dict[int, str]:
    """Explicit keys -> node, from every fence_hamon_scsi primitive's ``node_keys``
    (``node1=0x1001,node2=0x1002``). Entries that do not parse are skipped: the fence
    agent's validate-all reports them; here they only name key owners."""
    try:
        root = ET.fromstring(xml_text)
    except ET.ParseError:
        return {}
    out: dict[int, str] = {}
    for prim in root.iter("primitive"):
        if (prim.get("class"), prim.get("type")) != ("stonith", "fence_hamon_scsi"):
            continue
        for nv in prim.iter("nvpair"):
            if nv.get("name") != "node_keys":
                continue
            for item in split_operands(nv.get("value") or ""):
                node, _, value = item.partition("=")
                try:
                    if node:
                        out[keymod.parse_key(value)] = node
                except ValueError:
                    continue
    return out


def configured_node_keys(timeout: float = CLUSTER_TIMEOUT,
                         runner: Runner | None = None) -> dict[int, str]:
    """Explicit per-node keys from the CIB; {} when there are none or it cannot be read."""
    rc, out, _ = (runner or run)(["cibadmin", "-Q", "-o", "resources"], timeout)
    return parse_node_keys(out) if rc == 0 else {}


def configured_disks(disks_file: str | None = None, *, cib: bool = True,
                     timeout: float = CLUSTER_TIMEOUT, runner: Runner | None = None
                     ) -> Configured:
    """Every configured disk source: the CIB's hamon primitives, then the disks file.

    A source that cannot be read is a note, not an error: status shows what it can.
    A disks file that exists but is wrong *is* an error (ConfigError): silently skipping
    a disk the administrator listed would hide exactly the disk that failed.
    """
    runner = runner or run
    conf = Configured()
    if cib:
        rc, out, err = runner(["cibadmin", "-Q", "-o", "resources"], timeout)
        if rc == 0:
            conf.sources.extend(parse_cib(out))
        else:
            conf.notes.append(f"CIB not read: {_first_line(err) or f'cibadmin exit {rc}'}")
    path = disks_file or disks_file_path()
    try:
        text = read_bounded(path)
    except FileNotFoundError:
        if disks_file:  # named explicitly: its absence is a mistake worth saying
            raise ConfigError(f"{path}: no such file") from None
        conf.notes.append(f"{path}: none")
    except OSError as err:
        raise ConfigError(f"{path}: cannot read: {err.strerror}") from None
    else:
        conf.sources.extend(parse_disks_file(text, path))
    return conf


# -- membership --------------------------------------------------------------------------
@dataclass(frozen=True)
class Membership:
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
        root = ET.fromstring(text)
    except ET.ParseError as err:
        raise ClusterUnavailable(f"crm_mon gave unreadable XML: {err}") from None
    nodes = {n.get("name", ""): n.get("online") == "true" for n in root.iter("node")
             if n.get("name") and n.get("type", "member") == "member"}
    dc = root.find(".//current_dc")
    quorate = None if dc is None or dc.get("with_quorum") is None else \
        dc.get("with_quorum") == "true"
    return nodes, quorate


def membership(timeout: float = CLUSTER_TIMEOUT, runner: Runner | None = None
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
        reasons.append(_first_line(err) or f"crm_node -l exit {rc}")
    rc, out, err = runner(["crm_mon", "-1", "--output-as=xml"], timeout)
    if rc == 0:
        nodes, quorate = parse_crm_mon_xml(out)
        if nodes:
            return Membership(nodes, quorate, "crm_mon")
        reasons.append("crm_mon listed no node")
    else:
        reasons.append(_first_line(err) or f"crm_mon exit {rc}")
    raise ClusterUnavailable("; ".join(dict.fromkeys(reasons)))


def parse_active_resources(xml_text: str, node: str,
                           agent: str = "ocf:hamon:hamon_disk") -> list[str]:
    """Resources of ``agent`` that crm_mon shows active on ``node``."""
    try:
        root = ET.fromstring(xml_text)
    except ET.ParseError as err:
        raise ClusterUnavailable(f"crm_mon gave unreadable XML: {err}") from None
    return [r.get("id", "?") for r in root.iter("resource")
            if r.get("resource_agent") == agent and r.get("active") == "true"
            and any(n.get("name") == node for n in r.findall("node"))]


def active_disk_resources(node: str, timeout: float = CLUSTER_TIMEOUT,
                          runner: Runner | None = None) -> list[str]:
    """The hamon_disk resources active on ``node`` (``crm_mon -1 --output-as=xml``).

    Why: after a failure terminated a node, its own key still holds the reservation when
    it boots again; that reservation is stale exactly when no hamon_disk resource is
    active there. ClusterUnavailable when crm_mon cannot say.
    """
    rc, out, err = (runner or run)(["crm_mon", "-1", "--output-as=xml"], timeout)
    if rc != 0:
        raise ClusterUnavailable(_first_line(err) or f"crm_mon exit {rc}")
    return parse_active_resources(out, node)
