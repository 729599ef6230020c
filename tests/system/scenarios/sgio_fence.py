#!/usr/bin/python3
"""Scenario 5 of the system tier: fence_hamon_scsi and the stock fence_scsi through the
kernel's devices (SG_IO on sd paths under dm-multipath; fence_scsi: sg_persist).

LIO, 2 LUNs on two portals. Node 1 reaches them through /dev/mapper/mpatha and mpathb
(2 sd paths each); node 2 through plain /dev/sdX (it has no multipath maps in this guest:
one kernel, one dm namespace). Node 2 is unfenced with the agent on its first path of each
LUN and registered on its second path with sg_persist, so its key is on every nexus it
has, as on a multipath node. Then node 1 fences node 2 (`off`) with each agent in turn
on the same devices, node 2 is unfenced again (`on`), and the kernel is asked to write:
node 2's writes fail with RESERVATION CONFLICT (EBADE) after `off` and land after `on`;
node 1's writes land throughout. sg_persist reads the keys back as the witness.

Prints "OK <check>" per passed check and "TIME <agent> <action> <seconds>" per agent
call; exits 1 at the first failed check.
"""
from __future__ import annotations

import errno
import os
import subprocess
import sys
import time

sys.path.insert(0, os.environ["HAMON_GUEST"])
sys.path.insert(0, os.environ["HAMON_REPO"])

import storage
from checks import check

from hamon.lib.keys import key_for_node

REPO = os.environ["HAMON_REPO"]
AGENT = f"{REPO}/agents/fence_hamon_scsi"
FENCE_SCSI = "/usr/sbin/fence_scsi"
K1, K2 = key_for_node("node1"), key_for_node("node2")
EBADE_TEXT = os.strerror(errno.EBADE)


def run(label: str, argv: list[str]) -> subprocess.CompletedProcess:
    t0 = time.perf_counter()
    p = subprocess.run(argv, capture_output=True, text=True, check=False, timeout=120)
    took = time.perf_counter() - t0
    print(f"TIME {label} {took:.2f}", flush=True)
    print(f"  {label} -> {p.returncode}: {(p.stdout + p.stderr).strip()[-600:]}", flush=True)
    return p


def write(dev: str) -> tuple[bool, str]:
    """One direct 4 KiB write through the kernel: (landed, error text)."""
    p = subprocess.run(["dd", "if=/dev/zero", f"of={dev}", "bs=4096", "count=1",
                        "oflag=direct", "conv=fsync", "status=none"],
                       capture_output=True, text=True, check=False)
    return p.returncode == 0, p.stderr.strip()


def sg_keys(dev: str) -> list[int]:
    out = subprocess.run(["sg_persist", "--in", "--read-keys", dev], capture_output=True,
                         text=True, check=False).stdout
    return [int(w, 16) for w in out.split() if w.startswith("0x")]


def sg_register(dev: str, key: int) -> None:
    subprocess.run(["sg_persist", "--out", "--register-ignore", f"--param-sark={key:x}", dev],
                   capture_output=True, check=True)


def fenced_checks(tag: str, mps: list[str], n2: list[str]) -> None:
    for mp in mps:
        check(f"{tag}: sg_persist on {mp} sees only node 1's key (2 paths)",
              sorted(sg_keys(mp)) == [K1, K1], [hex(k) for k in sg_keys(mp)])
    for dev in n2:
        landed, err = write(dev)
        check(f"{tag}: node 2's write on {dev} fails with RESERVATION CONFLICT",
              not landed and EBADE_TEXT in err, err)
    for mp in mps:
        check(f"{tag}: node 1's write through {mp} lands", write(mp)[0])


def unfenced_checks(tag: str, mps: list[str], n2: list[str]) -> None:
    for mp in mps:
        check(f"{tag}: sg_persist on {mp} sees both keys on every path",
              sorted(sg_keys(mp)) == sorted([K1, K1, K2, K2]), [hex(k) for k in sg_keys(mp)])
    for dev in n2:
        check(f"{tag}: node 2's write on {dev} lands", write(dev)[0])


