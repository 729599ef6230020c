"""hamon.lib.cancel: when a reservation may be cancelled, cell by cell; which devices
belong to a server alias (monscsiclr)."""
from __future__ import annotations

import pytest

from hamon.lib import cancel
from hamon.lib import keys as keymod
from hamon.lib.cancel import Action, Facts, Holder
from hamon.lib.config import DiskSource, parse_cib, parse_disks_file

K1, K2 = keymod.key_for_node("node1"), keymod.key_for_node("node2")
K3 = keymod.key_for_node("node3")
FOREIGN = 0x1234          # neither hamon-derived nor named in node_keys


def facts(*, online=("node1",), unknown="", explicit=None, here=(), here_why="",
          force=False) -> Facts:
    """The facts of one cell: node1 runs the command with its derived key."""
    return Facts("node1", K1, frozenset(online), unknown, here, here_why,
                 explicit or {}, ("node1", "node2", "node3"), force)


CELLS = [
    ("nothing-held", Holder("d", False, None, (K2,)), {}, None),
    ("dead-peer", Holder("d", True, K2, (K2,)), {}, None),
    ("live-peer", Holder("d", True, K2, (K2,)), {"online": ("node1", "node2")},
     "node2 is a live cluster node"),
    ("live-peer-old-key", Holder("d", True, keymod.legacy_key("node2"),
                                 (keymod.legacy_key("node2"),)),
     {"online": ("node1", "node2")}, "node2 is a live cluster node"),
    ("live-peer-by-node-keys", Holder("d", True, 0x1001, (0x1001,)),
     {"online": ("node1", "node2"), "explicit": {0x1001: "node2"}},
     "node2 is a live cluster node"),
    ("dead-peer-by-node-keys", Holder("d", True, 0x1001, (0x1001,)),
     {"explicit": {0x1001: "node2"}}, None),
    ("cluster-cannot-say", Holder("d", True, K2, (K2,)),
     {"online": ("node1", "node2"), "unknown": "no quorum"}, "no quorum"),
    ("foreign-key", Holder("d", True, FOREIGN, (FOREIGN,)), {}, "cannot tell whether"),
    ("own-stale-key", Holder("d", True, K1, (K1,)), {}, None),
    ("own-key-by-node-keys-stale", Holder("d", True, 0x1001, (0x1001,)),
     {"explicit": {0x1001: "node1"}}, None),
    ("own-key-service-runs-here", Holder("d", True, K1, (K1,)),
     {"here": ("shared-disk",)}, "node1 (this node: hamon_disk shared-disk active here)"),
    ("own-key-crm-mon-silent", Holder("d", True, K1, (K1,)),
     {"here": None, "here_why": "crm_mon cannot say"}, "this node's own key"),
    ("own-key-cluster-cannot-say", Holder("d", True, K1, (K1,)),
     {"unknown": "no quorum"}, None),
    ("all-registrants-one-live", Holder("d", True, None, (K1, K2)),
     {"online": ("node1", "node2")}, "node2 is a live cluster node"),
    ("all-registrants-all-dead", Holder("d", True, None, (K2, K3)), {}, None),
]


@pytest.mark.parametrize(("cell", "h", "kw", "want"), CELLS, ids=[c[0] for c in CELLS])
def test_refusal_cell(cell, h, kw, want):
    f = facts(**kw)
    got = cancel.refusal(f, h)
    d = cancel.judge(f, h)
    if want is None:
        assert got is None, got
        assert d.action is (Action.RELEASE if h.held else Action.NOTHING)
    else:
        assert got is not None and want in got and h.disk in got
        assert d.action is Action.REFUSE and d.refusal == got
        forced = cancel.judge(facts(**kw, force=True), h)   # --force: released, on record
        assert forced.action is Action.RELEASE and forced.forced and forced.refusal == got


def test_what_runs_here_is_asked_only_when_this_nodes_key_holds_a_disk():
    f = facts()
    assert not cancel.needs_here(f, [Holder("a", True, K2, (K1, K2)),
                                     Holder("b", False, None, (K1,))])
    assert cancel.needs_here(f, [Holder("a", True, K2, (K2,)), Holder("b", True, K1, (K1,))])
    assert cancel.needs_here(facts(explicit={0x1001: "node1"}),
                             [Holder("a", True, 0x1001, (0x1001,))])
    assert cancel.needs_here(f, [Holder("a", True, None, (K1, K2))])  # all registrants


def test_node_keys_are_read_only_for_a_key_hamon_did_not_derive():
    assert not cancel.needs_node_keys([Holder("a", True, K2, (K2, FOREIGN)),
                                       Holder("b", False, None, (FOREIGN,))])
    assert cancel.needs_node_keys([Holder("a", True, FOREIGN, (FOREIGN,))])


