"""check-disk's verdict as a pure function of what was observed (hamon.lib.compliance.verdict)."""
from __future__ import annotations

import pytest

from hamon.lib.compliance.verdict import (
    CHECK_KEYS,
    OPS,
    Impact,
    Observation,
    Outcome,
    Verdict,
    decide,
    expected_write,
)
from hamon.lib.scsi.pr import ReservationType as RT


def all_supported(**over: Observation) -> list[Observation]:
    obs = {op.id: Observation(op.id, Outcome.SUPPORTED) for op in OPS}
    obs.update(over)
    return list(obs.values())


def ob(op: str, outcome: Outcome, detail: str = "", **kw: bool) -> Observation:
    return Observation(op, outcome, detail, **kw)


def impact(j, op: str) -> Impact:
    return next(r.impact for r in j.rows if r.op == op)


def test_everything_supported_is_fit():
    j = decide(all_supported())
    assert j.verdict is Verdict.FIT
    assert [r.op for r in j.rows] == [op.id for op in OPS]


@pytest.mark.parametrize(("op", "fallback_word"), [
    ("preempt_and_abort", "PREEMPT"),
    ("read_full_status", "READ KEYS + READ RESERVATION"),
    ("aptpl", "aptpl unset"),
])
def test_refusals_with_a_fallback_give_fit_with_fallbacks(op, fallback_word):
    j = decide(all_supported(**{op: ob(op, Outcome.REFUSED, "ILLEGAL REQUEST")}))
    assert j.verdict is Verdict.FIT_WITH_FALLBACKS
    assert impact(j, op) is Impact.FALLBACK
    assert fallback_word in j.why


def test_tgt_like_target_is_fit_with_fallbacks_and_all_tg_pt_costs_nothing():
    refused = {o: ob(o, Outcome.REFUSED) for o in
               ("preempt_and_abort", "read_full_status", "aptpl", "all_tg_pt")}
    j = decide(all_supported(**refused))
    assert j.verdict is Verdict.FIT_WITH_FALLBACKS
    assert impact(j, "all_tg_pt") is Impact.NONE
    assert "ALL_TG_PT" not in j.why


@pytest.mark.parametrize("op", ["reserve", "release", "register", "register_ignore",
                                "read_keys", "read_reservation", "clear"])
def test_a_required_operation_refused_is_unfit(op):
    j = decide(all_supported(**{op: ob(op, Outcome.REFUSED, "ILLEGAL REQUEST")}))
    assert j.verdict is Verdict.UNFIT
    assert "ILLEGAL REQUEST" in j.why


def test_a_write_allowed_to_a_non_registrant_of_another_initiator_is_unfit():
    j = decide(all_supported(write_non_registrant=ob(
        "write_non_registrant", Outcome.WRONG, "GOOD: the write was accepted")))
    assert j.verdict is Verdict.UNFIT


def test_the_same_write_from_this_initiators_other_path_is_unproven_not_fit():
    j = decide(all_supported(write_non_registrant=ob(
        "write_non_registrant", Outcome.WRONG, "same initiator", unproven=True)))
    assert j.verdict is Verdict.INCOMPLETE
    assert impact(j, "write_non_registrant") is Impact.INCOMPLETE


def test_preempt_accepted_but_key_still_there_is_unfit_even_with_a_fallback_role():
    j = decide(all_supported(preempt_and_abort=ob(
        "preempt_and_abort", Outcome.WRONG, "key still registered")))
    assert j.verdict is Verdict.UNFIT


def test_preempt_refused_matters_only_without_preempt_and_abort():
    j = decide(all_supported(preempt=ob("preempt", Outcome.REFUSED)))
    assert j.verdict is Verdict.FIT and impact(j, "preempt") is Impact.NONE
    j = decide(all_supported(preempt=ob("preempt", Outcome.REFUSED),
                             preempt_and_abort=ob("preempt_and_abort", Outcome.REFUSED)))
    assert j.verdict is Verdict.UNFIT


def test_missing_unit_attention_and_caveats_do_not_make_a_disk_unfit():
    j = decide(all_supported(
        unit_attention=ob("unit_attention", Outcome.WRONG, "saw none"),
        register_every_path=ob("register_every_path", Outcome.WRONG, "per initiator",
                               caveat=True)))
    assert j.verdict is Verdict.FIT


def test_read_only_is_incomplete_and_says_why():
    reads = [ob(o, Outcome.SUPPORTED) for o in ("tur", "identity", "report_capabilities",
                                                 "read_keys", "read_reservation",
                                                 "read_full_status")]
    j = decide(reads, read_only=True)
    assert j.verdict is Verdict.INCOMPLETE
    assert "read-only" in j.why
    assert {r.outcome for r in j.rows if r.op == "reserve"} == {Outcome.NOT_TESTED}


def test_no_answer_on_a_required_operation_is_incomplete():
    j = decide(all_supported(reserve=ob("reserve", Outcome.NO_ANSWER, "timeout")))
    assert j.verdict is Verdict.INCOMPLETE and "timeout" in j.why


def test_unknown_operation_is_a_programming_error():
    with pytest.raises(ValueError, match="unknown"):
        decide([ob("frobnicate", Outcome.SUPPORTED)])


def test_check_keys_are_none_of_the_fixed_key_shapes_clusters_use():
    for k in CHECK_KEYS:
        assert k >> 48 != 0x686D  # hamon's old keys: "hm" + sha256(node)[0:6]
        assert k >> 32  # fence_scsi keys fit in 32 bits
        assert k.to_bytes(8, "big").startswith(b"HMCHECK")


@pytest.mark.parametrize(("rtype", "registered", "holder", "allowed"), [
    (RT.WRITE_EXCLUSIVE_REGISTRANTS_ONLY, True, False, True),
    (RT.WRITE_EXCLUSIVE_REGISTRANTS_ONLY, False, False, False),
    (RT.WRITE_EXCLUSIVE, True, False, False),
    (RT.EXCLUSIVE_ACCESS_ALL_REGISTRANTS, True, False, True),
    (RT.EXCLUSIVE_ACCESS, False, True, True),
])
def test_expected_write_follows_spc4(rtype, registered, holder, allowed):
    assert expected_write(rtype, registered=registered, holder=holder) is allowed


def test_cli_check_disk_refuses_an_unknown_type_before_touching_a_device(capsys):
    from hamon import cli
    code = cli.main(["--node", "n1", "check-disk", "--type", "WE-XX", "/dev/sdzz"])
    assert code == cli.EXIT_USAGE
    assert "--type" in capsys.readouterr().err
