"""hamon.lib.cancel: when a reservation may be cancelled, cell by cell; which devices
belong to a server alias (monscsiclr)."""
from __future__ import annotations

import pytest

from hamon.lib import cancel
from hamon.lib import keys as keymod
from hamon.lib.cancel import Holder, Liveness
from hamon.lib.config import DiskSource, parse_cib, parse_disks_file

K1, K2 = keymod.key_for_node("node1"), keymod.key_for_node("node2")
FOREIGN = 0x1234          # neither hamon-derived nor named in node_keys


def why(h: Holder, *, online=("node1",), unknown="", explicit=None, here=(False, "no "
        "hamon_disk active here")) -> str | None:
    calls = []

    def held_here():
        calls.append(1)
        return here
    out = cancel.refusal(h, my_key=K1, live=Liveness("node1", frozenset(online), unknown),
                         explicit=explicit or {}, describe="HOLDER", held_here=held_here)
    if not h.held or not (h.holder_keys & {K1}):
        assert not calls                     # asked only when this node's key holds it
    return out


CELLS = [
    ("nothing-held", Holder("d", False, None, (K2,)), {}, None),
    ("dead-peer", Holder("d", True, K2, (K2,)), {}, None),
    ("live-peer", Holder("d", True, K2, (K2,)), {"online": ("node1", "node2")},
     "node2 is a live cluster node"),
    ("live-peer-by-node-keys", Holder("d", True, 0x1001, (0x1001,)),
     {"online": ("node1", "node2"), "explicit": {0x1001: "node2"}},
     "node2 is a live cluster node"),
    ("dead-peer-by-node-keys", Holder("d", True, 0x1001, (0x1001,)),
     {"explicit": {0x1001: "node2"}}, None),
    ("cluster-cannot-say", Holder("d", True, K2, (K2,)), {"unknown": "no quorum"},
     "no quorum"),
    ("foreign-key", Holder("d", True, FOREIGN, (FOREIGN,)), {}, "cannot tell whether"),
    ("own-stale-key", Holder("d", True, K1, (K1,)), {}, None),
    ("own-key-service-runs-here", Holder("d", True, K1, (K1,)),
     {"here": (True, "hamon_disk shared-disk active here")}, "node1 (this node"),
    ("own-key-crm-mon-silent", Holder("d", True, K1, (K1,)),
     {"here": (None, "crm_mon cannot say")}, "this node's own key"),
    ("all-registrants-one-live", Holder("d", True, None, (K1, K2)),
     {"online": ("node1", "node2")}, "node2 is a live cluster node"),
]


@pytest.mark.parametrize(("cell", "h", "kw", "want"), CELLS, ids=[c[0] for c in CELLS])
def test_refusal_cell(cell, h, kw, want):
    got = why(h, **kw)
    if want is None:
        assert got is None, got
    else:
        assert got is not None and want in got and h.disk in got


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
