"""Reservation keys: one stable 8-byte key per node and cluster, predictable by an
administrator, recognisable as this cluster's.

Format (printed as sg_persist prints keys, ``0x...``), as fence_scsi does it (a hash of
the cluster name first, then the node)::

    bytes 0-3   sha256(cluster name)[0:4]   the cluster part: equal for every node of it
    bytes 4-7   sha256(node name)[0:4]      the node part

The cluster name is corosync's ``totem.cluster_name``: given explicitly (the agents'
``cluster_name`` parameter, ``hamon --cluster-name``), else ``$HAMON_CLUSTER_NAME``, else
``corosync-cmapctl -g totem.cluster_name`` (the running cluster), else ``cluster_name:``
in ``/etc/corosync/corosync.conf`` (a node whose corosync is down: the administrator's
commands after a reboot). Why the names and nothing else: the fence agent on node A must
compute the key of the victim B, and B's resource agent its own, with no shared state; a
corosync nodeid is not always readable from a fence agent's process. Two clusters that
both have a ``node1`` and see one LUN by mistake get different keys, so each can tell the
other's key from its own: hamon_disk's start refuses to take a disk from a foreign key.

Four bytes for the node make a collision among a cluster's nodes negligible (2^-32 per
pair); the agents refuse a configuration in which two listed nodes map to one key.
Never 0 (a key of 0 means "unregister" in SPC-4): a derivation that gives 0 gives 1.

Old keys (before issue 12: ``0x686d`` "hm" + sha256(node name)[0:6], :func:`legacy_key`)
are still recognised as *this cluster's old key* of a node wherever hamon names a key's
owner or decides whether a key is a member's; docs/hamon_disk.md says how a cluster moves
from them. With no cluster name anywhere (no corosync configuration at all: a test
bench, a demo) the key is the old derivation, which is what every node without a cluster
name computes alike.

Compute one by hand: ``hamon key NODE`` (shows both parts) or
``printf %s CLUSTER | sha256sum | cut -c1-8`` followed by
``printf %s NODE | sha256sum | cut -c1-8``.
"""
from __future__ import annotations

import functools
import re
from typing import NamedTuple

from hamon.lib import defaults
from hamon.lib.transport.digest import sha256 as _sha256

LEGACY_PREFIX = 0x686D  # "hm": the old keys' first two bytes
_HEX = re.compile(r"^(0x)?[0-9a-f]{1,16}$", re.IGNORECASE)
_CONF_NAME = re.compile(r"^\s*cluster_name\s*:\s*(\S+)\s*$", re.MULTILINE)


def _sha4(text: str) -> int:
    return int.from_bytes(_sha256(text.encode("utf-8")).digest()[:4], "big")


def _check_node(node: str) -> None:
    if not node or not node.strip():
        raise ValueError("cannot derive a reservation key from an empty node name")


def cluster_part(cluster: str) -> int:
    """The first four bytes of every key of ``cluster``."""
    return _sha4(cluster)


def legacy_key(node: str) -> int:
    """The key hamon derived before keys named their cluster: 0x686d + 6 bytes."""
    _check_node(node)
    digest = _sha256(node.encode("utf-8")).digest()
    return (LEGACY_PREFIX << 48) | int.from_bytes(digest[:6], "big")


def _from_corosync(timeout: float = 5.0) -> str | None:
    """The running cluster's name (cmap), else corosync.conf's; None when neither says."""
    from hamon.lib import cluster  # the one cluster adapter (run: bounded, never raises)
    rc, out, _ = cluster.run(["corosync-cmapctl", "-g", "totem.cluster_name"], timeout)
    if rc == 0 and "=" in out:
        name = out.split("=", 1)[1].strip()
        if name:
            return name
    try:
        with open(cluster.COROSYNC_CONF, encoding="utf-8", errors="replace") as f:
            m = _CONF_NAME.search(f.read(1 << 20))
    except OSError:
        return None
    return m.group(1) if m else None


@functools.lru_cache(maxsize=1)
def _cached_corosync_name() -> str | None:
    return _from_corosync()


def cluster_name(explicit: str | None = None) -> str | None:
    """This cluster's name: ``explicit``, ``$HAMON_CLUSTER_NAME``, corosync (cmap, then
    corosync.conf; asked once per process), or None when nothing names one."""
    if explicit:
        return explicit
    if defaults.CLUSTER_NAME.is_set():
        return defaults.CLUSTER_NAME.get() or None
    return _cached_corosync_name()


