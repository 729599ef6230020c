"""The reservation engine on the in-memory target: per disk, per path, in parallel."""

from hamon.lib import reservation as rsv
from hamon.lib.disk import PathState
from hamon.lib.reservation import quirks as tq
from hamon.lib.scsi.errors import ReservationConflict
from hamon.lib.sim import SimLun, TgtProfile
from hamon.lib.transport.base import PathError
from tests import scenarios
from tests.scenarios import K1, K2, WE_RO
from tests.unit.simdisk import sim_disk


def test_two_nodes_fence_scenario_on_sim_with_tgt_profile():
    lun = SimLun("lun1", profile=TgtProfile)
    obs = scenarios.two_nodes_fence(lambda node: [sim_disk(lun, node)])
    assert obs == scenarios.EXPECTED_TWO_NODES_FENCE


def test_two_nodes_fence_scenario_on_sim_full_spc4():
    lun = SimLun("lun1")
    obs = scenarios.two_nodes_fence(lambda node: [sim_disk(lun, node)])
    assert obs == scenarios.EXPECTED_TWO_NODES_FENCE


def test_preempt_and_abort_used_where_supported_and_fallback_remembered():
    full, tgt = SimLun("full"), SimLun("tgt", profile=TgtProfile)
    for lun in (full, tgt):
        rsv.register([sim_disk(lun, "node1")], K1)
        rsv.register([sim_disk(lun, "node2")], K2)
    out = rsv.preempt([sim_disk(full, "node1"), sim_disk(tgt, "node1")], K1, K2, WE_RO)
    assert out.ok
    assert [r.value for r in out.results] == ["preempt-and-abort", "preempt"]
    assert tgt.wwid in tq.NO_PREEMPT_ABORT and full.wwid not in tq.NO_PREEMPT_ABORT
    # second time on tgt: no PREEMPT AND ABORT is sent at all
    rsv.register([sim_disk(tgt, "node2")], K2)
    before = len(tgt.commands)
    assert rsv.preempt([sim_disk(tgt, "node1")], K1, K2, WE_RO).ok
    sent = [c for _, c in tgt.commands[before:] if c[0] == 0x5F]
    assert [c[1] for c in sent] == [0x04]


def test_register_reports_each_failed_path():
    lun = SimLun("lun1")
    lun.fail_port(2)
    d = sim_disk(lun, "node1")
    out = rsv.register([d], K1)
    assert out.ok  # one path holds the key
    r = out.results[0]
    assert [p.ok for p in r.paths] == [True, False]
    assert isinstance(r.paths[1].error, PathError)
    assert d.paths[1].state is PathState.FAILED and "refused" in d.paths[1].reason
    assert r.detail == "registered on 1/2 paths"


def test_all_paths_failed_is_a_path_failure_not_a_refusal():
    lun = SimLun("lun1")
    lun.fail_port(1)
    lun.hang_port(2)
    out = rsv.reserve([sim_disk(lun, "node1")], K1, WE_RO)
    assert not out.ok and out.results[0].path_failure


def test_single_path_operations_fail_over_to_a_working_path():
    lun = SimLun("lun1")
    d = sim_disk(lun, "node1")
    assert rsv.register([d], K1).ok
    lun.fail_port(1)
    out = rsv.reserve([d], K1, WE_RO)
    assert out.ok and out.results[0].paths[0].path.endswith("port2")
    assert d.paths[0].state is PathState.FAILED


def test_reserve_conflict_names_the_holder():
    lun = SimLun("lun1")
    rsv.register([sim_disk(lun, "node1")], K1)
    rsv.reserve([sim_disk(lun, "node1")], K1, WE_RO)
    rsv.register([sim_disk(lun, "node2")], K2)
    out = rsv.reserve([sim_disk(lun, "node2")], K2, WE_RO)
    err = out.results[0].error
    assert isinstance(err, ReservationConflict)
    assert f"reserved by key 0x{K1:x} (WE-RO)" in str(err)


def test_many_disks_in_parallel_each_reported():
    luns = [SimLun(f"lun{i}") for i in range(16)]
    luns[5].fail_port(1)
    luns[5].fail_port(2)
    out = rsv.register([sim_disk(lun, "node1") for lun in luns], K1)
    assert [r.ok for r in out.results] == [i != 5 for i in range(16)]
    assert out.failed()[0].disk.name == "sim:lun5"
    assert all(lun.keys() == [K1, K1] for i, lun in enumerate(luns) if i != 5)


def test_unregister_is_idempotent_and_releases_holder():
    lun = SimLun("lun1")
    d = sim_disk(lun, "node1")
    rsv.register([d], K1)
    rsv.reserve([d], K1, WE_RO)
    assert rsv.unregister([d], K1).ok
    assert lun.keys() == [] and lun.rtype is None
    assert rsv.unregister([d], K1).ok


def test_release_of_someone_elses_reservation_is_a_noop():
    lun = SimLun("lun1")
    rsv.register([sim_disk(lun, "node1")], K1)
    rsv.reserve([sim_disk(lun, "node1")], K1, WE_RO)
    rsv.register([sim_disk(lun, "node2")], K2)
    out = rsv.release([sim_disk(lun, "node2")], K2)
    assert out.ok and "not by us" in out.results[0].detail
    assert lun.rtype is WE_RO


def test_unit_attentions_are_retried_and_reported():
    lun = SimLun("lun1")
    d2 = sim_disk(lun, "node2", ports=1)
    rsv.register([d2], K2)
    d1 = sim_disk(lun, "node1", ports=1)
    rsv.register([d1], K1)
    rsv.reserve([d1], K1, WE_RO)
    rsv.preempt([d1], K1, K2, WE_RO)
    out = rsv.register([d2], K2)  # node2 comes back: one UA 2A/05, then it registers
    assert out.ok
    assert out.results[0].paths[0].unit_attentions == ["UNIT ATTENTION, REGISTRATIONS "
                                                       "PREEMPTED"]


def test_endless_unit_attentions_are_bounded():
    lun = SimLun("lun1")
    d = sim_disk(lun, "node1", ports=1)
    nexus = (d.paths[0].transport().initiator, 1)
    lun.seen.add(nexus)
    lun.pending_ua[nexus] = [(0x29, 0)] * 100
    out = rsv.register([d], K1)
    assert not out.ok and "UnitAttention" in type(out.results[0].paths[0].error).__name__
