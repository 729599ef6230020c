"""The demo's story, told against a real tgtd on 127.0.0.1 (started and stopped here).

Part 1, the engine: two nodes (two iSCSI initiator names on this machine) register
their keys on both paths of one LUN, node1 reserves it, node1 preempts node2, and
node2's next write gets RESERVATION CONFLICT while node1's lands.
"""
from __future__ import annotations

import sys
import tempfile
from pathlib import Path

from hamon.lib import keys as keymod
from hamon.lib import reservation as rsv
from hamon.lib.disk import Disk, Resolver
from hamon.lib.identity import default_initiator
from hamon.lib.scsi.pr import ReservationType, format_key
from tests.integration.tgt import Tgt, available

WE_RO = ReservationType.WRITE_EXCLUSIVE_REGISTRANTS_ONLY
NODES = ("node1", "node2")


def say(text: str = "") -> None:
    print(text, flush=True)


def step(n: int, text: str) -> None:
    say(f"\n== {n}. {text}")


def show(outcome: rsv.Outcome) -> None:
    for r in outcome.results:
        if r.ok:
            say(f"   {r.disk.name}: {r.detail}")
        else:
            say(f"   refused: {r.error}")
        for p in r.paths:
            if len(r.paths) > 1 or not p.ok:
                say(f"      path {p.path}: {p.detail}{'' if p.ok else f' ({p.error})'}")


def show_keys(disks: list[Disk]) -> None:
    st = rsv.read_status(disks).results[0]
    if not st.ok:
        say(f"   cannot read: {st.error}")
        return
    v: rsv.LunStatus = st.value
    names = [f"{format_key(k)} ({keymod.owner_of(k, list(NODES)) or '?'})" for k in v.keys]
    say(f"   registered: {', '.join(names) or 'none'}")
    res = v.reservation
    holder = keymod.owner_of(res.key, list(NODES)) if res.key else None
    say(f"   reservation: {res.type.short + ' by ' + format_key(res.key) + f' ({holder})' if res.held else 'none'}")  # noqa: E501


def part_one(tgt: Tgt) -> bool:
    urls = tgt.urls(1)
    say("A real SCSI target (tgtd) serves LUN 1 through two portals, i.e. two paths:")
    for u in urls:
        say(f"   {u}")
    disks = {n: Resolver(initiator=default_initiator(n), timeout=5).resolve(urls)
             for n in NODES}
    k = {n: keymod.key_for_node(n) for n in NODES}
    for n in NODES:
        say(f"{n}: initiator {default_initiator(n)}, key {format_key(k[n])}")
    ok = True
    try:
        step(1, "both nodes register their key on every path")
        for n in NODES:
            out = rsv.register(disks[n], k[n])
            show(out)
            ok &= out.ok
        show_keys(disks["node1"])
        step(2, "node1 reserves the LUN, Write Exclusive - Registrants Only")
        show(rsv.reserve(disks["node1"], k["node1"], WE_RO))
        show_keys(disks["node1"])
        step(3, "node2 writes: a registrant may write under WE-RO")
        out = rsv.write_probe(disks["node2"], 100, b"node2 was here")
        show(out)
        ok &= out.ok
        step(4, "node1 fences node2: PREEMPT AND ABORT (tgt refuses it: PREEMPT)")
        out = rsv.preempt(disks["node1"], k["node1"], k["node2"], WE_RO)
        show(out)
        ok &= out.ok
        show_keys(disks["node1"])
        step(5, "node2 writes again")
        out = rsv.write_probe(disks["node2"], 100, b"node2 again")
        show(out)
        conflict = not out.ok and "RESERVATION CONFLICT" in str(out.results[0].error)
        say("   -> node2 is fenced off the disk" if conflict else "   -> UNEXPECTED")
        ok &= conflict
        step(6, "node1 writes")
        out = rsv.write_probe(disks["node1"], 101, b"node1 still writes")
        show(out)
        ok &= out.ok
        step(7, "clean up: node1 clears every registration")
        show(rsv.clear(disks["node1"], k["node1"]))
    finally:
        for ds in disks.values():
            for d in ds:
                d.close()
    return ok


def main() -> int:
    why = available()
    if why:
        print(f"demo: cannot start tgtd: {why}", file=sys.stderr)
        return 1
    with tempfile.TemporaryDirectory(prefix="hamon-demo-") as work, \
            Tgt(Path(work) / "tgt", luns=1) as tgt:
        say("# Part 1: SCSI-3 persistent reservations, two nodes, two paths\n")
        ok = part_one(tgt)
    say("\n" + ("demo finished: every step behaved as expected" if ok else
                "demo finished: SOME STEPS DID NOT BEHAVE AS EXPECTED"))
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
