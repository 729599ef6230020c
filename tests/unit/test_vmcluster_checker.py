"""The VM cluster's checker (tests/system/cluster/checker.py) on synthetic histories: an
old node's acknowledgement that reaches the host after the takeover is late unless the new
node's writer found that record on the disk before its first write (the one write a
frozen node had in flight), and at most one such write per old writer."""

from __future__ import annotations

import sys
from pathlib import Path

HERE = Path(__file__).resolve().parents[1] / "system"
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE / "cluster"))

import checker  # noqa: E402
import records  # noqa: E402
from vmcluster import Ack, parse_ack  # noqa: E402


def disk(recs: list[records.Record]) -> bytes:
    out = bytearray(records.SIZE * 64)
    for r in recs:
        out[r.slot * records.SIZE:(r.slot + 1) * records.SIZE] = r.pack()
    return bytes(out)


def history(old_acks_after: list[int], tail: str) -> tuple[bytes, list[Ack]]:
    """node2 wrote seq 1..4 (slots 0..3), frozen at t=10; node1 starts at t=20 seeing
    `tail`, writes slots 4..5 from t=21; node2's ACKs for `old_acks_after` arrive at t=30
    (after its resume), then a refusal."""
    recs = [records.Record("node2", "A", 1, s + 1, s) for s in range(4)]
    recs += [records.Record("node1", "A", 2, s - 3, s) for s in (4, 5)]
    acks = [Ack(float(s + 1), "ACK", "node2", "A", 1, s + 1, s) for s in range(4)
            if s + 1 not in old_acks_after]
    acks.append(parse_ack(20.0, f"START node1 A 2 4 {tail}"))
    acks += [Ack(21.0, "ACK", "node1", "A", 2, 1, 4), Ack(22.0, "ACK", "node1", "A", 2, 2, 5)]
    acks += [Ack(30.0, "ACK", "node2", "A", 1, q, q - 1) for q in old_acks_after]
    acks.append(Ack(31.0, "REF", "node2", "A", 1, 5, 4, "EBADE"))
    return disk(recs), acks


def check(data: bytes, acks: list[Ack]) -> checker.LunReport:
    return checker.check_lun("A", data, acks, 100.0, checker.Takeover("node2", "node1", 10.0))


def test_the_write_in_flight_at_the_freeze_seen_by_the_new_writer_is_not_late():
    rep = check(*history([4], "node2:1:4"))
    assert rep.ok, rep.problems()
    assert [i[2] for i in rep.in_flight] == [4]
    assert rep.refused_after == 1 and rep.found == rep.acknowledged == 6


def test_an_acknowledgement_the_new_writer_did_not_see_is_late():
    rep = check(*history([4], "node2:1:3"))
    assert not rep.ok and rep.late and not rep.in_flight


def test_no_tail_no_exception():
    rep = check(*history([4], "-"))
    assert not rep.ok and rep.late


def test_more_than_one_write_in_flight_is_late():
    rep = check(*history([3, 4], "node2:1:4"))
    assert not rep.ok and len(rep.late) == 2


def test_start_line_without_tail_still_parses():
    a = parse_ack(1.0, "START node1 B 3 17")
    assert a is not None and a.kind == "START" and a.slot == 17 and a.tail is None
    assert parse_ack(1.0, "START node1 B 3 17 node2:2:40").tail == ("node2", 2, 40)
