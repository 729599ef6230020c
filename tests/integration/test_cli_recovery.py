"""The seed's recovery procedure end to end on a real tgtd, as an administrator sees it.

node1 is the active server holding the disk (two portals = two paths). Every path fails
while it terminates: the engine's own ``termination.act`` logs KAMN725-W/KAMN726-E,
journals the failure and requests the (dry-run) OS termination. The administrator fixes
the paths, then runs ``hamon recover`` / ``hamon reservation cancel`` / ``hamon status``
on the surviving node2, each as a separate process.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from hamon.lib import keys as keymod
from hamon.lib import messages
from hamon.lib import reservation as rsv
from hamon.lib.disk import Disk
from hamon.lib.identity import default_initiator
from hamon.lib.journal import Journal
from hamon.lib.multipath.resolve import Resolver
from hamon.lib.scsi.pr import ReservationType
from hamon.lib.termination import (
    OsAction,
    OsTerminator,
    Phase,
    TerminationKind,
    act,
    decide,
    failures_of,
)
from tests.fake_cluster import fake_cluster
from tests.integration.tgt import Tgt

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
WE_RO = ReservationType.WRITE_EXCLUSIVE_REGISTRANTS_ONLY
K1, K2 = keymod.key_for_node("node1"), keymod.key_for_node("node2")


def hamon(*argv: str, journal: Path, node: str = "node2", online: tuple[str, ...] = (),
          here: tuple[str, ...] = ()) -> subprocess.CompletedProcess[str]:
    """``python -m hamon`` on ``node``, in a cluster where exactly ``online`` are alive
    and ``here`` are the hamon_disk resources active on ``node`` (tests/fake_cluster.py)."""
    env = fake_cluster(journal.parent / "cluster", online, node=node, here=here,
                       env=dict(os.environ, PYTHONPATH=str(REPO),
                                HAMON_JOURNAL=str(journal),
                                HAMON_DISKS_FILE=str(journal.parent / "no-disks-file")))
    p = subprocess.run([sys.executable, "-m", "hamon", "--node", node, "--timeout", "5",
                        *argv], capture_output=True, text=True, env=env, cwd=REPO,
                       timeout=120, stdin=subprocess.DEVNULL, check=False)
    assert "Traceback" not in p.stderr, p.stderr
    return p


def disks(tgt: Tgt, node: str) -> list[Disk]:
    return Resolver(initiator=default_initiator(node), timeout=5).resolve(tgt.urls(1))


def fail_during_termination(tgt: Tgt, tmp_path: Path, kind: TerminationKind) -> Path:
    """node1 holds the disk; every path fails while it terminates; returns the journal."""
    ds = disks(tgt, "node1")
    journal = tmp_path / "journal"
    got: list[messages.Message] = []
    undo = messages.subscribe(got.append)
    try:
        assert rsv.register(ds, K1).ok and rsv.reserve(ds, K1, WE_RO).ok
        tgt.remove_portal(0)
        tgt.remove_portal(1)
        for d in ds:
            d.check_paths(3)
        decision = decide(Phase.TERMINATING, failures_of(ds))
        term = OsTerminator(OsAction.REBOOT, dry_run_file=str(tmp_path / "os"))
        assert act(decision, alias="svc", host="node1", hostkey=K1,
                   journal=Journal(str(journal)),
                   terminator=term, termination_kind=kind, resource="shared-disk")
    finally:
        undo()
        for d in ds:
            d.close()
    assert [m.full_id for m in got] == ["KAMN725-W", "KAMN725-W", "KAMN726-E", "HAMN954-E"]
    # step 2, the fix: the paths come back (node1 is down and stays down)
    tgt.restore_portal(0)
    tgt.restore_portal(1)
    return journal


def test_normal_termination_recover_cancel_recover_status(tgt: Tgt, tmp_path: Path):
    journal = fail_during_termination(tgt, tmp_path, TerminationKind.NORMAL)
    p = hamon("recover", journal=journal)
    assert p.returncode == 0, p.stderr
    out = p.stdout
    assert "termination: normal" in out
    # step 1: the messages, as hamon issued them on node1, and the paths now
    assert out.count("KAMN725-W Execution of the SCSI command on the device") == 2
    assert "KAMN726-E All paths to the device " in out
    assert out.count(f"host address: node1 (0x{K1:x}))") == 2  # §7.5.12: the key it held
    assert f"{tgt.url(1)} (iscsi): 2/2 path(s) answer" in out
    # step 2 done (paths answer); step 3 not for paths without multipath software
    assert "Step 2. Resolve the cause (do not fail back yet)  [done]" in out
    assert "Step 3. Fail back the recovered path with the multipath software  " \
           "[not applicable]" in out
    # step 4: a normal termination left node1's reservation behind
    assert "Step 4. Cancel the reservation  [TO DO]" in out
    assert f"held now by 0x{K1:x} (node1) (WE-RO)" in out
    assert f"run: hamon reservation cancel {tgt.url(1)}" in out

    p = hamon("reservation", "cancel", ",".join(tgt.urls(1)), journal=journal,
              online=("node2",))
    assert p.returncode == 0, p.stderr
    assert "HAMN953-W" in p.stderr and "previous holder = " f"0x{K1:x} (node1)" in p.stderr

    p = hamon("recover", tgt.url(1), journal=journal)
    assert p.returncode == 0, p.stderr
    assert "Step 4. Cancel the reservation  [done]" in p.stdout
    assert "cancelled by node2" in p.stdout

    p = hamon("status", ",".join(tgt.urls(1)), "--json", journal=journal)
    assert p.returncode == 0, p.stderr
    (d,) = json.loads(p.stdout)["disks"]
    assert d["paths_up"] == 2 and d["reservation"]["held"] is False
    assert d["last_entry"]["kind"] == "cancel"


@pytest.mark.parametrize("kind", [TerminationKind.PLANNED, TerminationKind.ABNORMAL])
def test_planned_or_abnormal_standby_took_it(tgt: Tgt, tmp_path: Path, kind):
    journal = fail_during_termination(tgt, tmp_path, kind)
    ds = disks(tgt, "node2")  # the standby starts the service: it preempts node1
    try:
        assert rsv.register(ds, K2).ok
        assert rsv.preempt(ds, K2, K1, WE_RO).ok
    finally:
        for d in ds:
            d.close()
    p = hamon("recover", journal=journal)
    assert p.returncode == 0, p.stderr
    assert f"termination: {kind}" in p.stdout
    assert "Step 4. Cancel the reservation  [not applicable]" in p.stdout
    assert "standby forcibly obtains the reservation" in p.stdout
    assert f"held now by 0x{K2:x} (node2) (WE-RO)" in p.stdout
    assert "run: hamon reservation cancel" not in p.stdout


def test_torn_newest_entry_makes_step4_a_check(tgt: Tgt, tmp_path: Path):
    journal = fail_during_termination(tgt, tmp_path, TerminationKind.PLANNED)
    with open(journal, "ab") as f:
        f.write(b'1234abcd {"kind":"failure","termination":"nor')  # the power went
    p = hamon("recover", journal=journal)
    assert p.returncode == 0, p.stderr
    assert "warning: journal line 2: torn write" in p.stdout
    assert "termination: unknown" in p.stdout
    assert "Step 4. Cancel the reservation  [CHECK]" in p.stdout


def test_the_rebooted_node_cancels_its_own_stale_reservation(tgt: Tgt, tmp_path: Path):
    """Where the journal is: on node1, booted again after the termination. Its own key
    holds the disk; whether a hamon_disk resource runs there decides."""
    journal = fail_during_termination(tgt, tmp_path, TerminationKind.NORMAL)
    p = hamon("recover", journal=journal, node="node1")
    assert p.returncode == 0 and "Step 4. Cancel the reservation  [TO DO]" in p.stdout
    p = hamon("reservation", "cancel", ",".join(tgt.urls(1)), journal=journal,
              node="node1", online=("node1", "node2"), here=("shared-disk",))
    assert p.returncode == 3  # a hamon_disk runs here: refused, nothing changed
    assert "node1 (this node: hamon_disk shared-disk active here) is a live cluster node" \
        in p.stderr
    assert tgt.observe([1], timeout=5)[0].reservation.key == K1  # an observer reads it
    p = hamon("reservation", "cancel", ",".join(tgt.urls(1)), journal=journal,
              node="node1", online=("node1", "node2"))
    assert p.returncode == 0, p.stderr
    assert f"previous holder = 0x{K1:x} (node1), by = node1" in p.stderr
    p = hamon("recover", journal=journal, node="node1")
    assert "Step 4. Cancel the reservation  [done]" in p.stdout
