"""The in-memory target's SPC-4 state machine, command by command."""
import pytest

from hamon.lib import command
from hamon.lib.scsi.errors import IllegalRequest, ReservationConflict, UnitAttention
from hamon.lib.scsi.pr import PrOutServiceAction as Out
from hamon.lib.scsi.pr import ReservationType as RT
from hamon.lib.sim import SimLun, SimTransport, TgtProfile


def nexus(lun, ini, port=1):
    t = SimTransport(path=f"sim:{ini}:{port}", lun=lun, initiator=ini, port=port)
    return t


def reg(t, key):
    command.pr_out(t, Out.REGISTER, 0, key)


def test_generation_counts_register_clear_preempt_not_reserve(lun):
    a, b = nexus(lun, "a"), nexus(lun, "b")
    reg(a, 1)
    reg(b, 2)
    assert command.read_keys(a).generation == 2
    command.pr_out(a, Out.RESERVE, 1, 0, RT.WRITE_EXCLUSIVE)
    command.pr_out(a, Out.RELEASE, 1, 0, RT.WRITE_EXCLUSIVE)
    assert command.read_keys(a).generation == 2
    command.pr_out(a, Out.PREEMPT, 1, 2, RT.WRITE_EXCLUSIVE)
    assert command.read_keys(a).generation == 3
    command.pr_out(a, Out.CLEAR, 1)
    assert command.read_keys(a).generation == 4


def test_register_with_wrong_key_conflicts(lun):
    a = nexus(lun, "a")
    with pytest.raises(ReservationConflict):
        command.pr_out(a, Out.REGISTER, 5, 6)  # unregistered, RK must be 0
    reg(a, 1)
    with pytest.raises(ReservationConflict):
        command.pr_out(a, Out.REGISTER, 9, 2)
    command.pr_out(a, Out.REGISTER_AND_IGNORE_EXISTING_KEY, 9, 2)
    assert lun.keys() == [2]


def test_registration_is_per_i_t_nexus(lun):
    a1, a2 = nexus(lun, "a", 1), nexus(lun, "a", 2)
    reg(a1, 1)
    assert lun.keys() == [1]
    command.pr_out(a1, Out.RESERVE, 1, 0, RT.WRITE_EXCLUSIVE_REGISTRANTS_ONLY)
    with pytest.raises(ReservationConflict):  # same initiator, other port: not registered
        command.write_block(a2, 0, bytes(512))
    reg(a2, 1)
    command.write_block(a2, 0, bytes(512))


@pytest.mark.parametrize("rtype,reg_read,reg_write,unreg_read,unreg_write", [
    (RT.WRITE_EXCLUSIVE, True, False, True, False),
    (RT.EXCLUSIVE_ACCESS, False, False, False, False),
    (RT.WRITE_EXCLUSIVE_REGISTRANTS_ONLY, True, True, True, False),
    (RT.EXCLUSIVE_ACCESS_REGISTRANTS_ONLY, True, True, False, False),
    (RT.WRITE_EXCLUSIVE_ALL_REGISTRANTS, True, True, True, False),
    (RT.EXCLUSIVE_ACCESS_ALL_REGISTRANTS, True, True, False, False),
])
def test_access_table_for_all_six_types(lun, rtype, reg_read, reg_write, unreg_read,
                                        unreg_write):
    holder, other, stranger = nexus(lun, "h"), nexus(lun, "o"), nexus(lun, "s")
    reg(holder, 1)
    reg(other, 2)
    command.pr_out(holder, Out.RESERVE, 1, 0, rtype)
    command.write_block(holder, 0, b"h" * 512)
    assert command.read_block(holder, 0) == b"h" * 512

    def allowed(fn):
        try:
            fn()
            return True
        except ReservationConflict:
            return False

    assert allowed(lambda: command.read_block(other, 0)) is reg_read
    assert allowed(lambda: command.write_block(other, 1, bytes(512))) is reg_write
    assert allowed(lambda: command.read_block(stranger, 0)) is unreg_read
    assert allowed(lambda: command.write_block(stranger, 1, bytes(512))) is unreg_write


def test_read_reservation_all_registrants_reports_key_zero(lun):
    a = nexus(lun, "a")
    reg(a, 7)
    command.pr_out(a, Out.RESERVE, 7, 0, RT.WRITE_EXCLUSIVE_ALL_REGISTRANTS)
    r = command.read_reservation(a)
    assert r.key == 0 and r.type is RT.WRITE_EXCLUSIVE_ALL_REGISTRANTS


def test_reserve_twice_other_type_conflicts(lun):
    a = nexus(lun, "a")
    reg(a, 1)
    command.pr_out(a, Out.RESERVE, 1, 0, RT.WRITE_EXCLUSIVE)
    command.pr_out(a, Out.RESERVE, 1, 0, RT.WRITE_EXCLUSIVE)
    with pytest.raises(ReservationConflict):
        command.pr_out(a, Out.RESERVE, 1, 0, RT.EXCLUSIVE_ACCESS)
    with pytest.raises(IllegalRequest):  # release with the wrong type: 26/04
        command.pr_out(a, Out.RELEASE, 1, 0, RT.EXCLUSIVE_ACCESS)


