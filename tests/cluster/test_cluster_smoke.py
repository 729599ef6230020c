"""The cluster fixture with stock parts only: two real nodes, a Dummy resource that starts
and moves, fencing through stonith_admin and by the cluster itself with fence_dummy."""

import pytest

pytestmark = pytest.mark.cluster


def test_both_nodes_online_with_quorum(cluster):
    for node in cluster.node_names:
        out = cluster.crm_mon(node)
        assert "partition with quorum" in out, out
        assert "Online: [ node1 node2 ]" in out, out
        # each node is its own host: hostname, corosync node id, Pacemaker node name
        assert cluster.run(node, "uname", "-n").stdout.strip() == node
        assert cluster.run(node, "crm_node", "-n").stdout.strip() == node
    assert cluster.run("node1", "crm_node", "-l").stdout.split() == [
        "1", "node1", "member", "2", "node2", "member"]
    s = cluster.status("node2")
    assert s.dc in cluster.node_names and s.quorate
    assert s.online == {"node1", "node2"}


def test_dummy_starts_and_moves(cluster):
    cluster.pcs("node1", "resource", "create", "d", "ocf:pacemaker:Dummy")
    first = cluster.wait_started("d")
    other = next(n for n in cluster.node_names if n != first)
    # Dummy keeps its state file in /var/run (= /run): each node has its own /run
    state = "/var/run/Dummy-d.state"
    assert cluster.run(first, "test", "-e", state, check=False).ok
    assert not cluster.run(other, "test", "-e", state, check=False).ok

    cluster.pcs("node1", "resource", "move", "d", other)
    assert cluster.wait_started("d", node=other) == other
    cluster.wait_idle()
    s = cluster.status()
    assert s.resources["d"].nodes == [other]
    # pcs 0.11 `resource move` removes its temporary constraint once the move is done
    cons = cluster.run("node1", "cibadmin", "--query", "--scope", "constraints").stdout
    assert "rsc_location" not in cons, cons
    out = cluster.crm_mon(first)
    assert f"Started {other}" in out, out


def _fence_dummy(cluster, status_file):
    status_file.write_text("on")
    cluster.pcs("node1", "stonith", "create", "fd", "fence_dummy",
                f"status_file={status_file}", "pcmk_host_list=node1 node2")
    cluster.pcs("node1", "property", "set", "stonith-enabled=true")
    cluster.wait_started("fd")


def test_stonith_admin_fences_node2_with_fence_dummy(cluster):
    status_file = cluster.shared_dir / "fence_dummy.status"
    _fence_dummy(cluster, status_file)
    r = cluster.fence("node2", "off", via="node1")
    assert r.ok, r
    # fence_dummy type=file: "off" writes the state file (shared dir, seen by all nodes)
    assert status_file.read_text() == "off"
    hist = cluster.run("node1", "stonith_admin", "--history", "node2").stdout
    assert "turning off of node2 successful" in hist, hist
    # node2 was alive; Pacemaker there learns it was fenced and stops itself
    cluster.wait_offline("node2", via="node1")
    assert cluster.wait_pacemaker_exit("node2", 30) == 100  # CRM_EX_FATAL: stay down
    cluster.start_node("node2")
    assert cluster.status("node2").online == {"node1", "node2"}


def test_cluster_fences_lost_node_by_itself(cluster):
    status_file = cluster.shared_dir / "fence_dummy.status"
    _fence_dummy(cluster, status_file)
    cluster.pcs("node1", "resource", "create", "d", "ocf:pacemaker:Dummy")
    cluster.pcs("node1", "constraint", "location", "d", "prefers", "node2=100")
    cluster.wait_started("d", node="node2")

    cluster.kill_node("node2")  # power loss: all of node2's processes die at once

    def fenced():
        out = cluster.run("node1", "stonith_admin", "--history", "node2").stdout
        return "reboot of node2 successful" in out and out

    hist = cluster.wait_until(fenced, 60, what="node1 to fence node2")
    assert "delegate=node1" in hist, hist  # the survivor ran the agent
    cluster.wait_offline("node2", via="node1")
    # the resource recovers on the survivor only after the fencing succeeded
    assert cluster.wait_started("d", node="node1") == "node1"
    cluster.start_node("node2")
    cluster.wait_started("d", node="node2")  # back to its preferred node
