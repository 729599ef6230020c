"""check-disk's runner on the in-memory target: full SPC-4 (like LIO) and TgtProfile.

Each claim is read back from the SimLun itself (the target's own state), never from the
report alone.
"""
from __future__ import annotations

from hamon.lib.compliance.check import check
from hamon.lib.compliance.nexus import Nexus, Setup, setup_for
from hamon.lib.compliance.verdict import KEY_A, Outcome, Verdict
from hamon.lib.disk import Disk, DiskKind, Path
from hamon.lib.scsi.pr import ReservationType as RT
from hamon.lib.sim import SimLun, SimTransport, TargetProfile, TgtProfile

NODE = "iqn.2026-11.org.hamon:node1"


def nexus(lun: SimLun, initiator: str, port: int) -> Nexus:
    name = f"{initiator}@{port}"
    return Nexus(name, SimTransport(path=name, lun=lun, initiator=initiator, port=port))


def two_identities(lun: SimLun, paths: int = 2) -> Setup:
    """As for iscsi://: this node on every path, a second initiator on the first."""
    return Setup("sim", [nexus(lun, NODE, p) for p in range(1, paths + 1)],
                 nexus(lun, NODE + ".check", 1), same_initiator=False)


def outcome(rep, op: str) -> Outcome:
    return next(r.outcome for r in rep.judgement.rows if r.op == op)


def untouched(lun: SimLun) -> bool:
    return not lun.registrations and lun.rtype is None and not lun.aptpl


def test_full_spc4_target_is_fit_and_left_as_found():
    lun = SimLun("full", profile=TargetProfile())
    lun.data[0] = b"user data".ljust(512, b"\0")
    rep = check(two_identities(lun))
    assert rep.judgement.verdict is Verdict.FIT, rep.judgement.why
    assert rep.restored is True
    assert untouched(lun)
    assert lun.data[0] == b"user data".ljust(512, b"\0")
    writes = [cdb for _, cdb in lun.commands if cdb[0] == 0x2A]
    assert len(writes) >= 3  # non-registrant, holder, registrant, preempted


def test_tgt_profile_is_fit_with_fallbacks_naming_each():
    lun = SimLun("tgt", profile=TgtProfile)
    rep = check(two_identities(lun))
    j = rep.judgement
    assert j.verdict is Verdict.FIT_WITH_FALLBACKS, j.why
    for op in ("preempt_and_abort", "read_full_status", "aptpl", "all_tg_pt"):
        assert outcome(rep, op) is Outcome.REFUSED
    for op in ("preempt", "write_preempted", "write_non_registrant", "clear"):
        assert outcome(rep, op) is Outcome.SUPPORTED
    assert "PREEMPT" in j.why and "ALL_TG_PT" not in j.why
    assert rep.restored is True and untouched(lun)


def test_read_only_sends_no_pr_out_no_write_and_changes_nothing():
    lun = SimLun("ro")
    lun.registrations[("iqn.other:node9", 1)] = 0x686D000000000001
    before = (dict(lun.registrations), lun.rtype, lun.generation)
    rep = check(two_identities(lun), read_only=True)
    assert rep.judgement.verdict is Verdict.INCOMPLETE
    sent = {cdb[0] for _, cdb in lun.commands}
    assert sent <= {0x00, 0x12, 0x5E}  # TEST UNIT READY, INQUIRY, PR IN
    assert (dict(lun.registrations), lun.rtype, lun.generation) == before
    assert rep.before == rep.after


def test_refuses_a_disk_with_a_registration_and_sends_no_pr_out():
    lun = SimLun("busy")
    lun.registrations[("iqn.other:node9", 1)] = 0x686D000000000001
    rep = check(two_identities(lun))
    assert rep.judgement is None and "holds registrations" in rep.refused
    assert "0x686d000000000001" in rep.refused
    assert not [c for _, c in lun.commands if c[0] in (0x5F, 0x2A)]


def test_force_runs_beside_a_foreign_key_leaves_it_and_skips_clear():
    lun = SimLun("forced")
    foreign = ("iqn.other:node9", 1)
    lun.registrations[foreign] = 0x686D000000000001
    rep = check(two_identities(lun), force=True)
    assert outcome(rep, "clear") is Outcome.NOT_TESTED
    assert rep.judgement.verdict is Verdict.INCOMPLETE  # CLEAR is needed, and untested
    assert lun.registrations == {foreign: 0x686D000000000001}
    assert lun.rtype is None and rep.restored is True


def test_leftover_check_keys_are_refused_then_removed_with_force():
    lun = SimLun("left")
    lun.registrations[(NODE, 1)] = KEY_A
    lun.rtype, lun.holder = RT.WRITE_EXCLUSIVE_REGISTRANTS_ONLY, (NODE, 1)
    rep = check(two_identities(lun))
    assert "interrupted run" in rep.refused and lun.registrations
    rep = check(two_identities(lun), force=True)
    assert rep.judgement.verdict is Verdict.FIT, rep.judgement.why
    assert untouched(lun)


