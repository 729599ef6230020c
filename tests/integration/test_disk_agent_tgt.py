"""The hamon_disk agent process against a real tgtd: the seed's paragraph, end to end.

Every action runs the installed-shape agent (``agents/ocf/hamon_disk`` with Debian's
/usr/bin/python3 and resource-agents' ocf.py) with the OCF environment Pacemaker would
give it; two cluster nodes are two node names (two iSCSI initiator names) on this
machine; the LUN has two paths, one per tgtd portal. Paths fail by cutting a portal
(``Tgt.remove_portal``: the listening socket and every established session on it go).
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from hamon.lib import keys as keymod
from hamon.lib import reservation as rsv
from hamon.lib.journal import Journal

TOP = Path(__file__).resolve().parents[2]
AGENT = TOP / "agents" / "ocf" / "hamon_disk"
PYTHON = "/usr/bin/python3"
K1, K2 = keymod.key_for_node("node1"), keymod.key_for_node("node2")
#: hamon_disk's node_keys: the cluster's members with their keys, as crm_node -l would
#: name them (start takes a disk only from a member's key)
MEMBERS = f"node1=0x{K1:x},node2=0x{K2:x}"

pytestmark = pytest.mark.integration


@dataclass
class Result:
    rc: int
    stderr: str

    def ids(self) -> list[str]:
        return [w for line in self.stderr.splitlines() for w in line.split()[:1]
                if w.startswith(("KAMN", "HAMN"))]


@dataclass
class AgentNode:
    """One node running the agent: its name, state dir, journal and dry-run file."""

    name: str
    urls: list[str]
    tmp: Path

    @property
    def journal(self) -> Journal:
        return Journal(str(self.tmp / f"{self.name}.journal"))

    @property
    def dry_run(self) -> Path:
        return self.tmp / f"{self.name}.terminate"

    def run(self, action: str, **env: str) -> Result:
        base = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "OCF_ROOT": "/usr/lib/ocf",
                "OCF_RESOURCE_INSTANCE": "shared-disk", "HAMON_NODE": self.name,
                "OCF_RESKEY_dmmp_device": ",".join(self.urls),
                "OCF_RESKEY_command_timeout": "3",
                "OCF_RESKEY_journal": self.journal.path,
                "OCF_RESKEY_state_dir": str(self.tmp / f"{self.name}.state"),
                "OCF_RESKEY_os_termination_dry_run": str(self.dry_run),
                # keys of this test's cluster: its name, and its members (no crm_node here)
                "OCF_RESKEY_cluster_name": os.environ["HAMON_CLUSTER_NAME"],
                "OCF_RESKEY_node_keys": MEMBERS,
                "OCF_RESKEY_CRM_meta_interval": "30000" if action == "monitor" else "0",
                **env}
        p = subprocess.run([PYTHON, str(AGENT), action], env=base, capture_output=True,
                           text=True, timeout=120, check=False)
        return Result(p.returncode, p.stderr)


@pytest.fixture
def nodes(tgt, tmp_path):
    return AgentNode("node1", tgt.urls(1), tmp_path), AgentNode("node2", tgt.urls(1), tmp_path)


def lun_status(tgt) -> rsv.LunStatus:
    """Keys and holder as a third initiator (an observer) reads them."""
    return tgt.observe(timeout=5)[0]


def test_start_monitor_stop_and_the_standbys_probe(nodes, tgt):
    n1, n2 = nodes
    assert n1.run("monitor", OCF_RESKEY_CRM_meta_interval="0").rc == 7
    r = n1.run("start")
    assert r.rc == 0, r.stderr
    assert r.ids() == ["HAMN950-I"]
    st = lun_status(tgt)
    assert st.reservation.key == K1 and st.reservation.type.short == "WE-RO"
    assert set(st.keys) == {K1}
    assert n1.run("monitor").rc == 0
    assert n1.run("start").rc == 0                          # idempotent
    assert n2.run("monitor", OCF_RESKEY_CRM_meta_interval="0").rc == 7
    r = n1.run("stop")
    assert r.rc == 0, r.stderr
    assert "HAMN952-I" in r.ids()
    st = lun_status(tgt)
    assert not st.reservation.held and st.keys == ()
    assert n1.run("stop").rc == 0                           # idempotent
    assert n1.run("monitor").rc == 7
    assert not n1.dry_run.exists()


def test_start_while_the_other_node_holds_it_preempts(nodes, tgt):
    n1, n2 = nodes
    assert n1.run("start").rc == 0
    r = n2.run("start")
    assert r.rc == 0, r.stderr
    assert "HAMN951-W" in r.ids()
    assert f"preempted key = 0x{K1:x}" in r.stderr
    st = lun_status(tgt)
    assert st.reservation.key == K2 and set(st.keys) == {K2}
    assert n1.run("monitor").rc == 7          # node1 no longer holds it
    assert n2.run("monitor").rc == 0
    assert n1.run("stop").rc == 0             # and its stop leaves node2 alone
    assert lun_status(tgt).reservation.key == K2
    assert n2.run("stop").rc == 0


def test_one_of_two_paths_fails_during_stop_kamn725_only_and_the_stop_completes(nodes, tgt):
    n1, _ = nodes
    assert n1.run("start").rc == 0
    tgt.remove_portal(1)
    r = n1.run("stop")
    assert r.rc == 0, r.stderr
    assert "KAMN725-W" in r.ids()
    assert "KAMN726-E" not in r.ids() and "HAMN954-E" not in r.ids()
    assert "details code: IO-ERR" in r.stderr
    assert not n1.dry_run.exists()                       # the OS keeps running
    tgt.restore_portal(1)
    st = lun_status(tgt)
    assert not st.reservation.held and K1 not in st.keys  # nothing of node1's is left
    (entry,) = n1.journal.entries("failure")
    assert entry["phase"] == "terminating" and entry["verdict"] == "continue"
    assert entry["termination"] == "normal"              # run by hand: normal


def test_every_path_fails_during_stop_kamn726_and_the_os_termination_dry_run(nodes, tgt):
    n1, _ = nodes
    assert n1.run("start").rc == 0
    tgt.remove_portal(0)
    tgt.remove_portal(1)
    r = n1.run("stop")
    assert r.rc == 1
    ids = r.ids()
    assert ids.count("KAMN725-W") == 2 and "KAMN726-E" in ids and "HAMN954-E" in ids
    assert ids.index("KAMN726-E") < ids.index("HAMN954-E")
    assert "ocf-exit-reason:every path of" in r.stderr and "dry run" in r.stderr
    assert n1.dry_run.read_text().startswith("reboot all paths failed: ")
    # the journal entry is intact (checksummed, complete line) and says what recovery needs
    assert n1.journal.torn() == []
    entry = n1.journal.last("failure")
    assert entry["verdict"] == "terminate-os" and entry["os_action"] == "reboot"
    assert entry["termination"] == "normal" and entry["disks"][0]["all_failed"]
    # what hamon says next: step 4 applies (normal termination: cancel the reservation).
    # The disk is named as the messages name it: the operand (here the first URL).
    tgt.restore_portal(0)
    tgt.restore_portal(1)
    out = subprocess.run([sys.executable, "-m", "hamon", "recover", "--json", "--node",
                          "node1", "--journal", n1.journal.path, tgt.urls(1)[0]],
                         capture_output=True, text=True, timeout=120, cwd=TOP,
                         env=dict(os.environ, PYTHONPATH=str(TOP)))
    plan = json.loads(out.stdout)
    assert plan["termination"] == "normal", out.stdout
    step4 = next(s for s in plan["steps"] if s["step"] == 4)
    assert step4["applies"] not in ("unknown", "no"), step4


def test_os_termination_none_fails_the_stop_without_terminating(nodes, tgt):
    n1, _ = nodes
    assert n1.run("start").rc == 0
    tgt.remove_portal(0)
    tgt.remove_portal(1)
    r = n1.run("stop", OCF_RESKEY_os_termination="none", OCF_RESKEY_os_termination_dry_run="")
    assert r.rc == 1
    assert "KAMN726-E" in r.ids() and "HAMN957-E" in r.ids() and "HAMN954-E" not in r.ids()
    assert not n1.dry_run.exists()


def test_monitor_degraded_then_recovered(nodes, tgt):
    n1, _ = nodes
    ocf11 = {"OCF_RA_VERSION_MAJOR": "1", "OCF_RA_VERSION_MINOR": "1"}
    assert n1.run("start").rc == 0
    tgt.remove_portal(1)
    r = n1.run("monitor", **ocf11)
    assert r.rc == 190 and "KAMN725-W" in r.ids()
    assert "ocf-exit-reason:degraded" in r.stderr
    assert n1.run("monitor").rc == 0                      # an OCF 1.0 caller: running
    tgt.restore_portal(1)
    r = n1.run("monitor", **ocf11)
    assert r.rc == 0 and "KAMN727-I" in r.ids()
    # tgt binds a registration to the iSCSI session that made it, so a new agent process
    # finds its key missing on the recovered path: ONLINE_CHECK(NO_KEY), registered again
    assert "ONLINE_CHECK(NO_KEY)" in r.stderr
    tgt.remove_portal(0)
    tgt.remove_portal(1)
    r = n1.run("monitor")
    assert r.rc == 1 and "KAMN726-E" in r.ids()
    assert not n1.dry_run.exists()                        # a monitor never terminates


def test_a_hung_target_bounds_the_stop_and_still_terminates(nodes, tgt):
    """tgtd SIGSTOPped: TCP still connects, nothing answers. Every command is bounded
    (command_timeout=2, paths in parallel), so the stop reaches the seed's verdict in a
    few seconds, far inside Pacemaker's stop timeout, instead of hanging."""
    n1, _ = nodes
    assert n1.run("start").rc == 0
    with tgt.stopped():
        t0 = time.monotonic()
        r = n1.run("stop", OCF_RESKEY_command_timeout="2")
        took = time.monotonic() - t0
    assert r.rc == 1 and "KAMN726-E" in r.ids() and "HAMN954-E" in r.ids(), r.stderr
    assert n1.dry_run.exists()
    assert took < 20, took
