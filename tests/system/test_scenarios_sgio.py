"""hamon through the kernel: SG_IO on sd paths under dm-multipath (scenarios 1 and 5).

Scenario 1 runs hamon's engine (hamon.lib over the SG_IO transport) against LIO and tgt
in the guest; the kernel's own writes prove who may write. Scenario 5 runs the fence
agent through the same kind of devices, and Debian's stock fence_scsi beside it.
"""
from __future__ import annotations

import pytest
from vm import SCENARIOS

pytestmark = pytest.mark.system

ENGINE_CHECKS = [
    "{t}: /dev/mapper/{m} resolves to one disk with 2 sd paths",
    "{t}: node 2's sd devices are single-path disks",
    "{t}: all paths are the map's LUN (INQUIRY VPD 0x83 over SG_IO)",
    "{t}: node 1 registers on every path (SG_IO)",
    "{t}: node 2 registers on both of its paths (SG_IO)",
    "{t}: sg_persist sees 2 entries of each key",
    "{t}: node 1 reserves WE-RO",
    "{t}: node 2 (registered) writes under WE-RO",
    "{t}: sg_persist sees only node 1's key",
    "{t}: node 2's write through the kernel fails",
    "{t}: the kernel reports RESERVATION CONFLICT (EBADE)",
    "{t}: node 2's other path fails too",
    "{t}: node 1's write through the multipath map lands",
    "{t}: hamon keys (CLI) lists node 1's key only",
    "{t}: reservation held by node 1, WE-RO",
]


def checks(r) -> set[str]:
    return {line[3:] for line in r.stdout.splitlines() if line.startswith("OK ")}


def test_engine_over_sgio_lio_and_tgt(vm):
    """Scenario 1: register on every path, reserve, preempt (and abort on LIO; tgt falls
    back to PREEMPT); node 2's kernel write fails, node 1's lands; `hamon paths` shows a
    faulted path as failed with its reason."""
    r = vm(SCENARIOS / "sgio_engine.py", timeout=400)
    r.check()
    got = checks(r)
    want = {c.format(t=t, m=m) for c in ENGINE_CHECKS
            for t, m in (("LIO", "mpatha"), ("TGT", "mpathb"))}
    want |= {"LIO: node 1 preempts node 2 (preempt-and-abort)", "LIO: PREEMPT AND ABORT",
             "TGT: node 1 preempts node 2 (preempt)", "TGT: fallback to PREEMPT",
             "hamon paths: 2 paths, both up",
             "hamon paths: the faulted path is failed, the other up",
             "hamon paths: the failed path says why",
             "node 1's write lands through the surviving path"}
    assert not want - got, sorted(want - got)
    assert "reservation conflict" in r.dmesg      # the kernel saw RESERVATION CONFLICT


FENCE_CHECKS = [
    "fence_hamon_scsi on: node 1 unfenced through the multipath maps",
    "fence_hamon_scsi on: node 2 unfenced through its sd paths",
    "fence_hamon_scsi status: node 2 is on",
    "fence_hamon_scsi off: exit 0",
    "fence_hamon_scsi status: node 2 is off (exit 2)",
    "fence_hamon_scsi on: node 2 unfenced again",
    "the kernel logged the refused writes",
    "fence_scsi on: node 2 registered on its sd paths",
    "fence_scsi on: node 1 registered through the multipath maps",
    "fence_scsi off: exit 0",
]
PER_AGENT = [
    "{a}: sg_persist on {mp} sees both keys on every path",
    "{a}: sg_persist on {mp} sees only node 1's key (2 paths)",
    "{a}: node 1's write through {mp} lands",
]


def test_fence_agents_through_the_kernel(vm):
    """Scenario 5: fence_hamon_scsi off/on/status on /dev/mapper maps (node 1) and sd paths
    (node 2), then Debian's fence_scsi off on the same devices; the kernel refuses node 2's
    writes with RESERVATION CONFLICT after each `off` and lets them through after `on`."""
    r = vm(SCENARIOS / "sgio_fence.py", timeout=400)
    r.check()
    got = checks(r)
    want = set(FENCE_CHECKS)
    want |= {c.format(a=a, mp=f"/dev/mapper/{m}") for c in PER_AGENT
             for a in ("hamon", "fence_scsi") for m in ("mpatha", "mpathb")}
    assert not want - got, sorted(want - got)
    for a in ("hamon", "fence_scsi"):   # node 2's 4 sd paths: refused after off, by the kernel
        refused = [c for c in got if c.startswith(f"{a}: node 2's write on /dev/sd")
                   and c.endswith("fails with RESERVATION CONFLICT")]
        landed = [c for c in got if c.startswith(f"{a}: node 2's write on /dev/sd")
                  and c.endswith(" lands")]
        assert len(refused) == 4 and len(landed) == 4, (a, refused, landed)
    times = dict(line.split(None, 1)[1].rsplit(" ", 1) for line in r.stdout.splitlines()
                 if line.startswith("TIME "))
    print("agent wall times in the guest (s):", times)
