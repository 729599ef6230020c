"""fence_hamon_scsi in a real two-node Pacemaker cluster, on tgtd LUNs with two paths each.

tgtd runs on the host with two portals on the nodes' bridge (the fixture's host address
and a second one added for the test), so each node reaches every LUN through two paths.
The device is created with ``pcs``; Pacemaker runs the agent (unfencing on each node
itself, fencing from the peer). What the nodes' kernels would hold open, their I/O paths,
are sessions opened *inside each node's namespaces* (:class:`NodeProcIO`, running
tests/cluster/node_io.py there), one initiator name per node beside the agent's (as a
kernel initiator is): the tests register them with the node's key when the node is
unfenced and write through them, so the fenced node's RESERVATION CONFLICT is met by the
fenced node itself.
Keys are read back on the host as a third initiator.

What is proven here: ``pcs stonith describe`` shows the options; ``pcs stonith create``
starts the device; ``stonith_admin --unfence`` registers a node, ``--fence`` removes its
key so its next write is refused while the fencer's lands; the cluster's own fencing of a
node that died goes through this agent; a split of the cluster network makes both nodes
fence each other and exactly one key survives, on every LUN; bad configuration fails
``stonith_admin --validate`` (which runs the agent's validate-all) with one clear line.

The mutual-fencing race is run 200 rounds at the integration tier
(tests/integration/test_fence_tgt.py: two agent processes against tgtd), because a
split of this cluster per round would take hours; here it runs once, through Pacemaker.
"""
from __future__ import annotations

import contextlib
import json
import os
import re
import select
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from hamon.lib import reservation as rsv
from hamon.lib.identity import default_initiator
from hamon.lib.keys import key_for_node
from hamon.lib.scsi.pr import ReservationType
from tests.integration.test_fence_tgt import CONFLICT, WRITTEN, NodeIO
from tests.integration.tgt import Tgt, available

from .pcmk import PYTHON, REPO

pytestmark = pytest.mark.cluster

AGENT = REPO / "agents" / "fence_hamon_scsi"
HERE = Path(__file__).resolve().parent
K = {n: key_for_node(n) for n in ("node1", "node2")}
LUNS = [1, 2]


@pytest.fixture
def storage(cluster, tmp_path) -> Iterator[Tgt]:
    """tgtd on the host, LUNs 1 and 2 through two portals both nodes reach."""
    why = available()
    if why:
        pytest.skip(why)
    second = cluster.host_addr.rsplit(".", 1)[0] + ".253"
    subprocess.run(["ip", "addr", "add", f"{second}/24", "dev", cluster.bridge], check=True)
    t = Tgt(tmp_path / "tgt", luns=len(LUNS), portals=(cluster.host_addr, second))
    try:
        t.start()
        yield t
    finally:
        t.terminate()
        subprocess.run(["ip", "addr", "del", f"{second}/24", "dev", cluster.bridge],
                       check=False)


def devices(t: Tgt) -> str:
    return ",".join(u for lun in LUNS for u in t.urls(lun))


def keys_on(t: Tgt) -> list[list[int]]:
    """Every LUN's registered keys, read by a third initiator."""
    return [list(st.keys) for st in t.observe(LUNS, portal=0, timeout=5)]


def registered(t: Tgt, node: str) -> list[bool]:
    return [K[node] in keys for keys in keys_on(t)]


def create(cluster, t: Tgt, *extra: str) -> None:
    cluster.install_agent(fence=AGENT)
    cluster.pcs("node1", "stonith", "create", "storage-fence", "fence_hamon_scsi",
                f"devices={devices(t)}", "pcmk_host_list=node1 node2", "scsi_timeout=3",
                *extra, "meta", "provides=unfencing")
    cluster.pcs("node1", "property", "set", "stonith-enabled=true")
    cluster.wait_started("storage-fence", timeout=60)


class NodeProcIO:
    """A node's I/O path inside the node (tests/cluster/node_io.py under nsenter): its own
    network namespace, its own sessions, which stay open between the questions."""

    def __init__(self, cluster, node: str, urls: str) -> None:
        self.node = node
        self.p = cluster.popen(node, PYTHON, HERE / "node_io.py", node,
                               default_initiator(node) + "-io", urls,
                               env={"PYTHONPATH": str(REPO)})
        assert "ready" in self._answer(), node

    def _answer(self, timeout: float = 60) -> dict:
        ready, _, _ = select.select([self.p.stdout], [], [], timeout)
        line = self.p.stdout.readline() if ready else ""
        if not line:
            self.close()
            raise AssertionError(f"node_io on {self.node}: no answer within {timeout:g} s "
                                 f"(exit {self.p.returncode}): {self.p.stderr.read()[-2000:]}")
        return json.loads(line)

    def _ask(self, command: str) -> dict:
        self.p.stdin.write(command + "\n")
        self.p.stdin.flush()
        return self._answer()

    def join(self) -> None:
        """Registered through these sessions, as unfencing registers a node's paths."""
        assert self._ask("join") == {"ok": True}, self.node

    def writes(self) -> list[str]:
        """One WRITE per LUN: "written", "RESERVATION CONFLICT" or the error as it is."""
        return self._ask("write")["writes"]

    def close(self) -> None:
        if self.p.poll() is None:
            with contextlib.suppress(OSError, ValueError):
                self.p.stdin.write("quit\n")
                self.p.stdin.flush()
            try:
                self.p.wait(15)
            except subprocess.TimeoutExpired:
                os.killpg(self.p.pid, signal.SIGKILL)
                self.p.wait(15)


