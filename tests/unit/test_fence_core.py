"""fence_hamon_scsi's decisions on the in-memory target: unfence, fence, the arbiter rule.

Two target flavours throughout: ``spc4`` (registrations belong to the I_T nexus, which
our stable ISID keeps the same across processes, as on LIO) and ``tgt`` (tgt's PR
subset, and a registration bound to the *session*: every new Fencer is a new,
unregistered registrant, as every agent process is on tgtd).
"""
from __future__ import annotations

import itertools
import random
import threading
import time
from dataclasses import dataclass, field

import pytest

from hamon.agents.fence.errors import FenceError
from hamon.agents.fence.fencer import Fencer
from hamon.agents.fence.settings import Node, Settings
from hamon.lib import command
from hamon.lib import reservation as rsv
from hamon.lib.identity import default_initiator
from hamon.lib.multipath.resolve import Resolver
from hamon.lib.reservation import quirks as tq
from hamon.lib.scsi.errors import ReservationConflict
from hamon.lib.scsi.pr import PrOutServiceAction as Out
from hamon.lib.scsi.pr import ReservationType as RT
from hamon.lib.sim import SimLun, SimTransport, TgtProfile

TARGET = "iqn.2026-11.org.hamon:simtgt"
PORTALS = ("127.0.0.1", "127.0.0.2")
PR_OUT, PR_IN = 0x5F, 0x5E
_session = itertools.count(1)


