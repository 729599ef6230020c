"""fence_hamon_scsi against a real tgtd: real PR semantics, real iSCSI sessions, processes.

Two nodes are two initiator names on this machine. tgt binds a registration to the iSCSI
*session* (see test_transport_iscsi), so each agent process is a new registrant, exactly
the situation the agent's guarded registration is for. A node's I/O path (what the kernel
would hold open) is :class:`NodeIO`: sessions that stay open, registered when the node is
unfenced, through which the tests write.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from hamon.agents.fence.errors import FenceError
from hamon.agents.fence.fencer import Fencer
from hamon.agents.fence.settings import Settings
from hamon.lib import reservation as rsv
from hamon.lib.keys import key_for_node
from hamon.lib.reservation.write_probe import write_probe
from hamon.lib.scsi.errors import ReservationConflict
from hamon.lib.scsi.status import Status
from tests.integration.tgt import Tgt

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
AGENT = REPO / "agents" / "fence_hamon_scsi"
CHECK = REPO / "agents" / "fence_hamon_scsi_check"
K1, K2 = key_for_node("node1"), key_for_node("node2")
K = {"node1": K1, "node2": K2}
#: the cluster name the keys above are derived with (tests/integration/conftest.py), for
#: agent processes started with a clean environment
CLUSTER = {"HAMON_CLUSTER_NAME": os.environ["HAMON_CLUSTER_NAME"]}
WRITTEN, CONFLICT = "written", "RESERVATION CONFLICT"


def agent(node: str, *args: str, timeout: float = 60,
          env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """The agent run on ``node`` (its name: --local-node), as a separate process."""
    e = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", **CLUSTER, **(env or {})}
    return subprocess.run([str(AGENT), "--local-node", node, *args], capture_output=True,
                          text=True, timeout=timeout, env=e, check=False)


def devices(tgt: Tgt, luns: range | list[int]) -> str:
    return ",".join(u for lun in luns for u in tgt.urls(lun))


class NodeIO:
    """A node's long-lived I/O sessions to every LUN (its 'kernel' paths)."""

    def __init__(self, node: str, urls: str, initiator: str | None = None) -> None:
        """``initiator``: the I/O path's own initiator name (as a kernel initiator has
        one beside the agent's); default the agent's, derived from the node name."""
        self.node = node
        self.fencer = Fencer(Settings(devices=urls.split(","), local_node=node,
                                      local_initiator=initiator))
        self.me = self.fencer.settings.node(node)
        self.disks = self.fencer.disks(self.me.initiator)

    def join(self) -> None:
        """Registered through these sessions, as unfencing registers a node's paths."""
        assert rsv.register(self.disks, self.me.key).ok

    def writes(self) -> list[str]:
        """One WRITE per LUN through this node's own sessions: ``written``, or
        ``RESERVATION CONFLICT`` (status 0x18, what a fenced node must get), or any other
        error named as it is: a dropped session is not a conflict."""
        out = []
        for r in write_probe(self.disks, 3, self.node.encode()).results:
            if r.ok:
                out.append(WRITTEN)
            elif isinstance(r.error, ReservationConflict) and \
                    r.error.status == Status.RESERVATION_CONFLICT:
                out.append(CONFLICT)
            else:
                out.append(f"{type(r.error).__name__}: {r.error or r.detail}")
        return out

    def close(self) -> None:
        self.fencer.close()


def keys_on(tgt: Tgt, luns: list[int], portal: int = 0) -> dict[int, list[int]]:
    """Every LUN's registered keys, read through one portal by an observer."""
    return {lun: list(st.keys)
            for lun, st in zip(luns, tgt.observe(luns, portal=portal), strict=True)}


