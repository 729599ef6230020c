"""ocf:hamon:hamon_disk in a real two-node Pacemaker cluster, on a tgtd LUN with two paths.

The LUN is served by a tgtd on the host with two portals on the nodes' bridge (the
fixture's host address and a second one added for the test), so each node reaches it
through two paths. Resources are created with ``pcs``; the reservation is read from the
host as a third initiator. What is proven here, with Pacemaker itself driving the agent:
``crm_mon -1 -A`` shows the resource Started and its path attribute; ``pcs resource move``
moves the reservation (the new node preempts nothing: the old one released it) and the
old node journals a *planned* termination; ``pcs resource disable`` is *normal*; a
node put in standby is *planned*; a path cut shows as degraded, and its recovery as
KAMN727-I.
"""
from __future__ import annotations

import concurrent.futures
import contextlib
import json
import subprocess
from pathlib import Path

import pytest

from hamon.lib import keys as keymod
from hamon.lib import reservation as rsv
from tests.integration.tgt import Tgt, available

from .pcmk import REPO

pytestmark = pytest.mark.cluster

AGENT = REPO / "agents" / "ocf" / "hamon_disk"
KEY = {n: keymod.key_for_node(n) for n in ("node1", "node2")}
JOURNAL = "/run/hamon/journal"   # per node: /run is a tmpfs of each node
ATTR = "hamon-paths-tgt-1"


@pytest.fixture
def storage(cluster, tmp_path):
    """tgtd on the host, LUN 1 through two portals both nodes reach."""
    why = available()
    if why:
        pytest.skip(why)
    second = cluster.host_addr.rsplit(".", 1)[0] + ".253"
    subprocess.run(["ip", "addr", "add", f"{second}/24", "dev", cluster.bridge], check=True)
    t = Tgt(tmp_path / "tgt", luns=1, portals=(cluster.host_addr, second))
    try:
        t.start()
        yield t
    finally:
        # Stop the resource while its disk still answers: a stop that finds every path
        # dead is the seed's case and fails by design (the cluster reset would meet it).
        for i in range(len(t.hosts)):
            with contextlib.suppress(Exception):
                t.restore_portal(i)
        with contextlib.suppress(Exception):
            cluster.pcs("node1", "resource", "disable", "shared-disk", check=False)
            cluster.wait_stopped("shared-disk", timeout=60)
        t.terminate()
        subprocess.run(["ip", "addr", "del", f"{second}/24", "dev", cluster.bridge],
                       check=False)


def lun(t: Tgt) -> rsv.LunStatus:
    return t.observe(timeout=5)[0]


class Log:
    """A node's pacemaker.log from the moment this object is made (the file lives as
    long as the session's cluster, across tests)."""

    def __init__(self, cluster, node: str) -> None:
        self.path = Path(cluster.log_file(node))
        self.start = self.path.stat().st_size if self.path.exists() else 0

    def text(self) -> str:
        with open(self.path, "rb") as f:
            f.seek(self.start)
            return f.read().decode(errors="replace")


def journal(cluster, node: str) -> list[dict]:
    out = cluster.run(node, "sh", "-c", f"cat {JOURNAL} 2>/dev/null || true").stdout
    return [json.loads(line.split(" ", 1)[1]) for line in out.splitlines() if " " in line]


def create(cluster, t: Tgt, *params: str) -> str:
    cluster.install_agent(ocf=AGENT)
    params = params or (f"os_termination_dry_run={cluster.shared_dir / 'terminate'}",)
    # the dry run is a test hook the metadata does not list: pcs accepts it with --force
    force = ("--force",) if any(p.startswith("os_termination_dry_run=") for p in params) \
        else ()
    cluster.pcs("node1", "resource", "create", "shared-disk", "ocf:hamon:hamon_disk",
                "dmmp_device=" + ",".join(t.urls(1)), f"journal={JOURNAL}",
                "command_timeout=3", *params,
                "op", "monitor", "interval=3s", "timeout=30s", *force)
    return cluster.wait_started("shared-disk", timeout=60)


def other(node: str) -> str:
    return "node2" if node == "node1" else "node1"


def test_pcs_create_crm_mon_shows_started_and_the_path_attribute(cluster, storage):
    logs = {n: Log(cluster, n) for n in cluster.node_names}
    where = create(cluster, storage)
    st = lun(storage)
    assert st.reservation.key == KEY[where] and set(st.keys) == {KEY[where]}
    cluster.wait_until(lambda: cluster.status().attributes.get(where, {}).get(ATTR) == "2/2",
                       timeout=30, what=f"{ATTR}=2/2 on {where}")
    text = cluster.crm_mon()
    assert f"Started {where}" in text and f"{ATTR}" in text and "2/2" in text
    assert "HAMN950-I" in logs[where].text()      # stderr reached the cluster log


def test_pcs_resource_move_moves_the_reservation_and_is_a_planned_termination(
        cluster, storage):
    logs = {n: Log(cluster, n) for n in cluster.node_names}
    first = create(cluster, storage)
    second = other(first)
    cluster.pcs("node1", "resource", "move", "shared-disk", second, timeout=120)
    cluster.wait_started("shared-disk", second, timeout=60)
    cluster.wait_until(lambda: lun(storage).reservation.key == KEY[second], timeout=30,
                       what="the reservation on the new node")
    assert set(lun(storage).keys) == {KEY[second]}
    stops = [e for e in journal(cluster, first) if e.get("kind") == "stop"]
    assert stops and stops[-1]["termination"] == "planned", stops
    assert "cli-" in stops[-1]["termination_reason"]
    log = logs[second].text()
    assert "HAMN950-I" in log and "HAMN951-W" not in log  # released first: no preempt


