"""What agent tests can rely on: how agents get installed, where Pacemaker runs them, with
what environment, and what happens around fencing. Uses tests/cluster/fence_recorder (on
fencing.py, records each call) and a copy of the stock Dummy as an ocf:hamon agent."""

import os
from pathlib import Path

import pytest

from .pcmk import OCF_DIR, PYTHON

pytestmark = pytest.mark.cluster

HOST_PIDNS = os.readlink("/proc/self/ns/pid")


def test_agents_are_installed_in_the_nodes_only(cluster, fence_recorder):
    assert not Path("/usr/sbin/fence_recorder").exists()  # the host's /usr is untouched
    for node in cluster.node_names:
        listed = cluster.run(node, "stonith_admin", "--list-installed").stdout.split()
        assert "fence_recorder" in listed and "fence_recorder_fabric" in listed
    desc = cluster.pcs("node1", "stonith", "describe", "fence_recorder").stdout
    assert "record_file" in desc, desc
    cluster.uninstall_agents()
    listed = cluster.run("node1", "stonith_admin", "--list-installed").stdout.split()
    assert "fence_recorder" not in listed


def test_hamon_is_importable_on_the_nodes(cluster):
    out = cluster.run("node2", PYTHON, "-c", "import hamon; print(hamon.__file__)").stdout
    assert out.strip().endswith("/hamon/__init__.py"), out


def test_ocf_agent_runs_from_provider_hamon(cluster):
    host_had_provider = Path(OCF_DIR, "hamon").exists()
    cluster.install_agent(ocf=Path(OCF_DIR, "pacemaker", "Dummy"), name="TestDummy")
    assert Path(OCF_DIR, "hamon").exists() == host_had_provider
    assert "ocf:hamon:TestDummy" in cluster.pcs("node1", "resource", "list", "ocf:hamon").stdout
    cluster.pcs("node1", "resource", "create", "t", "ocf:hamon:TestDummy")
    where = cluster.wait_started("t")
    assert f"Started {where}" in cluster.crm_mon()


def test_fence_action_runs_on_a_peer_with_the_daemon_environment(cluster, fence_recorder):
    fence_recorder.create()
    cluster.pcs("node1", "property", "set", "stonith-enabled=true")
    cluster.wait_started("fr")
    # asked on the victim itself: the fencer still lets a peer do it
    assert cluster.fence("node2", "off", via="node2").ok
    (call,) = fence_recorder.wait_call("off", "node2")
    assert call["node"] == "node1"
    assert call["agent"] == "fence_recorder" and call["uid"] == 0
    assert call["argv"] == ["/usr/sbin/fence_recorder"]  # parameters come on stdin
    assert call["options"]["--record-file"] == str(fence_recorder.record_file)
    assert call["options"]["--plug"] == "node2"  # pcmk_host_map/port: the node name
    # pacemaker-fenced passes its own environment (the daemons' env from the fixture)
    assert call["env"]["PATH"] == "/usr/sbin:/usr/bin:/sbin:/bin"
    assert call["env"]["PCMK_logfile"] == "/var/log/pacemaker/pacemaker.log"
    # and its stderr lands in the executing node's pacemaker.log
    assert cluster.wait_pacemaker_exit("node2", 30) == 100


def test_fabric_agent_unfences_each_node_on_itself(cluster, fence_recorder):
    """fence_scsi-like agents (on_target + automatic unfencing): Pacemaker runs "on" for
    a node ON THAT NODE before resources start there, and again when it rejoins after
    being fenced; "off" runs on a peer."""
    fence_recorder.create(agent="fence_recorder_fabric")
    cluster.pcs("node1", "resource", "create", "d", "ocf:pacemaker:Dummy")
    cluster.pcs("node1", "property", "set", "stonith-enabled=true")
    cluster.wait_started("d")
    for node in cluster.node_names:
        (on,) = fence_recorder.wait_call("on", node)
        assert on["node"] == node, on
    assert cluster.fence("node2", "off", via="node1").ok
    (off,) = fence_recorder.calls("off", "node2")
    assert off["node"] == "node1"
    assert cluster.wait_pacemaker_exit("node2", 30) == 100
    cluster.start_node("node2")
    on_again = fence_recorder.wait_call("on", "node2", count=2)[-1]
    assert on_again["node"] == "node2" and on_again["time"] > off["time"]


def test_cluster_fences_a_killed_node_with_the_recorder(cluster, fence_recorder):
    fence_recorder.create()
    cluster.pcs("node1", "property", "set", "stonith-enabled=true")
    cluster.wait_started("fr")
    cluster.kill_node("node2")
    (call,) = fence_recorder.wait_call("reboot", "node2")  # stonith-action=reboot
    assert call["node"] == "node1"
    cluster.wait_offline("node2", via="node1")


def test_disconnect_splits_membership_and_reconnect_heals(cluster):
    cluster.disconnect("node1", "node2")
    for me, peer in (("node1", "node2"), ("node2", "node1")):
        cluster.wait_until(lambda me=me, peer=peer: peer not in cluster.status(me).online,
                           30, what=f"{me} to lose {peer}")
        assert cluster.status(me).quorate  # two_node: each half keeps quorum
    cluster.reconnect()
    cluster.wait_online(cluster.node_names, timeout=60)


def test_os_reboot_inside_a_node_powers_off_only_that_node(cluster):
    """reboot(2) in a node's PID namespace kills that namespace's init: the node is powered
    off, the host and the other node keep running (hamon's OS termination is safe here)."""
    guard = (
        "import ctypes, os, socket, sys\n"
        f"assert os.readlink('/proc/self/ns/pid') != {HOST_PIDNS!r}, 'host pid ns!'\n"
        "assert socket.gethostname() == 'node2'\n"
        "ctypes.CDLL(None, use_errno=True).syscall(169, 0xfee1dead, 672274793, 0x01234567, 0)\n"
    )
    cluster.run("node2", PYTHON, "-c", guard, check=False, timeout=30)
    cluster.wait_until(lambda: not cluster.nodes["node2"].up, 10, what="node2 to power off")
    cluster.wait_offline("node2", via="node1")
    assert cluster.is_running("node1")
