"""When hamon may cancel a reservation (HA Monitor §7.5.12, §9.21), as pure decisions.

HA Monitor's own procedure says: first make sure the failed active server is stopped
(stopped, shut down or powered off), then release the reservation (§7.5.11). hamon checks
that itself before it clears anything, for ``hamon reservation cancel`` and ``hamon
monscsiclr`` alike, with one policy (:func:`refusal`):

* a disk held by the key of a node the cluster sees alive is refused: CLEAR would take the
  disk from under a running service;
* a disk held by this node's own key is refused while a hamon_disk resource runs here (the
  reservation is legitimate); with none running it is the stale reservation a terminated
  OS left behind, and cancelling it here is the procedure;
* when hamon cannot tell who is alive (the cluster does not answer, no quorum), a disk
  held by another key is refused;
* a key that is neither hamon-derived nor named in ``node_keys`` (another product,
  another cluster) is refused: hamon cannot tell whether its owner is alive.

``--force`` overrides a refusal and is recorded. Everything here is a function of plain
data, so each cell is unit-tested; the callers (hamon.cli) gather the data (PR IN, the
cluster's membership, crm_mon) with time bounds.
"""
from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass

from hamon.lib import keys as keymod
from hamon.lib.config import DiskSource


@dataclass(frozen=True)
class Holder:
    """One disk's reservation as PR IN read it."""

    disk: str
    held: bool
    key: int | None                     # the holder's key (None for all-registrants types)
    keys: tuple[int, ...] = ()          # every registered key

    @property
    def holder_keys(self) -> set[int]:
        """The keys that hold it: the holder, or every registrant (WE-AR/EA-AR)."""
        return {self.key} if self.key else set(self.keys)


@dataclass(frozen=True)
class Liveness:
    """Who is alive, as the cluster (or the --nodes-online hook) said."""

    me: str
    online: frozenset[str]
    unknown_why: str = ""               # not "": the cluster cannot say (and why)


#: (does a hamon_disk resource run on this node?, why) -- asked only when needed
HeldHere = Callable[[], tuple[bool | None, str]]


def owners(keys: Iterable[int], online: Iterable[str], explicit: Mapping[int, str],
           key_of: Callable[[str], int] = keymod.key_for_node) -> set[str]:
    """The live nodes among the owners of ``keys``: derived keys (the current and the old
    derivation) and ``node_keys``."""
    keys = set(keys)
    online = set(online)
    found = {n for n in online if key_of(n) in keys or keymod.legacy_key(n) in keys}
    found |= {explicit[k] for k in keys if k in explicit and explicit[k] in online}
    return found


def refusal(h: Holder, *, my_key: int, live: Liveness, explicit: Mapping[int, str],
            describe: str, held_here: HeldHere,
            key_of: Callable[[str], int] = keymod.key_for_node) -> str | None:
    """Why cancelling ``h`` is refused, or None when it may be cancelled.

    ``describe`` names the holder for the administrator (``0x... (node2)``);
    ``held_here`` is called only when this node's own key holds the disk.
    """
    if not h.held:
        return None
    holder_keys = h.holder_keys
    mine = {my_key} | {k for k, n in explicit.items() if n == live.me}
    others = holder_keys - mine
    online = set() if live.unknown_why else set(live.online)
    live_nodes = sorted(owners(others, online, explicit, key_of) - {live.me})
    if holder_keys & mine:
        here, why = held_here()
        if here is None:
            return (f"{h.disk} is held by this node's own key ({describe}), and {why}")
        if here:
            live_nodes.append(f"{live.me} (this node: {why})")
    if live_nodes:
        return (f"{h.disk} is held by {describe}, and {', '.join(live_nodes)} is a live "
                "cluster node")
    if others and live.unknown_why:
        return f"{h.disk} is held by {describe}, and {live.unknown_why}"
    if any(not keymod.is_hamon_key(k) and k not in explicit for k in others):
        return (f"{h.disk} is held by {describe}: hamon cannot tell whether the node "
                "behind that key is alive (the fence device's node_keys can name it)")
    return None


@dataclass(frozen=True)
class AliasDevices:
    """The devices of a server alias, and where each set was configured."""

    alias: str
    groups: tuple[tuple[tuple[str, ...], str, str | None], ...]  # (operands, origin, ini)

    @property
    def operands(self) -> list[str]:
        return list(dict.fromkeys(o for ops, _, _ in self.groups for o in ops))


def devices_of_alias(sources: Sequence[DiskSource], alias: str) -> AliasDevices:
    """Every configured source whose alias is ``alias``: monscsiclr's "every device in
    that server's scsi_device and dmmp_device operands" (§9.21). A source without an
    alias (a fence device) never matches."""
    groups = tuple((s.operands, s.origin, s.initiator) for s in sources
                   if s.alias is not None and s.alias == alias)
    return AliasDevices(alias, groups)


def verdict(results: Sequence[bool]) -> str:
    """KAMN108-I's result: SUCCESS only when every device was released."""
    return "SUCCESS" if results and all(results) else "FAILURE"
