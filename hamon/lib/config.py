"""What the administrator configured: the shared disks, from the CIB and a disks file.

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

Who is alive is the cluster adapter's question (:mod:`hamon.lib.cluster`).
"""
from __future__ import annotations

import errno
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field

from hamon.lib import cluster, defaults
from hamon.lib import keys as keymod
from hamon.lib.cluster import TIMEOUT, Runner, first_line
from hamon.lib.disk import split_operands
from hamon.lib.regular_file import NotRegularFile, read_regular

#: Which primitive parameters name shared disks, per agent (class, provider, type).
DISK_PARAMS = {
    ("ocf", "hamon", "hamon_disk"): ("scsi_device", "dmmp_device"),
    ("stonith", None, "fence_hamon_scsi"): ("devices",),
}


class ConfigError(ValueError):
    """A configuration source that cannot be read as it stands (file and line named)."""


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
    return defaults.DISKS_FILE.get()


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


def configured_node_keys(timeout: float = TIMEOUT,
                         runner: Runner | None = None) -> dict[int, str]:
    """Explicit per-node keys from the CIB; {} when there are none or it cannot be read."""
    rc, out, _ = (runner or cluster.run)(["cibadmin", "-Q", "-o", "resources"], timeout)
    return parse_node_keys(out) if rc == 0 else {}


def configured_disks(disks_file: str | None = None, *, cib: bool = True,
                     timeout: float = TIMEOUT, runner: Runner | None = None
                     ) -> Configured:
    """Every configured disk source: the CIB's hamon primitives, then the disks file.

    A source that cannot be read is a note, not an error: status shows what it can.
    A disks file that exists but is wrong *is* an error (ConfigError): silently skipping
    a disk the administrator listed would hide exactly the disk that failed.
    """
    runner = runner or cluster.run
    conf = Configured()
    if cib:
        rc, out, err = runner(["cibadmin", "-Q", "-o", "resources"], timeout)
        if rc == 0:
            conf.sources.extend(parse_cib(out))
        else:
            conf.notes.append(f"CIB not read: {first_line(err) or f'cibadmin exit {rc}'}")
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


