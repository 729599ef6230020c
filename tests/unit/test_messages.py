"""The message catalog against HA Monitor's manual (issue 12, part 1).

KAMN IDs are HA Monitor's and, where the manual publishes the text, word for word; HAMN IDs
are hamon's own. The fence agent's KAMN725-W names the stonith device's alias as server and
this node with its key as host address, never the victim.
"""
from __future__ import annotations

import pytest

from hamon.agents.fence.fencer import Fencer
from hamon.agents.fence.options import DEFAULT_ALIAS
from hamon.agents.fence.settings import Settings
from hamon.lib import reservation as rsv
from hamon.lib.messages import CATALOG, format_message, with_manual_placeholders
from hamon.lib.multipath.resolve import Resolver
from hamon.lib.sim import FaultKind, FaultRule, TgtProfile
from tests.unit.simdisk import K1
from tests.unit.test_disk_agent import Storage

#: HA Monitor's messages hamon emits (DESIGN.md, "HA Monitor's public texts", §9.21)
HA_MONITOR_IDS = {"KAMN107-I", "KAMN108-I", "KAMN601-W", "KAMN725-W", "KAMN726-E",
                  "KAMN727-I"}
#: the manual's texts, as published (DESIGN.md quotes them)
MANUAL = {
    "KAMN725-W": "Execution of the SCSI command on the device aa....aa ended abnormally. "
                 "(details code: bb....bb, server: cc....cc, host address: dd....dd "
                 "(0xee....ee))",
    "KAMN727-I": "Recovery of the device aa....aa was detected. (details code: bb....bb, "
                 "server: cc....cc)",
}


def test_the_kamn_ids_are_exactly_ha_monitors_and_the_rest_are_hamn():
    ids = {m.full_id for m in CATALOG.values()}
    assert {i for i in ids if i.startswith("KAMN")} == HA_MONITOR_IDS
    assert all(i.startswith("HAMN") for i in ids - HA_MONITOR_IDS)
    assert all(m.hamon_own == m.id.startswith("HAMN") for m in CATALOG.values())
    assert not any(i.startswith("KAMN95") for i in ids)


@pytest.mark.parametrize("full_id", sorted(MANUAL))
def test_published_texts_are_the_manuals_word_for_word(full_id):
    (m,) = [m for m in CATALOG.values() if m.full_id == full_id]
    assert m.manual == MANUAL[full_id]
    assert with_manual_placeholders(m) == MANUAL[full_id]


def test_kamn725_host_address_carries_node_and_key_for_the_725_check():
    m = format_message("KAMN725", device="mpatha(/dev/sdc)", code="IO-ERR", alias="svc",
                       host="node1", hostkey=K1)
    assert str(m) == ("KAMN725-W Execution of the SCSI command on the device "
                      "mpatha(/dev/sdc) ended abnormally. (details code: IO-ERR, server: "
                      f"svc, host address: node1 (0x{K1:x}))")
    # sg_persist prints keys as 0x + hex: "0x..." given as text is the same key
    again = format_message("KAMN725", device="d", code="IO-ERR", alias="svc", host="node1",
                           hostkey=f"0x{K1:x}")
    assert again.fields["hostkey"] == f"{K1:x}"


def test_kamn727_text():
    m = format_message("KAMN727", device="/dev/sdb", code="ONLINE_CHECK(NO_KEY)",
                       alias="svc")
    assert m.text == ("Recovery of the device /dev/sdb was detected. (details code: "
                      "ONLINE_CHECK(NO_KEY), server: svc)")


def _fencer(storage: Storage, local: str = "node1", **kw) -> Fencer:
    def factory(initiator: str, timeout: float) -> Resolver:
        return Resolver(initiator=initiator, timeout=timeout, iscsi_opener=storage.opener)
    urls = [u for n in storage.lun for u in storage.urls(n)]
    return Fencer(Settings(devices=urls, local_node=local, scsi_timeout=1.0, **kw),
                  factory)


@pytest.mark.parametrize("alias", [None, "fence-disks"])
def test_fence_agent_kamn725_names_the_stonith_alias_and_this_node_not_the_victim(captured,
                                                                                 alias):
    st = Storage(luns=1, portals=2, profile=TgtProfile)
    for node in ("node1", "node2"):
        f = _fencer(st, node)
        try:
            f.unfence(f.settings.node(node))
        finally:
            f.close()
    for lun in st.lun.values():
        lun.inject(1, FaultRule(FaultKind.CHECK_CONDITION))
    f = _fencer(st, **({} if alias is None else {"alias": alias}))
    captured.clear()
    try:
        f.fence(f.settings.node("node1"), f.settings.node("node2"))
    finally:
        f.path_faults()
        f.close()
    assert set().union(*(set(lun.keys()) for lun in st.lun.values())) == {K1}  # node2 gone
    k725 = [m for m in captured if m.full_id == "KAMN725-W"]
    assert k725, captured
    for m in k725:
        assert m.fields["alias"] == (alias or DEFAULT_ALIAS)
        assert m.fields["host"] == "node1" and m.fields["hostkey"] == f"{K1:x}"
        assert "node2" not in m.text


def test_fence_on_never_removes_a_foreign_registration(captured):
    """unfence only ever touches the node's own key (its one PREEMPT has our key as the
    victim): a registration of another cluster or host stays, as start's rule wants."""
    st = Storage(luns=1, portals=2, profile=TgtProfile)
    foreign = 0x4841_4D4F_4E00_0001
    outsider = Resolver(initiator="iqn.2026-11.org.example:outsider", timeout=1.0,
                        iscsi_opener=st.opener).resolve(st.urls(1))
    try:
        assert rsv.register(outsider, foreign).ok
    finally:
        for d in outsider:
            d.close()
    f = _fencer(st, "node1")
    try:
        f.unfence(f.settings.node("node1"))
    finally:
        f.close()
    keys = set(st.lun[1].keys())
    assert keys == {K1, foreign}
