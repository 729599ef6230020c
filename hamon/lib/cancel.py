"""When hamon may cancel a reservation (HA Monitor §7.5.12, §9.21), as pure decisions.

HA Monitor's own procedure says: first make sure the failed active server is stopped
(stopped, shut down or powered off), then release the reservation (§7.5.11). hamon checks
that itself before it clears anything, for ``hamon reservation cancel`` and ``hamon
monscsiclr`` alike, with one policy (:func:`judge`, :func:`decide`):

* a disk held by the key of a node the cluster sees alive is refused: CLEAR would take the
  disk from under a running service;
* a disk held by this node's own key is refused while a hamon_disk resource runs here (the
  reservation is legitimate); with none running it is the stale reservation a terminated
  OS left behind, and cancelling it here is the procedure;
* when hamon cannot tell who is alive (the cluster does not answer, no quorum), a disk
  held by another key is refused;
* a key that is neither hamon-derived nor named in ``node_keys`` (another product,
  another cluster) is refused: hamon cannot tell whether its owner is alive.

``--force`` overrides a refusal and is recorded. The decision is a function of plain data
(:class:`Facts`: who is alive, this node, the hamon_disk resources active here, the
configured keys; :class:`Holder`: one disk's reservation as PR IN read it), so each cell
is unit-tested. The facts are gathered by :func:`ask_membership` and :func:`ask_here`
through :mod:`hamon.lib.cluster` (bounded), and only when the decision needs them
(:func:`needs_here`, :func:`needs_node_keys`); the command (hamon.cli) reads the disks,
acts on the decision and prints it.
"""
from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum

from hamon.lib import cluster
from hamon.lib import keys as keymod
from hamon.lib.config import DiskSource
from hamon.lib.recovery.observed import describe_key


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
class Facts:
    """Everything the decision depends on besides the disk itself, as plain data.

    ``online``/``unknown_why``: who is alive, as the cluster said (``unknown_why`` not
    "": the cluster cannot say, or says it without quorum; nobody is then known alive).
    ``active_here``: the hamon_disk resources active on this node (None: crm_mon cannot
    say, ``here_why`` says why); asked only when this node's own key holds a disk.
    ``explicit``: configured keys (the fence device's node_keys) -> node.
    ``nodes``: node names to name key owners with. ``force``: the administrator's
    ``--force``. ``cluster``: the cluster name keys are derived with (``--cluster-name``;
    None: as hamon.lib.keys.cluster_name finds it).
    """

    me: str
    my_key: int
    online: frozenset[str] = frozenset()
    unknown_why: str = ""
    active_here: tuple[str, ...] | None = ()
    here_why: str = ""
    explicit: Mapping[int, str] = field(default_factory=dict)
    nodes: tuple[str, ...] = ()
    force: bool = False
    cluster: str | None = None

    @property
    def live(self) -> frozenset[str]:
        """The nodes known alive: none when the cluster cannot say."""
        return frozenset() if self.unknown_why else self.online

    @property
    def own_keys(self) -> set[int]:
        """This node's keys: its derived (or --key) key, and node_keys naming it."""
        return {self.my_key} | {k for k, n in self.explicit.items() if n == self.me}

    def describe(self, key: int | None) -> str:
        """``0x... (node2)``: a key with its owner, for the administrator."""
        return describe_key(key, self.nodes, self.explicit, self.cluster)


class Action(StrEnum):
    NOTHING = "nothing held"    # no reservation: nothing to cancel
    RELEASE = "release"         # CLEAR it (``DiskDecision.refusal`` set: --force over one)
    REFUSE = "refuse"           # leave it: ``DiskDecision.refusal`` says why


@dataclass(frozen=True)
class DiskDecision:
    """What to do with one disk, and why."""

    disk: str
    action: Action
    holder: str = ""                # the holder described ("" when nothing is held)
    refusal: str | None = None      # why hamon refuses (kept when --force overrode it)
    reregister: bool = False        # this node's key was registered: CLEAR drops it too
    live_registrants: tuple[str, ...] = ()  # live nodes whose registration CLEAR drops

    @property
    def forced(self) -> bool:
        return self.action is Action.RELEASE and self.refusal is not None


@dataclass(frozen=True)
class Decision:
    """``hamon reservation cancel``'s decision: all disks or none."""

    disks: tuple[DiskDecision, ...]

    @property
    def refusals(self) -> list[str]:
        return [d.refusal for d in self.disks if d.refusal]

    @property
    def refused(self) -> bool:
        """Refused as a whole: one refused disk leaves every disk as it is."""
        return any(d.action is Action.REFUSE for d in self.disks)

    @property
    def overrides(self) -> tuple[str, ...]:
        """What overrode hamon's own judgement, for HAMN953-W and the journal."""
        return ("--force",) if any(d.forced for d in self.disks) else ()


