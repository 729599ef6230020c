"""The fault proxy (tests/faultproxy.py) in the VM: open-iscsi -> proxy -> LIO.

The kernel's SG_IO on the proxied sd path meets the injected CHECK CONDITION / HARDWARE
ERROR 44/00 exactly as a failing array would answer it, while the direct path to the same
LUN stays clean; a faulted PR OUT changes nothing on LIO (read through the other path).
"""
from __future__ import annotations

import json

import pytest
from vm import SCENARIOS

pytestmark = pytest.mark.system

CHECKS = [
    "path 0 logs in through the proxy",
    "the proxy saw the kernel's INQUIRY",
    "clean: READ KEYS on the proxied path",
    "clean: READ KEYS on the direct path",
    "PR IN on the proxied path fails",
    "sg_persist exit status 3 (medium or hardware error)",
    "the kernel passes HARDWARE ERROR up",
    "with ASC/ASCQ 44/00 (internal target failure)",
    "the direct path is clean meanwhile",
    "TEST UNIT READY still passes on the proxied path (rule is PR IN only)",
    "PR OUT REGISTER on the proxied path fails with HARDWARE ERROR",
    "the faulted REGISTER changed nothing on LIO (read on the direct path)",
    "with the rules cleared, REGISTER through the proxied path works",
    "the key is on LIO (read on the direct path)",
    "the same iSCSI session throughout (no relogin)",
    "the proxy counted two applied HARDWARE ERRORs",
]


def test_kernel_meets_an_injected_hardware_error_on_one_path(vm):
    r = vm(SCENARIOS / "faultproxy_lio.sh", timeout=400)
    r.check()
    got = {line[3:] for line in r.stdout.splitlines() if line.startswith("OK ")}
    assert not set(CHECKS) - got, sorted(set(CHECKS) - got)
    assert "sg_persist --in -k on the proxied path: exit 3" in r.stdout
    # The proxy's own record, written in the guest: what it saw and applied.
    stats = json.loads(r.file("faultproxy-P0.stats.json"))
    assert stats["faults"] == {"check-condition": 2}
    assert stats["connections_accepted"] == 1 and stats["errors"] == []
    seen = {(c["opcode"], c["service_action"]): c["count"] for c in stats["commands"]}
    assert seen[(0x5E, 0)] == 2 and seen[(0x5F, 0)] == 2
