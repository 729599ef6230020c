"""``hamon reservation cancel`` against a real tgtd: the command run as an administrator
runs it (a separate process), two iSCSI initiator names as two cluster nodes.

"Alive" is what the cluster's tools say: ``crm_node``/``crm_mon`` answering as the test
says, first on PATH (tests/fake_cluster.py); the real cluster's membership is tested in the
cluster tier's terms elsewhere and in the unit tier.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from hamon.lib import keys as keymod
from hamon.lib import reservation as rsv
from hamon.lib.disk import Disk
from hamon.lib.identity import default_initiator
from hamon.lib.journal import Journal
from hamon.lib.multipath.resolve import Resolver
from hamon.lib.reservation.write_probe import write_probe
from hamon.lib.scsi.errors import ReservationConflict
from hamon.lib.scsi.pr import ReservationType
from tests.fake_cluster import fake_cluster
from tests.integration.tgt import Tgt

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
WE_RO = ReservationType.WRITE_EXCLUSIVE_REGISTRANTS_ONLY
K1, K2 = keymod.key_for_node("node1"), keymod.key_for_node("node2")


def hamon(*argv: str, journal: Path, online: tuple[str, ...] = ("node1", "node2"),
          offline: tuple[str, ...] = ()) -> subprocess.CompletedProcess[str]:
    """The installed command's way in: a fresh interpreter, ``python -m hamon``, with
    a cluster in which ``online`` are alive and ``offline`` lost (node1 runs no
    hamon_disk resource)."""
    env = fake_cluster(journal.parent / "cluster", online, offline=offline, node="node1",
                       env=dict(os.environ, PYTHONPATH=str(REPO),
                                HAMON_JOURNAL=str(journal)))
    p = subprocess.run([sys.executable, "-m", "hamon", "--timeout", "5", *argv],
                       capture_output=True, text=True, env=env, cwd=REPO, timeout=120,
                       check=False)
    assert "Traceback" not in p.stderr, p.stderr
    return p


def disks(tgt: Tgt, node: str, lun: int = 1) -> list[Disk]:
    return Resolver(initiator=default_initiator(node), timeout=5).resolve(tgt.urls(lun))


def status(tgt: Tgt, lun: int = 1) -> rsv.LunStatus:
    return tgt.observe([lun], timeout=5)[0]  # an onlooker: reads need no registration


def node_holds(tgt: Tgt, node: str, lun: int = 1, key: int | None = None) -> None:
    """``node`` registers on both paths and reserves, then dies (its sessions end)."""
    ds = disks(tgt, node, lun)
    k = key or keymod.key_for_node(node)
    try:
        assert rsv.register(ds, k).ok
        assert rsv.reserve(ds, k, WE_RO).ok
    finally:
        for d in ds:
            d.close()


def test_stale_key_of_a_dead_node_is_cancelled(tgt: Tgt, tmp_path: Path):
    node_holds(tgt, "node2")
    ds1 = disks(tgt, "node1")
    assert rsv.register(ds1, K1).ok  # node1 is alive and unfenced
    for d in ds1:
        d.close()
    j = tmp_path / "journal"
    p = hamon("--node", "node1", "--nodes", "node2", "reservation", "cancel",
              ",".join(tgt.urls(1)), journal=j, online=("node1",), offline=("node2",))
    assert p.returncode == 0, p.stderr
    assert f"reservation cancelled (was held by 0x{K2:x} (node2) WE-RO" in p.stdout
    assert "HAMN953-W The reservation of the shared disk was cancelled. (device name = " \
           f"{tgt.url(1)}, previous holder = 0x{K2:x} (node2), by = node1)" in p.stderr
    st = status(tgt)
    assert not st.reservation.held
    assert K2 not in st.keys and K1 in st.keys  # node1's own registration restored
    (e,) = Journal(str(j)).entries("cancel")
    assert e["node"] == "node1" and e["disks"][0]["holder"] == f"0x{K2:x}"
    # the disk is usable again: node1 reserves it and writes; node2's old key is gone.
    # (tgt binds a registration to the session that made it, so a new node1 process
    # registers again first, as hamon_disk start does.)
    ds1 = disks(tgt, "node1")
    ds2 = disks(tgt, "node2")
    try:
        assert rsv.register(ds1, K1).ok
        assert rsv.reserve(ds1, K1, WE_RO).ok
        assert write_probe(ds1, 5, b"node1").ok
        w = write_probe(ds2, 5, b"node2")
        assert isinstance(w.results[0].error, ReservationConflict)
    finally:
        for d in ds1 + ds2:
            d.close()


def test_refused_when_a_live_node_holds_it(tgt: Tgt, tmp_path: Path):
    node_holds(tgt, "node2")
    before = status(tgt)
    j = tmp_path / "journal"
    p = hamon("--node", "node1", "reservation", "cancel", ",".join(tgt.urls(1)),
              journal=j, online=("node1", "node2"))
    assert p.returncode == 3
    (line,) = p.stderr.splitlines()
    assert line.startswith("hamon: refused: ")
    assert f"held by 0x{K2:x} (node2), and node2 is a live cluster node" in line
    assert "HAMN953" not in p.stderr
    after = status(tgt)
    assert after.reservation == before.reservation and after.keys == before.keys
    assert not j.exists()  # nothing journalled


def test_force_cancels_a_live_holder(tgt: Tgt, tmp_path: Path):
    node_holds(tgt, "node2")
    j = tmp_path / "journal"
    p = hamon("--node", "node1", "--json", "reservation", "cancel", ",".join(tgt.urls(1)),
              "--force", journal=j, online=("node1", "node2"))
    assert p.returncode == 0, p.stderr
    doc = json.loads(p.stdout)
    assert doc["forced"] is True and doc["disks"][0]["result"] == "cancelled"
    assert "by = node1 (--force))" in p.stderr
    assert doc["overrides"] == ["--force"]
    assert not status(tgt).reservation.held
    assert Journal(str(j)).entries("cancel")[0]["forced"] is True


def test_cancel_through_the_path_that_still_works(tgt: Tgt, tmp_path: Path):
    node_holds(tgt, "node2")
    tgt.remove_portal(0)
    p = hamon("--node", "node1", "reservation", "cancel", ",".join(tgt.urls(1)),
              journal=tmp_path / "journal", online=("node1",))
    assert p.returncode == 0, p.stderr
    assert f"cleared through {tgt.url(1, 1)}" in p.stdout
    assert not status(tgt).reservation.held


def test_nothing_to_cancel_and_every_path_down(tgt: Tgt, tmp_path: Path):
    j = tmp_path / "journal"
    p = hamon("--node", "node1", "reservation", "cancel", ",".join(tgt.urls(2)),
              journal=j, online=("node1",))
    assert p.returncode == 0 and "nothing to cancel" in p.stdout
    tgt.remove_portal(0)
    tgt.remove_portal(1)
    p = hamon("--node", "node1", "reservation", "cancel", ",".join(tgt.urls(2)),
              journal=j, online=("node1",))
    assert p.returncode == 1
    (line,) = p.stderr.splitlines()
    assert "nothing was changed" in line
    assert not j.exists()
