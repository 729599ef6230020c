"""The termination kind of a stop, from the CIB: normal, planned or abnormal.

Was a stop *normal* (the service stops and starts nowhere else), *planned* (moved, node in
standby or shutting down) or *abnormal* (recovery after a failure)? Step 4 of the recovery
procedure depends on it. Pacemaker does not pass the reason for a stop to a primitive's
agent, so the kind is inferred from the CIB at the moment of the stop. The rules, in
order, and why each is trustworthy, are in :data:`RULES_DOC` and docs/hamon_disk.md.

Two pure halves and one bounded read: :func:`facts_from_cib` turns the environment and a
CIB into plain :class:`StopFacts`, :func:`decide_termination` applies the rules to them
(:func:`classify` is both), and :func:`detect_termination` reads the CIB once, with the
one bounded runner of :mod:`hamon.lib.cluster`, for the stop now underway.
"""
from __future__ import annotations

import os
import time
import xml.etree.ElementTree as ET
from collections.abc import Mapping
from dataclasses import dataclass

from hamon.lib import cluster
from hamon.lib.cluster import TIMEOUT, Runner, read_cib
from hamon.lib.pacemaker.ocf_call import resource_id, run_by_pacemaker
from hamon.lib.termination import TerminationKind

#: A failure older than this does not make a stop "abnormal" (see detect_termination).
RECENT_FAILURE = 600.0


RULES_DOC = """\
1. not run by Pacemaker (no OCF_RESKEY_CRM_meta_on_node)      -> normal
2. target-role=Stopped (env OCF_RESKEY_CRM_meta_target_role,
   or the CIB meta attribute of the resource or a parent):
   pcs resource disable                                       -> normal
3. the CIB cannot be read in time                             -> unknown
4. this partition has no quorum (cib have-quorum="0")         -> abnormal
5. a move/ban constraint (cli-ban-R-on-THIS, cli-prefer-R
   naming another node) on the resource or a parent:
   pcs resource move / ban                                    -> planned
6. this node is in standby or shutting down (transient
   "shutdown" != 0), and another node is online, not in
   standby and not shutting down: the service goes there      -> planned
7. the same, and no other node can take the service: every
   node stops or is in standby (pcs cluster stop --all,
   pcs node standby --all), the service starts nowhere        -> normal
8. a failure of the resource or of a member of its group on
   this node within the last 10 minutes (fail-count,
   last-failure): recovery                                    -> abnormal
9. another node is unclean, to be fenced (its node_state:
   out of the membership, in_ccm false, while
   expected="member")                                         -> abnormal
10. none of the above: Pacemaker stops the resource for a
   reason it does not record where an agent can read it
   (a colocation or ordering dependency, a constraint an
   administrator wrote, a failed resource elsewhere)         -> unknown"""


@dataclass(frozen=True)
class Detection:
    """The kind of a stop, why, and every signal that was looked at."""

    kind: TerminationKind
    reason: str
    signals: tuple[str, ...] = ()

    def as_dict(self) -> dict[str, object]:
        return {"termination": str(self.kind), "reason": self.reason,
                "signals": list(self.signals)}


@dataclass(frozen=True)
class Peer:
    """Another node of the cluster, as the CIB shows it at the stop."""

    name: str
    online: bool = False
    standby: bool = False
    shutting_down: bool = False
    unclean: bool = False

    @property
    def can_take_over(self) -> bool:
        return self.online and not self.standby and not self.shutting_down


@dataclass(frozen=True)
class StopFacts:
    """What Pacemaker knows at the moment of a stop, as plain data (from the environment
    and the CIB: :func:`facts_from_cib`). :func:`decide_termination` maps it to a kind."""

    by_pacemaker: bool = True
    node: str = ""
    env_target_role: str | None = None
    cib_read: bool = True
    cib_error: str = ""
    #: (element id, value) of the innermost explicit target-role, resource first
    target_role: tuple[str, str] | None = None
    quorum: bool = True
    #: (constraint id, node, score) of pcs's cli-ban-/cli-prefer- constraints
    cli_constraints: tuple[tuple[str, str | None, str], ...] = ()
    standby: str | None = None           # "permanent" | "transient" | None
    standby_value: str = ""
    shutdown: str = ""                   # the transient "shutdown" value ("" or "0": no)
    peers: tuple[Peer, ...] = ()
    #: (resource, fail count, last failure epoch) of the resource and its group on this node
    failures: tuple[tuple[str, int, int], ...] = ()
    now: float = 0.0