class JitterTransport(SimTransport):
    """A sim path that waits a random moment before each command, so that two threads'
    commands interleave in many orders (the GIL alone would serialise them neatly).
    ``before``: callable(transport, cdb, data_out) run before each command."""

    def __init__(self, *args: object, jitter: float = 0.0, before: object = None,
                 **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.jitter = jitter
        self.before = before

    def execute(self, cdb, data_out=None, data_in_len=0, timeout=None):  # type: ignore[override]
        if self.jitter:
            time.sleep(random.uniform(0, self.jitter))
        if self.before is not None:
            self.before(self, bytes(cdb), data_out)  # type: ignore[operator]
        return super().execute(cdb, data_out, data_in_len, timeout)


@dataclass
class SimArray:
    """``n`` LUNs of one target, each reachable through two portals (two paths).

    ``session_bound``: like tgt, each new transport is a distinct registrant (the
    initiator name gets a per-session suffix), so a new agent run is unregistered.
    """

    n: int = 3
    profile: str = "spc4"
    jitter: float = 0.0
    luns: dict[int, SimLun] = field(default_factory=dict)
    before: object = None

    def __post_init__(self) -> None:
        prof = TgtProfile if self.profile == "tgt" else None
        for i in range(1, self.n + 1):
            self.luns[i] = (SimLun(f"lun{i}", profile=prof) if prof else SimLun(f"lun{i}"))

    @property
    def session_bound(self) -> bool:
        return self.profile == "tgt"

    def urls(self, order: list[int] | None = None) -> list[str]:
        return [f"iscsi://{h}:3260/{TARGET}/{i}" for i in (order or list(self.luns))
                for h in PORTALS]

    def opener(self, url: str, initiator: str, timeout: float) -> SimTransport:
        lun = self.luns[int(url.rsplit("/", 1)[1])]
        port = 1 + PORTALS.index(url.split("//")[1].split(":")[0])
        nexus = f"{initiator}/s{next(_session)}" if self.session_bound else initiator
        return JitterTransport(path=url, lun=lun, initiator=nexus, port=port,
                               jitter=self.jitter, before=self.before)

    def factory(self, initiator: str, timeout: float) -> Resolver:
        return Resolver(initiator=initiator, timeout=timeout, iscsi_opener=self.opener)

    def fencer(self, local: str, order: list[int] | None = None, **kw) -> Fencer:
        return Fencer(Settings(devices=self.urls(order), local_node=local, **kw),
                      self.factory)

    # observations ------------------------------------------------------------------
    def keys(self) -> dict[int, set[int]]:
        return {i: set(lun.registrations.values()) for i, lun in self.luns.items()}

    def pr_out_by(self, node: str) -> dict[int, list[int]]:
        """Service actions of the PR OUT commands ``node`` sent, per LUN."""
        ini = default_initiator(node)
        return {i: [c[1] & 0x1F for (nx, c) in lun.commands
                    if c[0] == PR_OUT and nx[0].split("/s")[0] == ini]
                for i, lun in self.luns.items()}

    def writer(self, node: str, lun: int = 1) -> SimTransport:
        """A long-lived I/O path of ``node`` (what the kernel would hold), registered
        with its key while the node is unfenced."""
        t = self.opener(f"iscsi://{PORTALS[0]}:3260/{TARGET}/{lun}", default_initiator(node),
                        5.0)
        _until_good(t)
        command.pr_out(t, Out.REGISTER_AND_IGNORE_EXISTING_KEY, 0, Settings(
            devices=[], local_node=node).key_of(node))
        return t


def _until_good(t: SimTransport) -> None:
    command.test_unit_ready(t)


def node(name: str) -> Node:
    return Settings(devices=[], local_node=name).node(name)


N1, N2, N3 = node("node1"), node("node2"), node("node3")
PROFILES = ["spc4", "tgt"]




def unfence(arr: SimArray, *names: str) -> None:
    for n in names:
        f = arr.fencer(n)
        f.unfence(node(n))
        f.close()


def write(t: SimTransport) -> bool:
    try:
        command.write_block(t, 7, bytes(512))
    except ReservationConflict:
        return False
    return True


# --------------------------------------------------------------------------- on
@pytest.mark.parametrize("profile", PROFILES)
def test_unfence_registers_every_path_and_reserves_once(profile):
    arr = SimArray(profile=profile)
    f = arr.fencer("node1")
    report = f.unfence(N1)
    assert "registered node1" in report.summary and "reserved 3" in report.summary
    for lun in arr.luns.values():
        assert sorted(p for (_, p), k in lun.registrations.items() if k == N1.key) == [1, 2]
        assert lun.rtype is RT.WRITE_EXCLUSIVE_REGISTRANTS_ONLY
    f2 = arr.fencer("node2")
    assert "reserved" not in f2.unfence(N2).summary  # node1 holds it: only registers
    assert arr.keys() == {i: {N1.key, N2.key} for i in arr.luns}


@pytest.mark.parametrize("profile", PROFILES)
def test_repeated_unfencing_leaves_no_stale_registration(profile):
    """A reboot (tgt: every run) or a changed initiator name leaves a registration with
    our key on a nexus we no longer use; the next unfencing removes it (fence-agents
    #517/#576), so READ KEYS lists exactly one entry per live path."""
    arr = SimArray(profile=profile)
    for _ in range(3):
        unfence(arr, "node1")
    old = Settings(devices=[], local_node="node1", local_initiator="iqn.2026-11.org.x:old")
    f = Fencer(Settings(devices=arr.urls(), local_node="node1",
                        local_initiator="iqn.2026-11.org.x:old"), arr.factory)
    f.unfence(old.node("node1"))
    f.close()
    f = arr.fencer("node1")
    report = f.unfence(N1)
    for lun in arr.luns.values():
        assert list(lun.registrations.values()).count(N1.key) == 2, lun.registrations
    assert len(report.notes) == 3 and "old I_T nexus" in report.notes[0]


def test_unfence_with_a_dead_path_warns_and_names_it():
    arr = SimArray()
    arr.luns[2].fail_port(2)
    report = arr.fencer("node1").unfence(N1)
    assert len(report.warnings) == 1
    assert "127.0.0.2:3260" in report.warnings[0] and "/2" in report.warnings[0]
    assert "register again" in report.warnings[0]


def test_unfence_with_a_path_down_keeps_that_paths_registration():
    """A path that is down while the node is unfenced again (a rejoin) keeps the
    registration it had: on an SPC-4 target it comes back as the same I_T nexus, and
    removing its key as 'stale' would make the node's writes through it conflict once
    multipath fails over to it. The stale-nexus cleanup waits for a run where every
    path answers."""
    arr = SimArray()
    unfence(arr, "node1")
    arr.luns[2].fail_port(2)
    report = arr.fencer("node1").unfence(N1)
    assert list(arr.luns[2].registrations.values()).count(N1.key) == 2
    assert any("/2" in n and "kept" in n for n in report.notes), report.notes
    arr.luns[2].restore_port(2)
    t = arr.opener(arr.urls([2])[1], N1.initiator, 5.0)  # the recovered path
    _until_good(t)
    assert write(t)


def test_unfence_fails_when_a_disk_takes_the_key_on_no_path():
    arr = SimArray()
    arr.luns[3].fail_port(1)
    arr.luns[3].fail_port(2)
    with pytest.raises(FenceError, match=r"/3.*(could not register|identity)"):
        arr.fencer("node1").unfence(N1)


# --------------------------------------------------------------------------- off
@pytest.mark.parametrize("profile", PROFILES)
def test_fence_removes_the_victim_everywhere_and_its_writes_conflict(profile):
    arr = SimArray(profile=profile)
    unfence(arr, "node1", "node2")
    w1, w2 = arr.writer("node1"), arr.writer("node2")
    assert write(w1) and write(w2)
    f = arr.fencer("node1")
    report = f.fence(N1, N2)
    assert "removed node2" in report.summary
    assert ("preempt-and-abort" if profile == "spc4" else "(preempt)") in report.summary
    assert arr.keys() == {i: {N1.key} for i in arr.luns}
    assert all(lun.rtype is RT.WRITE_EXCLUSIVE_REGISTRANTS_ONLY for lun in arr.luns.values())
    assert write(w1) and not write(w2)
    assert f.fenced(N1, N2)
    assert f.status(N1, N2) == "off" and f.status(N1, N1) == "on"
    # unfencing node2 again lets it write (through a registered path)
    unfence(arr, "node2")
    assert write(arr.writer("node2"))


def test_fence_and_engine_preempt_share_one_fallback_memory():
    """One primitive (reservation.preempt_through) for the agent and the engine: a LUN
    that refused PREEMPT AND ABORT once is remembered per process, so neither the next
    fence nor reservation.preempt sends the refused command to it again."""
    arr = SimArray(profile="tgt")
    unfence(arr, "node1", "node2")
    f = arr.fencer("node1")
    f.fence(N1, N2)
    wwids = {d.wwid for d in f.disks(N1.initiator)}
    assert wwids and wwids <= tq.NO_PREEMPT_ABORT
    assert all(arr.pr_out_by("node1")[i].count(Out.PREEMPT_AND_ABORT) == 1 for i in arr.luns)
    f.close()
    unfence(arr, "node2")
    f = arr.fencer("node1")
    f.fence(N1, N2)
    disks = f.disks(N1.initiator)
    unfence(arr, "node2")
    # the fence removed the registration it made for its own session (no pile-up): the
    # unguarded engine preempt needs it registered again
    assert rsv.register(disks, N1.key).ok
    assert rsv.preempt(disks, N1.key, N2.key, RT.WRITE_EXCLUSIVE_REGISTRANTS_ONLY).ok
    f.close()
    assert all(arr.pr_out_by("node1")[i].count(Out.PREEMPT_AND_ABORT) == 1 for i in arr.luns)
    assert arr.keys() == {i: {N1.key} for i in arr.luns}


@pytest.mark.parametrize("profile", PROFILES)
def test_a_node_whose_key_is_gone_fails_and_touches_nothing(profile):
    arr = SimArray(profile=profile)
    unfence(arr, "node1", "node2")
    arr.fencer("node1").fence(N1, N2)
    before = arr.pr_out_by("node2")
    keys = arr.keys()
    with pytest.raises(FenceError, match=r"not registered on the first device .the "
                       r"arbiter.*this node has been fenced.*not touched"):
        arr.fencer("node2").fence(N2, N1)
    assert arr.keys() == keys
    assert arr.pr_out_by("node2") == before  # not a single PR OUT, on any LUN


def test_a_node_never_unfenced_cannot_fence():
    arr = SimArray()
    unfence(arr, "node2")
    with pytest.raises(FenceError, match="never unfenced"):
        arr.fencer("node1").fence(N1, N2)
    assert arr.keys() == {i: {N2.key} for i in arr.luns}


def test_a_node_cannot_fence_itself():
    arr = SimArray()
    unfence(arr, "node1")
    with pytest.raises(FenceError, match="cannot fence itself"):
        arr.fencer("node1").fence(N1, N1)


def test_the_arbiter_is_the_lowest_lun_identity_whatever_the_operand_order():
    arr = SimArray(n=4)
    by_wwid = sorted(arr.luns, key=lambda i: arr.luns[i].wwid)
    a = arr.fencer("node1", order=[1, 2, 3, 4]).disks(N1.initiator)
    b = arr.fencer("node2", order=[4, 3, 2, 1]).disks(N2.initiator)
    assert [d.wwid for d in a] == [d.wwid for d in b] == [arr.luns[i].wwid for i in by_wwid]


@pytest.mark.parametrize("profile", PROFILES)
def test_victim_already_gone_is_success_and_status_off(profile):
    arr = SimArray(profile=profile)
    unfence(arr, "node1", "node2")
    arr.fencer("node1").fence(N1, N2)
    f = arr.fencer("node1")
    assert f.fenced(N1, N2)
    assert "removed node2" in f.fence(N1, N2).summary


def test_a_lun_without_reservation_gets_one_so_the_victim_cannot_write():
    arr = SimArray()
    unfence(arr, "node1", "node2")
    w2 = arr.writer("node2")
    for lun in arr.luns.values():  # somebody released it
        lun.rtype = lun.holder = None
    arr.fencer("node1").fence(N1, N2)
    assert all(lun.rtype is not None for lun in arr.luns.values())
    assert not write(w2)


@pytest.mark.parametrize("profile", PROFILES)
def test_guarded_registration_undoes_itself_when_our_key_vanished(profile):
    """The window the guard exists for: after node1 read its key on the arbiter and
    before its own session registered, node2 removed node1's key. node1 must not come
    back: its registration is undone and it fails without touching another LUN."""
    arr = SimArray(profile="tgt" if profile == "tgt" else "spc4")
    unfence(arr, "node1", "node2")
    arbiter = min(arr.luns.values(), key=lambda lun: lun.wwid)
    fired = []

    def before(t, cdb, data_out):
        if (not fired and t.lun is arbiter and cdb[0] == PR_OUT and t.initiator.startswith(
                N1.initiator) and (cdb[1] & 0x1F) in (Out.PREEMPT, Out.PREEMPT_AND_ABORT,
                                                      Out.REGISTER_AND_IGNORE_EXISTING_KEY)):
            fired.append(cdb[1] & 0x1F)
            f2 = arr.fencer("node2")
            f2.fence(N2, N1)
            f2.close()

    arr.before = before
    f1 = arr.fencer("node1")
    before_sent = arr.pr_out_by("node1")
    with pytest.raises(FenceError, match="arbiter"):
        f1.fence(N1, N2)
    assert fired
    assert arr.keys() == {i: {N2.key} for i in arr.luns}  # node1's own entry was undone
    sent = arr.pr_out_by("node1")
    a = next(i for i, lun in arr.luns.items() if lun is arbiter)
    assert {i: v for i, v in sent.items() if i != a} == {
        i: v for i, v in before_sent.items() if i != a}
    new = sent[a][len(before_sent[a]):]
    assert Out.REGISTER_AND_IGNORE_EXISTING_KEY in new and new[-1] == Out.REGISTER


@pytest.mark.parametrize("profile", PROFILES)
def test_mutual_fencing_race_never_two_survivors(profile):
    """Both nodes fence each other at the same moment, many times, on 4 LUNs with
    random delays before every command: exactly one action succeeds and exactly one
    key, the winner's, is left on every LUN."""
    rounds = 80
    outcomes = {"node1": 0, "node2": 0}
    for _ in range(rounds):
        arr = SimArray(n=4, profile=profile)
        unfence(arr, "node1", "node2")
        arr.jitter = 0.0004
        result = race(arr)
        winners = [n for n, r in result.items() if r is None]
        assert len(winners) == 1, result
        w = node(winners[0])
        assert arr.keys() == {i: {w.key} for i in arr.luns}, (result, arr.keys())
        loser = "node2" if winners[0] == "node1" else "node1"
        assert "arbiter" in str(result[loser])
        outcomes[winners[0]] += 1
    assert outcomes["node1"] and outcomes["node2"], outcomes  # both orders happened


def race(arr: SimArray) -> dict[str, FenceError | None]:
    result: dict[str, FenceError | None] = {}
    barrier = threading.Barrier(2)
    fencers = {"node1": arr.fencer("node1"), "node2": arr.fencer("node2", order=[4, 3, 2, 1])}
    for n, f in fencers.items():
        f.disks(node(n).initiator)  # resolve first: the race is about the PR commands

    def run(me: str, victim: str) -> None:
        barrier.wait()
        try:
            fencers[me].fence(node(me), node(victim))
            result[me] = None
        except FenceError as err:
            result[me] = err

    threads = [threading.Thread(target=run, args=("node1", "node2")),
               threading.Thread(target=run, args=("node2", "node1"))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    return result


def test_without_the_arbiter_rule_the_race_can_split_the_luns():
    """The control experiment: preempting on all LUNs at once (what fence_scsi does, in
    sequence per device) leaves node1 on some LUNs and node2 on others. This is what the
    arbiter rule prevents, and shows the race test above can see it."""
    splits = 0
    for _ in range(60):
        arr = SimArray(n=4)
        unfence(arr, "node1", "node2")
        arr.jitter = 0.0004
        d1 = arr.fencer("node1").disks(N1.initiator)
        d2 = arr.fencer("node2", order=[4, 3, 2, 1]).disks(N2.initiator)
        barrier = threading.Barrier(2)

        def naive(disks, me, victim, barrier):
            barrier.wait()
            rsv.preempt(disks, me.key, victim.key, RT(5))

        ts = [threading.Thread(target=naive, args=(d1, N1, N2, barrier)),
              threading.Thread(target=naive, args=(d2[::-1], N2, N1, barrier))]
        for t in ts:
            t.start()
        for t in ts:
            t.join(30)
        if len({frozenset(k) for k in arr.keys().values()}) > 1:
            splits += 1
    assert splits > 0


def test_three_nodes_two_fence_the_third_at_once():
    arr = SimArray(n=3)
    unfence(arr, "node1", "node2", "node3")
    f1, f2 = arr.fencer("node1"), arr.fencer("node2")
    errors = []

    def run(f, me):
        try:
            f.fence(me, N3)
        except FenceError as err:
            errors.append(err)

    ts = [threading.Thread(target=run, args=(f1, N1)), threading.Thread(target=run,
                                                                       args=(f2, N2))]
    for t in ts:
        t.start()
    for t in ts:
        t.join(30)
    assert not errors
    assert arr.keys() == {i: {N1.key, N2.key} for i in arr.luns}


# --------------------------------------------------------------------------- paths
def test_fence_through_the_second_path_when_the_first_is_dead():
    arr = SimArray()
    unfence(arr, "node1", "node2")
    f = arr.fencer("node1")
    f.disks(N1.initiator)
    for lun in arr.luns.values():
        lun.fail_port(1)
    f.fence(N1, N2)
    assert arr.keys() == {i: {N1.key} for i in arr.luns}


def test_hung_path_is_skipped_within_the_bound():
    arr = SimArray()
    unfence(arr, "node1", "node2")
    for lun in arr.luns.values():
        lun.hang_port(1)
    arr.fencer("node1").fence(N1, N2)
    assert arr.keys() == {i: {N1.key} for i in arr.luns}


def test_dead_arbiter_stops_before_any_other_device():
    arr = SimArray()
    unfence(arr, "node1", "node2")
    f = arr.fencer("node1")
    arbiter = f.disks(N1.initiator)[0]
    lun = next(lun for lun in arr.luns.values() if lun.wwid == arbiter.wwid)
    lun.fail_port(1)
    lun.fail_port(2)
    before = arr.pr_out_by("node1")
    with pytest.raises(FenceError, match=r"the arbiter.*no path answered.*not touched"):
        f.fence(N1, N2)
    assert arr.pr_out_by("node1") == before
    assert arr.keys() == {i: {N1.key, N2.key} for i in arr.luns}


def test_unknown_lun_identity_fails_before_any_change():
    arr = SimArray()
    unfence(arr, "node1", "node2")
    arr.luns[2].fail_port(1)
    arr.luns[2].fail_port(2)
    before = arr.pr_out_by("node1")
    with pytest.raises(FenceError, match=r"LUN identity .* of iscsi://127\.0\.0\.1:3260/"
                       r"\S+/2 \(.*refused.*nothing was changed"):
        arr.fencer("node1").fence(N1, N2)
    assert arr.pr_out_by("node1") == before


def test_a_dead_non_arbiter_device_makes_off_fail_and_names_it():
    arr = SimArray()
    unfence(arr, "node1", "node2")
    f = arr.fencer("node1")
    last = f.disks(N1.initiator)[-1]
    lun = next(lun for lun in arr.luns.values() if lun.wwid == last.wwid)
    lun.fail_port(1)
    lun.fail_port(2)
    with pytest.raises(FenceError, match=r"incomplete: .*/\d: no path answered"):
        f.fence(N1, N2)
    assert {i: k for i, k in arr.keys().items() if arr.luns[i] is not lun} == {
        i: {N1.key} for i in arr.luns if arr.luns[i] is not lun}


# --------------------------------------------------------------------------- reads
def test_status_on_off_and_unknown():
    arr = SimArray()
    unfence(arr, "node1")
    f = arr.fencer("node1")
    assert f.status(N1, N1) == "on" and f.status(N1, N2) == "off"
    for lun in arr.luns.values():
        lun.fail_port(1)
        lun.fail_port(2)
    g = arr.fencer("node1")
    with pytest.raises(FenceError, match="cannot tell whether node2"):
        g.status(N1, N2)


def test_monitor_warns_on_a_failed_path_and_fails_on_a_dead_disk():
    arr = SimArray()
    arr.luns[1].fail_port(2)
    report = arr.fencer("node1").monitor(N1)
    assert report.summary == "3 device(s) reachable"
    assert len(report.warnings) == 1 and "path failed" in report.warnings[0]
    arr.luns[1].fail_port(1)
    with pytest.raises(FenceError, match="no path answers"):
        arr.fencer("node1").monitor(N1)


def test_registrants_lists_every_key_and_its_devices():
    arr = SimArray(n=2)
    unfence(arr, "node1", "node2")
    regs = arr.fencer("node1").registrants(N1)
    assert set(regs) == {N1.key, N2.key} and all(len(v) == 2 for v in regs.values())
