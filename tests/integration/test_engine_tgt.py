"""The reservation engine against a real tgtd: two nodes x two paths, real PR semantics."""
from __future__ import annotations

import time

from hamon.lib import reservation as rsv
from hamon.lib.disk import PathState
from hamon.lib.identity import default_initiator
from hamon.lib.multipath.resolve import Resolver
from hamon.lib.reservation import quirks as tq
from hamon.lib.reservation.write_probe import write_probe
from hamon.lib.scsi.errors import ReservationConflict
from hamon.lib.sim import SimLun, TgtProfile
from tests import scenarios
from tests.scenarios import K1, K2, WE_RO
from tests.unit.simdisk import sim_disk


def resolver(node: str, timeout: float = 5.0) -> Resolver:
    return Resolver(initiator=default_initiator(node), timeout=timeout)


def test_two_nodes_fence_scenario_on_tgtd_matches_sim(tgt):
    tq.NO_PREEMPT_ABORT.clear()
    real = scenarios.two_nodes_fence(lambda node: resolver(node).resolve(tgt.urls(1)))
    assert real == scenarios.EXPECTED_TWO_NODES_FENCE
    tq.NO_PREEMPT_ABORT.clear()
    lun = SimLun("lun1", profile=TgtProfile)
    simulated = scenarios.two_nodes_fence(lambda node: [sim_disk(lun, node)])
    assert real == simulated


def test_two_urls_of_one_lun_are_one_disk_with_two_paths(tgt):
    disks = resolver("node1").resolve(tgt.urls(1) + tgt.urls(2))
    try:
        assert [len(d.paths) for d in disks] == [2, 2]
        assert disks[0].wwid and disks[0].wwid != disks[1].wwid
    finally:
        for d in disks:
            d.close()


def test_tgt_refuses_preempt_and_abort_so_the_engine_falls_back(tgt):
    tq.NO_PREEMPT_ABORT.clear()
    d1, d2 = resolver("node1").resolve(tgt.urls(1)), resolver("node2").resolve(tgt.urls(1))
    try:
        assert rsv.register(d1, K1).ok and rsv.register(d2, K2).ok
        assert rsv.reserve(d1, K1, WE_RO).ok
        out = rsv.preempt(d1, K1, K2, WE_RO)
        assert out.ok and out.results[0].value == "preempt"
        assert d1[0].wwid in tq.NO_PREEMPT_ABORT
        err = write_probe(d2, 5, b"x").results[0].error
        assert isinstance(err, ReservationConflict)
    finally:
        for d in d1 + d2:
            d.close()


def test_removed_portal_is_a_failed_path_the_other_still_works(tgt):
    (d,) = resolver("node1").resolve(tgt.urls(1))
    try:
        assert rsv.register([d], K1).ok
        tgt.remove_portal(1)
        d.check_paths()
        assert [p.state for p in d.paths] == [PathState.UP, PathState.FAILED]
        assert d.paths[1].reason
        assert rsv.reserve([d], K1, WE_RO).ok
        out = rsv.register([d], K1)
        assert out.ok and [p.ok for p in out.results[0].paths] == [True, False]
        tgt.restore_portal(1)
        d.check_paths()
        assert [p.state for p in d.paths] == [PathState.UP, PathState.UP]
    finally:
        d.close()


def test_a_target_that_stops_answering_times_out_within_the_bound(tgt):
    bound = 1.0
    (d,) = resolver("node1", timeout=bound).resolve(tgt.urls(1))
    try:
        assert rsv.register([d], K1).ok
        with tgt.stopped():
            t0 = time.monotonic()
            out = rsv.reserve([d], K1, WE_RO)
            elapsed = time.monotonic() - t0
        assert not out.ok and out.results[0].path_failure
        # two paths tried one after the other, each bounded
        assert elapsed < 2 * bound + 1.0, elapsed
        assert all(p.state is PathState.FAILED for p in d.paths)
    finally:
        d.close()
