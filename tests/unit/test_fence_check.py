"""fence_hamon_scsi_check, the watchdog test: exit 2 only once the key is gone everywhere."""
from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from hamon.agents.fence import check as fence_check
from hamon.lib import defaults
from tests.unit.test_fence_core import N1, N2, SimArray, unfence

REPO = Path(__file__).resolve().parents[2]
CHECK = REPO / "agents" / "fence_hamon_scsi_check"


@pytest.fixture
def arr() -> SimArray:
    return SimArray(n=2, profile="tgt")


@pytest.fixture
def state(tmp_path, arr, monkeypatch) -> Path:
    path = tmp_path / "state.json"
    path.write_text(json.dumps({"node": "node1", "key": f"0x{N1.key:x}",
                                "initiator": N1.initiator, "devices": arr.urls(),
                                "scsi_timeout": 2}))
    monkeypatch.setenv(defaults.FENCE_STATE.name, str(path))
    monkeypatch.setenv("HAMON_STONITH_SYSCONFIG", str(tmp_path / "no-sysconfig"))
    monkeypatch.setattr(fence_check, "default_resolver", arr.factory)  # in-memory target
    return path


def test_registered_node_keeps_running(state, arr):
    unfence(arr, "node1", "node2")
    assert fence_check.main(["fence_hamon_scsi_check", "test"]) == 0


def test_fenced_node_gets_2(state, arr, capsys):
    unfence(arr, "node1", "node2")
    arr.fencer("node2").fence(N2, N1)
    assert fence_check.main(["fence_hamon_scsi_check", "test"]) == 2


def test_key_on_one_device_is_enough(state, arr):
    unfence(arr, "node1")
    lun = arr.luns[1]
    for nx in [nx for nx, k in lun.registrations.items() if k == N1.key]:
        del lun.registrations[nx]
    assert fence_check.main(["fence_hamon_scsi_check", "test"]) == 0


def test_storage_outage_is_no_verdict(state, arr):
    unfence(arr, "node1")
    for lun in arr.luns.values():
        lun.fail_port(1)
        lun.fail_port(2)
    assert fence_check.main(["fence_hamon_scsi_check", "test"]) == 0


def test_not_unfenced_yet_or_unreadable_state_is_no_reboot(state, arr):
    state.unlink()
    assert fence_check.main(["fence_hamon_scsi_check", "test"]) == 0
    state.write_text("{not json")
    assert fence_check.main(["fence_hamon_scsi_check", "test"]) == 0


def test_repair_returns_the_code_it_is_given():
    assert fence_check.main(["fence_hamon_scsi_check", "repair", "2"]) == 2


def test_hardreboot_name_reboots_itself(state, arr, tmp_path, monkeypatch):
    dry = tmp_path / "reboots"
    monkeypatch.setenv(defaults.CHECK_DRY_RUN.name, str(dry))
    unfence(arr, "node1", "node2")
    assert fence_check.main(["fence_hamon_scsi_check_hardreboot"]) == 0
    assert not dry.exists()
    arr.fencer("node2").fence(N2, N1)
    assert fence_check.main(["/etc/watchdog.d/fence_hamon_scsi_check_hardreboot"]) == 2
    assert dry.read_text().startswith("reboot ")


def test_retries_from_sysconfig(state, arr, tmp_path, monkeypatch):
    conf = tmp_path / "stonith"
    conf.write_text("retry=2\nretry-sleep=0\nverbose=yes\n")
    monkeypatch.setenv("HAMON_STONITH_SYSCONFIG", str(conf))
    unfence(arr, "node2")
    calls = []
    real = fence_check._once
    monkeypatch.setattr(fence_check, "_once", lambda *a: calls.append(1) or real(*a))
    assert fence_check.main(["fence_hamon_scsi_check"]) == 2
    assert len(calls) == 3


def test_script_runs_without_state(tmp_path):
    p = subprocess.run([str(CHECK), "test"], capture_output=True, text=True, timeout=30,
                       env={"PATH": "/usr/bin:/bin",
                            defaults.FENCE_STATE.name: str(tmp_path / "none")})
    assert p.returncode == 0 and "Traceback" not in p.stderr


def test_the_check_reads_through_its_own_nexus_not_the_agents():
    """The watchdog runs the check every few seconds, also while the agent fences or
    monitors through the node's own iSCSI sessions: the check's sessions must have
    another ISID (a login with the agent's ISID would close the agent's session on a
    target that reinstates), with the same initiator name (the array's ACLs know it)."""
    from hamon.lib.multipath.resolve import Resolver
    from hamon.lib.transport.iscsi_url import derive_isid, parse_iscsi_url

    url = "iscsi://127.0.0.1/iqn.2026-11.org.hamon:t/1"
    mine = fence_check.default_resolver(N1.initiator, 2).open_iscsi(url)
    agents = Resolver(initiator=N1.initiator, timeout=2).open_iscsi(url)
    assert mine.initiator == agents.initiator == N1.initiator
    assert agents.isid == derive_isid(N1.initiator, parse_iscsi_url(url))  # unchanged
    assert mine.isid != agents.isid
    assert mine.isid == fence_check.default_resolver(N1.initiator, 2).open_iscsi(url).isid
    assert mine.isid[0] & 0xC0 == 0x80  # still a "random" format ISID (RFC 7143)