def test_unfence_fence_unfence_with_agent_processes(tgt_factory):
    tgt = tgt_factory(luns=3)
    devs = devices(tgt, range(1, 4))
    for n in ("node1", "node2"):
        p = agent(n, "-o", "on", "-n", n, "-d", devs)
        assert (p.returncode, p.stdout) == (0, "Success: Powered ON\n"), p.stderr
    io1, io2 = NodeIO("node1", devs), NodeIO("node2", devs)
    try:
        io1.join()
        io2.join()
        assert io1.writes() == io2.writes() == [WRITTEN] * 3
        p = agent("node1", "-o", "status", "-n", "node2", "-d", devs)
        assert (p.returncode, p.stdout) == (0, "Status: ON\n")

        p = agent("node1", "-o", "off", "-n", "node2", "-d", devs)
        assert (p.returncode, p.stdout) == (0, "Success: Powered OFF\n"), p.stderr
        assert io2.writes() == [CONFLICT] * 3  # from node2's own, still open sessions
        assert io1.writes() == [WRITTEN] * 3
        p = agent("node1", "-o", "status", "-n", "node2", "-d", devs)
        assert (p.returncode, p.stdout) == (2, "Status: OFF\n")
        assert all(K2 not in k for k in keys_on(tgt, [1, 2, 3]).values())

        p = agent("node2", "-o", "off", "-n", "node1", "-d", devs)  # the fenced one fights
        assert p.returncode == 1 and "has been fenced itself" in p.stderr
        assert io1.writes() == [WRITTEN] * 3

        p = agent("node2", "-o", "on", "-n", "node2", "-d", devs)
        assert p.returncode == 0, p.stderr
        p = agent("node1", "-o", "status", "-n", "node2", "-d", devs)
        assert p.returncode == 0
        io2.join()  # its I/O path rejoins (on SPC-4 targets it is the same nexus)
        assert io2.writes() == [WRITTEN] * 3
    finally:
        io1.close()
        io2.close()


def test_a_real_off_loads_no_dataclass_and_nothing_it_does_not_run(tgt_factory):
    """Issue 14's lean start where the unit tier cannot reach: an ``off`` that succeeds
    (the victim's key read back gone through a session of our own) imported neither
    ``dataclasses`` nor what only speaks (messages: no path failed), leaves a disk or
    serves /dev paths. PYTHONPROFILEIMPORTTIME lists every module the agent imported."""
    tgt = tgt_factory(luns=1)
    devs = devices(tgt, [1])
    for n in ("node1", "node2"):
        assert agent(n, "-o", "on", "-n", n, "-d", devs).returncode == 0
    p = agent("node1", "-o", "off", "-n", "node2", "-d", devs,
              env={"PYTHONPROFILEIMPORTTIME": "1"})
    assert (p.returncode, p.stdout) == (0, "Success: Powered OFF\n"), p.stderr
    assert K2 not in keys_on(tgt, [1])[1]
    loaded = {line.rsplit("|", 1)[-1].strip() for line in p.stderr.splitlines()
              if line.startswith("import time:")}
    assert {"hamon.agents.fence.fencer", "hamon.lib.transport.iscsi"} <= loaded
    never = {"dataclasses", "inspect", "hashlib", "datetime", "hamon.lib.messages",
             "hamon.lib.multipath.sysfs", "hamon.lib.multipath.dmmp",
             "hamon.lib.multipath.hdlm", "hamon.lib.reservation.withdrawal",
             "hamon.lib.reservation.write_probe", "hamon.lib.devcheck"}
    assert not never & loaded, sorted(never & loaded)


def test_repeated_unfencing_keeps_one_registration_per_path(tgt_factory):
    """tgt keeps the registration of every past session; on removes them each time, so
    READ KEYS never grows (fence-agents #517/#576)."""
    tgt = tgt_factory(luns=2)
    devs = devices(tgt, [1, 2])
    for _ in range(4):
        assert agent("node1", "-o", "on", "-n", "node1", "-d", devs).returncode == 0
    for k in keys_on(tgt, [1, 2]).values():
        assert k.count(K1) == 2, k  # two paths per LUN


def test_tgt_lacks_preempt_and_abort_and_the_agent_says_preempt(tgt_factory):
    tgt = tgt_factory(luns=1)
    devs = devices(tgt, [1])
    for n in ("node1", "node2"):
        agent(n, "-o", "on", "-n", n, "-d", devs)
    p = agent("node1", "-o", "off", "-n", "node2", "-d", devs, "-v")
    assert p.returncode == 0
    assert "(preempt)" in p.stderr and "arbiter" in p.stderr


def test_off_through_the_surviving_path_when_one_portal_is_gone(tgt_factory):
    tgt = tgt_factory(luns=2)
    devs = devices(tgt, [1, 2])
    for n in ("node1", "node2"):
        assert agent(n, "-o", "on", "-n", n, "-d", devs).returncode == 0
    tgt.remove_portal(0)
    t0 = time.monotonic()
    p = agent("node1", "-o", "off", "-n", "node2", "-d", devs, "--scsi-timeout", "2")
    assert p.returncode == 0, p.stderr
    assert time.monotonic() - t0 < 10
    assert all(K2 not in k for k in keys_on(tgt, [1, 2], portal=1).values())