@contextlib.contextmanager
def node_proc_io(cluster, t: Tgt) -> Iterator[dict[str, NodeProcIO]]:
    io: dict[str, NodeProcIO] = {}
    try:
        for n in ("node1", "node2"):
            io[n] = NodeProcIO(cluster, n, devices(t))
        yield io
    finally:
        for x in io.values():
            x.close()


@contextlib.contextmanager
def node_io(t: Tgt) -> Iterator[dict[str, NodeIO]]:
    # Each node's I/O path is its own nexus (as a kernel initiator beside the agent's
    # userspace one), registered with the node's key: an agent run must not replace it.
    io = {n: NodeIO(n, devices(t), initiator=default_initiator(n) + "-io")
          for n in ("node1", "node2")}
    try:
        yield io
    finally:
        for x in io.values():
            x.close()


def test_pcs_stonith_describe_shows_the_options(cluster):
    cluster.install_agent(fence=AGENT)
    out = cluster.pcs("node1", "stonith", "describe", "fence_hamon_scsi").stdout
    assert "SCSI-3 persistent reservations" in out
    for option in ("devices", "key", "node_keys", "reservation_type", "iscsi_initiator",
                   "scsi_timeout", "aptpl", "local_node"):
        assert re.search(rf"^  {option}( \(required\))?:", out, re.M), option
    assert re.search(r"^  devices \(required\):", out, re.M)


def test_fence_removes_the_key_unfence_restores_it(cluster, storage):
    """pcs stonith create; stonith_admin --unfence registers each node (the agent runs on
    the node itself); --fence node2 runs on node1 and removes node2's key from every LUN:
    node2's writes get RESERVATION CONFLICT, node1's land. node2 learns it was fenced and
    stops; when it rejoins, Pacemaker unfences it again by itself."""
    create(cluster, storage)
    # Right after the start Pacemaker may still unfence (and restart the device on) a
    # node; what matters is that it settles Started, as crm_mon -1 shows it.
    cluster.wait_until(lambda: re.search(r"storage-fence\s+\(stonith:fence_hamon_scsi\):"
                                         r"\s+Started", cluster.crm_mon()),
                       timeout=60, what="crm_mon -1: storage-fence Started")
    for n in ("node1", "node2"):
        cluster.fence(n, "on")
    assert registered(storage, "node1") == registered(storage, "node2") == [True, True]
    # A resource makes the controller unfence each node by itself (again); let that finish
    # before the I/O paths register: an 'on' replaces every other nexus holding the
    # node's key (stale registrations, fence-agents#517), which these sessions would be.
    cluster.pcs("node1", "resource", "create", "d", "ocf:pacemaker:Dummy", "clone")
    cluster.wait_idle(strict=True)
    assert registered(storage, "node1") == registered(storage, "node2") == [True, True]
    with node_proc_io(cluster, storage) as io:  # each node's own I/O sessions, inside it
        io["node1"].join()
        io["node2"].join()
        assert io["node1"].writes() == io["node2"].writes() == [WRITTEN, WRITTEN]

        cluster.fence("node2", "off", via="node1")
        assert registered(storage, "node2") == [False, False]
        assert registered(storage, "node1") == [True, True]
        assert io["node2"].writes() == [CONFLICT, CONFLICT]  # met by node2 itself
        assert io["node1"].writes() == [WRITTEN, WRITTEN]
        history = cluster.run("node1", "stonith_admin", "--history", "node2").stdout
        assert "storage-fence" in history or "successful" in history, history

    assert cluster.wait_pacemaker_exit("node2", timeout=60) == 100  # it learnt it
    cluster.start_node("node2")                                      # rejoin: unfenced
    cluster.wait_until(lambda: registered(storage, "node2") == [True, True], timeout=60,
                       what="node2 unfenced again on rejoin")
    cluster.wait_idle(strict=True)

    # And by hand: node2's key removed behind Pacemaker's back (node2 stays a member),
    # then `stonith_admin --unfence node2` puts it back on every LUN.
    with node_io(storage) as io:
        io["node1"].join()
        out = rsv.preempt(io["node1"].disks, K["node1"], K["node2"],
                          ReservationType.WRITE_EXCLUSIVE_REGISTRANTS_ONLY)
        assert out.ok, out.as_dict()
    assert registered(storage, "node2") == [False, False]
    cluster.fence("node2", "on")
    assert registered(storage, "node2") == [True, True]


