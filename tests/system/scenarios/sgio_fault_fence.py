#!/usr/bin/python3
"""Issue 10's fault matrix, fence cell at the system tier: fence_hamon_scsi -o off when the
first path of the LUN refuses PERSISTENT RESERVE OUT (tests/system/test_fault_matrix_vm.py).

LIO, one LUN, two portals; the iSCSI fault proxy (tests/faultproxy.py) in front of portal
0 from the logins on. Node 1 reaches the LUN through /dev/mapper/mpatha (its paths P0,
proxied, and P1, direct); node 2 through plain sd paths (P0 proxied, P1 direct). Both
nodes are unfenced while the proxy is clean; then the proxy answers every PR OUT on
portal 0 with CHECK CONDITION, HARDWARE ERROR 44/00, and node 1 fences node 2 over SG_IO
through the map. The preempt must be routed around the refusing path: exit 0, "Success:
Powered OFF", KAMN725-W for that path (syslog, caught here on /dev/log), and the witnesses
on the disk: node 2's own sessions read the keys (only node 1's left) and the kernel
refuses node 2's writes on both of its paths with RESERVATION CONFLICT.

Prints "OK <check>" per passed check and "TIME <label> <seconds>" per agent call; exits
1 at the first failed check. Leaves fence-off.out / fence-off.err / syslog /
keys-*.txt / faultproxy-P0.stats.json in /hamon.
"""
from __future__ import annotations

import errno
import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, os.environ["HAMON_GUEST"])
sys.path.insert(0, os.environ["HAMON_REPO"])

import storage
from checks import check

from hamon.lib.keys import key_for_node

REPO = os.environ["HAMON_REPO"]
AGENT = f"{REPO}/agents/fence_hamon_scsi"
K1, K2 = key_for_node("node1"), key_for_node("node2")
EBADE_TEXT = os.strerror(errno.EBADE)
REFUSE_PR_OUT = '[{"kind": "check-condition", "opcode": "0x5f"}]'
SYSLOG = "/hamon/syslog"


def syslog_listener() -> None:
    """No syslog daemon runs in the guest: catch what hamon sends to /dev/log (the
    KAMN messages' syslog copy) into /hamon/syslog, one datagram per line."""
    if os.path.exists("/dev/log"):
        os.unlink("/dev/log")
    s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    s.bind("/dev/log")

    def loop() -> None:
        with open(SYSLOG, "a") as fh:
            while True:
                fh.write(s.recv(65536).decode(errors="replace").rstrip("\n") + "\n")
                fh.flush()

    threading.Thread(target=loop, daemon=True).start()


def run(label: str, argv: list[str], tag: str | None = None) -> subprocess.CompletedProcess:
    t0 = time.perf_counter()
    p = subprocess.run(argv, capture_output=True, text=True, check=False, timeout=180)
    print(f"TIME {label} {time.perf_counter() - t0:.2f}", flush=True)
    print(f"  {label} -> {p.returncode}: {(p.stdout + p.stderr).strip()[-1500:]}", flush=True)
    if tag:
        with open(f"/hamon/{tag}.out", "w") as fh:
            fh.write(p.stdout)
        with open(f"/hamon/{tag}.err", "w") as fh:
            fh.write(p.stderr)
    return p


def write(dev: str) -> tuple[bool, str]:
    """One direct 4 KiB write through the kernel: (landed, error text)."""
    p = subprocess.run(["dd", "if=/dev/zero", f"of={dev}", "bs=4096", "count=1",
                        "oflag=direct", "conv=fsync", "status=none"],
                       capture_output=True, text=True, check=False, timeout=60)
    return p.returncode == 0, p.stderr.strip()


def sg_keys(dev: str, tag: str) -> list[int]:
    # The victim's sessions get UNIT ATTENTION (REGISTRATIONS PREEMPTED) once after the
    # fence, as SPC-4 says; sg_persist does not resend (exit 6): ask again, a few times.
    for _ in range(3):
        p = subprocess.run(["sg_persist", "--in", "--read-keys", dev], capture_output=True,
                           text=True, check=False, timeout=60)
        if p.returncode != 6:
            break
        print(f"  {tag}: {dev} answered UNIT ATTENTION: {p.stderr.strip()!r}", flush=True)
    with open(f"/hamon/keys-{tag}.txt", "w") as fh:
        fh.write(p.stdout + p.stderr)
    check(f"{tag}: sg_persist --read-keys on {dev} answers", p.returncode == 0, p.stderr)
    return sorted(int(w, 16) for w in p.stdout.split() if w.startswith("0x"))


