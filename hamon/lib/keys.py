"""Reservation keys: one stable 8-byte key per node, predictable by an administrator.

Format (printed as sg_persist prints keys, ``0x686d...``)::

    bytes 0-1   0x68 0x6d      ASCII "hm": a hamon key, recognisable in `sg_persist -k`
    bytes 2-7   sha256(node name)[0:6]

Why the node name and nothing else: the fence agent on node A must compute the key of the
victim B, and B's resource agent must compute its own, with no shared state and possibly
with corosync down. A corosync nodeid (what fence_scsi uses) is not always readable from a
fence agent's process, and two derivations that can disagree would make a fence remove
nobody. The name is what Pacemaker passes (``port``/``plug``, ``OCF_RESKEY_CRM_meta_on_node``).
Six bytes of SHA-256 make a collision among a cluster's nodes negligible (2^-48 per pair);
the agents still refuse a configuration in which two listed nodes map to one key.

Never 0 (the "hm" prefix guarantees it): a key of 0 means "unregister" in SPC-4.
Compute one by hand: ``hamon key NODE`` or
``printf %s NODE | sha256sum | cut -c1-12`` prefixed with ``686d``.
"""
from __future__ import annotations

import hashlib
import re

PREFIX = 0x686D  # "hm"
_HEX = re.compile(r"^(0x)?[0-9a-f]{1,16}$", re.IGNORECASE)


def key_for_node(node: str) -> int:
    """The derived key of ``node`` (exact name, as Pacemaker knows it)."""
    if not node or not node.strip():
        raise ValueError("cannot derive a reservation key from an empty node name")
    digest = hashlib.sha256(node.encode("utf-8")).digest()
    return (PREFIX << 48) | int.from_bytes(digest[:6], "big")


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


def resolve_key(explicit: str | int | None, node: str) -> int:
    """The explicit key when given (administrator's choice wins), else the derived one."""
    if explicit not in (None, ""):
        return parse_key(explicit)
    return key_for_node(node)


def is_hamon_key(key: int) -> bool:
    return key >> 48 == PREFIX


def owner_of(key: int, nodes: list[str]) -> str | None:
    """Which of ``nodes`` derives ``key``, so `hamon keys` can name registrants."""
    for n in nodes:
        if key_for_node(n) == key:
            return n
    return None


def check_unique(keys_by_node: dict[str, int]) -> None:
    """Refuse two nodes with one key: fencing one would fence both."""
    seen: dict[int, str] = {}
    for node, key in keys_by_node.items():
        if key in seen:
            raise ValueError(f"nodes {seen[key]!r} and {node!r} have the same reservation "
                             f"key 0x{key:x}; give each node its own key")
        seen[key] = node