def decide_termination(f: StopFacts) -> Detection:
    """:data:`RULES_DOC` over plain data. Pure: no I/O, no clock."""
    signals: list[str] = []
    if not f.by_pacemaker:
        return Detection(TerminationKind.NORMAL, "run outside Pacemaker (by hand): a normal "
                         "termination", ("no OCF_RESKEY_CRM_meta_on_node",))
    if f.env_target_role:
        signals.append(f"env target-role={f.env_target_role}")
        if f.env_target_role.lower() == "stopped":
            return Detection(TerminationKind.NORMAL, "target-role=Stopped (pcs resource "
                             "disable): the service stops and starts nowhere else",
                             tuple(signals))
    if not f.cib_read:
        signals.append(f"CIB not read: {f.cib_error or 'no answer'}")
        return Detection(TerminationKind.UNKNOWN, "the CIB could not be read in time",
                         tuple(signals))
    if f.target_role is not None:
        where, role = f.target_role
        signals.append(f"{where} target-role={role}")
        if role.lower() == "stopped":
            return Detection(TerminationKind.NORMAL, f"target-role=Stopped on {where} (pcs "
                             "resource disable): the service stops and starts nowhere else",
                             tuple(signals))
    if not f.quorum:
        signals.append("have-quorum=0")
        return Detection(TerminationKind.ABNORMAL, "this partition lost quorum: the other "
                         "partition recovers the service", tuple(signals))
    for lid, lnode, score in f.cli_constraints:
        signals.append(f"{lid} node={lnode} score={score}")
        if lid.startswith("cli-ban-") and lnode == f.node:
            return Detection(TerminationKind.PLANNED, f"moved away (constraint {lid}: "
                             "pcs resource move/ban)", tuple(signals))
        if lid.startswith("cli-prefer-") and lnode and lnode != f.node:
            return Detection(TerminationKind.PLANNED, f"moved to {lnode} (constraint {lid}: "
                             "pcs resource move)", tuple(signals))
    leaving = None
    if f.standby:
        signals.append(f"{f.standby} standby={f.standby_value}")
        leaving = f"node {f.node} is in standby (pcs node standby)"
    if f.shutdown not in ("", "0"):
        signals.append(f"shutdown={f.shutdown}")
        leaving = leaving or f"Pacemaker on {f.node} is shutting down"
    if leaving:
        takers = [p.name for p in f.peers if p.can_take_over]
        signals.extend(f"peer {p.name}: " + ("can take over" if p.can_take_over else
                       ", ".join(w for w, on in (("offline", not p.online),
                                                 ("standby", p.standby),
                                                 ("shutting down", p.shutting_down)) if on))
                       for p in f.peers)
        if takers:
            return Detection(TerminationKind.PLANNED, f"{leaving} and the service goes to "
                             f"{', '.join(takers)}: a switchover", tuple(signals))
        return Detection(TerminationKind.NORMAL, f"{leaving} and no other node can take "
                         "the service (every node stops or is in standby): the service "
                         "stops and starts nowhere else", tuple(signals))
    stale = []
    for r, count, last in f.failures:
        signals.append(f"fail-count {r}={count} last-failure={last or '-'}")
        if last and f.now - last <= RECENT_FAILURE:
            age = max(0, int(f.now - last))
            return Detection(TerminationKind.ABNORMAL, f"recovery after a failure of {r} "
                             f"on {f.node} {age} s ago (fail-count {count})", tuple(signals))
        stale.append(r)
    unclean = [p.name for p in f.peers if p.unclean]
    if unclean:
        signals.extend(f"peer {n}: unclean" for n in unclean)
        return Detection(TerminationKind.ABNORMAL, f"recovery after the loss of "
                         f"{', '.join(unclean)} (unclean, fencing)", tuple(signals))
    why = ("Pacemaker stops the resource without a disable, move, ban, standby, shutdown, "
           "failure or fencing recorded in the CIB (a colocation or ordering dependency, "
           "a constraint written by hand, a cleanup)")
    if stale:
        why += f"; old failures of {', '.join(stale)} were not counted"
    return Detection(TerminationKind.UNKNOWN, why, tuple(signals))


