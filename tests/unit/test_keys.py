import hashlib

import pytest

from hamon.lib import keys
from hamon.lib.identity import default_initiator


def test_derived_key_format_is_predictable():
    k = keys.key_for_node("node1")
    expected = "686d" + hashlib.sha256(b"node1").hexdigest()[:12]
    assert f"{k:016x}" == expected
    assert keys.is_hamon_key(k) and k != 0
    assert keys.key_for_node("node1") == k  # stable
    assert keys.key_for_node("node2") != k


def test_explicit_key_overrides_and_is_validated():
    assert keys.resolve_key("0x1234", "node1") == 0x1234
    assert keys.resolve_key("ABCD", "node1") == 0xABCD
    assert keys.resolve_key(None, "node1") == keys.key_for_node("node1")
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
