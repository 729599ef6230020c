"""`hamon check-disk` against LIO in the guest (scenarios/check_disk.py).

LIO implements all of SPC-4's persistent reservations: through iscsi:// URLs (a second
initiator name plays the other node) the verdict is *fit*. Through a multipath map both
nexuses are this node's initiator, and LIO decides write access per initiator: the
non-registrant write is accepted, so the verdict is *incomplete*, never fit. Read-only
mode, on a disk node 2 holds, leaves PRgeneration, keys and holder as sg_persist reads
them through a session of its own; the default mode refuses that disk, and a single path.
"""
from __future__ import annotations

import json

import pytest
from vm import SCENARIOS

pytestmark = pytest.mark.system

CHECKS = [
    "LIO iscsi://: check-disk ran (exit 0), restored",
    "LIO iscsi://: nothing left (sg_persist)",
    "LIO dmmp: check-disk ran (exit 1), restored",
    "LIO dmmp: nothing left (sg_persist)",
    "node 2 holds LUN 0 (independent reader)",
    "read-only: exit 0 on a disk in use",
    "read-only: PRgeneration, keys and holder unchanged",
    "default mode refuses a disk in use (exit 3)",
    "refused: PRgeneration, keys and holder unchanged",
    "one sd path is refused: one I_T nexus",
]


def outcomes(rep: dict) -> dict[str, str]:
    return {r["op"]: r["outcome"] for r in rep["rows"]}


def test_check_disk_on_lio(vm):
    r = vm(SCENARIOS / "check_disk.py", timeout=500)
    r.check()
    got = {line[3:] for line in r.stdout.splitlines() if line.startswith("OK ")}
    assert not set(CHECKS) - got, sorted(set(CHECKS) - got)

    iscsi = json.loads(r.file("check_lio_iscsi.json"))
    assert iscsi["verdict"] == "fit", iscsi["why"]
    assert set(outcomes(iscsi).values()) == {"supported"}

    dmmp = json.loads(r.file("check_lio_dmmp.json"))
    o = outcomes(dmmp)
    assert dmmp["verdict"] == "incomplete", dmmp["why"]
    assert o["write_non_registrant"] == "wrong" and o["write_preempted"] == "wrong"
    assert "another node was not tested" in dmmp["why"]
    for op in ("preempt_and_abort", "read_full_status", "aptpl", "all_tg_pt", "clear",
               "reserve", "release", "register_every_path"):
        assert o[op] == "supported", (op, o[op])