def _truthy(v: str | None) -> bool:
    return (v or "").strip().lower() in ("on", "true", "yes", "1", "y")


def _meta(el: ET.Element, name: str) -> str | None:
    for ma in el.findall("meta_attributes"):
        for nv in ma.findall("nvpair"):
            if nv.get("name") == name:
                return nv.get("value")
    return None


def _ancestry(root: ET.Element, rsc: str) -> list[ET.Element]:
    """The resource's element and its parents (group, clone, bundle), innermost first."""
    resources = root.find(".//configuration/resources")
    if resources is None:
        resources = root if root.tag == "resources" else None
    if resources is None:
        return []

    def walk(el: ET.Element, chain: list[ET.Element]) -> list[ET.Element] | None:
        for child in el:
            if child.get("id") == rsc and child.tag in ("primitive", "group", "clone",
                                                        "master", "bundle"):
                return [child, *reversed(chain)]
            if child.tag in ("group", "clone", "master", "bundle"):
                found = walk(child, [*chain, child])
                if found:
                    return found
        return None

    return walk(resources, []) or []


def _node_state(root: ET.Element, node: str) -> ET.Element | None:
    for ns in root.iter("node_state"):
        if ns.get("uname") == node:
            return ns
    return None


def _node_state_attrs(root: ET.Element, node: str) -> dict[str, str]:
    """Transient attributes (status section) of ``node``."""
    attrs: dict[str, str] = {}
    ns = _node_state(root, node)
    if ns is None:
        return attrs
    for ta in ns.findall("transient_attributes"):
        for ia in ta.findall("instance_attributes"):
            for nv in ia.findall("nvpair"):
                if nv.get("name") is not None:
                    attrs[nv.get("name") or ""] = nv.get("value") or ""
    return attrs


def _node_config_attrs(root: ET.Element, node: str) -> dict[str, str]:
    """Permanent node attributes (configuration/nodes) of ``node``."""
    attrs: dict[str, str] = {}
    for n in root.iter("node"):
        if n.get("uname") != node:
            continue
        for ia in n.findall("instance_attributes"):
            for nv in ia.findall("nvpair"):
                if nv.get("name") is not None:
                    attrs[nv.get("name") or ""] = nv.get("value") or ""
    return attrs


def _peer(root: ET.Element, name: str) -> Peer:
    """A node as its node_state shows it. Online: the controller runs and the node is in
    the membership (``crmd="online"``, ``in_ccm`` true or, from Pacemaker 2.1.7, a
    timestamp). Unclean: expected up (``expected="member"``) but out of the membership:
    Pacemaker fences such a node."""
    ns = _node_state(root, name)
    if ns is None:
        return Peer(name)
    in_ccm = (ns.get("in_ccm") or "").lower() not in ("", "false", "0")
    crmd = (ns.get("crmd") or "").lower()
    online = in_ccm and (crmd in ("online", "true") or (crmd.isdigit() and crmd != "0"))
    t, p = _node_state_attrs(root, name), _node_config_attrs(root, name)
    return Peer(name, online=online,
                standby=_truthy(t.get("standby")) or _truthy(p.get("standby")),
                shutting_down=t.get("shutdown", "0") not in ("", "0"),
                unclean=not in_ccm and ns.get("expected") == "member")