def test_foreign_reservation_is_refused_even_with_force():
    lun = SimLun("held")
    lun.registrations[("iqn.other:node9", 1)] = 0x686D000000000001
    lun.rtype, lun.holder = RT.WRITE_EXCLUSIVE_REGISTRANTS_ONLY, ("iqn.other:node9", 1)
    rep = check(two_identities(lun), force=True)
    assert "does not preempt" in rep.refused
    assert lun.holder == ("iqn.other:node9", 1)


def test_one_nexus_is_refused_naming_what_was_not_tested():
    lun = SimLun("single")
    rep = check(Setup("/dev/sdx", [nexus(lun, NODE, 1)], None, same_initiator=True))
    assert "only one I_T nexus" in rep.refused
    assert "PREEMPT AND ABORT" in rep.refused and "--read-only" in rep.refused
    assert untouched(lun)
    ro = check(Setup("/dev/sdx", [nexus(lun, NODE, 1)], None, same_initiator=True),
               read_only=True)
    assert ro.judgement is not None and not ro.refused


def test_a_second_nexus_on_another_lun_stops_before_any_change():
    a, other = SimLun("a"), SimLun("b")
    s = Setup("mixed", [nexus(a, NODE, 1)], nexus(other, NODE + ".check", 1), False)
    rep = check(s)
    assert outcome(rep, "identity") is Outcome.WRONG
    assert rep.judgement.verdict is Verdict.UNFIT
    assert not [c for _, c in a.commands + other.commands if c[0] == 0x5F]


def test_a_nexus_dying_mid_check_is_incomplete_and_still_restored():
    lun = SimLun("dying", profile=TargetProfile())

    class DiesOnWrite(SimTransport):
        def execute(self, cdb, data_out=None, data_in_len=0, timeout=None):
            if cdb[0] == 0x2A:
                self.lun.fail_port(self.port)
            return super().execute(cdb, data_out, data_in_len, timeout)

    s = two_identities(lun)
    s.b = Nexus("b", DiesOnWrite(path="b", lun=lun, initiator=NODE + ".check", port=3))
    rep = check(s)
    assert rep.judgement.verdict is Verdict.INCOMPLETE
    assert outcome(rep, "write_non_registrant") is Outcome.NO_ANSWER
    assert "no answer" in rep.judgement.why
    # the holder's reservation and both of this node's registrations were removed
    # through the nexuses that still answer
    assert rep.restored is True and untouched(lun)


def test_dmmp_like_setup_same_initiator_write_is_unproven():
    class PerInitiator(SimLun):
        """A target that checks writes per initiator, as LIO does (tests/system README)."""

        def _rw(self, nexus, cdb, data_out):
            registered = any(n[0] == nexus[0] for n in self.registrations)
            if registered and nexus not in self.registrations:
                self.registrations[nexus] = 1  # borrow the initiator's registration
                try:
                    return super()._rw(nexus, cdb, data_out)
                finally:
                    del self.registrations[nexus]
            return super()._rw(nexus, cdb, data_out)

    lun = PerInitiator("lio-like")
    paths = [Path(f"/dev/sd{c}", lambda c=c, p=p: SimTransport(
        path=f"/dev/sd{c}", lun=lun, initiator=NODE, port=p)) for p, c in ((1, "b"), (2, "c"))]
    s = setup_for(Disk("/dev/mapper/mpatha", DiskKind.DMMP, paths, lun.wwid),
                  initiator=NODE, second_initiator=None, timeout=5)
    assert [n.name for n in s.a] == ["/dev/sdb"] and s.b and s.b.name == "/dev/sdc"
    rep = check(s)
    row = next(r for r in rep.judgement.rows if r.op == "write_non_registrant")
    assert row.outcome is Outcome.WRONG and "another node was not tested" in row.detail
    assert rep.judgement.verdict is Verdict.INCOMPLETE
    assert rep.restored is True and untouched(lun)


def test_read_only_with_a_path_that_does_not_answer_fails():
    lun = SimLun("ro-dead")
    lun.fail_port(2)
    rep = check(two_identities(lun), read_only=True)
    assert rep.judgement.verdict is Verdict.INCOMPLETE
    assert rep.failed(read_only=True)
    ok = check(two_identities(SimLun("ro-fine")), read_only=True)
    assert not ok.failed(read_only=True) and ok.failed(read_only=False)


def test_an_all_registrants_reservation_of_another_node_is_refused_even_with_force():
    lun = SimLun("ar")
    other = ("iqn.other:node9", 1)
    lun.registrations[other] = 0x686D000000000001
    lun.rtype, lun.holder = RT.WRITE_EXCLUSIVE_ALL_REGISTRANTS, other
    rep = check(two_identities(lun), force=True)
    assert "does not preempt" in rep.refused
    assert lun.registrations == {other: 0x686D000000000001}
    assert lun.rtype is RT.WRITE_EXCLUSIVE_ALL_REGISTRANTS
