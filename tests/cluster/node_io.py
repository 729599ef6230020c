"""A node's I/O path, run *inside* the node's namespaces (``Cluster.popen``).

What the node's kernel would hold open: one iSCSI session per path of every LUN, from
the node's own network namespace and with an initiator name of its own (beside the
agent's), registered with the node's key when it is unfenced. The test talks to it on
stdin/stdout, one command per line, one JSON answer per line:

    join   -> {"ok": true}        REGISTER AND IGNORE EXISTING KEY through the sessions
    write  -> {"writes": [...]}   one WRITE per LUN: "written", "RESERVATION CONFLICT"
                                  (status 0x18) or the error as it is
    quit   -> (exits)

Usage: node_io.py NODE INITIATOR URL,URL,...   (PYTHONPATH: the checkout)
"""
from __future__ import annotations

import json
import sys

from hamon.agents.fence.fencer import Fencer
from hamon.agents.fence.settings import Settings
from hamon.lib import reservation as rsv
from hamon.lib.reservation.write_probe import write_probe
from hamon.lib.scsi.errors import ReservationConflict
from hamon.lib.scsi.status import Status


def outcome(r: rsv.DiskResult) -> str:
    if r.ok:
        return "written"
    if isinstance(r.error, ReservationConflict) and \
            r.error.status == Status.RESERVATION_CONFLICT:
        return "RESERVATION CONFLICT"
    return f"{type(r.error).__name__}: {r.error or r.detail}"


def main(node: str, initiator: str, urls: str) -> int:
    fencer = Fencer(Settings(devices=urls.split(","), local_node=node,
                             local_initiator=initiator))
    me = fencer.settings.node(node)
    disks = fencer.disks(me.initiator)
    print(json.dumps({"ready": [d.name for d in disks]}), flush=True)
    try:
        for line in sys.stdin:
            cmd = line.strip()
            if cmd == "join":
                print(json.dumps({"ok": rsv.register(disks, me.key).ok}), flush=True)
            elif cmd == "write":
                out = write_probe(disks, 3, node.encode()).results
                print(json.dumps({"writes": [outcome(r) for r in out]}), flush=True)
            elif cmd == "quit":
                break
            else:
                print(json.dumps({"error": f"unknown command {cmd!r}"}), flush=True)
    finally:
        fencer.close()
    return 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:4]))