def main() -> int:
    storage.step("setup-start")
    storage.sh("lio_setup 2", "node1_login", "node2_login", "multipath_setup")
    storage.step("setup-done")
    p = storage.paths()
    mps = [p["MP_L0"], p["MP_L1"]]
    n2_first = [p["N2_L0_P0"], p["N2_L1_P0"]]
    n2_second = [p["N2_L0_P1"], p["N2_L1_P1"]]
    n2 = n2_first + n2_second
    devs1 = ",".join(mps)

    # -- fence_hamon_scsi ----------------------------------------------------------------
    h1 = [AGENT, "--local-node", "node1", "-d", devs1]
    r = run("fence_hamon_scsi on(node1)", [*h1, "-o", "on", "-n", "node1"])
    check("fence_hamon_scsi on: node 1 unfenced through the multipath maps",
          r.returncode == 0, r.stderr)
    r = run("fence_hamon_scsi on(node2)", [AGENT, "--local-node", "node2", "-d",
                                           ",".join(n2_first), "-o", "on", "-n", "node2"])
    check("fence_hamon_scsi on: node 2 unfenced through its sd paths", r.returncode == 0,
          r.stderr)
    for dev in n2_second:
        sg_register(dev, K2)
    unfenced_checks("hamon", mps, n2)
    r = run("fence_hamon_scsi status(node2)", [*h1, "-o", "status", "-n", "node2"])
    check("fence_hamon_scsi status: node 2 is on", r.returncode == 0, r.stdout)
    storage.step("hamon-off")
    r = run("fence_hamon_scsi off", [*h1, "-o", "off", "-n", "node2"])
    check("fence_hamon_scsi off: exit 0", r.returncode == 0, r.stderr)
    fenced_checks("hamon", mps, n2)
    r = run("fence_hamon_scsi status(node2)", [*h1, "-o", "status", "-n", "node2"])
    check("fence_hamon_scsi status: node 2 is off (exit 2)", r.returncode == 2, r.stdout)
    r = run("fence_hamon_scsi on(node2)", [AGENT, "--local-node", "node2", "-d",
                                           ",".join(n2_first), "-o", "on", "-n", "node2"])
    check("fence_hamon_scsi on: node 2 unfenced again", r.returncode == 0, r.stderr)
    for dev in n2_first:
        check(f"hamon: node 2's write on {dev} lands again", write(dev)[0])
    check("the kernel logged the refused writes", "reservation conflict"
          in subprocess.run(["dmesg"], capture_output=True, text=True).stdout)

    # -- Debian's fence_scsi on the same devices -----------------------------------------
    storage.step("fence_scsi")
    # The two nodes share one /var/run/cluster here: node 2 first, node 1's key file last.
    r = run("fence_scsi on(node2)", [FENCE_SCSI, "-o", "on", "-k", f"{K2:x}",
                                     "-d", ",".join(n2)])
    check("fence_scsi on: node 2 registered on its sd paths", r.returncode == 0, r.stderr)
    r = run("fence_scsi on(node1)", [FENCE_SCSI, "-o", "on", "-k", f"{K1:x}", "-d", devs1])
    check("fence_scsi on: node 1 registered through the multipath maps",
          r.returncode == 0, r.stderr)
    unfenced_checks("fence_scsi", mps, n2)
    storage.step("fence_scsi-off")
    r = run("fence_scsi off", [FENCE_SCSI, "-o", "off", "-k", f"{K2:x}", "-d", devs1])
    check("fence_scsi off: exit 0", r.returncode == 0, r.stderr)
    fenced_checks("fence_scsi", mps, n2)
    storage.step("done")
    return 0


if __name__ == "__main__":
    sys.exit(main())
