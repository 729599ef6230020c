"""The demo's story, told against a real tgtd on 127.0.0.1 (started and stopped here).

Part 1, the engine: two nodes (two iSCSI initiator names on this machine) register
their keys on both paths of one LUN, node1 reserves it, node1 preempts node2, and
node2's next write gets RESERVATION CONFLICT while node1's lands.

Part 2, the seed (HA Monitor manual 7.5.8): the resource agent ``ocf:hamon:hamon_disk``,
run as Pacemaker runs it, holds the disk for node1. One path is lost while the active
server terminates: KAMN725-W, and the stop completes. Every path is lost while it
terminates: KAMN725-W and KAMN726-E, and the OS termination that would follow (a dry
run: this is a workstation). Then ``hamon recover`` says what to do next.
"""
from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path

from hamon.lib import keys as keymod
from hamon.lib import reservation as rsv
from hamon.lib.disk import Disk
from hamon.lib.identity import default_initiator
from hamon.lib.multipath.resolve import Resolver
from hamon.lib.reservation.write_probe import write_probe
from hamon.lib.scsi.pr import ReservationType, format_key
from tests.integration.tgt import Tgt, available

TOP = Path(__file__).resolve().parents[1]
AGENT = TOP / "agents" / "ocf" / "hamon_disk"
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
        out = write_probe(disks["node2"], 100, b"node2 was here")
        show(out)
        ok &= out.ok
        step(4, "node1 fences node2: PREEMPT AND ABORT (tgt refuses it: PREEMPT)")
        out = rsv.preempt(disks["node1"], k["node1"], k["node2"], WE_RO)
        show(out)
        ok &= out.ok
        show_keys(disks["node1"])
        step(5, "node2 writes again")
        out = write_probe(disks["node2"], 100, b"node2 again")
        show(out)
        conflict = not out.ok and "RESERVATION CONFLICT" in str(out.results[0].error)
        say("   -> node2 is fenced off the disk" if conflict else "   -> UNEXPECTED")
        ok &= conflict
        step(6, "node1 writes")
        out = write_probe(disks["node1"], 101, b"node1 still writes")
        show(out)
        ok &= out.ok
        step(7, "clean up: node1 clears every registration")
        show(rsv.clear(disks["node1"], k["node1"]))
    finally:
        for ds in disks.values():
            for d in ds:
                d.close()
    return ok


def agent(action: str, node: str, urls: list[str], work: Path) -> tuple[int, str]:
    """Run hamon_disk as pacemaker-execd would: OCF environment, Debian's python3."""
    env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "OCF_ROOT": "/usr/lib/ocf",
           "OCF_RESOURCE_INSTANCE": "shared-disk", "HAMON_NODE": node,
           "OCF_RESKEY_dmmp_device": ",".join(urls), "OCF_RESKEY_alias": "service1",
           "OCF_RESKEY_command_timeout": "2",
           "OCF_RESKEY_journal": str(work / "journal"),
           "OCF_RESKEY_state_dir": str(work / f"state-{node}"),
           "OCF_RESKEY_os_termination_dry_run": str(work / "os-termination"),
           "OCF_RESKEY_CRM_meta_interval": "0"}
    p = subprocess.run(["/usr/bin/python3", str(AGENT), action], env=env,
                       capture_output=True, text=True, timeout=120, check=False)
    for line in p.stderr.splitlines():
        if line.startswith(("KAMN", "HAMN")) or "ERROR" in line:
            say(f"   | {line}")
    say(f"   hamon_disk {action} on {node}: exit {p.returncode}")
    return p.returncode, p.stderr


def part_two(tgt: Tgt, work: Path) -> bool:
    urls = tgt.urls(1)
    ok = True
    step(1, "node1 starts the service: hamon_disk start acquires the disk")
    rc, _ = agent("start", "node1", urls, work)
    ok &= rc == 0
    step(2, "one path fails while the active server terminates (stop)")
    tgt.remove_portal(1)
    say(f"   path {urls[1]} is cut")
    rc, err = agent("stop", "node1", urls, work)
    partial = rc == 0 and "KAMN725-W" in err and "KAMN726-E" not in err
    say("   -> KAMN725-W only: the termination completes, the OS keeps running" if partial
        else "   -> UNEXPECTED")
    ok &= partial
    tgt.restore_portal(1)
    step(3, "node1 starts again; then every path fails while it terminates")
    rc, _ = agent("start", "node1", urls, work)
    ok &= rc == 0
    tgt.remove_portal(0)
    tgt.remove_portal(1)
    say("   both paths are cut")
    rc, err = agent("stop", "node1", urls, work)
    dry = work / "os-termination"
    total = "KAMN725-W" in err and "KAMN726-E" in err and dry.exists()
    if dry.exists():
        say(f"   OS termination requested (dry run): {dry.read_text().strip()}")
    say("   -> KAMN725-W + KAMN726-E: the OS would be terminated here" if total
        else "   -> UNEXPECTED")
    ok &= total
    tgt.restore_portal(0)
    tgt.restore_portal(1)
    step(4, "the administrator asks: hamon recover")
    p = subprocess.run([sys.executable, "-m", "hamon", "recover", "--node", "node1",
                        "--journal", str(work / "journal"), "--nodes", "node1,node2"],
                       cwd=TOP, capture_output=True, text=True, timeout=120, check=False,
                       env={**os.environ, "PYTHONPATH": str(TOP)})
    for line in (p.stdout + p.stderr).splitlines():
        say(f"   {line}")
    ok &= "KAMN726-E" in p.stdout or "all paths" in p.stdout.lower()
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
        say("\n# Part 2: the seed - a shared disk fails while the active server "
            "terminates\n")
        ok &= part_two(tgt, Path(work))
    say("\n" + ("demo finished: every step behaved as expected" if ok else
                "demo finished: SOME STEPS DID NOT BEHAVE AS EXPECTED"))
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