def owners(keys: Iterable[int], online: Iterable[str], explicit: Mapping[int, str],
           cluster: str | None = None) -> set[str]:
    """The live nodes among the owners of ``keys``: derived keys (the current and the old
    derivation) and ``node_keys``."""
    keys = set(keys)
    online = set(online)
    found = {n for n in online if keymod.key_for_node(n, cluster) in keys
             or keymod.legacy_key(n) in keys}
    found |= {explicit[k] for k in keys if k in explicit and explicit[k] in online}
    return found


def needs_here(facts: Facts, holders: Iterable[Holder]) -> bool:
    """Whether the decision asks what runs on this node: this node's key holds a disk."""
    return any(h.held and h.holder_keys & facts.own_keys for h in holders)


def needs_node_keys(holders: Iterable[Holder], cluster: str | None = None) -> bool:
    """Whether the configured node_keys matter: a held disk with a key hamon did not
    derive (the CIB is read only then)."""
    return any(h.held and not all(keymod.is_hamon_key(k, cluster) for k in h.holder_keys)
               for h in holders)


def refusal(facts: Facts, h: Holder) -> str | None:
    """Why cancelling ``h`` is refused, or None when it may be cancelled."""
    if not h.held:
        return None
    describe = facts.describe(h.key)
    mine = facts.own_keys
    others = h.holder_keys - mine
    live_nodes = sorted(owners(others, facts.live, facts.explicit, facts.cluster)
                        - {facts.me})
    if h.holder_keys & mine:
        if facts.active_here is None:
            return (f"{h.disk} is held by this node's own key ({describe}), and "
                    f"{facts.here_why}")
        if facts.active_here:
            live_nodes.append(f"{facts.me} (this node: hamon_disk "
                              f"{', '.join(facts.active_here)} active here)")
    if live_nodes:
        return (f"{h.disk} is held by {describe}, and {', '.join(live_nodes)} is a live "
                "cluster node")
    if others and facts.unknown_why:
        return f"{h.disk} is held by {describe}, and {facts.unknown_why}"
    if any(not keymod.is_hamon_key(k, facts.cluster) and k not in facts.explicit
           for k in others):
        return (f"{h.disk} is held by {describe}: hamon cannot tell whether the node "
                "behind that key is alive (the fence device's node_keys can name it)")
    return None


def judge(facts: Facts, h: Holder) -> DiskDecision:
    """One disk: release, refuse, or nothing to do (monscsiclr decides disk by disk)."""
    if not h.held:
        return DiskDecision(h.disk, Action.NOTHING)
    why = refusal(facts, h)
    keys = set(h.keys)
    live = facts.live
    registrants = ({n for n in live if keymod.key_for_node(n, facts.cluster) in keys}
                   | {n for k, n in facts.explicit.items() if k in keys and n in live})
    return DiskDecision(h.disk, Action.REFUSE if why and not facts.force else Action.RELEASE,
                        facts.describe(h.key), why, facts.my_key in keys,
                        tuple(sorted(registrants)))


def decide(facts: Facts, holders: Sequence[Holder]) -> Decision:
    """``reservation cancel``: every disk judged; one refusal refuses the command."""
    return Decision(tuple(judge(facts, h) for h in holders))


# -- gathering the facts (bounded, through the one cluster adapter) -----------------------
def ask_membership(timeout: float = cluster.TIMEOUT
                   ) -> tuple[cluster.Membership | None, str]:
    """Who is alive: (membership, "") or, when it cannot be trusted, (membership or
    None, why). A partition without quorum cannot tell a dead node from a live one."""
    try:
        mem = cluster.membership(timeout)
    except cluster.ClusterUnavailable as err:
        return None, f"the cluster cannot be asked who is alive ({err})"
    if mem.quorate is False:
        return mem, ("this partition has no quorum: a node it sees as lost may be alive "
                     "on the other side of a split")
    return mem, ""


def ask_here(me: str, timeout: float = cluster.TIMEOUT) -> tuple[tuple[str, ...] | None, str]:
    """The hamon_disk resources active on this node: after a failure terminated this
    node's OS, its key still holds the reservation when it boots again; that reservation
    is stale exactly when none runs here. (None, why) when crm_mon cannot say."""
    try:
        return tuple(cluster.active_disk_resources(me, timeout)), ""
    except cluster.ClusterUnavailable as err:
        return None, f"crm_mon cannot say whether a hamon_disk resource runs here ({err})"


# -- monscsiclr: the devices of a server alias ---------------------------------------------
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