def test_the_cluster_fences_a_node_that_died_through_this_agent(cluster, storage):
    """A power loss of node2: node1 fences it by itself (stonith-action reboot; a fabric
    agent has no reboot, so off), removing node2's key from every LUN."""
    create(cluster, storage)
    for n in ("node1", "node2"):
        cluster.fence(n, "on")
    assert registered(storage, "node2") == [True, True]
    cluster.kill_node("node2")
    cluster.wait_until(lambda: registered(storage, "node2") == [False, False], timeout=60,
                       what="node2's key removed by the cluster's own fencing")
    assert registered(storage, "node1") == [True, True]
    cluster.wait_until(lambda: "node2" in cluster.run(
        "node1", "stonith_admin", "--history", "node2").stdout, timeout=30,
        what="fence history of node2")


def test_a_split_cluster_fences_both_ways_and_exactly_one_key_survives(cluster, storage):
    """The cluster network breaks; both halves keep quorum (two_node) and fence each
    other at once through the same LUNs. SCSI arbitrates: exactly one node's key is left,
    the same one on every LUN; the other node's fence action fails (its key is gone).

    The nodes are unfenced the way a running cluster is, by Pacemaker itself before
    resources start (a cloned Dummy), not by hand: a node unfenced only by
    ``stonith_admin --unfence`` has no ``#node-unfenced`` record, and its own half of a
    split then unfences it again before fencing the other (observed), which re-admits
    the loser. That is Pacemaker's bookkeeping, the same for fence_scsi.
    """
    create(cluster, storage)
    cluster.pcs("node1", "resource", "create", "d", "ocf:pacemaker:Dummy", "clone")
    cluster.wait_until(lambda: registered(storage, "node1") == registered(
        storage, "node2") == [True, True], timeout=60, what="automatic unfencing")
    cluster.wait_idle()
    logs = {n: cluster.log_file(n) for n in cluster.node_names}
    start = {n: logs[n].stat().st_size for n in logs}

    def log(n: str) -> str:
        with open(logs[n], "rb") as f:
            f.seek(start[n])
            return f.read().decode(errors="replace")

    cluster.disconnect("node1", "node2")

    def settled() -> str | None:
        """The loser: its fence action failed because it has been fenced itself."""
        for n in cluster.node_names:
            if "has been fenced itself" in log(n):
                return n
        return None

    loser = cluster.wait_until(settled, timeout=90, what="one fence action refused")
    winner = "node2" if loser == "node1" else "node1"
    keys = keys_on(storage)
    assert all(K[winner] in ks and K[loser] not in ks for ks in keys), keys
    # Pacemaker on the loser's side never heard "OK" for fencing the winner.
    told_ok = [ln for ln in log(loser).splitlines()
               if f"Operation 'reboot' targeting {winner}" in ln and ": OK" in ln]
    assert not told_ok, told_ok
    cluster.reconnect()
    # The winner's partition knows the loser was fenced; nothing re-admits the loser.
    assert registered(storage, loser) == [False, False]
    assert registered(storage, winner) == [True, True]


@pytest.mark.parametrize("options,message", [
    ((), "devices is required"),
    (("devices=/dev/sdzz",), "/dev/sdzz: no such device"),
    (("key=0",), "reservation key 0 is not allowed"),
])
def test_bad_configuration_fails_validate_all_with_one_clear_line(cluster, storage,
                                                                 options, message):
    """Bad options fail validate-all the way Pacemaker runs it and with the exit code it
    expects: the agent itself (options on stdin, as pacemaker-fenced passes them) exits 1
    with one line naming the problem, and ``stonith_admin --validate`` (pacemaker-fenced
    running the agent's validate-all, as ``pcs stonith create`` does before it accepts a
    device) reports "Validation of fence_hamon_scsi failed" with that line and exits 1;
    the same command with good options exits 0."""
    cluster.install_agent(fence=AGENT)
    opts = list(options)
    if not any(o.startswith("devices=") for o in opts) and "devices" not in message:
        opts.append(f"devices={devices(storage)}")
    stdin = "".join(f"{o}\n" for o in ["action=validate-all", "plug=node2", *opts])
    direct = cluster.run("node1", "fence_hamon_scsi", input=stdin, check=False, timeout=60)
    lines = [ln for ln in direct.stderr.splitlines() if ln.strip()]
    assert direct.returncode == 1, direct
    assert len(lines) == 1 and message in lines[0], direct.stderr

    argv = ["stonith_admin", "--validate", "--agent", "fence_hamon_scsi"]
    for o in opts:
        argv += ["--option", o]
    r = cluster.run("node1", *argv, check=False, timeout=60)
    text = r.stdout + r.stderr
    assert r.returncode == 1, (r.returncode, text)  # CRM_EX_ERROR (observed, 2.1.5)
    assert text.startswith("Validation of fence_hamon_scsi failed"), text
    assert message in text, text
    assert "Traceback" not in text, text
    good = ["--option", f"devices={devices(storage)}"]
    ok = cluster.run("node1", "stonith_admin", "--validate", "--agent", "fence_hamon_scsi",
                     *good, check=False, timeout=60)
    assert ok.returncode == 0, ok.stdout + ok.stderr
