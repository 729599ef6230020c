"""The OS termination is not blocked by the journal, as Pacemaker meets the agent (issue
11, item 3): the hamon_disk process, a tgtd LUN with two paths, both paths cut during
stop, and the journal a FIFO, a file on a full file system, or on a read-only one. The
stop must request the OS termination (the dry-run file), log KAMN726-E and HAMN954-E and
say that the journal could not be written, within a bound (a blocked stop fails the
test by its timeout, it does not hang the run).
"""
from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from tests.integration.test_disk_agent_tgt import AGENT, PYTHON, AgentNode
from tests.unit.test_reliability_journal import fill, remount_ro, tmpfs

pytestmark = pytest.mark.integration

BOUND = 60  # seconds: command_timeout 3 per step, a few steps, Python start-up


def stop_with_journal(node: AgentNode, journal: Path) -> subprocess.CompletedProcess[str]:
    env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "OCF_ROOT": "/usr/lib/ocf",
           "OCF_RESOURCE_INSTANCE": "shared-disk", "HAMON_NODE": node.name,
           "OCF_RESKEY_dmmp_device": ",".join(node.urls),
           "OCF_RESKEY_command_timeout": "3",
           "OCF_RESKEY_journal": str(journal),
           "OCF_RESKEY_state_dir": str(node.tmp / f"{node.name}.state"),
           "OCF_RESKEY_os_termination_dry_run": str(node.dry_run),
           "OCF_RESKEY_CRM_meta_interval": "0"}
    return subprocess.run([PYTHON, str(AGENT), "stop"], env=env, capture_output=True,
                          text=True, timeout=BOUND, check=False)


def started_then_cut(tgt, tmp_path: Path) -> AgentNode:
    n1 = AgentNode("node1", tgt.urls(1), tmp_path)
    r = n1.run("start")
    assert r.rc == 0, r.stderr
    tgt.remove_portal(0)
    tgt.remove_portal(1)
    return n1


def assert_terminated_anyway(n1: AgentNode, p: subprocess.CompletedProcess[str],
                             journal: Path, why: str) -> None:
    assert "Traceback" not in p.stderr, p.stderr
    assert p.returncode == 1, p.stderr     # dry run: the stop fails, as with none
    assert n1.dry_run.read_text().startswith("reboot all paths failed: "), p.stderr
    assert "KAMN726-E" in p.stderr and "HAMN954-E" in p.stderr, p.stderr
    assert f"journal {journal}: the failure entry could not be recorded ({why}" \
        in p.stderr, p.stderr


def test_fifo_journal(tgt, tmp_path):
    n1 = started_then_cut(tgt, tmp_path)
    fifo = tmp_path / "fifo-journal"
    os.mkfifo(fifo)
    assert_terminated_anyway(n1, stop_with_journal(n1, fifo), fifo, "not a regular file")


def test_full_file_system_journal(tgt, tmp_path):
    n1 = started_then_cut(tgt, tmp_path)
    with tmpfs(tmp_path / "fs") as fs:
        journal = fs / "journal"
        journal.write_bytes(b"")
        fill(fs)
        p = stop_with_journal(n1, journal)
        assert_terminated_anyway(n1, p, journal, "No space left on device")
        assert journal.read_bytes() == b""


def test_read_only_journal(tgt, tmp_path):
    n1 = started_then_cut(tgt, tmp_path)
    with tmpfs(tmp_path / "fs", size="64k") as fs:
        journal = fs / "journal"
        journal.write_bytes(b"")
        remount_ro(fs)
        p = stop_with_journal(n1, journal)
        assert_terminated_anyway(n1, p, journal, "Read-only file system")
