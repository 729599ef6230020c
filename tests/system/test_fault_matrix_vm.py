"""Issue 10's fault matrix at the system tier: a path that *answers* with an error is a
failed path, met by the kernel's SG_IO and dm-multipath in a QEMU guest.

The iSCSI fault proxy (tests/faultproxy.py) sits between the guest's open-iscsi and LIO
and answers chosen SCSI commands with CHECK CONDITION, HARDWARE ERROR 44/00, as a failing
array does, while the path itself stays up (TEST UNIT READY, READ, WRITE pass). Three
cells:

* hamon_disk stop, one of mpatha's two paths answers HARDWARE ERROR to PR IN and PR OUT:
  KAMN725-W (IO-ERR) for that path only, stop 0, journal verdict ``continue``, the OS keeps
  running, and node 2 (another initiator, its own session) reads neither node 1's key nor
  a reservation afterwards;
* hamon_disk stop, every path answers so: KAMN725-W per path, KAMN726-E, HAMN954-E, and
  hamon itself resets the VM; the journal read on the host from the disk image says
  ``terminate-os``;
* fence_hamon_scsi -o off, the first path refuses PR OUT: routed around (exit 0,
  "Success: Powered OFF", KAMN725-W for the refusing path), node 2's key gone as read by
  node 2's own sessions, node 2's writes refused by the kernel.
"""
from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from test_scenarios_seed import journal_from_image
from vm import SCENARIOS

from hamon.lib.cluster import COROSYNC_CONF
from hamon.lib.journal import Journal
from hamon.lib.keys import key_for_node as _key_for_node

pytestmark = pytest.mark.system


def key_for_node(node: str) -> int:
    """The key a guest's agent derives for ``node``. The guests run this host's root
    read-only with no corosync running, so their cluster name is the one in its
    corosync.conf (Debian ships ``cluster_name: debian``); this process may carry
    HAMON_CLUSTER_NAME from the other tiers' conftests, which the guests never see."""
    try:
        text = Path(COROSYNC_CONF).read_text(errors="replace")
    except OSError:
        text = ""
    m = re.search(r"^\s*cluster_name\s*:\s*(\S+)\s*$", text, re.MULTILINE)
    return _key_for_node(node, m.group(1) if m else "")

SEED_FAULT = SCENARIOS / "seed_fault.sh"
FENCE_FAULT = SCENARIOS / "sgio_fault_fence.py"
HW = 0x5E, 0x5F   # PR IN, PR OUT


def checks(r) -> set[str]:
    return {line[3:] for line in r.stdout.splitlines() if line.startswith("OK ")}


def kamn(err: str, msg_id: str) -> list[str]:
    return [ln for ln in err.splitlines() if ln.startswith(msg_id)]


def details_code(line: str) -> str:
    """KAMN725-W's details code: "(details code: IO-ERR, server: ...)"."""
    m = re.search(r"details code[:=] *([A-Z-]+)", line)
    assert m, line
    return m.group(1)


def faults_applied_during(r, portal: int) -> int:
    """CHECK CONDITIONs the proxy of PORTAL answered during the stop / fence (its own
    counters, copied in the guest before and after the action)."""
    before = json.loads(r.file(f"faultproxy-P{portal}.before.json"))
    after = json.loads(r.file(f"faultproxy-P{portal}.stats.json"))
    assert after["errors"] == [], after["errors"]
    return (after["faults"].get("check-condition", 0)
            - before["faults"].get("check-condition", 0))


def test_stop_with_one_path_answering_hardware_error(vm):
    """Cell stop x HARDWARE ERROR x one path of two: the stop routes around the path."""
    r = vm(SEED_FAULT, "one", timeout=600)
    r.check()                               # scenario exit 0 + the harness's own poweroff
    (failed,) = r.file("failed").split()
    assert {"start acquires the disk", "monitor: running",
            "before the stop node 2 reads node 1's keys",
            "before the stop node 2 reads a reservation",
            f"PR IN on {failed} answers HARDWARE ERROR (sg_persist exit 3)",
            f"the faulted path {failed} still passes TEST UNIT READY",
            "KAMN725-W logged", "stop succeeded", "no KAMN726-E",
            "journal entry on the extra disk says continue",
            "after the stop node 2 reads no registered key",
            "after the stop node 2 reads no reservation",
            "the OS keeps running"} <= checks(r), r.stdout
    assert "hamon_disk stop -> 0" in r.stdout
    err = r.file("stop.err")
    kamn725 = kamn(err, "KAMN725-W")
    assert len(kamn725) == 1 and f"mpatha({failed})" in kamn725[0], err
    assert details_code(kamn725[0]) == "IO-ERR", err
    assert not kamn(err, "KAMN726-E") and not kamn(err, "HAMN954-E"), err
    # the proxy really answered the stop's PR commands with the fault
    assert faults_applied_during(r, 0) >= 1
    # node 2's own reads (another initiator, the clean portal), before and after
    k1 = f"0x{key_for_node('node1'):x}"
    assert k1 in r.file("keys-before.txt"), r.file("keys-before.txt")
    assert "NO reservation held" not in r.file("rsv-before.txt")
    assert "NO registered reservation keys" in r.file("keys-after.txt")
    assert k1 not in r.file("keys-after.txt")
    assert "NO reservation held" in r.file("rsv-after.txt")
    # the journal, through hamon's reader (checksums)
    (r.workdir / "journal").write_text(r.file("journal"))
    records = Journal(str(r.workdir / "journal")).records()
    assert records and all(x.valid for x in records), records
    entries = [x.entry for x in records if x.entry]
    last = entries[-1]
    assert last["action"] == "stop" and last["verdict"] == "continue", last
    (disk,) = last["disks"]
    assert disk["disk"] == r.file("device").strip() and disk["all_failed"] is False, disk
    assert [f["path"] for f in disk["failed"]] == [failed], disk


