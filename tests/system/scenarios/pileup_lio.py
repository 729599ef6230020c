#!/usr/bin/python3
"""No registration pile-up on LIO (issue 11, item 2), in the guest: 100 fence cycles.

LIO with one LUN on two portals, reached from userspace (libiscsi, iscsi:// URLs) by two
nodes (two initiator names). node1 unfences once; each cycle node2 unfences and node1
fences it, each a new agent run (a new Fencer: new sessions, as a new process). After
every cycle an observer (a third initiator, registered nowhere) reads the keys: node2's
gone, node1's still there, and node1's count never above what its unfence made plus the
one nexus a fence may keep as the reservation holder. Prints "OK <check>"; exits 1 at the
first failed check.
"""
from __future__ import annotations

import os
import sys

sys.path.insert(0, os.environ["HAMON_GUEST"])
import storage
from checks import check

from hamon.agents.fence.fencer import Fencer
from hamon.agents.fence.settings import Settings
from hamon.lib import reservation as rsv
from hamon.lib.multipath.resolve import Resolver

LIO_IQN = "iqn.2003-01.org.linux-iscsi.hamon:lio"
URLS = [f"iscsi://127.0.0.{i}:3260/{LIO_IQN}/0" for i in (1, 2)]
OBSERVER = "iqn.2026-12.org.hamon:observer"


def run(node: str, victim: str | None = None) -> None:
    f = Fencer(Settings(devices=URLS, local_node=node, cluster="hamon-test"))
    try:
        if victim is None:
            f.unfence(f.settings.node(node))
        else:
            f.fence(f.settings.node(node), f.settings.node(victim))
    finally:
        f.close()


def keys() -> tuple[int, ...]:
    disks = Resolver(initiator=OBSERVER, timeout=10).resolve(URLS)
    try:
        (r,) = rsv.read_status(disks).results
        assert r.ok, r.error
        return r.value.keys
    finally:
        for d in disks:
            d.close()


def main() -> None:
    storage.sh("lio_setup 1")
    s = Settings(devices=URLS, local_node="node1", cluster="hamon-test")
    k1, k2 = s.key_of("node1"), s.key_of("node2")
    run("node1")
    first = keys().count(k1)
    check("node1 unfenced", first >= 1, keys())
    most = first
    for cycle in range(100):
        run("node2")
        run("node1", "node2")
        now = keys()
        if k2 in now or k1 not in now:
            check(f"cycle {cycle}: node2 gone, node1 there", False, now)
        most = max(most, now.count(k1))
        if most > first + 1:
            check(f"cycle {cycle}: no pile-up", False, now)
    check("100 cycles: node2 gone, node1 there after every cycle", True)
    check(f"100 cycles: node1's registrations {first} after unfencing, at most {most}",
          most <= first + 1)


if __name__ == "__main__":
    main()
