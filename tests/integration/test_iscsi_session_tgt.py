"""One iSCSI session per portal and target for all of an action's LUNs, against tgtd.

What sharing must not change, each checked on the wire (fault proxies count the
connections and commands) and by an observer with sessions of its own:
- every LUN gets its own registration, and an action's LUNs log in once per portal;
- a portal that goes silent fails every LUN through it within one command bound (not
  one bound per LUN), the other portal's session carries on;
- a login that fails is tried once for all the LUNs waiting for it;
- without the poll loop (threads), the commands of one session are serialized, and
  still all answered;
- a fence ``off`` on 8 LUNs x 2 paths opens one connection per portal it uses.
"""
from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

import pytest

from hamon.lib import command
from hamon.lib import reservation as rsv
from hamon.lib.disk import run_parallel
from hamon.lib.identity import default_initiator
from hamon.lib.keys import key_for_node
from hamon.lib.multipath.resolve import Resolver
from hamon.lib.sim import FaultKind, FaultRule
from hamon.lib.transport.base import PathError, PathTimeout
from hamon.lib.transport.iscsi import SharedSessions
from hamon.lib.transport.iscsi_url import parse_iscsi_url
from tests.faultproxy import FaultProxy

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
AGENT = REPO / "agents" / "fence_hamon_scsi"
N1 = default_initiator("node1")
LUNS = 8


@pytest.fixture
def san(tgt_factory):
    tgt = tgt_factory(luns=LUNS, size_mb=1)
    proxies = [FaultProxy((host, tgt.port)).start() for host in tgt.hosts]
    yield tgt, proxies
    for p in proxies:
        p.stop()


def urls_through(tgt, proxies, luns=range(1, LUNS + 1), target: str | None = None
                 ) -> list[str]:
    return [p.url(target or tgt.target, lun) for lun in luns for p in proxies]


def wait_for(cond, bound: float = 5.0) -> bool:
    end = time.monotonic() + bound
    while time.monotonic() < end:
        if cond():
            return True
        time.sleep(0.02)
    return cond()


def test_an_actions_luns_register_through_one_login_per_portal(san):
    tgt, proxies = san
    key = key_for_node("node1")
    resolver = Resolver(initiator=N1, timeout=5.0)
    disks = resolver.resolve(urls_through(tgt, proxies))
    try:
        assert len(disks) == LUNS and all(len(d.paths) == 2 for d in disks)
        out = rsv.register(disks, key)
        assert out.ok, [(r.disk.name, r.error) for r in out.results if not r.ok]
        assert [p.connections_accepted for p in proxies] == [1, 1]
        # one REGISTER per LUN per portal went through those two connections
        for p in proxies:
            assert sorted(lun for (lun, op, sa) in p.counts_by_lun() if op == 0x5F) == \
                list(range(1, LUNS + 1))
        isids = {p.transport().isid for d in disks for p in d.paths}
        assert len(isids) == 2  # one I_T nexus per portal
    finally:
        for d in disks:
            d.close()
    # every LUN as an observer reads it (its own sessions, straight to tgtd): our key
    # once per nexus, i.e. per portal
    for st in tgt.observe(range(1, LUNS + 1)):
        assert list(st.keys) == [key, key], st
    # closing the paths logged the two sessions out
    assert wait_for(lambda: all(p.live_connections == 0 for p in proxies))


def test_a_silent_portal_fails_every_lun_on_it_within_one_bound(san):
    tgt, proxies = san
    ss = SharedSessions(N1, [parse_iscsi_url(u) for u in urls_through(tgt, proxies)])
    good = [ss.transport(p, 1.0) for p in urls_through(tgt, proxies[:1])]
    bad = [ss.transport(p, 1.0) for p in urls_through(tgt, proxies[1:])]
    try:
        assert all(isinstance(x, str) for x in run_parallel(
            [lambda t=t: command.lun_identity(t) for t in good + bad]))
        proxies[1].set_rules(FaultRule(FaultKind.SWALLOW))
        t0 = time.monotonic()
        out = run_parallel([lambda t=t: command.read_keys(t) for t in good + bad])
        took = time.monotonic() - t0
        assert all(not isinstance(x, Exception) for x in out[:LUNS]), out[:LUNS]
        errs = out[LUNS:]
        assert all(isinstance(e, PathError) for e in errs), errs
        assert any(isinstance(e, PathTimeout) for e in errs), errs
        for t, e in zip(bad, errs, strict=True):
            assert e.path == t.path and str(t.url.lun) in str(e)  # names its LUN's path
        assert took < 2.5, took  # one 1 s bound for the portal, not one per LUN
        assert not bad[0].connected and good[0].connected
        assert all(not isinstance(x, Exception) for x in run_parallel(
            [lambda t=t: command.read_keys(t) for t in good]))
    finally:
        for t in good + bad:
            t.close()


def test_a_refused_login_is_tried_once_for_all_waiting_luns(san):
    tgt, proxies = san
    urls = urls_through(tgt, proxies[:1], target="iqn.2026-12.org.hamon:no-such-target")
    ss = SharedSessions(N1, [parse_iscsi_url(u) for u in urls])
    ts = [ss.transport(u, 3.0) for u in urls]
    try:
        out = run_parallel([lambda t=t: command.test_unit_ready(t) for t in ts])
        assert all(isinstance(e, PathError) for e in out), out
        assert all("login" in str(e) and e.path == t.path
                   for t, e in zip(ts, out, strict=True)), out
        assert proxies[0].connections_accepted == 1
    finally:
        for t in ts:
            t.close()


def test_without_the_loop_threads_take_turns_on_one_session(san, monkeypatch):
    tgt, proxies = san
    monkeypatch.setenv("HAMON_NO_LOOP", "1")
    urls = urls_through(tgt, proxies[:1])
    ss = SharedSessions(N1, [parse_iscsi_url(u) for u in urls])
    ts = [ss.transport(u, 5.0) for u in urls]
    try:
        out = run_parallel([lambda t=t: [command.lun_identity(t) for _ in range(5)]
                            for t in ts])
        assert all(isinstance(x, list) and len(set(x)) == 1 for x in out), out
        assert len({x[0] for x in out}) == LUNS  # every LUN answered as itself
        assert proxies[0].connections_accepted == 1
    finally:
        for t in ts:
            t.close()


def test_a_fence_off_on_8_luns_logs_in_once_per_portal(san):
    tgt, proxies = san
    devs = ",".join(urls_through(tgt, proxies))
    env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin",
           "HAMON_CLUSTER_NAME": os.environ["HAMON_CLUSTER_NAME"]}

    def agent(node: str, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([str(AGENT), "--local-node", node, *args, "-d", devs],
                              capture_output=True, text=True, timeout=60, env=env,
                              check=False)

    for node in ("node1", "node2"):
        p = agent(node, "-o", "on", "-n", node)
        assert p.returncode == 0, p.stderr
    before = [p.connections_accepted for p in proxies]
    p = agent("node1", "-o", "off", "-n", "node2")
    assert (p.returncode, p.stdout) == (0, "Success: Powered OFF\n"), p.stderr
    opened = [p.connections_accepted - b for p, b in zip(proxies, before, strict=True)]
    assert opened[0] == 1 and opened[1] <= 1, opened  # never one per LUN
    k1, k2 = key_for_node("node1"), key_for_node("node2")
    for st in tgt.observe(range(1, LUNS + 1)):
        assert k2 not in st.keys and k1 in st.keys, st