def _failures(attrs: dict[str, str], rsc_ids: list[str]) -> list[tuple[str, int, int]]:
    """[(resource, fail count, last failure epoch)] from transient attributes.

    Pacemaker 2.1 names them ``fail-count-R#monitor_10000`` / ``last-failure-R#...``
    (one per operation); older versions ``fail-count-R``. Both are read.
    """
    out = []
    for r in rsc_ids:
        count = last = 0
        for name, value in attrs.items():
            for prefix in (f"fail-count-{r}", f"last-failure-{r}"):
                if name == prefix or name.startswith(prefix + "#"):
                    try:
                        n = 1_000_000 if value.upper() == "INFINITY" else int(value)
                    except ValueError:
                        continue
                    if prefix.startswith("fail-count"):
                        count += n
                    else:
                        last = max(last, n)
        if count:
            out.append((r, count, last))
    return out


def facts_from_cib(cib_xml: str | None, *, resource: str, node: str,
                   env: Mapping[str, str], now: float | None = None,
                   cib_error: str = "") -> StopFacts:
    """The plain facts :func:`decide_termination` needs, from the environment and a CIB.
    Pure: no I/O."""
    now = time.time() if now is None else now
    base = StopFacts(by_pacemaker=run_by_pacemaker(env), node=node,
                     env_target_role=env.get("OCF_RESKEY_CRM_meta_target_role"), now=now)
    if cib_xml is None:
        return StopFacts(**{**base.__dict__, "cib_read": False, "cib_error": cib_error})
    try:
        root = ET.fromstring(cib_xml)
    except ET.ParseError as err:
        return StopFacts(**{**base.__dict__, "cib_read": False,
                            "cib_error": f"the CIB is not readable XML: {err}"})
    rsc = resource_id(resource)
    chain = _ancestry(root, rsc)
    ids = [e.get("id") or "" for e in chain] or [rsc]
    role = None
    for el in chain:
        r = _meta(el, "target-role")
        if r is not None:
            role = (el.get("id") or "", r)
            break  # the innermost explicit value wins, as in Pacemaker
    cli = tuple((loc.get("id", ""), loc.get("node"), loc.get("score", ""))
                for loc in root.iter("rsc_location")
                if loc.get("rsc") in ids and loc.get("id", "").startswith("cli-"))
    transient = _node_state_attrs(root, node)
    permanent = _node_config_attrs(root, node)
    standby, standby_value = None, ""
    for where, attrs in (("permanent", permanent), ("transient", transient)):
        if _truthy(attrs.get("standby")):
            standby, standby_value = where, attrs.get("standby") or ""
            break
    group_members: list[str] = []
    for el in chain[1:]:
        if el.tag == "group":
            group_members = [p.get("id") or "" for p in el.iter("primitive")]
            break
    candidates = list(dict.fromkeys([rsc, *ids, *group_members]))
    names = [n.get("uname") or "" for n in root.iter("node") if n.get("uname")]
    names += [ns.get("uname") or "" for ns in root.iter("node_state")
              if ns.get("uname") and ns.get("uname") not in names]
    return StopFacts(**{**base.__dict__, "target_role": role,
                        "quorum": root.get("have-quorum") not in ("0", "false"),
                        "cli_constraints": cli, "standby": standby,
                        "standby_value": standby_value,
                        "shutdown": transient.get("shutdown", ""),
                        "peers": tuple(_peer(root, n) for n in names if n != node),
                        "failures": tuple(_failures(transient, candidates))})


def classify(cib_xml: str | None, *, resource: str, node: str,
             env: Mapping[str, str], now: float | None = None,
             cib_error: str = "") -> Detection:
    """Apply :data:`RULES_DOC` to a CIB (or to its absence). Pure: no I/O."""
    return decide_termination(facts_from_cib(cib_xml, resource=resource, node=node, env=env,
                                             now=now, cib_error=cib_error))


def detect_termination(resource: str, node: str, *, env: Mapping[str, str] | None = None,
                       timeout: float = TIMEOUT, runner: Runner = cluster.run) -> Detection:
    """The kind of the stop now underway; one bounded ``cibadmin -Q`` at most."""
    env = os.environ if env is None else env
    if not run_by_pacemaker(env) or (env.get("OCF_RESKEY_CRM_meta_target_role", "")
                                     .lower() == "stopped"):
        return classify(None, resource=resource, node=node, env=env)
    cib, err = read_cib(timeout, runner)
    return classify(cib, resource=resource, node=node, env=env, cib_error=err)