def test_a_hung_target_fails_the_fence_within_the_bound(tgt_factory):
    tgt = tgt_factory(luns=2)
    devs = devices(tgt, [1, 2])
    for n in ("node1", "node2"):
        assert agent(n, "-o", "on", "-n", n, "-d", devs).returncode == 0
    with tgt.stopped():
        t0 = time.monotonic()
        p = agent("node1", "-o", "off", "-n", "node2", "-d", devs, "--scsi-timeout", "1",
                  "--power-timeout", "8")
        took = time.monotonic() - t0
    assert p.returncode == 1
    assert took < 9, took
    lines = [x for x in p.stderr.splitlines() if x.strip()]
    assert len(lines) == 1 and "Traceback" not in p.stderr, p.stderr
    assert "no answer" in p.stderr or "power_timeout" in p.stderr, p.stderr


def test_watchdog_check_sees_the_fence(tgt_factory, tmp_path):
    tgt = tgt_factory(luns=2)
    devs = devices(tgt, [1, 2])
    state = tmp_path / "node2.state"
    env = {"HAMON_FENCE_STATE": str(state), "HAMON_STONITH_SYSCONFIG": "/nonexistent"}
    assert agent("node1", "-o", "on", "-n", "node1", "-d", devs).returncode == 0
    assert agent("node2", "-o", "on", "-n", "node2", "-d", devs, env=env).returncode == 0
    assert json.loads(state.read_text())["node"] == "node2"

    def check() -> int:
        return subprocess.run([str(CHECK), "test"], env={**os.environ, **env},
                              capture_output=True, timeout=30, check=False).returncode

    assert check() == 0
    assert agent("node1", "-o", "off", "-n", "node2", "-d", devs).returncode == 0
    assert check() == 2


# ------------------------------------------------------------------ the race
def _reset(devs: list[str]) -> None:
    for n in ("node1", "node2"):
        f = Fencer(Settings(devices=devs, local_node=n))
        try:
            f.unfence(f.settings.node(n))
        finally:
            f.close()


def _survivors(tgt: Tgt, luns: list[int]) -> list[set[int]]:
    return [set(k) & {K1, K2} for k in keys_on(tgt, luns).values()]


def test_mutual_fencing_race_200_rounds_never_two_survivors(tgt_factory):
    """Two nodes fence each other at the same instant, 200 times, on 4 LUNs x 2 paths.
    Each round both fencers are new (new sessions, like two agent processes). Always:
    exactly one action succeeds, and the winner's key alone remains on every LUN."""
    tgt = tgt_factory(luns=4)
    luns = [1, 2, 3, 4]
    devs = devices(tgt, luns).split(",")
    rev = [u for lun in reversed(luns) for u in tgt.urls(lun)]  # node2 lists them backwards
    wins = {"node1": 0, "node2": 0}
    t0 = time.monotonic()
    for rnd in range(200):
        _reset(devs)
        fencers = {"node1": Fencer(Settings(devices=devs, local_node="node1")),
                   "node2": Fencer(Settings(devices=rev, local_node="node2"))}
        for n, f in fencers.items():
            f.disks(f.settings.node(n).initiator)
        result: dict[str, str | None] = {}
        barrier = threading.Barrier(2)

        def run(me: str, victim: str, f: Fencer, barrier: threading.Barrier,
                result: dict[str, str | None]) -> None:
            barrier.wait()
            try:
                f.fence(f.settings.node(me), f.settings.node(victim))
                result[me] = None
            except FenceError as err:
                result[me] = str(err)

        ts = [threading.Thread(target=run, args=(me, victim, fencers[me], barrier, result))
              for me, victim in (("node1", "node2"), ("node2", "node1"))]
        for t in ts:
            t.start()
        for t in ts:
            t.join(60)
        for f in fencers.values():
            f.close()
        winners = [n for n, r in result.items() if r is None]
        assert len(winners) == 1, (rnd, result)
        w = K1 if winners[0] == "node1" else K2
        assert _survivors(tgt, luns) == [{w}] * 4, (rnd, result)
        wins[winners[0]] += 1
    assert time.monotonic() - t0 < 240
    print(f"race winners over 200 rounds: {wins}")
    assert wins["node1"] and wins["node2"], wins  # the race really went both ways


#: The one outcome of a round other than "exactly one agent succeeded" that keeps the
#: single-survivor invariant: both agents exited 1, yet every LUN holds exactly one of the
#: two keys, the same key on every LUN (one node did fence the other, and its agent could
#: not confirm it within its bound, so it said failure: Pacemaker retries the fence, which
#: then reports success). A false "failed" is safe, a false "success" is not; it is
#: bounded all the same, so that a regression that makes it common is seen.
UNCONFIRMED = "fenced, both exited 1"
UNCONFIRMED_MAX = 5


def _single_survivor(surv: list[set[int]]) -> int | None:
    """The one key left on every LUN (the same everywhere), or None."""
    first = surv[0]
    if len(first) == 1 and all(s == first for s in surv):
        return next(iter(first))
    return None


