#!/usr/bin/python3
"""Scenario 1 of the system tier: hamon's engine over SG_IO through real kernel devices.

LIO (full SPC-4 PR) and tgt (no PREEMPT AND ABORT), one LUN each, both on two portals.
Node 1 reaches each LUN through dm-multipath (/dev/mapper/mpathX over two sd paths),
node 2 through plain /dev/sdX (its own initiator name). With hamon.lib only, over the
SG_IO transport: node 1 and node 2 register on every path, node 1 reserves WE-RO and
preempts node 2 (PREEMPT AND ABORT on LIO, the fallback to PREEMPT on tgt); then the
*kernel* is asked to write: node 2's write fails (RESERVATION CONFLICT -> EIO), node 1's
lands. sg_persist (sg3-utils) reads the keys back as an independent witness.
`hamon paths` shows both paths up, then one failed after a path fault.

Prints "OK <check>" per passed check (asserted by tests/system/test_scenarios_sgio.py);
exits 1 at the first failed check.
"""
from __future__ import annotations

import errno
import json
import os
import subprocess
import sys

sys.path.insert(0, os.environ["HAMON_GUEST"])
sys.path.insert(0, os.environ["HAMON_REPO"])

import storage
from checks import check

from hamon.lib import command
from hamon.lib import reservation as rsv
from hamon.lib.keys import key_for_node
from hamon.lib.multipath.resolve import Resolver
from hamon.lib.scsi import pr as prm
from hamon.lib.scsi.pr import ReservationType

K1, K2 = key_for_node("node1"), key_for_node("node2")
WE_RO = ReservationType.WRITE_EXCLUSIVE_REGISTRANTS_ONLY
REPO = os.environ["HAMON_REPO"]


LAST_WRITE_ERROR = [""]
#: strerror(EBADE): how the block layer reports RESERVATION CONFLICT (BLK_STS_NEXUS).
EBADE_TEXT = os.strerror(errno.EBADE)


def write(dev: str) -> bool:
    """One direct 4 KiB write through the kernel."""
    p = subprocess.run(["dd", "if=/dev/zero", f"of={dev}", "bs=4096", "count=1",
                        "oflag=direct", "conv=fsync", "status=none"],
                       capture_output=True, text=True, check=False)
    LAST_WRITE_ERROR[0] = p.stderr.strip()
    if p.returncode:
        print(f"  write {dev}: {p.stderr.strip()}", flush=True)
    return p.returncode == 0


def sg_keys(dev: str) -> list[int]:
    out = subprocess.run(["sg_persist", "--in", "--read-keys", dev], capture_output=True,
                         text=True, check=False).stdout
    return [int(w, 16) for w in out.split() if w.startswith("0x")]


def hamon(*args: str) -> list:
    p = subprocess.run([sys.executable, "-m", "hamon", *args, "--json", "--node", "node1"],
                       capture_output=True, text=True, check=False, cwd=REPO,
                       env=dict(os.environ, PYTHONPATH=REPO))
    print(f"  hamon {' '.join(args)} -> {p.returncode} {p.stderr.strip()[-300:]}",
          flush=True)
    return json.loads(p.stdout)


