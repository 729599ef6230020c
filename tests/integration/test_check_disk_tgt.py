"""`hamon check-disk` against a real tgtd: the table, the restore, read-only, the refusal.

Every claim about the LUN is read through an observer session of its own
(``Tgt.observe``: another initiator name, registered nowhere), before and after.
"""
from __future__ import annotations

import json

from hamon import cli
from hamon.lib import reservation as rsv
from hamon.lib.compliance.check import check
from hamon.lib.compliance.nexus import Nexus, Setup
from hamon.lib.compliance.verdict import OPS, Verdict
from hamon.lib.identity import default_initiator
from hamon.lib.multipath.resolve import Resolver
from hamon.lib.sim import SimLun, SimTransport, TgtProfile
from tests.scenarios import K1, WE_RO

#: What tgt 1.0.85 (bookworm) refuses, as DESIGN.md records it.
TGT_REFUSES = {"preempt_and_abort", "read_full_status", "aptpl", "all_tg_pt"}


def run_cli(capsys, *argv: str) -> tuple[int, str, str]:
    code = cli.main(["--node", "node1", "--timeout", "5", "check-disk", *argv])
    out = capsys.readouterr()
    return code, out.out, out.err


def state(tgt) -> tuple[int, tuple[int, ...], object]:
    (s,) = tgt.observe()
    return s.generation, s.keys, s.reservation


def test_check_disk_on_tgt_is_fit_with_fallbacks_and_leaves_the_lun_as_found(tgt, capsys):
    before = state(tgt)
    assert before[1] == () and not before[2].held
    code, out, err = run_cli(capsys, "--json", *tgt.urls(1))
    assert code == 0, err
    (rep,) = json.loads(out)
    assert rep["verdict"] == str(Verdict.FIT_WITH_FALLBACKS), rep["why"]
    outcomes = {r["op"]: r["outcome"] for r in rep["rows"]}
    assert {op for op, o in outcomes.items() if o == "refused"} == TGT_REFUSES
    # tgt's unit attention to a preempted registrant is 2A/03 RESERVATIONS PREEMPTED,
    # where SPC-4 says 2A/05 REGISTRATIONS PREEMPTED: "wrong", and of no consequence
    assert outcomes["unit_attention"] == "wrong"
    assert {op for op, o in outcomes.items() if o == "supported"} == (
        {op.id for op in OPS} - TGT_REFUSES - {"unit_attention"})
    assert len(rep["nexuses"]) == 3 and "node1.check" in rep["nexuses"][2]
    assert rep["restored"] is True
    _generation, keys, res = state(tgt)
    assert keys == () and not res.held  # the observer: nothing of the check is left


def test_the_sim_tgt_profile_gives_the_same_table_as_real_tgt(tgt):
    ini = default_initiator("node1")

    def outcomes(setup: Setup) -> dict[str, str]:
        try:
            rep = check(setup)
        finally:
            setup.close()
        # the sim's TgtProfile raises SPC-4's 2A/05 where tgt raises 2A/03 (see above)
        return {r.op: str(r.outcome) for r in rep.judgement.rows
                if r.op != "unit_attention"}

    from hamon.lib.compliance.nexus import setup_for
    (disk,) = Resolver(initiator=ini, timeout=5).resolve(tgt.urls(1))
    disk.close()
    real = outcomes(setup_for(disk, initiator=ini, second_initiator=None, timeout=5))
    lun = SimLun("lun1", profile=TgtProfile)
    a = [Nexus(f"p{p}", SimTransport(path=f"p{p}", lun=lun, initiator=ini, port=p))
         for p in (1, 2)]
    b = Nexus("b", SimTransport(path="b", lun=lun, initiator=ini + ".check", port=1))
    assert real == outcomes(Setup("sim", a, b, same_initiator=False))


def test_read_only_changes_nothing_an_independent_reader_sees(tgt, capsys):
    node1 = Resolver(initiator=default_initiator("node1"), timeout=5).resolve(tgt.urls(1))
    try:
        assert rsv.register(node1, K1).ok and rsv.reserve(node1, K1, WE_RO).ok
    finally:
        for d in node1:
            d.close()
    before = state(tgt)
    assert before[1] == (K1, K1) and before[2].key == K1
    code, out, err = run_cli(capsys, "--read-only", *tgt.urls(1))
    assert code == 0, err
    assert "verdict: incomplete: read-only mode" in out
    assert state(tgt) == before  # PRgeneration, keys and holder, as another session reads


def test_default_mode_refuses_a_disk_in_use_and_changes_nothing(tgt, capsys):
    node1 = Resolver(initiator=default_initiator("node1"), timeout=5).resolve(tgt.urls(1))
    try:
        assert rsv.register(node1, K1).ok and rsv.reserve(node1, K1, WE_RO).ok
    finally:
        for d in node1:
            d.close()
    before = state(tgt)
    code, _out, err = run_cli(capsys, *tgt.urls(1))
    assert code == cli.EXIT_REFUSED
    assert "holds registrations" in err and "never disturbs a disk in use" in err
    assert state(tgt) == before