def test_mutual_fencing_race_200_rounds_with_agent_processes(tgt_factory):
    """The race as Pacemaker runs it: two real agent processes (as two pacemaker-fenced
    would start them) run ``off`` against each other at the same moment, 200 rounds, on
    4 LUNs x 2 paths, node2 listing the devices in the reverse order.

    Every round keeps the single-survivor invariant, read by an observer: exactly one of
    the two keys on every LUN, the same one everywhere. Every round has exactly one
    winner (exit 0, the survivor, "Success: Powered OFF"; the loser exits 1 saying it was
    fenced itself), or else the one named outcome :data:`UNCONFIRMED`, at most
    :data:`UNCONFIRMED_MAX` times. Never two successes, never a success whose key is not
    the survivor, never both keys left, never a split.

    This is the issue's 200-round race at the integration tier on purpose: through the
    cluster tier (a split per round, Pacemaker's own timeouts) 200 rounds would take
    hours; the cluster tier runs the race once, through real Pacemaker
    (tests/cluster/test_fence_agent.py, the split cluster)."""
    tgt = tgt_factory(luns=4)
    luns = [1, 2, 3, 4]
    devs = {"node1": devices(tgt, luns), "node2": devices(tgt, list(reversed(luns)))}
    env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", **CLUSTER}
    outcomes = {"node1": 0, "node2": 0, UNCONFIRMED: 0}
    t0 = time.monotonic()
    for rnd in range(200):
        _reset(devs["node1"].split(","))
        procs = {
            me: subprocess.Popen([str(AGENT), "--local-node", me, "-o", "off", "-n", victim,
                                  "-d", devs[me]], stdout=subprocess.PIPE,
                                 stderr=subprocess.PIPE, text=True, env=env)
            for me, victim in (("node1", "node2"), ("node2", "node1"))}
        out = {me: (p.wait(60), *p.communicate()) for me, p in procs.items()}
        rcs = {me: o[0] for me, o in out.items()}
        assert all(rc in (0, 1) for rc in rcs.values()), (rnd, out)
        surv = _survivors(tgt, luns)
        survivor = _single_survivor(surv)
        assert survivor is not None, ("single-survivor invariant broken", rnd, out, surv)
        winners = [n for n, rc in rcs.items() if rc == 0]
        assert len(winners) <= 1, ("two successes", rnd, out)
        if winners:
            w = winners[0]
            loser = "node2" if w == "node1" else "node1"
            assert survivor == K[w], ("the success is not the survivor", rnd, out, surv)
            assert out[w][1] == "Success: Powered OFF\n", (rnd, out)
            assert rcs[loser] == 1 and "fenced itself" in out[loser][2], (rnd, out)
            outcomes[w] += 1
        else:
            outcomes[UNCONFIRMED] += 1
            print(f"round {rnd}: {UNCONFIRMED}: survivor {survivor:#x}; {out}")
    took = time.monotonic() - t0
    print(f"agent-process race over 200 rounds in {took:.0f} s: {outcomes}")
    assert outcomes[UNCONFIRMED] <= UNCONFIRMED_MAX, outcomes
    assert outcomes["node1"] and outcomes["node2"], outcomes  # it went both ways


def test_without_the_arbiter_rule_the_luns_split_on_tgtd(tgt_factory):
    """The control of the races above, on tgtd and through the agent's own fencing code
    (fencer._fence_all: the guarded preempt, the reservation, the read-back) with the
    arbiter rule left out: both nodes fence on every LUN at once, each in its own order.
    Some round ends with node1's key on some LUNs and node2's on others (or both or none
    somewhere): the split the arbiter rule prevents, which the race tests can therefore
    see. Stops at the third split; at most 150 rounds."""
    from hamon.agents.fence.fencer import _fence_all

    tgt = tgt_factory(luns=4)
    luns = [1, 2, 3, 4]
    devs = devices(tgt, luns).split(",")
    rev = [u for lun in reversed(luns) for u in tgt.urls(lun)]
    splits: list[list[set[int]]] = []
    rounds = 0
    while len(splits) < 3 and rounds < 150:
        rounds += 1
        _reset(devs)
        fencers = {"node1": Fencer(Settings(devices=devs, local_node="node1")),
                   "node2": Fencer(Settings(devices=rev, local_node="node2"))}
        barrier = threading.Barrier(2)

        def naive(f: Fencer, me: str, victim: str, barrier: threading.Barrier) -> None:
            order = f.disks(f.settings.node(me).initiator)  # by LUN identity
            if me == "node2":
                order = order[::-1]                           # the other way round
            barrier.wait()
            _fence_all(order, f.settings.node(me), f.settings.node(victim),
                       f.settings.rtype)

        ts = [threading.Thread(target=naive, args=(fencers[me], me, victim, barrier))
              for me, victim in (("node1", "node2"), ("node2", "node1"))]
        for t in ts:
            t.start()
        for t in ts:
            t.join(60)
        for f in fencers.values():
            f.close()
        surv = _survivors(tgt, luns)
        if _single_survivor(surv) is None:
            splits.append(surv)
    print(f"without the arbiter rule: {len(splits)} split(s) in {rounds} rounds: {splits}")
    assert splits, f"no split in {rounds} rounds: the control cannot show what the " \
                   "race tests guard against"


