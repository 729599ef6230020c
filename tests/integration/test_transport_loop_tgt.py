"""One poll loop for every iSCSI session of an action, against a real tgtd.

Two paths to one LUN, each through its own fault proxy; jobs on both paths at once from
one thread (hamon.lib.disk.run_parallel). A path that swallows a command is a
PathTimeout at that command's deadline while the other path's commands go on.
"""
from __future__ import annotations

import threading
import time

import pytest

from hamon.lib import command
from hamon.lib.disk import run_parallel
from hamon.lib.identity import default_initiator
from hamon.lib.sim import FaultKind, FaultRule
from hamon.lib.transport import loop
from hamon.lib.transport.base import PathTimeout
from hamon.lib.transport.iscsi import IscsiTransport
from tests.faultproxy import FaultProxy

pytestmark = pytest.mark.integration


@pytest.fixture
def proxies(tgt):
    ps = [FaultProxy((host, tgt.port)).start() for host in tgt.hosts]
    yield ps
    for p in ps:
        p.stop()


def test_a_swallowing_path_times_out_while_the_other_goes_on(tgt, proxies):
    good, bad = (IscsiTransport(path=p.url(tgt.target, 1), initiator=default_initiator("n1"),
                                timeout=1.0) for p in proxies)
    idents: set[int] = set()
    done_at: dict[str, float] = {}
    t0 = time.monotonic()

    def on_good() -> int:
        idents.add(threading.get_ident())
        n = 0
        while time.monotonic() - t0 < 0.8:  # keep the good path busy past the deadline
            command.test_unit_ready(good)
            command.read_keys(good)
            n += 1
        done_at["good"] = time.monotonic() - t0
        return n

    def on_bad() -> object:
        idents.add(threading.get_ident())
        command.test_unit_ready(bad)  # logs in, answers
        proxies[1].set_rules(FaultRule(FaultKind.SWALLOW))
        try:
            command.read_keys(bad)
        finally:
            done_at["bad"] = time.monotonic() - t0
        return None

    try:
        got, err = run_parallel([on_good, on_bad])
        assert isinstance(err, PathTimeout), err
        assert isinstance(got, int) and got > 5, got  # many round trips meanwhile
        assert idents == {threading.get_ident()}  # every job on the calling thread
        assert 0.9 <= done_at["bad"] < 2.0, done_at
        # the swallowed path is dropped; the good one still works afterwards
        assert command.read_keys(good).keys == ()
    finally:
        good.close()
        bad.close()


def test_many_sessions_from_one_thread(tgt):
    ts = [IscsiTransport(path=url, initiator=default_initiator(f"n{i}"), timeout=5.0)
          for i in range(8) for url in tgt.urls(1) + tgt.urls(2)]
    try:
        out = run_parallel([lambda t=t: (loop.current() is not None,
                                         command.lun_identity(t)) for t in ts])
        assert all(isinstance(o, tuple) and o[0] for o in out), out
        assert len({o[1] for o in out}) == 2  # two LUNs
    finally:
        run_parallel([t.close for t in ts])