def key_for_node(node: str, cluster: str | None = None) -> int:
    """The derived key of ``node`` (exact name, as Pacemaker knows it) in ``cluster``
    (default: :func:`cluster_name`; none known: the old derivation)."""
    _check_node(node)
    name = cluster if cluster is not None else cluster_name()
    if not name:
        return legacy_key(node)
    key = (cluster_part(name) << 32) | _sha4(node)
    return key or 1


class KeyParts(NamedTuple):
    """A derived key and where its parts come from, for ``hamon key``."""

    node: str
    cluster: str | None
    key: int

    @property
    def cluster_hex(self) -> str:
        return f"{self.key >> 32:08x}" if self.cluster else "-"

    @property
    def node_hex(self) -> str:
        return f"{self.key & 0xFFFFFFFF:08x}" if self.cluster else "-"


def parts(node: str, cluster: str | None = None) -> KeyParts:
    name = cluster if cluster is not None else cluster_name()
    return KeyParts(node, name or None, key_for_node(node, name or ""))


def parse_key(text: str | int) -> int:
    """An explicit key: hex with or without ``0x``, 1 to 16 digits, never 0."""
    if isinstance(text, int):
        value = text
    else:
        t = text.strip()
        if not _HEX.match(t):
            raise ValueError(f"reservation key {text!r} is not 1 to 16 hex digits "
                             "(e.g. 0x686d0a1b2c3d4e5f)")
        value = int(t, 16)
    if value == 0:
        raise ValueError("reservation key 0 is not allowed: SPC-4 reads key 0 as "
                         "'unregister'; give a non-zero key or leave it unset")
    if not 0 < value < 1 << 64:
        raise ValueError(f"reservation key {text!r} does not fit in 8 bytes")
    return value


def resolve_key(explicit: str | int | None, node: str, cluster: str | None = None) -> int:
    """The explicit key when given (administrator's choice wins), else the derived one."""
    if explicit not in (None, ""):
        return parse_key(explicit)
    return key_for_node(node, cluster)


def is_legacy_key(key: int) -> bool:
    """An old hamon key (0x686d...), of whatever node."""
    return key >> 48 == LEGACY_PREFIX


def is_cluster_key(key: int, cluster: str | None = None) -> bool:
    """A key derived in this cluster (its cluster part), of whatever node."""
    name = cluster if cluster is not None else cluster_name()
    return bool(name) and key >> 32 == cluster_part(name or "")


def is_hamon_key(key: int, cluster: str | None = None) -> bool:
    """Derived by hamon in this cluster, or an old hamon key: a key whose owner hamon can
    name from node names alone."""
    return is_legacy_key(key) or is_cluster_key(key, cluster)


def owner_of(key: int, nodes: list[str], cluster: str | None = None) -> str | None:
    """Which of ``nodes`` derives ``key`` (the current or the old derivation), so hamon
    can name registrants; :func:`owner_label` says which one."""
    for n in nodes:
        if key in (key_for_node(n, cluster), legacy_key(n)):
            return n
    return None


def owner_label(key: int, nodes: list[str], cluster: str | None = None) -> str | None:
    """``node1``, or ``node1, old key`` for the old derivation; None if nobody's."""
    for n in nodes:
        if key == key_for_node(n, cluster):
            return n
        if key == legacy_key(n):
            return f"{n}, old key"
    return None


def member_keys(nodes: list[str], explicit: dict[str, int] | None = None,
                cluster: str | None = None) -> dict[int, str]:
    """Every key a node of this cluster may hold -> its node: the derived key, the old
    one, and an explicit key (``node_keys``). What start may take a disk from."""
    out: dict[int, str] = {}
    for n in nodes:
        out[legacy_key(n)] = n
        out[key_for_node(n, cluster)] = n
    for n, k in (explicit or {}).items():
        out[k] = n
    return out


def parse_node_keys(text: str) -> dict[str, int]:
    """``node1=0x1001,node2=0x1002`` (commas or blanks) -> {node: key}; ValueError names
    the bad entry. The same syntax as fence_hamon_scsi's ``node_keys``."""
    out: dict[str, int] = {}
    for item in text.replace(",", " ").split():
        name, sep, value = item.partition("=")
        if not sep or not name or not value:
            raise ValueError(f"{item!r} is not NODE=KEY (e.g. node1=0x1001,node2=0x1002)")
        if name in out:
            raise ValueError(f"node {name!r} is listed twice")
        out[name] = parse_key(value)
    return out


def check_unique(keys_by_node: dict[str, int]) -> None:
    """Refuse two nodes with one key: fencing one would fence both."""
    seen: dict[int, str] = {}
    for node, key in keys_by_node.items():
        if key in seen:
            raise ValueError(f"nodes {seen[key]!r} and {node!r} have the same reservation "
                             f"key 0x{key:x}; give each node its own key")
        seen[key] = node