def test_no_registration_pile_up_after_100_fence_cycles(tgt_factory):
    """Issue 11, item 2: every fence cycle (node2 unfences, node1 fences it) used to leave
    one more registration of node1's key per LUN on tgt, where a new session is a new
    nexus (100 cycles: 102 entries), until READ KEYS could not list them all. node1
    unfences once; each cycle is a new agent run of each (a new Fencer: new sessions, as
    a new process). After every cycle an observer counts the registrations."""
    tgt = tgt_factory(luns=2)
    devs = devices(tgt, [1, 2]).split(",")

    def run(node: str, victim: str | None = None) -> None:
        f = Fencer(Settings(devices=devs, local_node=node))
        try:
            if victim is None:
                f.unfence(f.settings.node(node))
            else:
                f.fence(f.settings.node(node), f.settings.node(victim))
        finally:
            f.close()

    run("node1")
    first = max(ks.count(K1) for ks in keys_on(tgt, [1, 2]).values())
    most = first
    for cycle in range(100):
        run("node2")
        run("node1", "node2")
        keys = keys_on(tgt, [1, 2])
        assert all(K2 not in ks and K1 in ks for ks in keys.values()), (cycle, keys)
        most = max(most, *(ks.count(K1) for ks in keys.values()))
        # what the unfence registered, plus at most the one nexus a fence keeps when it
        # became the reservation holder
        assert most <= first + 1, (cycle, keys)
    assert all(st.reservation.held for st in tgt.observe([1, 2]))
    print(f"node1's registrations per LUN: {first} after unfencing, at most {most} "
          "over 100 fence cycles")


def test_off_with_more_registrations_than_one_read_keys_returns(tgt_factory):
    """Issue 11, item 1: READ KEYS was read with 8192 bytes (1022 keys) and its cut
    ignored, so a victim key past the cut counted as absent: off exited 0 while the
    victim stayed registered and wrote. With 1100 other registrations on the LUN, the
    victim's key comes after them: off must read the whole list, remove it, and say
    success only then (checked by an observer); hamon keys shows the target's count."""
    from hamon.lib import command
    from hamon.lib.scsi.pr import PrOutServiceAction as Out
    from hamon.lib.transport.iscsi import IscsiTransport

    tgt = tgt_factory(luns=1)
    url = tgt.url(1)
    p = agent("node1", "-o", "on", "-n", "node1", "-d", url)
    assert p.returncode == 0, p.stderr
    others = 1100
    for i in range(others):  # each a nexus of its own (tgt keeps it after the logout)
        with IscsiTransport(path=url, initiator=f"iqn.2026-12.org.hamon:other{i}",
                            timeout=5) as t:
            command.pr_out(t, Out.REGISTER_AND_IGNORE_EXISTING_KEY, 0, 0x0E000000 + i)
    victim = NodeIO("node2", url)
    try:
        victim.join()   # registered after the 1100: past the first 8192 bytes
        before = tgt.observe([1])[0]
        assert len(before.keys) > 1022 + 2 and before.keys.index(K2) > 1022
        p = agent("node1", "-o", "off", "-n", "node2", "-d", url)
        assert (p.returncode, p.stdout) == (0, "Success: Powered OFF\n"), p.stderr
        after = tgt.observe([1])[0]
        assert K2 not in after.keys and K1 in after.keys
        assert len(after.keys) == len(before.keys) - before.keys.count(K2)
        assert victim.writes() == ["RESERVATION CONFLICT"]   # from its own session
        env = dict(os.environ, PYTHONPATH=str(REPO))
        out = subprocess.run([sys.executable, "-m", "hamon", "--json", "keys", url],
                             capture_output=True, text=True, env=env, timeout=60,
                             check=False)
        assert out.returncode == 0, out.stderr
        assert len(json.loads(out.stdout)[0]["keys"]) == len(after.keys)
    finally:
        victim.close()
