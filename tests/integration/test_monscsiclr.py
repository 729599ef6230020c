"""``hamon monscsiclr ALIAS`` (HA Monitor §9.21) against a real tgtd (issue 12, part 4).

The devices of the alias come from a disks file (the cluster does not run here, as
monscsiclr must work without it); LUN 2 is reached through a fault proxy that answers
PERSISTENT RESERVE OUT with CHECK CONDITION, so its release fails while LUN 1's succeeds.
What was released is read back by an observer session of its own.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from hamon.lib import keys as keymod
from hamon.lib import reservation as rsv
from hamon.lib.identity import default_initiator
from hamon.lib.journal import Journal
from hamon.lib.multipath.resolve import Resolver
from hamon.lib.scsi.pr import ReservationType
from tests.fake_cluster import fake_cluster
from tests.faultproxy import FaultKind, FaultProxy, FaultRule
from tests.integration.tgt import Tgt

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
WE_RO = ReservationType.WRITE_EXCLUSIVE_REGISTRANTS_ONLY
K1, K2 = keymod.key_for_node("node1"), keymod.key_for_node("node2")
PR_OUT = 0x5F


@pytest.fixture
def rig(tgt_factory, tmp_path) -> Iterator[tuple[Tgt, FaultProxy, Path, list[str]]]:
    """tgtd with 3 LUNs held by node2 (then gone); a disks file: LUN 1 directly and LUN 2
    through the proxy under alias svc, LUN 3 under alias other."""
    t = tgt_factory(luns=3)
    proxy = FaultProxy((t.hosts[0], t.port)).start()
    try:
        for lun in (1, 2, 3):
            ds = Resolver(initiator=default_initiator("node2"), timeout=5).resolve(
                t.urls(lun))
            try:
                assert rsv.register(ds, K2).ok and rsv.reserve(ds, K2, WE_RO).ok
            finally:
                for d in ds:
                    d.close()
        svc = [t.url(1), proxy.url(t.target, 2)]
        disks = tmp_path / "disks"
        disks.write_text(f"# shared disks of this server\n{svc[0]} alias=svc\n"
                         f"{svc[1]} alias=svc\n{t.url(3)} alias=other\n")
        yield t, proxy, disks, svc
    finally:
        proxy.stop()


def monscsiclr(disks: Path, journal: Path, *argv: str, online: tuple[str, ...] = ("node1",)
               ) -> subprocess.CompletedProcess[str]:
    """``python -m hamon monscsiclr`` on node1, where exactly ``online`` are alive."""
    env = fake_cluster(journal.parent / "cluster", online, node="node1",
                       env=dict(os.environ, PYTHONPATH=str(REPO), HAMON_JOURNAL=str(journal)))
    p = subprocess.run([sys.executable, "-m", "hamon", "--timeout", "3", "--node", "node1",
                        "monscsiclr", *argv, "--disks-file", str(disks), "--no-cib"],
                       capture_output=True, text=True, env=env, cwd=REPO, timeout=120,
                       check=False)
    assert "Traceback" not in p.stderr, p.stderr
    return p


def held_by(t: Tgt, lun: int) -> int | None:
    st = t.observe([lun], timeout=5)[0]
    return st.reservation.key if st.reservation.held else None


def test_one_device_fails_the_others_are_released_and_the_exit_says_so(rig, tmp_path):
    t, proxy, disks, svc = rig
    journal = tmp_path / "journal"
    proxy.set_rules(FaultRule(FaultKind.CHECK_CONDITION, opcode=PR_OUT))
    p = monscsiclr(disks, journal, "svc")
    lines = p.stdout.splitlines()
    assert p.returncode == 1, p.stdout + p.stderr
    assert lines[0] == "KAMN107-I The monscsiclr command started. (server: svc)"
    assert lines[1] == f"CLEARED {svc[0]}"
    assert lines[2].startswith(f"FAILED {svc[1]}: not cleared"), lines
    assert lines[3] == ("KAMN108-I The monscsiclr command ended. (result: FAILURE, "
                        "server: svc)")
    assert len(lines) == 4
    # read back by an observer: LUN 1 free, LUN 2 still node2's, LUN 3 (other alias) too
    assert held_by(t, 1) is None and t.observe([1])[0].keys == ()
    assert held_by(t, 2) == K2 and held_by(t, 3) == K2
    assert proxy.seen(opcode=PR_OUT) >= 1          # the failure was the target's answer
    (entry,) = [r.entry for r in Journal(str(journal)).records() if r.entry]
    assert entry["kind"] == "cancel" and entry["command"] == "monscsiclr"
    assert [d["disk"] for d in entry["disks"]] == [svc[0]]

    # the path works again: the failed device is released, LUN 1 stays free -> exit 0
    proxy.clear_rules()
    p = monscsiclr(disks, journal, "svc", "--json")
    out = json.loads(p.stdout)
    assert p.returncode == 0, p.stdout + p.stderr
    assert out["result"] == "SUCCESS" and [d["released"] for d in out["devices"]] == \
        [True, True]
    assert held_by(t, 1) is None and held_by(t, 2) is None and held_by(t, 3) == K2


def test_a_live_holder_is_refused_per_device_and_nothing_changes(rig, tmp_path):
    t, _, disks, svc = rig
    p = monscsiclr(disks, tmp_path / "journal", "svc", online=("node1", "node2"))
    assert p.returncode == 1
    lines = p.stdout.splitlines()
    assert [ln.split()[0] for ln in lines] == ["KAMN107-I", "FAILED", "FAILED", "KAMN108-I"]
    assert [ln.split()[1].rstrip(":") for ln in lines[1:3]] == svc
    assert all("refused" in ln and "node2 is a live cluster node" in ln
               for ln in lines[1:3]), lines
    assert "result: FAILURE" in lines[3]
    assert [held_by(t, n) for n in (1, 2, 3)] == [K2, K2, K2]


def test_an_unknown_alias_is_a_usage_error_naming_the_known_ones(rig, tmp_path):
    _, _, disks, _ = rig
    p = monscsiclr(disks, tmp_path / "journal", "nosuch")
    assert p.returncode == 2 and "'nosuch'" in p.stderr and "other, svc" in p.stderr
    assert "KAMN107" not in p.stdout