def test_decision_describes_the_holder_and_what_clear_drops():
    d = cancel.judge(facts(online=("node1", "node3")), Holder("d", True, K2, (K1, K2, K3)))
    assert d.action is Action.RELEASE and d.refusal is None and not d.forced
    assert d.holder == f"0x{K2:x} (node2)"
    assert d.reregister                                  # node1's own key: register again
    assert d.live_registrants == ("node1", "node3")      # CLEAR drops every registration
    d = cancel.judge(facts(online=("node1", "node2"), explicit={0x1002: "node2"}),
                     Holder("d", True, 0x1002, (0x1002,)))
    assert d.holder == "0x1002 (node2)" and not d.reregister
    assert d.live_registrants == ("node2",) and d.action is Action.REFUSE
    nothing = cancel.judge(facts(), Holder("d", False, None, (K1,)))
    assert nothing == cancel.DiskDecision("d", Action.NOTHING)


def test_cancel_is_all_or_nothing_and_force_is_on_record():
    free, live = Holder("a", True, K3, (K3,)), Holder("b", True, K2, (K2,))
    f = facts(online=("node1", "node2"))
    d = cancel.decide(f, [free, live])
    assert d.refused and [x.action for x in d.disks] == [Action.RELEASE, Action.REFUSE]
    assert len(d.refusals) == 1 and "node2 is a live cluster node" in d.refusals[0]
    assert d.overrides == ()
    d = cancel.decide(facts(online=("node1", "node2"), force=True), [free, live])
    assert not d.refused and d.overrides == ("--force",)
    ok = cancel.decide(f, [free])
    assert not ok.refused and ok.overrides == () and ok.refusals == []
    # --force over nothing refused is no override
    assert cancel.decide(facts(force=True), [free]).overrides == ()


def test_the_facts_are_gathered_through_the_cluster_adapter(monkeypatch):
    from hamon.lib import cluster
    monkeypatch.setattr(cluster, "membership", lambda timeout=0, runner=None:
                        cluster.Membership({"node1": True, "node2": False}, True, "x"))
    monkeypatch.setattr(cluster, "active_disk_resources",
                        lambda node, timeout=0, runner=None: ["db"] if node == "node1" else [])
    mem, why = cancel.ask_membership()
    assert mem is not None and mem.online() == {"node1"} and why == ""
    assert cancel.ask_here("node1") == (("db",), "")
    monkeypatch.setattr(cluster, "membership", lambda timeout=0, runner=None:
                        cluster.Membership({"node1": True}, False, "x"))
    assert "no quorum" in cancel.ask_membership()[1]

    def down(*a, **kw):
        raise cluster.ClusterUnavailable("crm_mon: absent")

    monkeypatch.setattr(cluster, "membership", down)
    monkeypatch.setattr(cluster, "active_disk_resources", down)
    assert cancel.ask_membership() == (None, "the cluster cannot be asked who is alive "
                                             "(crm_mon: absent)")
    active, why = cancel.ask_here("node1")
    assert active is None and "crm_mon: absent" in why
    # nobody is known alive when the cluster cannot say, whatever it listed
    assert facts(online=("node1", "node2"), unknown="no quorum").live == frozenset()


def test_verdict_is_success_only_when_every_device_was_released():
    assert cancel.verdict([True, True]) == "SUCCESS"
    assert cancel.verdict([True, False]) == "FAILURE"
    assert cancel.verdict([]) == "FAILURE"     # no device released is no success


def test_devices_of_alias_from_disks_file_and_cib():
    sources = parse_disks_file("/dev/mapper/a alias=svc\n/dev/sdc\n"
                               "iscsi://h/iqn.2026-11.org.x:t/1 iscsi://g/iqn.2026-11.org.x:t/1"
                               " alias=svc initiator=iqn.2026-11.org.x:n1\n", "F")
    cib = """<resources>
      <primitive id="shared-disk" class="ocf" provider="hamon" type="hamon_disk">
        <instance_attributes id="i"><nvpair id="a" name="dmmp_device"
          value="/dev/mapper/b"/></instance_attributes></primitive>
      <primitive id="d2" class="ocf" provider="hamon" type="hamon_disk">
        <instance_attributes id="j"><nvpair id="b" name="scsi_device" value="/dev/sdd"/>
          <nvpair id="c" name="alias" value="svc"/></instance_attributes></primitive>
      <primitive id="fence" class="stonith" type="fence_hamon_scsi">
        <instance_attributes id="k"><nvpair id="d" name="devices"
          value="/dev/mapper/a"/></instance_attributes></primitive></resources>"""
    sources += parse_cib(cib)
    svc = cancel.devices_of_alias(sources, "svc")
    assert svc.operands == ["/dev/mapper/a", "iscsi://h/iqn.2026-11.org.x:t/1",
                            "iscsi://g/iqn.2026-11.org.x:t/1", "/dev/sdd"]
    assert svc.groups[1][2] == "iqn.2026-11.org.x:n1"
    # the default alias of a hamon_disk resource is its id, as the agent's alias default
    assert cancel.devices_of_alias(sources, "shared-disk").operands == ["/dev/mapper/b"]
    # a fence device serves no alias
    assert cancel.devices_of_alias(sources, "fence").groups == ()
    assert all(s.alias is None for s in sources if s.origin.startswith("CIB fence"))
    assert DiskSource(("/dev/sdc",), "x").alias is None