def main() -> int:
    syslog_listener()
    storage.step("setup-start")
    storage.sh("lio_setup 1", "faultproxy_start 0", "node1_login", "node2_login",
               "multipath_setup")
    storage.step("setup-done")
    p = storage.paths()
    mp, n1p0, n1p1 = p["MP_L0"], p["N1_L0_P0"], p["N1_L0_P1"]
    n2p0, n2p1 = p["N2_L0_P0"], p["N2_L0_P1"]
    with open("/hamon/refusing", "w") as fh:
        fh.write(n1p0 + "\n")
    dm = os.path.basename(os.path.realpath(mp))
    slaves = sorted(os.listdir(f"/sys/block/{dm}/slaves"))
    check(f"{mp}'s paths are {n1p0} (proxied) and {n1p1} (direct), the proxied one first",
          slaves == sorted([os.path.basename(n1p0), os.path.basename(n1p1)])
          and slaves[0] == os.path.basename(n1p0), (slaves, n1p0, n1p1))

    # -- both nodes unfenced, the proxy clean --------------------------------------------
    h1 = [AGENT, "--local-node", "node1", "-d", mp]
    r = run("on(node1)", [*h1, "-o", "on", "-n", "node1"])
    check("fence_hamon_scsi on: node 1 unfenced through the map", r.returncode == 0, r.stderr)
    r = run("on(node2)", [AGENT, "--local-node", "node2", "-d", n2p0, "-o", "on", "-n", "node2"])
    check("fence_hamon_scsi on: node 2 unfenced on its proxied path", r.returncode == 0,
          r.stderr)
    subprocess.run(["sg_persist", "--out", "--register-ignore", f"--param-sark={K2:x}", n2p1],
                   capture_output=True, check=True, timeout=60)
    check("before: node 2's own session reads both keys on every path",
          sg_keys(n2p1, "before") == sorted([K1, K1, K2, K2]))
    check("before: node 2's write on its direct path lands", write(n2p1)[0])

    # -- the first path refuses PR OUT; node 1 fences node 2 -----------------------------
    storage.step("fault")
    storage.sh(f"fault_set 0 '{REFUSE_PR_OUT}'")
    out = subprocess.run(["sg_persist", "-v", "--out", "--register-ignore",
                          f"--param-sark={K1:x}", n1p0], capture_output=True, text=True,
                         check=False, timeout=60)
    check("the proxied path refuses PR OUT with HARDWARE ERROR (sg_persist exit 3)",
          out.returncode == 3 and "hardware error" in (out.stdout + out.stderr).lower(),
          (out.returncode, out.stderr))
    subprocess.run(["cp", f"{storage.RUN}/faults/P0.stats.json",
                    "/hamon/faultproxy-P0.before.json"], check=True)
    storage.step("fence-off")
    r = run("off(node2)", [*h1, "-o", "off", "-n", "node2"], tag="fence-off")
    storage.step("fence-off-done")
    subprocess.run(["cp", f"{storage.RUN}/faults/P0.stats.json",
                    "/hamon/faultproxy-P0.stats.json"], check=True)
    check("fence_hamon_scsi off: exit 0", r.returncode == 0, r.stderr)
    check("fence_hamon_scsi off: Success: Powered OFF", "Success: Powered OFF" in r.stdout,
          r.stdout)

    # -- the disk, read by node 2's own sessions and its kernel writes -------------------
    check("after: node 2's direct session reads only node 1's key (2 paths)",
          sg_keys(n2p1, "after-n2p1") == [K1, K1])
    check("after: node 1's clean path reads only node 1's key (2 paths)",
          sg_keys(n1p1, "after-n1p1") == [K1, K1])
    for dev in (n2p1, n2p0):
        landed, err = write(dev)
        check(f"after: node 2's write on {dev} fails with RESERVATION CONFLICT",
              not landed and EBADE_TEXT in err, err)
    check("after: node 1's write through the map lands", write(mp)[0])
    time.sleep(1)   # the listener thread flushes each datagram; give it a moment
    log = Path(SYSLOG).read_text() if os.path.exists(SYSLOG) else ""
    check("syslog: KAMN725-W for the refusing path",
          any("KAMN725-W" in ln and f"({n1p0})" in ln for ln in log.splitlines()), log)
    storage.step("done")
    return 0


if __name__ == "__main__":
    sys.exit(main())