def test_preempt_semantics(lun):
    a, b, c = nexus(lun, "a"), nexus(lun, "b"), nexus(lun, "c")
    reg(a, 1)
    reg(b, 2)
    reg(c, 2)  # two nexuses share key 2: both go
    command.pr_out(b, Out.RESERVE, 2, 0, RT.WRITE_EXCLUSIVE_REGISTRANTS_ONLY)
    with pytest.raises(ReservationConflict):  # victim key nobody holds
        command.pr_out(a, Out.PREEMPT, 1, 99, RT.WRITE_EXCLUSIVE_REGISTRANTS_ONLY)
    with pytest.raises(IllegalRequest):  # SARK 0 without an all-registrants reservation
        command.pr_out(a, Out.PREEMPT, 1, 0, RT.WRITE_EXCLUSIVE_REGISTRANTS_ONLY)
    command.pr_out(a, Out.PREEMPT_AND_ABORT, 1, 2, RT.EXCLUSIVE_ACCESS)
    assert lun.keys() == [1]
    r = command.read_reservation(a)
    assert (r.key, r.type) == (1, RT.EXCLUSIVE_ACCESS)
    ans = command.test_unit_ready(b)
    assert [(u.asc, u.ascq) for u in ans.unit_attentions] == [(0x2A, 0x05)]
    with pytest.raises(UnitAttention):  # without retries the UA is the answer
        _raise_first(c)


def _raise_first(t):
    from hamon.lib.scsi.errors import error_for
    r = t.execute(bytes(6))
    raise error_for(r.status, r.sense)


def test_preempted_initiator_sees_one_ua_then_conflict(lun):
    a, b = nexus(lun, "a"), nexus(lun, "b")
    reg(a, 1)
    reg(b, 2)
    command.pr_out(a, Out.RESERVE, 1, 0, RT.WRITE_EXCLUSIVE_REGISTRANTS_ONLY)
    command.pr_out(a, Out.PREEMPT, 1, 2, RT.WRITE_EXCLUSIVE_REGISTRANTS_ONLY)
    first = b.execute(bytes.fromhex("2a000000000000000100"), bytes(512))
    assert first.status == 0x02 and first.sense[2] & 0x0F == 6 and first.sense[12:14] == \
        b"\x2a\x05"
    second = b.execute(bytes.fromhex("2a000000000000000100"), bytes(512))
    assert second.status == 0x18


def test_clear_notifies_others(lun):
    a, b = nexus(lun, "a"), nexus(lun, "b")
    reg(a, 1)
    reg(b, 2)
    command.pr_out(a, Out.CLEAR, 1)
    assert lun.keys() == []
    ans = command.test_unit_ready(b)
    assert [(u.asc, u.ascq) for u in ans.unit_attentions] == [(0x2A, 0x03)]


def test_unregistering_the_ro_holder_releases_and_notifies(lun):
    a, b = nexus(lun, "a"), nexus(lun, "b")
    reg(a, 1)
    reg(b, 2)
    command.pr_out(a, Out.RESERVE, 1, 0, RT.WRITE_EXCLUSIVE_REGISTRANTS_ONLY)
    command.pr_out(a, Out.REGISTER, 1, 0)
    assert lun.rtype is None
    assert [(u.asc, u.ascq) for u in command.test_unit_ready(b).unit_attentions] == \
        [(0x2A, 0x04)]


def test_tgt_profile_refusals():
    lun = SimLun("t", profile=TgtProfile)
    a = nexus(lun, "a")
    ans = command.test_unit_ready(a)  # new nexus: power-on UA first
    assert [(u.asc, u.ascq) for u in ans.unit_attentions] == [(0x29, 0)]
    reg(a, 1)
    with pytest.raises(IllegalRequest):
        command.pr_out(a, Out.REGISTER, 1, 2, aptpl=True)
    with pytest.raises(IllegalRequest):
        command.pr_out(a, Out.REGISTER, 1, 2, all_tg_pt=True)
    with pytest.raises(IllegalRequest):
        command.read_full_status(a)
    with pytest.raises(IllegalRequest):
        command.pr_out(a, Out.PREEMPT_AND_ABORT, 1, 1, RT.WRITE_EXCLUSIVE)


def test_full_status_and_capabilities_on_full_profile(lun):
    a = nexus(lun, "iqn.x:a", 2)
    reg(a, 1)
    command.pr_out(a, Out.RESERVE, 1, 0, RT.WRITE_EXCLUSIVE)
    fs = command.read_full_status(a)
    (e,) = fs.entries
    assert e.holder and e.key == 1 and e.relative_target_port == 2
    assert str(e.initiator) == "iqn.x:a"
    caps = command.report_capabilities(a)
    assert caps.ptpl_capable and RT.EXCLUSIVE_ACCESS_ALL_REGISTRANTS in caps.types


def test_inquiry_identity_is_stable_per_lun():
    a = nexus(SimLun("x"), "a")
    b = nexus(SimLun("x"), "b")
    c = nexus(SimLun("y"), "a")
    assert command.lun_identity(a) == command.lun_identity(b) != command.lun_identity(c)
    assert command.lun_identity(a).startswith("36001405")
