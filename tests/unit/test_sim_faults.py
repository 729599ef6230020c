"""Injected faults on the in-memory target: each FaultKind as the initiator sees it, and
a faulted command changes nothing on the LUN (read back through another port)."""
import struct

import pytest

from hamon.lib import command
from hamon.lib.scsi import pr as prm
from hamon.lib.scsi.errors import Busy, CheckCondition, ReservationConflict, error_for
from hamon.lib.scsi.pr import PrInServiceAction as In
from hamon.lib.scsi.pr import PrOutServiceAction as Out
from hamon.lib.scsi.pr import ReservationType as RT
from hamon.lib.scsi.sense import SenseKey
from hamon.lib.scsi.status import Status
from hamon.lib.sim import (
    HARDWARE_ERROR,
    FaultKind,
    FaultPlan,
    FaultRule,
    SimTransport,
    corrupt_pr_in,
)
from hamon.lib.transport.base import PathError, PathTimeout

PR_IN, PR_OUT, TUR = 0x5E, 0x5F, 0x00


def path(lun, port, ini="a"):
    return SimTransport(path=f"sim:{ini}:{port}", lun=lun, initiator=ini, port=port)


def test_hardware_error_default_is_check_condition_44_00(lun):
    lun.inject(1, HARDWARE_ERROR)
    result = path(lun, 1).execute(prm.pr_in_cdb(In.READ_KEYS), data_in_len=256)
    assert result.status == Status.CHECK_CONDITION
    err = error_for(result.status, result.sense)
    assert type(err) is CheckCondition
    assert (err.sense.key, err.asc, err.ascq) == (SenseKey.HARDWARE_ERROR, 0x44, 0x00)
    assert result.data == b""


def test_check_condition_carries_any_sense(lun):
    lun.inject(1, FaultRule(FaultKind.CHECK_CONDITION, opcode=TUR, sense_key=0x3, asc=0x11,
                            ascq=0x01))
    result = path(lun, 1).execute(bytes(6))
    err = error_for(result.status, result.sense)
    assert (err.sense.key, err.asc, err.ascq) == (SenseKey.MEDIUM_ERROR, 0x11, 0x01)


@pytest.mark.parametrize("kind,status,exc", [
    (FaultKind.BUSY, Status.BUSY, Busy),
    (FaultKind.TASK_SET_FULL, Status.TASK_SET_FULL, Busy),
    (FaultKind.RESERVATION_CONFLICT, Status.RESERVATION_CONFLICT, ReservationConflict),
])
def test_status_kinds(lun, kind, status, exc):
    lun.inject(1, FaultRule(kind, opcode=PR_IN))
    result = path(lun, 1).execute(prm.pr_in_cdb(In.READ_KEYS), data_in_len=256)
    assert result.status == status
    assert result.sense == b""
    assert isinstance(error_for(result.status, result.sense), exc)


def test_swallow_raises_path_timeout_without_sleeping(lun):
    lun.inject(1, FaultRule(FaultKind.SWALLOW, opcode=PR_IN))
    with pytest.raises(PathTimeout, match="no answer within 3 s"):
        path(lun, 1).execute(prm.pr_in_cdb(In.READ_KEYS), data_in_len=256, timeout=3)


def test_drop_raises_path_error_connection_lost(lun):
    lun.inject(1, FaultRule(FaultKind.DROP))
    with pytest.raises(PathError, match="connection lost") as info:
        path(lun, 1).execute(bytes(6))
    assert not isinstance(info.value, PathTimeout)


def test_faulted_pr_out_changes_no_state(lun):
    command.pr_out(path(lun, 2), Out.REGISTER, 0, 0x22)
    lun.inject(1, HARDWARE_ERROR)
    a = path(lun, 1)
    for action, key, sa_key in [(Out.REGISTER, 0, 0x11), (Out.PREEMPT, 0x11, 0x22),
                                (Out.CLEAR, 0x22, 0)]:
        with pytest.raises(CheckCondition):
            command.pr_out(a, action, key, sa_key, RT.WRITE_EXCLUSIVE)
    reader = path(lun, 2, "observer")
    keys = command.read_keys(reader)
    assert keys.keys == (0x22,) and keys.generation == 1
    assert command.read_reservation(reader).key is None
    assert all(port != 1 for (_, port), _ in lun.commands)  # the LUN never saw them


@pytest.mark.parametrize("sa", [In.READ_KEYS, In.READ_RESERVATION, In.READ_FULL_STATUS])
def test_corrupt_header_claims_more_than_sent_and_not_multiple_of_8(lun, sa):
    command.pr_out(path(lun, 2), Out.REGISTER, 0, 0x22)
    command.pr_out(path(lun, 2), Out.RESERVE, 0x22, 0, RT.WRITE_EXCLUSIVE)
    lun.inject(1, FaultRule(FaultKind.CORRUPT))
    result = path(lun, 1).execute(prm.pr_in_cdb(sa), data_in_len=1024)
    assert result.status == Status.GOOD
    generation, claimed = struct.unpack_from(">II", result.data)
    assert generation == 1
    assert claimed > len(result.data) - 8
    assert claimed % 8 != 0
    with pytest.raises(prm.ResponseError):  # a reader sees it malformed, never a list
        prm.parse_read_keys(result.data)


