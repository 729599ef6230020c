#!/usr/bin/python3
"""`hamon check-disk` against LIO (the kernel's target, full SPC-4 PR) in the guest.

LIO with two LUNs on two portals; node 1 (iface n1) logs in and gets /dev/mapper/mpatha
(LUN 0, two sd paths); node 2 (iface n2) gets plain sd paths.

1. check-disk on LUN 1 through iscsi:// URLs (userspace, libiscsi; the second nexus is
   a second initiator name) -> /hamon/check_lio_iscsi.json
2. check-disk on /dev/mapper/mpatha (SG_IO; the second nexus is the map's other path)
   -> /hamon/check_lio_dmmp.json
   Each time sg_persist through node 2's path reads the LUN afterwards: no key, no holder.
3. Read-only on a disk in use: node 2 registers and reserves LUN 0 with sg_persist; an
   independent reader (sg_persist through node 2's *other* path, a session check-disk
   never uses) reads PRgeneration, keys and holder before and after `check-disk
   --read-only` and after the refused default run: all three the same.
4. A single sd path is refused in the default mode (one I_T nexus).

Prints "OK <check>" per passed check (tests/system/test_check_disk_lio.py asserts them);
exits 1 at the first failed check.
"""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys

sys.path.insert(0, os.environ["HAMON_GUEST"])
import storage
from checks import check

REPO = os.environ["HAMON_REPO"]
HAMON = [f"{REPO}/agents/hamon", "--node", "node1", "--timeout", "10"]
LIO_IQN = "iqn.2003-01.org.linux-iscsi.hamon:lio"
K2 = "0x686d0000000000b2"


def run(argv: list[str], timeout: float = 300) -> subprocess.CompletedProcess[str]:
    p = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=False)
    print(f"$ {' '.join(argv)}  -> {p.returncode}\n{p.stdout}{p.stderr}", file=sys.stderr)
    return p


def reader(dev: str) -> tuple[str, str, str]:
    """sg_persist's view: (PRgeneration, keys, reservation) through ``dev``."""
    k = run(["sg_persist", "--in", "--no-inquiry", "--read-keys", dev]).stdout
    r = run(["sg_persist", "--in", "--no-inquiry", "--read-reservation", dev]).stdout
    gen = re.search(r"PR generation=(0x[0-9a-f]+)", k)
    keys = " ".join(w for line in k.splitlines()[1:] for w in line.split()) or "none"
    res = " ".join(re.sub(r"PR generation=0x[0-9a-f]+,?", "", r).split())
    return (gen.group(1) if gen else "?"), keys, res


NOTHING = ("none", "there is NO reservation held")


def check_disk(name: str, out: str, *operands: str) -> dict:
    storage.step("check-disk-" + out.removesuffix(".json").removeprefix("check_lio_"))
    p = run([*HAMON, "check-disk", "--json", *operands])
    (rep,) = json.loads(p.stdout)
    with open(f"/hamon/{out}", "w") as f:
        json.dump(rep, f, indent=2)
    check(f"{name}: check-disk ran (exit {p.returncode}), restored",
          rep["restored"] is True and p.returncode in (0, 1), p.stderr)
    return rep


def main() -> None:
    storage.sh("lio_setup 2", "node1_login", "node2_login", "multipath_setup")
    p = storage.paths()
    mp, n2a, n2b = p["MP_L0"], p["N2_L0_P0"], p["N2_L0_P1"]
    urls = [f"iscsi://127.0.0.{i}:3260/{LIO_IQN}/1" for i in (1, 2)]

    check_disk("LIO iscsi://", "check_lio_iscsi.json", *urls)
    check("LIO iscsi://: nothing left (sg_persist)", reader(p["N2_L1_P0"])[1:] == NOTHING,
          reader(p["N2_L1_P0"]))
    check_disk("LIO dmmp", "check_lio_dmmp.json", mp)
    check("LIO dmmp: nothing left (sg_persist)",
          reader(n2b)[1:] == NOTHING, reader(n2b))

    storage.step("read-only")
    run(["sg_persist", "--out", "--no-inquiry", "--register", f"--param-sark={K2}", n2a])
    run(["sg_persist", "--out", "--no-inquiry", "--reserve", f"--param-rk={K2}",
         "--prout-type=5", n2a])
    before = reader(n2b)
    check("node 2 holds LUN 0 (independent reader)", K2 in before[1] and K2 in before[2],
          before)
    ro = run([*HAMON, "check-disk", "--read-only", mp])
    with open("/hamon/check_lio_readonly.txt", "w") as f:
        f.write(ro.stdout + ro.stderr)
    after = reader(n2b)
    check("read-only: exit 0 on a disk in use", ro.returncode == 0, ro.stderr)
    check("read-only: PRgeneration, keys and holder unchanged", after == before,
          (before, after))
    refused = run([*HAMON, "check-disk", mp])
    check("default mode refuses a disk in use (exit 3)",
          refused.returncode == 3 and "holds registrations" in refused.stderr,
          refused.stderr)
    check("refused: PRgeneration, keys and holder unchanged", reader(n2b) == before,
          reader(n2b))
    single = run([*HAMON, "check-disk", p["N2_L1_P0"]])
    check("one sd path is refused: one I_T nexus",
          single.returncode == 3 and "only one I_T nexus" in single.stderr, single.stderr)


if __name__ == "__main__":
    main()