def one_target(kind: str, abort_expected: bool, p: dict[str, str]) -> None:
    mp = p[f"{kind}_MP_L0"]
    n2 = [p[f"{kind}_N2_L0_P0"], p[f"{kind}_N2_L0_P1"]]
    res = Resolver(timeout=10)
    d1 = res.resolve([mp])
    check(f"{kind}: {mp} resolves to one disk with 2 sd paths",
          len(d1) == 1 and len(d1[0].paths) == 2
          and all(x.name.startswith("/dev/sd") for x in d1[0].paths),
          [(d.name, [x.name for x in d.paths]) for d in d1])
    # Node 2 has no multipath: each of its sd devices is a single-path disk.
    d2 = Resolver(timeout=10).resolve(n2)
    check(f"{kind}: node 2's sd devices are single-path disks",
          len(d2) == 2 and all(len(d.paths) == 1 for d in d2),
          [(d.name, len(d.paths)) for d in d2])
    # INQUIRY VPD 0x83 over SG_IO on every path vs the WWID multipathd named the map by.
    wwids = {command.lun_identity(x.transport()) for d in d1 + d2 for x in d.paths}
    check(f"{kind}: all paths are the map's LUN (INQUIRY VPD 0x83 over SG_IO)",
          wwids == {d1[0].wwid}, (wwids, d1[0].wwid))

    r = rsv.register(d1, K1)
    check(f"{kind}: node 1 registers on every path (SG_IO)",
          r.ok and all(x.ok for x in r.results[0].paths), r.as_dict())
    r = rsv.register(d2, K2)
    check(f"{kind}: node 2 registers on both of its paths (SG_IO)", r.ok, r.as_dict())
    check(f"{kind}: sg_persist sees 2 entries of each key",
          sorted(sg_keys(mp)) == sorted([K1, K1, K2, K2]), sg_keys(mp))
    r = rsv.reserve(d1, K1, WE_RO)
    check(f"{kind}: node 1 reserves WE-RO", r.ok, r.as_dict())
    check(f"{kind}: node 2 (registered) writes under WE-RO", write(n2[0]))

    r = rsv.preempt(d1, K1, K2, WE_RO)
    how = r.results[0].value
    check(f"{kind}: node 1 preempts node 2 ({how})", r.ok, r.as_dict())
    check(f"{kind}: {'PREEMPT AND ABORT' if abort_expected else 'fallback to PREEMPT'}",
          how == ("preempt-and-abort" if abort_expected else "preempt"), how)
    check(f"{kind}: sg_persist sees only node 1's key", sorted(sg_keys(mp)) == [K1, K1],
          sg_keys(mp))
    check(f"{kind}: node 2's write through the kernel fails", not write(n2[0]))
    check(f"{kind}: the kernel reports RESERVATION CONFLICT (EBADE)",
          EBADE_TEXT in LAST_WRITE_ERROR[0], LAST_WRITE_ERROR[0])
    check(f"{kind}: node 2's other path fails too", not write(n2[1]))
    check(f"{kind}: node 1's write through the multipath map lands", write(mp))

    ks = hamon("keys", mp)[0]
    want = prm.format_key(K1)
    check(f"{kind}: hamon keys (CLI) lists node 1's key only", ks["ok"]
          and ks["keys"] == [want, want], ks)
    st = rsv.read_status(d1).results[0].value
    check(f"{kind}: reservation held by node 1, WE-RO",
          st.reservation.key == K1 and st.reservation.type == WE_RO, st)
    for d in d1 + d2:
        d.close()


def main() -> int:
    storage.step("setup-start")
    storage.sh("lio_setup 1", "tgt_setup 1", "node1_login", "node2_login", "multipath_setup")
    storage.step("setup-done")
    p = storage.paths()
    print("\n".join(f"  {k}={v}" for k, v in sorted(p.items())), flush=True)

    one_target("LIO", True, p)
    one_target("TGT", False, p)
    storage.step("pr-done")

    mp = p["LIO_MP_L0"]
    out = hamon("paths", mp)
    paths = out[0]["paths"]  # one disk per operand
    check("hamon paths: 2 paths, both up", [x["state"] for x in paths] == ["up", "up"],
          paths)
    victim = p["LIO_N1_L0_P0"]
    storage.sh(f"fail_path {victim}", f"wait_path {victim} failed 30")
    storage.step("path-failed")
    out = hamon("paths", mp)
    paths = out[0]["paths"]  # one disk per operand
    states = {x["path"]: x["state"] for x in paths}
    check("hamon paths: the faulted path is failed, the other up",
          states.get(victim) == "failed" and list(states.values()).count("up") == 1,
          paths)
    reason = next(x for x in paths if x["path"] == victim).get("reason", "")
    check("hamon paths: the failed path says why", bool(reason), paths)
    print(f"  reason: {reason}", flush=True)
    check("node 1's write lands through the surviving path", write(mp))
    storage.step("done")
    return 0


if __name__ == "__main__":
    sys.exit(main())
