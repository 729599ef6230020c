"""The VM cluster tier's checker: the writers' acknowledgement logs against what the storage
holds, read on the host from tgtd's backing files (no node is asked anything).

* LUN A (fence_scsi's model) is written raw: its backing file is read as it is.
* LUN B (HA Monitor's model) carries ext4: the checker copies the image, replays and
  checks it with ``e2fsck -fy`` and then requires ``e2fsck -fn`` to find nothing (the file
  system checks clean), and reads ``/records`` out of the copy with ``debugfs``.

Per LUN it counts and checks:

* acknowledged: ACK lines received before the storage was read; every one must be on the
  disk at its slot with the same (node, epoch, seq) -- ``lost`` must be empty;
* refused: REF lines (the write failed in the guest); none of them may be on the disk;
* after a takeover (old node -> new node at host time T = the new node's first
  acknowledged write on that LUN): no record of the old node may sit at or after the new
  node's first slot, and no acknowledgement of the old node may arrive after T (``late``);
  ``refused_after`` counts the old node's refused writes after T.
  One exception, decided by the disk and not by a clock: a frozen node's acknowledgement
  reaches the host only after it is resumed, so the one write it had in flight at the
  freeze is acknowledged after T although it landed before. It is not late if the new
  node's writer, scanning the LUN through its own session before its first write (its
  START line's tail), already found that record (or a later one of the same writer) on the
  disk; at most one per old writer (it writes one record at a time), else all are late.
  Counted as ``in_flight``. A write that landed after that scan stays late.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import records


@dataclass
class Takeover:
    old: str
    new: str
    after: float  # host time of the fault: the new node's writes after it count


@dataclass
class LunReport:
    lun: str
    acknowledged: int = 0
    found: int = 0
    on_disk: int = 0
    refused: int = 0
    refused_after: int = 0
    lost: list = field(default_factory=list)
    refused_on_disk: list = field(default_factory=list)
    late: list = field(default_factory=list)
    #: the old node's acknowledgements after T whose record the new node's writer found
    #: on the disk before its first write (the write in flight at a freeze)
    in_flight: list = field(default_factory=list)
    takeover_at: float | None = None
    fsck: str = ""

    @property
    def ok(self) -> bool:
        return not (self.lost or self.refused_on_disk or self.late) and self.fsck in ("", "clean")

    def line(self) -> str:
        s = (f"LUN {self.lun}: acknowledged {self.acknowledged}, found {self.found}, "
             f"on disk {self.on_disk}, refused {self.refused}, refused after takeover "
             f"{self.refused_after}, lost {len(self.lost)}, refused-but-on-disk "
             f"{len(self.refused_on_disk)}, late {len(self.late)}")
        if self.in_flight:
            s += (f", acknowledged after the takeover but on disk before the new node's "
                  f"first write {len(self.in_flight)} {self.in_flight}")
        if self.fsck:
            s += f", fsck {self.fsck}"
        return s

    def problems(self) -> str:
        out = []
        if self.lost:
            out.append(f"acknowledged but not on LUN {self.lun} (first 5): {self.lost[:5]}")
        if self.refused_on_disk:
            out.append(f"refused in the guest but on LUN {self.lun}: {self.refused_on_disk[:5]}")
        if self.late:
            out.append(f"old node's writes after the takeover on LUN {self.lun}: "
                       f"{self.late[:5]}")
        if self.fsck not in ("", "clean"):
            out.append(f"LUN {self.lun} file system: {self.fsck}")
        return "\n".join(out)


def read_ext4_file(image: Path, name: str = "/records") -> tuple[bytes, str]:
    """(contents of `name`, fsck verdict) from a copy of an ext4 image."""
    with tempfile.TemporaryDirectory(prefix="hamon-check-") as d:
        copy = Path(d) / "fs.img"
        shutil.copyfile(image, copy)
        r1 = subprocess.run(["e2fsck", "-fy", str(copy)], capture_output=True, text=True,
                            timeout=120)
        r2 = subprocess.run(["e2fsck", "-fn", str(copy)], capture_output=True, text=True,
                            timeout=120)
        if r1.returncode >= 4 or r2.returncode != 0:
            verdict = (f"NOT clean: e2fsck -fy rc={r1.returncode} then -fn rc={r2.returncode}"
                       f"\n{r1.stdout[-1500:]}\n{r2.stdout[-1500:]}")
        else:
            verdict = "clean"
        out = Path(d) / "records"
        subprocess.run(["debugfs", "-R", f"dump {name} {out}", str(copy)],
                       capture_output=True, timeout=60)
        data = out.read_bytes() if out.exists() else b""
        return data, verdict


def check_lun(lun: str, data: bytes, acks: list, snap_t: float,
              takeover: Takeover | None = None, fsck: str = "") -> LunReport:
    rep = LunReport(lun, fsck=fsck)
    disk = records.scan_all(data)
    rep.on_disk = len(disk)
    idents = {r.ident: slot for slot, r in disk.items()}
    mine = [a for a in acks if a.lun == lun and a.t < snap_t]
    for a in mine:
        if a.kind == "ACK":
            rep.acknowledged += 1
            r = disk.get(a.slot)
            if r is not None and r.ident == (a.node, a.epoch, a.seq):
                rep.found += 1
            else:
                rep.lost.append((a.node, a.epoch, a.seq, a.slot, r.ident if r else None))
        elif a.kind == "REF":
            rep.refused += 1
            if (a.node, a.epoch, a.seq) in idents:
                rep.refused_on_disk.append((a.node, a.epoch, a.seq, a.slot))
    if takeover is not None:
        new = [a for a in mine if a.kind == "ACK" and a.node == takeover.new
               and a.t > takeover.after]
        if new:
            rep.takeover_at = new[0].t
            first_slot = min(a.slot for a in new)
            for slot, r in disk.items():
                if r.node == takeover.old and slot >= first_slot:
                    rep.late.append(("on disk after the new node's first slot", r.ident, slot))
            starts = [a for a in mine if a.kind == "START" and a.node == takeover.new
                      and takeover.after < a.t <= rep.takeover_at]
            seen = getattr(starts[-1], "tail", None) if starts else None
            for a in mine:
                if a.node == takeover.old and a.t > rep.takeover_at:
                    if a.kind == "ACK":
                        item = (a.node, a.epoch, a.seq, a.slot, round(a.t - rep.takeover_at, 2))
                        if seen is not None and seen[:2] == (a.node, a.epoch) \
                                and a.seq <= seen[2]:
                            rep.in_flight.append(item)
                        else:
                            rep.late.append(("acknowledged after the takeover", *item))
                    elif a.kind == "REF":
                        rep.refused_after += 1
            if len(rep.in_flight) > 1:
                rep.late += [("acknowledged after the takeover (more than the one write in "
                              "flight)", *i) for i in rep.in_flight]
    return rep


def check(lun_a: Path, lun_b: Path, acks: list, snap_t: float,
          takeover: Takeover | None = None) -> tuple[LunReport, LunReport]:
    """Both LUNs; `acks` received before `snap_t` (host monotonic) are judged: read the
    images only after taking snap_t, so every acknowledgement before it is on them."""
    a = check_lun("A", Path(lun_a).read_bytes(), acks, snap_t, takeover)
    data_b, verdict = read_ext4_file(Path(lun_b))
    b = check_lun("B", data_b, acks, snap_t, takeover, fsck=verdict)
    return a, b
