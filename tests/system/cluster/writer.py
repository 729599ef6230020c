#!/usr/bin/python3
"""The cluster tier's writer: append fixed-size records to a shared LUN and tell the host
about every write, acknowledged or refused.

    writer.py --target /dev/mapper/luna --lun A --node node1 --port hamon.ack.a

Each record (records.py: node, LUN, epoch, sequence number, slot, CRC) is one 512-byte
sector written with O_DIRECT|O_SYNC, so "acknowledged" means the storage said it is
stable. On start the writer reads the log from slot 0 up to the first slot without a valid
record, takes epoch = highest epoch seen + 1 and appends after it. After every write it
sends one line on a virtio-serial port (the host timestamps it on arrival):

    START node lun epoch slot TAIL     ACK node lun epoch seq slot
    REF node lun epoch seq slot ERRNO   (the write failed; the slot is tried again)

TAIL is the last record the start-up scan found, ``node:epoch:seq`` (``-``: none): read
through this node's own session before its first write, it is the disk's evidence of
which of a previous writer's records had landed by then (the checker uses it to judge an
old node's acknowledgement that reached the host late, e.g. after a freeze).

The target may be a block device (the fence_scsi model's LUN A map) or a file on a
mounted file system (the HA Monitor model's ext4 on LUN B; created if missing).
"""
from __future__ import annotations

import argparse
import errno
import glob
import mmap
import os
import signal
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import records

CHUNK = 64 * 1024


def port_path(name: str) -> str:
    """/dev/vportNpM of the virtio-serial port called `name` (udev may not name it)."""
    for p in glob.glob("/sys/class/virtio-ports/*/name"):
        with open(p) as f:
            if f.read().strip() == name:
                return "/dev/" + p.split("/")[-2]
    raise SystemExit(f"writer: no virtio-serial port named {name}")


def scan(fd: int) -> list[records.Record]:
    """The valid records from slot 0 up to the first gap, read with O_DIRECT."""
    buf = mmap.mmap(-1, CHUNK)
    out: list[records.Record] = []
    off = 0
    while True:
        n = os.preadv(fd, [buf], off)
        if n <= 0:
            return out
        got = records.scan(bytes(buf[:n]))
        out += got
        if len(got) * records.SIZE < n or n < CHUNK:
            return out
        off += n


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--target", required=True)
    ap.add_argument("--lun", required=True)
    ap.add_argument("--node", required=True)
    ap.add_argument("--port", required=True)
    ap.add_argument("--interval", type=float, default=0.25)
    ns = ap.parse_args()
    port = open(port_path(ns.port), "w", buffering=1)  # noqa: SIM115
    flags = os.O_RDWR | os.O_DIRECT | os.O_SYNC
    if not ns.target.startswith("/dev/"):
        flags |= os.O_CREAT
    fd = os.open(ns.target, flags, 0o644)
    log = scan(fd)
    epoch = max((r.epoch for r in log), default=0) + 1
    slot = len(log)
    tail = f"{log[-1].node}:{log[-1].epoch}:{log[-1].seq}" if log else "-"
    port.write(f"START {ns.node} {ns.lun} {epoch} {slot} {tail}\n")
    stop = False

    def _term(*_a: object) -> None:
        nonlocal stop
        stop = True

    signal.signal(signal.SIGTERM, _term)
    buf = mmap.mmap(-1, records.SIZE)
    seq = 0
    while not stop:
        seq += 1
        rec = records.Record(ns.node, ns.lun, epoch, seq, slot, time.time_ns())
        buf[:] = rec.pack()
        try:
            os.pwritev(fd, [buf], slot * records.SIZE)
        except OSError as e:
            port.write(f"REF {ns.node} {ns.lun} {epoch} {seq} {slot} "
                       f"{errno.errorcode.get(e.errno, e.errno)}\n")
        else:
            port.write(f"ACK {ns.node} {ns.lun} {epoch} {seq} {slot}\n")
            slot += 1
        time.sleep(ns.interval)
    port.write(f"STOP {ns.node} {ns.lun} {epoch} {slot}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
