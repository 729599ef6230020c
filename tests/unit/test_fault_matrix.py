"""The fault matrix on the in-memory target: phase x fault x extent, every cell checked.

Issue 10's invariants, cell by cell. A fault is a rule of the in-memory target's fault
hooks (the same vocabulary the iSCSI fault proxy uses at the integration and VM tiers),
put on one path of two, on every path, or on the only path of a single-path disk. After
each action the target is read directly (``SimLun``'s own state, not through hamon): that
is the independent reader here. Each cell checks the exit code, the KAMN725-W lines
(exactly one per faulted path, with its details code), KAMN726-E where every path failed,
the journal's verdict and what the LUN holds afterwards.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest

from hamon.agents.disk.monitor import monitor
from hamon.agents.disk.start import start
from hamon.agents.disk.stop import stop
from hamon.agents.fence import check as fence_check
from hamon.agents.fence.errors import FenceError
from hamon.agents.fence.fencer import Fencer
from hamon.agents.fence.settings import Settings
from hamon.lib import command, messages
from hamon.lib import keys as keymod
from hamon.lib.multipath.resolve import Resolver
from hamon.lib.pacemaker.ocf_call import ExitStatus
from hamon.lib.scsi.pr import PrOutServiceAction as Out
from hamon.lib.scsi.sense import SenseKey
from hamon.lib.sim import FaultKind, FaultRule, SimLun, SimTransport, TgtProfile
from tests.unit.test_disk_agent import Node, Storage

K1, K2 = keymod.key_for_node("node1"), keymod.key_for_node("node2")
PR_IN, PR_OUT, TUR = 0x5E, 0x5F, 0x00
OCF11 = {"OCF_RA_VERSION_MAJOR": "1", "OCF_RA_VERSION_MINOR": "1"}


def _cc(key: int, asc: int, ascq: int = 0) -> tuple[FaultRule, ...]:
    return (FaultRule(FaultKind.CHECK_CONDITION, sense_key=key, asc=asc, ascq=ascq),)


#: Each fault: the rules one faulted path applies to every command through it.
FAULTS: dict[str, tuple[FaultRule, ...]] = {
    "hardware-error": _cc(SenseKey.HARDWARE_ERROR, 0x44),
    "medium-error": _cc(SenseKey.MEDIUM_ERROR, 0x11),
    "not-ready": _cc(SenseKey.NOT_READY, 0x04, 0x01),
    "aborted-command": _cc(SenseKey.ABORTED_COMMAND, 0x47),
    "unexpected-sense": _cc(SenseKey.DATA_PROTECT, 0x27),
    "busy": (FaultRule(FaultKind.BUSY),),
    "task-set-full": (FaultRule(FaultKind.TASK_SET_FULL),),
    "conflict-to-reads": (FaultRule(FaultKind.RESERVATION_CONFLICT, opcode=PR_IN),
                          FaultRule(FaultKind.RESERVATION_CONFLICT, opcode=TUR)),
    "swallow": (FaultRule(FaultKind.SWALLOW),),
    "drop": (FaultRule(FaultKind.DROP),),
    "corrupt-pr-in": (FaultRule(FaultKind.CORRUPT, opcode=PR_IN),),
    "pr-only-hardware-error": (
        FaultRule(FaultKind.CHECK_CONDITION, opcode=PR_IN),
        FaultRule(FaultKind.CHECK_CONDITION, opcode=PR_OUT)),
}
#: extent -> (paths of the disk, faulted target ports)
EXTENTS: dict[str, tuple[int, tuple[int, ...]]] = {
    "one-of-two": (2, (1,)),
    "every-path": (2, (1, 2)),
    "single-path": (1, (1,)),
}
#: Faults that leave INQUIRY alone (resolving operands into disks still works), and of
#: those the ones that leave PR OUT alone too (a REGISTER goes through).
PR_ONLY = {"corrupt-pr-in", "conflict-to-reads", "pr-only-hardware-error"}
PR_IN_ONLY = {"corrupt-pr-in", "conflict-to-reads"}
CELLS = [(f, e) for f in FAULTS for e in EXTENTS]
IDS = [f"{f}-{e}" for f, e in CELLS]




def inject(storage: Storage, fault: str, ports: tuple[int, ...]) -> None:
    for lun in storage.lun.values():
        for port in ports:
            lun.inject(port, *FAULTS[fault])


def kamn(captured: list[messages.Message], full_id: str) -> list[messages.Message]:
    return [m for m in captured if m.full_id == full_id]


def check_725(captured: list[messages.Message], storage: Storage, ports: tuple[int, ...],
              expected_code: str = "IO-ERR") -> None:
    """Exactly one KAMN725-W per faulted path, naming it, with the details code."""
    got = kamn(captured, "KAMN725-W")
    assert len(got) == len(ports), [m.text for m in got]
    for port in ports:
        mine = [m for m in got if f"127.0.0.{port}:" in m.fields["device"].split("(")[-1]]
        assert len(mine) == 1, (port, [m.text for m in got])
        assert mine[0].fields["code"] == expected_code


def node(tmp: Path, storage: Storage, name: str, paths: int) -> Node:
    param = "dmmp_device" if paths > 1 else "scsi_device"
    return Node(name, storage, tmp, {param: " ".join(storage.urls(1))}, env=dict(OCF11))


def lun(storage: Storage) -> SimLun:
    return storage.lun[1]


def last_journal(n: Node) -> dict:
    entries = n.journal.entries()
    return entries[-1] if entries else {}


# ------------------------------------------------------------------------- hamon_disk
@pytest.mark.parametrize(("fault", "extent"), CELLS, ids=IDS)
def test_stop(tmp_path, captured, fault, extent):
    paths, ports = EXTENTS[extent]
    st = Storage(portals=paths)
    n1 = node(tmp_path, st, "node1", paths)
    assert n1.start() == ExitStatus.SUCCESS
    assert lun(st).keys() and set(lun(st).keys()) == {K1}
    inject(st, fault, ports)
    captured.clear()
    a = n1.agent()
    rc = stop(a)
    check_725(captured, st, ports)
    entry = last_journal(n1)
    if len(ports) < paths:   # some paths failed: the termination completes
        assert rc == ExitStatus.SUCCESS, a.reason
        assert kamn(captured, "KAMN726-E") == [] and not n1.dry_run.exists()
        assert lun(st).keys() == [] and lun(st).rtype is None   # nothing of ours left
        assert entry["kind"] == "failure" and entry["verdict"] == "continue"
    else:                    # every path failed: KAMN726-E and the OS termination
        assert rc == ExitStatus.ERR_GENERIC and "every path" in a.reason
        assert len(kamn(captured, "KAMN726-E")) == 1 and kamn(captured, "HAMN954-E")
        assert n1.dry_run.read_text().startswith("reboot ")
        assert K1 in lun(st).registrations.values()   # left reserved: recover cancels it
        assert entry["kind"] == "failure" and entry["verdict"] == "terminate-os"


@pytest.mark.parametrize(("fault", "extent"), CELLS, ids=IDS)
def test_monitor(tmp_path, captured, fault, extent):
    paths, ports = EXTENTS[extent]
    st = Storage(portals=paths)
    n1 = node(tmp_path, st, "node1", paths)
    assert n1.start() == ExitStatus.SUCCESS
    inject(st, fault, ports)
    captured.clear()
    a = n1.agent()
    rc = monitor(a)
    check_725(captured, st, ports)
    if len(ports) < paths:
        assert rc == ExitStatus.DEGRADED, a.reason
        assert "1/2 paths up" in a.reason
        assert n1.attrs.values[next(iter(n1.attrs.values))] == "1/2"
    else:
        assert rc == ExitStatus.ERR_GENERIC and "every path" in a.reason
        assert kamn(captured, "KAMN726-E")
    assert set(lun(st).keys()) == {K1} and lun(st).rtype is not None  # monitor changes nothing
    assert not n1.dry_run.exists()


@pytest.mark.parametrize(("fault", "extent"), CELLS, ids=IDS)
def test_probe_on_the_standby(tmp_path, captured, fault, extent):
    paths, ports = EXTENTS[extent]
    st = Storage(portals=paths)
    n1, n2 = node(tmp_path, st, "node1", paths), node(tmp_path, st, "node2", paths)
    assert n1.start() == ExitStatus.SUCCESS
    before = (list(lun(st).registrations.items()), lun(st).holder, lun(st).generation)
    inject(st, fault, ports)
    captured.clear()
    rc = n2.monitor(probe=True)
    check_725(captured, st, ports)
    assert rc in (ExitStatus.NOT_RUNNING, ExitStatus.ERR_GENERIC)
    assert rc == ExitStatus.NOT_RUNNING or len(ports) == paths
    after = (list(lun(st).registrations.items()), lun(st).holder, lun(st).generation)
    assert after == before and not n2.dry_run.exists()   # a probe changes nothing


@pytest.mark.parametrize(("fault", "extent"), CELLS, ids=IDS)
def test_start_of_the_standby(tmp_path, captured, fault, extent):
    paths, ports = EXTENTS[extent]
    st = Storage(portals=paths)
    n1, n2 = node(tmp_path, st, "node1", paths), node(tmp_path, st, "node2", paths)
    assert n1.start() == ExitStatus.SUCCESS
    inject(st, fault, ports)
    captured.clear()
    a = n2.agent()
    rc = start(a)
    check_725(captured, st, ports)
    if len(ports) < paths:   # the switchover goes on through the working path
        assert rc == ExitStatus.SUCCESS, a.reason
        assert set(lun(st).keys()) == {K2} and lun(st).holder is not None
        assert lun(st).holder[0].endswith("node2")
    else:                    # the switchover fails; nothing changed on the disk
        assert rc == ExitStatus.ERR_GENERIC, a.reason
        assert kamn(captured, "KAMN726-E") and kamn(captured, "HAMN955-E")
        assert set(lun(st).keys()) == {K1} and lun(st).holder[0].endswith("node1")
    assert last_journal(n2)["kind"] == "failure"


# ------------------------------------------------------------------------- fence agent
@dataclass
class Array:
    """Two LUNs (the first is the arbiter by LUN identity), ``paths`` paths each."""

    storage: Storage

    def fencer(self, local: str) -> Fencer:
        def factory(initiator: str, timeout: float) -> Resolver:
            return Resolver(initiator=initiator, timeout=timeout,
                            iscsi_opener=self.storage.opener)
        urls = [u for n in self.storage.lun for u in self.storage.urls(n)]
        return Fencer(Settings(devices=urls, local_node=local, scsi_timeout=1.0), factory)

    def keys(self) -> dict[int, set[int]]:
        return {n: set(sl.keys()) for n, sl in self.storage.lun.items()}


def _array(paths: int) -> Array:
    return Array(Storage(luns=2, portals=paths, profile=TgtProfile))


def _unfence(arr: Array, *names: str) -> None:
    for name in names:
        f = arr.fencer(name)
        try:
            f.unfence(f.settings.node(name))
        finally:
            f.close()


@pytest.mark.parametrize(("fault", "extent"), CELLS, ids=IDS)
def test_fence_off(captured, fault, extent):
    paths, ports = EXTENTS[extent]
    arr = _array(paths)
    _unfence(arr, "node1", "node2")
    inject(arr.storage, fault, ports)
    f = arr.fencer("node1")
    me, victim = f.settings.node("node1"), f.settings.node("node2")
    captured.clear()
    try:
        if len(ports) < paths:   # routed around: the victim is gone from every LUN
            report = f.fence(me, victim)
            assert "removed node2" in report.summary
            assert arr.keys() == {1: {K1}, 2: {K1}}
            assert f.fenced(me, victim)
        else:                    # no LUN can be fenced: exit 1, naming LUN, path, answer
            with pytest.raises(FenceError) as err:
                f.fence(me, victim)
            text = str(err.value)
            assert "127.0.0.1:" in text and "/1" in text
            assert all(K2 in keys for keys in arr.keys().values())  # nothing changed
    finally:
        warnings = f.path_faults()
        f.close()
    # Every faulted path met is reported once: resolving the operands (INQUIRY) meets
    # them all; a fault of PR commands only is met on the arbiter, and when every path
    # of it failed the other LUN is not touched at all.
    expected = 2 * len(ports)
    if fault in PR_ONLY and len(ports) == paths:
        expected = len(ports)
    got = kamn(captured, "KAMN725-W")
    assert len(got) == expected and len({m.fields["device"] for m in got}) == expected
    assert len(warnings) == expected


@pytest.mark.parametrize(("fault", "extent"), CELLS, ids=IDS)
def test_fence_on(captured, fault, extent):
    paths, ports = EXTENTS[extent]
    arr = _array(paths)
    inject(arr.storage, fault, ports)
    f = arr.fencer("node1")
    me = f.settings.node("node1")
    captured.clear()
    try:
        if len(ports) < paths:
            f.unfence(me)
            assert arr.keys() == {1: {K1}, 2: {K1}}
        else:
            with pytest.raises(FenceError):
                f.unfence(me)
            if fault not in PR_IN_ONLY:   # nothing could be registered
                assert arr.keys() == {1: set(), 2: set()}
    finally:
        warnings = f.path_faults()
        f.close()
    got = kamn(captured, "KAMN725-W")
    assert len(got) == 2 * len(ports) and len({m.fields["device"] for m in got}) == len(got)
    assert len(warnings) == len(got) and all("path failed" in w for w in warnings)


@pytest.mark.parametrize(("fault", "extent"), CELLS, ids=IDS)
def test_fence_status(fault, extent):
    paths, ports = EXTENTS[extent]
    arr = _array(paths)
    _unfence(arr, "node1", "node2")
    inject(arr.storage, fault, ports)
    f = arr.fencer("node1")
    try:
        if len(ports) < paths:
            assert f.status(f.settings.node("node1"), f.settings.node("node2")) == "on"
        else:
            with pytest.raises(FenceError, match="cannot tell"):
                f.status(f.settings.node("node1"), f.settings.node("node2"))
    finally:
        f.close()


@pytest.mark.parametrize(("fault", "extent"), CELLS, ids=IDS)
def test_watchdog_check(fault, extent):
    """The watchdog hook: a node still registered is never told it is fenced because a
    path answers with errors; a fenced node is told so through the working path; with no
    working path there is no verdict (no reboot on a guess)."""
    paths, ports = EXTENTS[extent]
    arr = _array(paths)
    _unfence(arr, "node1", "node2")
    urls = [u for n in arr.storage.lun for u in arr.storage.urls(n)]

    def resolver() -> Resolver:
        return Resolver(initiator="iqn.2026-11.org.hamon:node2", timeout=1.0,
                        iscsi_opener=arr.storage.opener)

    inject(arr.storage, fault, ports)
    assert fence_check._once(resolver(), urls, K2) == fence_check.EXIT_OK
    for sl in arr.storage.lun.values():       # node1 fences node2 behind the faults' back
        sl.clear_faults()
        t = SimTransport(path="x", lun=sl, initiator="iqn.2026-11.org.hamon:node1", port=1)
        command.pr_out(t, Out.REGISTER_AND_IGNORE_EXISTING_KEY, 0, K1)
        command.pr_out(t, Out.PREEMPT, K1, K2, 5)
    inject(arr.storage, fault, ports)
    verdict = fence_check._once(resolver(), urls, K2)
    expected = fence_check.EXIT_FENCED if len(ports) < paths else fence_check.EXIT_OK
    assert verdict == expected