def test_disable_is_a_normal_termination_and_standby_a_planned_one(cluster, storage):
    first = create(cluster, storage)
    cluster.pcs("node1", "node", "standby", first)
    second = cluster.wait_started("shared-disk", other(first), timeout=60)
    assert second == other(first)
    stop = [e for e in journal(cluster, first) if e.get("kind") == "stop"][-1]
    assert stop["termination"] == "planned" and "standby" in stop["termination_reason"]
    cluster.pcs("node1", "node", "unstandby", first)
    cluster.pcs("node1", "resource", "disable", "shared-disk")
    cluster.wait_stopped("shared-disk")
    stop = [e for e in journal(cluster, second) if e.get("kind") == "stop"][-1]
    assert stop["termination"] == "normal", stop
    st = lun(storage)
    assert not st.reservation.held and st.keys == ()


def stops(cluster, node: str) -> list[dict]:
    return [e for e in journal(cluster, node) if e.get("kind") == "stop"]


def test_ban_is_a_planned_termination(cluster, storage):
    first = create(cluster, storage)
    cluster.pcs("node1", "resource", "ban", "shared-disk", first)
    cluster.wait_started("shared-disk", other(first), timeout=60)
    stop = stops(cluster, first)[-1]
    assert stop["termination"] == "planned", stop
    assert f"cli-ban-shared-disk-on-{first}" in stop["termination_reason"]
    assert lun(storage).reservation.key == KEY[other(first)]


def test_node_shutdown_with_the_service_going_elsewhere_is_planned(cluster, storage):
    """Pacemaker stopped on the active node (pcs cluster stop NODE): the other node runs
    on and takes the service, a switchover."""
    first = create(cluster, storage)
    second = other(first)
    assert cluster.stop_node(first)
    cluster.wait_started("shared-disk", second, timeout=60, via=second)
    stop = stops(cluster, first)[-1]
    assert stop["termination"] == "planned", stop
    assert "shutting down" in stop["termination_reason"] and second in \
        stop["termination_reason"]
    assert lun(storage).reservation.key == KEY[second]


def test_whole_cluster_stop_is_a_normal_termination(cluster, storage):
    """Every node stops at once (what pcs cluster stop --all does): the service starts
    nowhere, so the node that stops it last journals *normal*; the reservation is
    released (the disk is free, read by an observer)."""
    first = create(cluster, storage)
    before = {n: len(stops(cluster, n)) for n in cluster.node_names}
    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        done = list(pool.map(cluster.stop_node, cluster.node_names))
    assert all(done), done
    new = {n: stops(cluster, n)[before[n]:] for n in cluster.node_names}
    assert new[first], new                      # the active node stopped it
    kinds = [e["termination"] for es in new.values() for e in es]
    # the first stop may see the other node not yet shutting down (planned: Pacemaker may
    # start the service there for a moment); the stop that ends the service is normal
    assert "normal" in kinds and set(kinds) <= {"normal", "planned"}, new
    assert all("no other node can take" in e["termination_reason"]
               for es in new.values() for e in es if e["termination"] == "normal")
    st = lun(storage)
    assert not st.reservation.held and st.keys == ()


def test_a_lost_path_is_degraded_in_crm_mon_and_its_recovery_kamn727(cluster, storage):
    logs = {n: Log(cluster, n) for n in cluster.node_names}
    where = create(cluster, storage)
    storage.remove_portal(1)
    cluster.wait_until(lambda: cluster.status().attributes.get(where, {}).get(ATTR) == "1/2",
                       timeout=30, what=f"{ATTR}=1/2")
    status = cluster.status()
    assert where in status.resources["shared-disk"].nodes     # still running there
    storage.restore_portal(1)
    cluster.wait_until(lambda: cluster.status().attributes.get(where, {}).get(ATTR) == "2/2",
                       timeout=30, what=f"{ATTR} back to 2/2")
    # the monitor publishes the attribute while it runs; execd logs its messages (stderr)
    # only once it ended, a moment later (seen 2026-12-02: 2/2 at .154, KAMN727-I at .186)
    cluster.wait_until(lambda: "KAMN727-I" in logs[where].text(), timeout=30,
                       what="KAMN727-I in the cluster log")
    assert "KAMN725-W" in logs[where].text()


def test_every_path_lost_while_running_the_recovery_stop_escalates_to_fencing(
        cluster, storage, fence_recorder):
    """All paths die under the active node: its monitor fails (KAMN726-E), Pacemaker
    recovers with a stop, which is the active server terminating with every path
    failed: with os_termination=none the OS is not terminated (HAMN957-E), the stop
    fails, and Pacemaker fences the node. The journal says *abnormal* (a recovery after
    a failure), so recovery knows the standby will obtain the reservation."""
    fence_recorder.create()
    cluster.pcs("node1", "property", "set", "stonith-enabled=true")
    cluster.wait_started("fr")
    logs = {n: Log(cluster, n) for n in cluster.node_names}
    where = create(cluster, storage, "os_termination=none")
    storage.remove_portal(0)
    storage.remove_portal(1)
    fence_recorder.wait_call("reboot", where, timeout=90)
    failures = [e for e in journal(cluster, where) if e.get("kind") == "failure"]
    stop = [e for e in failures if e.get("phase") == "terminating"]
    assert stop, failures
    assert stop[-1]["verdict"] == "terminate-os" and stop[-1]["os_action"] == "none"
    assert stop[-1]["termination"] == "abnormal", stop[-1]
    assert "fail" in stop[-1]["termination_reason"]
    log = logs[where].text()
    for msg in ("KAMN725-W", "KAMN726-E", "HAMN957-E"):
        assert msg in log, msg
    assert "HAMN954-E" not in log
