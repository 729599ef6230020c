import hashlib

import pytest

from hamon.lib import defaults, keys
from hamon.lib.identity import default_initiator


def test_derived_key_format_is_predictable():
    k = keys.key_for_node("node1", "hamon-test")
    expected = (hashlib.sha256(b"hamon-test").hexdigest()[:8]
                + hashlib.sha256(b"node1").hexdigest()[:8])
    assert f"{k:016x}" == expected and k != 0
    assert keys.is_hamon_key(k, "hamon-test") and keys.is_cluster_key(k, "hamon-test")
    assert not keys.is_cluster_key(k, "other")
    assert keys.key_for_node("node1", "hamon-test") == k  # stable
    assert keys.key_for_node("node2", "hamon-test") != k
    # another cluster with a node1 of its own: another key, told apart by the first bytes
    other = keys.key_for_node("node1", "other")
    assert other != k and other & 0xFFFFFFFF == k & 0xFFFFFFFF and other >> 32 != k >> 32


def test_the_old_derivation_is_kept_and_recognised():
    old = keys.legacy_key("node1")
    assert f"{old:016x}" == "686d" + hashlib.sha256(b"node1").hexdigest()[:12]
    assert keys.is_legacy_key(old) and keys.is_hamon_key(old, "hamon-test")
    assert keys.owner_of(old, ["node2", "node1"], "hamon-test") == "node1"
    assert keys.owner_label(old, ["node1"], "hamon-test") == "node1, old key"
    assert keys.owner_label(keys.key_for_node("node1", "hamon-test"), ["node1"],
                            "hamon-test") == "node1"
    members = keys.member_keys(["node1", "node2"], {"node3": 0x1003}, "hamon-test")
    assert members[old] == "node1" and members[0x1003] == "node3"
    assert members[keys.key_for_node("node2", "hamon-test")] == "node2"
    assert keys.key_for_node("node1", "other") not in members
    # no cluster name at all (no corosync configuration): the old derivation
    assert keys.key_for_node("node1", "") == old


def test_cluster_name_sources(monkeypatch, tmp_path):
    monkeypatch.setenv(defaults.CLUSTER_NAME.name, "from-env")
    assert keys.cluster_name() == "from-env" and keys.cluster_name("given") == "given"
    assert keys.key_for_node("n") == keys.key_for_node("n", "from-env")
    conf = tmp_path / "corosync.conf"
    conf.write_text("totem {\n    version: 2\n    cluster_name: from-conf\n}\n")
    monkeypatch.setattr("hamon.lib.cluster.COROSYNC_CONF", str(conf))
    monkeypatch.setattr("hamon.lib.cluster.run", lambda argv, t: (1, "", "no cmap"))
    assert keys._from_corosync() == "from-conf"
    monkeypatch.setattr("hamon.lib.cluster.run", lambda argv, t: (
        0, "totem.cluster_name (str) = from-cmap\n", ""))
    assert keys._from_corosync() == "from-cmap"
    p = keys.parts("node1", "hamon-test")
    assert p.cluster_hex + p.node_hex == f"{p.key:016x}"


def test_explicit_key_overrides_and_is_validated():
    assert keys.resolve_key("0x1234", "node1") == 0x1234
    assert keys.resolve_key("ABCD", "node1") == 0xABCD
    assert keys.resolve_key(None, "node1", "c") == keys.key_for_node("node1", "c")
    assert keys.resolve_key("", "node1") == keys.key_for_node("node1")
    for bad in ("0", "0x0", "xyz", "0x" + "1" * 17, "-1", "12 34"):
        with pytest.raises(ValueError):
            keys.parse_key(bad)
    with pytest.raises(ValueError, match="unregister"):
        keys.parse_key("0x0")


def test_empty_node_name_refused():
    with pytest.raises(ValueError):
        keys.key_for_node(" ")


def test_owner_and_uniqueness():
    nodes = ["node1", "node2"]
    assert keys.owner_of(keys.key_for_node("node2"), nodes) == "node2"
    assert keys.owner_of(0x1234, nodes) is None
    keys.check_unique({n: keys.key_for_node(n) for n in nodes})
    with pytest.raises(ValueError, match="same reservation key"):
        keys.check_unique({"a": 5, "b": 5})


def test_default_initiator():
    assert default_initiator("Node_1") == "iqn.2026-11.org.hamon:node-1"