def test_stop_with_every_path_answering_hardware_error_terminates_the_os(vm, tmp_path):
    """Cell stop x HARDWARE ERROR x every path: KAMN726-E, HAMN954-E and the real OS termination."""
    r = vm(SEED_FAULT, "every", env={"OS_TERMINATION": "reboot"}, timeout=600)
    assert r.exited_by_itself, r.summary()
    assert r.how == "reboot" and r.shutdown_reason == "guest-reset", r.summary()
    assert not r.harness_poweroff and r.status is None, r.summary()
    assert r.event("stop") and not r.event("scenario-end"), r.events
    failed = r.file("failed").split()
    assert len(failed) == 2, failed
    want = {"start acquires the disk", "monitor: running"}
    for dev in failed:
        want |= {f"PR IN on {dev} answers HARDWARE ERROR (sg_persist exit 3)",
                 f"the faulted path {dev} still passes TEST UNIT READY"}
    assert want <= checks(r), r.stdout
    assert "hamon: terminating the OS (reboot)" in r.console, r.summary()
    err = r.file("stop.err")
    kamn725 = kamn(err, "KAMN725-W")
    assert len(kamn725) == 2, err
    for dev in failed:
        (line,) = [ln for ln in kamn725 if f"mpatha({dev})" in ln]
        assert details_code(line) == "IO-ERR", err
    kamn726 = kamn(err, "KAMN726-E")
    assert len(kamn726) == 1 and all(dev in kamn726[0] for dev in failed), err
    # hamon's own "the OS will be terminated" (KAMN954-E before issue 12 renamed it)
    hamn954 = kamn(err, "HAMN954-E")
    assert len(hamn954) == 1 and "action = reboot" in hamn954[0], err
    # the journal, read on the host from the disk image after the VM is gone
    entries = journal_from_image(r.workdir / "disk.img", tmp_path)
    assert [e["kind"] for e in entries] == ["start", "failure"], entries
    last = entries[-1]
    assert last["action"] == "stop" and last["phase"] == "terminating", last
    assert last["verdict"] == "terminate-os" and last["os_action"] == "reboot", last
    (disk,) = last["disks"]
    assert disk["disk"] == r.file("device").strip() and disk["all_failed"] is True, disk
    assert sorted(f["path"] for f in disk["failed"]) == sorted(failed), disk
    assert disk["paths_total"] == 2, disk


FENCE_CHECKS = [
    "fence_hamon_scsi on: node 1 unfenced through the map",
    "fence_hamon_scsi on: node 2 unfenced on its proxied path",
    "before: node 2's own session reads both keys on every path",
    "before: node 2's write on its direct path lands",
    "the proxied path refuses PR OUT with HARDWARE ERROR (sg_persist exit 3)",
    "fence_hamon_scsi off: exit 0",
    "fence_hamon_scsi off: Success: Powered OFF",
    "after: node 2's direct session reads only node 1's key (2 paths)",
    "after: node 1's clean path reads only node 1's key (2 paths)",
    "after: node 1's write through the map lands",
    "syslog: KAMN725-W for the refusing path",
]


def test_fence_off_with_the_first_path_refusing_pr_out(vm):
    """Cell fence off x PR OUT refused x first path of two: routed around."""
    r = vm(FENCE_FAULT, timeout=600)
    r.check()
    got = checks(r)
    assert not set(FENCE_CHECKS) - got, sorted(set(FENCE_CHECKS) - got)
    refused = [c for c in got if c.startswith("after: node 2's write on /dev/sd")
               and c.endswith("fails with RESERVATION CONFLICT")]
    assert len(refused) == 2, refused
    assert "Success: Powered OFF" in r.file("fence-off.out")
    refusing = r.file("refusing").strip()
    # the syslog copy of KAMN725-W (caught on /dev/log in the guest): that path, once
    syslog = [ln for ln in r.file("syslog").splitlines() if "KAMN725-W" in ln]
    assert len(syslog) == 1 and f"mpatha({refusing})" in syslog[0], syslog
    assert details_code(syslog[0]) == "IO-ERR", syslog
    # and the warning line on stderr for the path routed around
    assert f"mpatha({refusing})" in r.file("fence-off.err"), r.file("fence-off.err")
    # the proxy answered the fence's PR OUT on that path with the fault
    assert faults_applied_during(r, 0) >= 1
    k2 = f"0x{key_for_node('node2'):x}"
    assert k2 in r.file("keys-before.txt")
    assert k2 not in r.file("keys-after-n2p1.txt")
    assert k2 not in r.file("keys-after-n1p1.txt")
    assert "reservation conflict" in r.dmesg
