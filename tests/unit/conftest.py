"""Fixtures shared by the unit tests (one copy each, not one per file)."""
from __future__ import annotations

from collections.abc import Iterator

import pytest

from hamon.lib import cluster, messages
from hamon.lib.reservation import quirks as tq
from hamon.lib.sim import SimLun, TargetProfile


@pytest.fixture
def captured() -> Iterator[list[messages.Message]]:
    """Every KAMN message emitted during the test, in order."""
    got: list[messages.Message] = []
    unsubscribe = messages.subscribe(got.append)
    yield got
    unsubscribe()


@pytest.fixture
def lun() -> SimLun:
    """A LUN of the in-memory target that raises no UNIT ATTENTION on a new nexus, so a
    test of one command sees only that command's answer."""
    return SimLun("lun", profile=TargetProfile(ua_on_new_nexus=False))


@pytest.fixture(autouse=True)
def fresh_target_memory() -> Iterator[None]:
    """What targets taught (hamon.lib.reservation.quirks: refused commands, session-bound
    registrations, keys the guard saw) is per process, as an agent run is one action;
    in the test process it must not pass from one test's targets to the next."""
    tq.forget()
    yield
    tq.forget()


@pytest.fixture(autouse=True)
def no_corosync_conf(tmp_path_factory: pytest.TempPathFactory,
                     monkeypatch: pytest.MonkeyPatch) -> None:
    """This host's own /etc/corosync/corosync.conf (Debian's names a node1) must not name
    key owners in a unit test: a test that wants a nodelist writes its own."""
    monkeypatch.setattr(cluster, "COROSYNC_CONF",
                        str(tmp_path_factory.getbasetemp() / "no-corosync.conf"))
