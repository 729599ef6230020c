"""Scenarios run unchanged against the in-memory target and against real targets.

Each returns a list of observations (plain tuples). The unit tier runs them on ``sim``,
the integration tier on tgtd, and a test asserts the two lists are equal: that is how
``sim`` is kept honest about every behaviour the tests rely on.
"""
from __future__ import annotations

from collections.abc import Callable

from hamon.lib import keys as keymod
from hamon.lib import reservation as rsv
from hamon.lib.disk import Disk
from hamon.lib.reservation.write_probe import write_probe
from hamon.lib.scsi.pr import ReservationType

WE_RO = ReservationType.WRITE_EXCLUSIVE_REGISTRANTS_ONLY
K1, K2 = keymod.key_for_node("node1"), keymod.key_for_node("node2")


def _err(out: rsv.Outcome) -> str | None:
    r = out.results[0]
    return None if r.ok else type(r.error).__name__


def two_nodes_fence(disks_for: Callable[[str], list[Disk]]) -> list[tuple]:
    """Two nodes, two paths each: register, reserve, preempt, write, release, clear."""
    d1, d2 = disks_for("node1"), disks_for("node2")
    obs: list[tuple] = []
    try:
        r = rsv.register(d1, K1)
        obs.append(("node1 register", r.ok, [p.ok for p in r.results[0].paths]))
        r = rsv.register(d2, K2)
        obs.append(("node2 register", r.ok, [p.ok for p in r.results[0].paths]))
        st = rsv.read_status(d1).results[0].value
        obs.append(("keys", sorted(st.keys)))
        obs.append(("node1 reserve", _err(rsv.reserve(d1, K1, WE_RO))))
        obs.append(("node1 reserve again", _err(rsv.reserve(d1, K1, WE_RO))))
        obs.append(("node2 reserve", _err(rsv.reserve(d2, K2, WE_RO))))
        st = rsv.read_status(d2).results[0].value
        obs.append(("holder", st.reservation.key == K1, st.reservation.type.short))
        obs.append(("node2 write (registrant under WE-RO)",
                    _err(write_probe(d2, 10, b"node2"))))
        p = rsv.preempt(d1, K1, K2, WE_RO)
        obs.append(("node1 preempts node2", p.ok))
        obs.append(("node2 write after preempt", _err(write_probe(d2, 10, b"node2"))))
        obs.append(("node1 write", _err(write_probe(d1, 11, b"node1"))))
        st = rsv.read_status(d1).results[0].value
        obs.append(("keys after preempt", sorted(set(st.keys))))
        obs.append(("node2 preempts node1 (fenced itself)",
                    _err(rsv.preempt(d2, K2, K1, WE_RO))))
        obs.append(("node1 preempts absent node2", rsv.preempt(d1, K1, K2, WE_RO).ok))
        obs.append(("node1 release", rsv.release(d1, K1).ok))
        st = rsv.read_status(d1).results[0].value
        obs.append(("reservation after release", st.reservation.held))
        obs.append(("node1 release again (idempotent)", rsv.release(d1, K1).ok))
        obs.append(("node2 re-registers", rsv.register(d2, K2).ok))
        obs.append(("node2 clears", rsv.clear(d2, K2).ok))
        st = rsv.read_status(d1).results[0].value
        obs.append(("keys after clear", list(st.keys), st.reservation.held))
    finally:
        for d in d1 + d2:
            d.close()
    return obs


#: What both tgtd and the in-memory target (tgt profile) must show.
EXPECTED_TWO_NODES_FENCE = [
    ("node1 register", True, [True, True]),
    ("node2 register", True, [True, True]),
    ("keys", sorted([K1, K1, K2, K2])),
    ("node1 reserve", None),
    ("node1 reserve again", None),
    ("node2 reserve", "ReservationConflict"),
    ("holder", True, "WE-RO"),
    ("node2 write (registrant under WE-RO)", None),
    ("node1 preempts node2", True),
    ("node2 write after preempt", "ReservationConflict"),
    ("node1 write", None),
    ("keys after preempt", [K1]),
    ("node2 preempts node1 (fenced itself)", "ReservationConflict"),
    ("node1 preempts absent node2", True),
    ("node1 release", True),
    ("reservation after release", False),
    ("node1 release again (idempotent)", True),
    ("node2 re-registers", True),
    ("node2 clears", True),
    ("keys after clear", [], False),
]