def test_corrupt_report_capabilities_length(lun):
    lun.inject(1, FaultRule(FaultKind.CORRUPT, opcode=PR_IN))
    result = path(lun, 1).execute(prm.pr_in_cdb(In.REPORT_CAPABILITIES), data_in_len=8)
    length = struct.unpack_from(">H", result.data)[0]
    assert length > len(result.data) and length % 8 != 0


def test_corrupt_ignores_other_commands_and_is_not_used_up_by_them(lun):
    lun.inject(1, FaultRule(FaultKind.CORRUPT, count=1))
    a = path(lun, 1)
    assert a.execute(bytes(6)).status == Status.GOOD  # TUR: nothing to corrupt
    command.pr_out(a, Out.REGISTER, 0, 0x11)  # PR OUT: executes normally
    assert lun.keys() == [0x11]
    raw = a.execute(prm.pr_in_cdb(In.READ_KEYS), data_in_len=256).data
    assert struct.unpack_from(">I", raw, 4)[0] == 20  # one key (8 bytes) sent, 20 claimed
    assert command.read_keys(a).keys == (0x11,)  # the one hit was the PR IN


def test_opcode_and_service_action_select(lun):
    lun.inject(1, FaultRule(FaultKind.BUSY, opcode=PR_IN, service_action=In.READ_RESERVATION))
    a = path(lun, 1)
    assert a.execute(prm.pr_in_cdb(In.READ_KEYS), data_in_len=256).status == Status.GOOD
    assert a.execute(bytes(6)).status == Status.GOOD
    assert a.execute(prm.pr_in_cdb(In.READ_RESERVATION), data_in_len=256).status == Status.BUSY


def test_count_limits_hits_then_commands_pass(lun):
    lun.inject(1, FaultRule(FaultKind.BUSY, count=2))
    a = path(lun, 1)
    assert [a.execute(bytes(6)).status for _ in range(3)] == [Status.BUSY, Status.BUSY,
                                                              Status.GOOD]


def test_first_matching_rule_wins_and_rules_are_per_port(lun):
    lun.inject(1, FaultRule(FaultKind.RESERVATION_CONFLICT, opcode=TUR, count=1),
               FaultRule(FaultKind.BUSY))
    a, b = path(lun, 1), path(lun, 2)
    assert a.execute(bytes(6)).status == Status.RESERVATION_CONFLICT
    assert a.execute(bytes(6)).status == Status.BUSY
    assert b.execute(bytes(6)).status == Status.GOOD


def test_clear_faults_one_port_or_all(lun):
    lun.inject(1, HARDWARE_ERROR)
    lun.inject(2, HARDWARE_ERROR)
    lun.clear_faults(1)
    assert path(lun, 1).execute(bytes(6)).status == Status.GOOD
    assert path(lun, 2).execute(bytes(6)).status == Status.CHECK_CONDITION
    lun.clear_faults()
    assert path(lun, 2).execute(bytes(6)).status == Status.GOOD


def test_fail_and_hang_port_still_work_and_win(lun):
    lun.inject(1, FaultRule(FaultKind.BUSY))
    lun.hang_port(1)
    with pytest.raises(PathTimeout):
        path(lun, 1).execute(bytes(6))
    lun.restore_port(1)
    lun.fail_port(1)
    with pytest.raises(PathError):
        path(lun, 1).execute(bytes(6))
    lun.restore_port(1)
    assert path(lun, 1).execute(bytes(6)).status == Status.BUSY


def test_rule_kind_from_string_and_plan_replace():
    rule = FaultRule("busy", opcode=PR_OUT)
    assert rule.kind is FaultKind.BUSY
    assert rule.status() == Status.BUSY and rule.sense() == b""
    plan = FaultPlan([rule])
    assert plan.take(bytes([PR_OUT]) + bytes(9)) is rule
    plan.replace([])
    assert not plan and plan.take(bytes([PR_OUT]) + bytes(9)) is None
    with pytest.raises(ValueError):
        FaultRule("melt")


def test_corrupt_pr_in_leaves_non_pr_in_and_short_data_alone():
    assert corrupt_pr_in(bytes(6), b"abcdefgh") == b"abcdefgh"
    assert corrupt_pr_in(prm.pr_in_cdb(In.READ_KEYS), b"abc") == b"abc"


def test_plan_refund_gives_one_hit_back_to_a_counted_rule():
    rule = FaultRule(FaultKind.BUSY, count=1)
    plan = FaultPlan([rule])
    assert plan.take(bytes(6)) is rule
    assert plan.take(bytes(6)) is None
    plan.refund(rule)
    assert plan.take(bytes(6)) is rule
    assert plan.take(bytes(6)) is None
