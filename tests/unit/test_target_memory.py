"""What one LUN taught applies to the other LUNs of its target, and a wrong guess only
costs commands (hamon.lib.reservation: _target_of, guarded_preempt, read_back).

The sim's transports say nothing of their target, so the other unit tests keep the
per-LUN memory; here a transport names its target, as IscsiTransport (the target name)
and SgioTransport (vendor/product from sysfs) do.
"""
from __future__ import annotations

from dataclasses import dataclass

import pytest

from hamon.agents.fence.fencer import Fencer
from hamon.agents.fence.settings import Settings
from hamon.lib import reservation as rsv
from hamon.lib.multipath.resolve import Resolver
from hamon.lib.reservation import quirks as tq
from hamon.lib.scsi.pr import PrInServiceAction as In
from hamon.lib.scsi.pr import PrOutServiceAction as Out
from tests.unit.test_fence_core import N1, N2, PORTALS, TARGET, SimArray, unfence

PR_OUT, PR_IN = 0x5F, 0x5E


@dataclass
class NamedArray(SimArray):
    """A SimArray whose paths name their target, like IscsiTransport.target_id."""

    def opener(self, url, initiator, timeout):  # type: ignore[override]
        t = super().opener(url, initiator, timeout)
        t.target_id = f"iscsi:{TARGET}"  # type: ignore[attr-defined]
        return t

    def factory(self, initiator: str, timeout: float) -> Resolver:
        return Resolver(initiator=initiator, timeout=timeout, iscsi_opener=self.opener,
                        one_path_per_lun=True)

    def fencer(self, local: str, order=None, **kw) -> Fencer:  # type: ignore[override]
        return Fencer(Settings(devices=self.urls(order), local_node=local, **kw),
                      self.factory)

    def sent(self, node: str, op: int, sa: int) -> dict[int, int]:
        from hamon.lib.identity import default_initiator
        ini = default_initiator(node)
        return {i: sum(1 for (nx, c) in lun.commands if c[0] == op and c[1] & 0x1F == sa
                       and nx[0].split("/s")[0] == ini) for i, lun in self.luns.items()}

    def count(self, key: int) -> dict[int, int]:
        return {i: list(lun.registrations.values()).count(key)
                for i, lun in self.luns.items()}


@pytest.fixture(autouse=True)
def forget():
    for m in (tq.NO_PREEMPT_ABORT, tq.NEW_SESSION_UNREGISTERED, tq.NO_FULL_STATUS,
              tq.KEY_SEEN):
        m.clear()
    yield
    for m in (tq.NO_PREEMPT_ABORT, tq.NEW_SESSION_UNREGISTERED, tq.NO_FULL_STATUS,
              tq.KEY_SEEN):
        m.clear()


def _fence(arr: NamedArray) -> None:
    f = arr.fencer("node1")
    try:
        f.fence(N1, N2)
    finally:
        f.close()


def test_tgt_the_arbiter_teaches_the_other_luns():
    arr = NamedArray(n=4, profile="tgt")
    unfence(arr, "node1", "node2")
    before = arr.count(N1.key)
    _fence(arr)
    assert all(N2.key not in k and N1.key in k for k in arr.keys().values()), arr.keys()
    # the arbiter (first by WWID) is asked and refuses; the others are not asked
    paa = arr.sent("node1", PR_OUT, Out.PREEMPT_AND_ABORT)
    (arbiter,) = [i for i, n in paa.items() if n == 1]
    assert sorted(paa.values()) == [0, 0, 0, 1]
    assert arr.sent("node1", PR_IN, In.READ_FULL_STATUS) == {
        i: int(i == arbiter) for i in arr.luns}
    # the refused first PREEMPT only on the arbiter; one PREEMPT that works on the others
    assert arr.sent("node1", PR_OUT, Out.PREEMPT) == {
        i: 1 + int(i == arbiter) for i in arr.luns}
    # the guessed nexus was checked by counting and its registration removed again
    assert arr.count(N1.key) == before
    assert {f"target:iscsi:{TARGET}"} <= tq.NEW_SESSION_UNREGISTERED


def test_one_path_per_lun_off_logs_in_on_one_path_of_each_lun():
    arr = NamedArray(n=3, profile="tgt")
    unfence(arr, "node1", "node2")
    for lun in arr.luns.values():
        lun.commands.clear()
    _fence(arr)
    from hamon.lib.identity import default_initiator
    ini = default_initiator("node1")
    for lun in arr.luns.values():
        ports = {nx[1] for (nx, _c) in lun.commands if nx[0].split("/s")[0] == ini}
        assert ports == {1}, ports


def test_a_wrong_nexus_guess_on_an_spc4_target_costs_commands_not_a_registration():
    """SPC-4 with a stable nexus: the agent's session *is* the registered nexus. A guess
    that it is not (taught by another LUN) must not remove that registration."""
    arr = NamedArray(n=3, profile="spc4")
    unfence(arr, "node1", "node2")
    before = arr.count(N1.key)
    assert all(c == 2 for c in before.values())
    tq.NEW_SESSION_UNREGISTERED.add(f"target:iscsi:{TARGET}")
    tq.KEY_SEEN.add((f"target:iscsi:{TARGET}", N1.key))
    for lun in arr.luns.values():
        lun.commands.clear()
    _fence(arr)
    assert all(N2.key not in k for k in arr.keys().values()), arr.keys()
    assert arr.count(N1.key) == before  # nothing of ours removed
    # the guess cost one plain REGISTER per LUN, refused (the nexus is registered), and
    # no REGISTER AND IGNORE EXISTING KEY, no unregistering
    assert arr.sent("node1", PR_OUT, Out.REGISTER) == {i: 1 for i in arr.luns}
    assert arr.sent("node1", PR_OUT, Out.REGISTER_AND_IGNORE_EXISTING_KEY) == {
        i: 0 for i in arr.luns}


def _pr_sequence(arr: NamedArray, node: str, lun: int) -> list[str]:
    from hamon.lib.identity import default_initiator
    ini = default_initiator(node)
    names = {PR_OUT: Out, PR_IN: In}
    return [names[c[0]](c[1] & 0x1F).name for (nx, c) in arr.luns[lun].commands
            if c[0] in names and nx[0].split("/s")[0] == ini]


def test_tgt_after_the_arbiter_a_lun_costs_six_pr_commands():
    """Issue 14's count on tgt (node1 holds the reservation, as after its unfence): past
    the arbiter no READ KEYS before the guard's REGISTER, no second READ RESERVATION
    (the PREEMPT of a non-holder leaves the one read before it, and the keys' generation
    shows nobody else changed a registration)."""
    arr = NamedArray(n=3, profile="tgt")
    unfence(arr, "node1", "node2")
    for lun in arr.luns.values():
        lun.commands.clear()
    _fence(arr)
    assert all(N2.key not in k and N1.key in k for k in arr.keys().values()), arr.keys()
    arbiter = min(arr.luns, key=lambda i: arr.luns[i].wwid)
    for i in arr.luns:
        if i == arbiter:
            continue
        # the first REGISTER meets the new session's unit attention and is sent again
        assert _pr_sequence(arr, "node1", i) == [
            "REGISTER", "REGISTER", "READ_KEYS", "READ_RESERVATION", "PREEMPT", "REGISTER",
            "READ_KEYS"], i
    assert all(lun.registrations.get(lun.holder) == N1.key for lun in arr.luns.values())


def test_tgt_a_registration_change_meanwhile_reads_the_reservation_again():
    """Another registration change between the READ RESERVATION and the read-back (a
    third node registers): the generation does not add up, so the reservation is read
    again rather than taken from before the PREEMPT."""
    arr = NamedArray(n=3, profile="tgt")
    unfence(arr, "node1", "node2")
    arbiter = min(arr.luns, key=lambda i: arr.luns[i].wwid)
    other = next(i for i in arr.luns if i != arbiter)
    done: list[int] = []

    def before(t, cdb, data_out):
        if (not done and t.lun is arr.luns[other] and cdb[0] == PR_OUT
                and cdb[1] & 0x1F == Out.PREEMPT):
            done.append(1)
            w = arr.writer("node3", other)
            w.close()

    arr.before = before
    for lun in arr.luns.values():
        lun.commands.clear()
    _fence(arr)
    assert done
    assert _pr_sequence(arr, "node1", other)[-2:] == ["READ_KEYS", "READ_RESERVATION"]
    assert all(N2.key not in k and N1.key in k for k in arr.keys().values()), arr.keys()


def test_a_wrong_preempt_and_abort_guess_still_removes_the_victim():
    arr = NamedArray(n=2, profile="spc4")
    unfence(arr, "node1", "node2")
    tq.NO_PREEMPT_ABORT.add(f"target:iscsi:{TARGET}")
    _fence(arr)
    assert all(N2.key not in k and N1.key in k for k in arr.keys().values())
    assert arr.sent("node1", PR_OUT, Out.PREEMPT) == {1: 1, 2: 1}


def test_spc4_off_reads_back_with_read_full_status_and_prefers_preempt_and_abort():
    arr = NamedArray(n=3, profile="spc4")
    unfence(arr, "node1", "node2")
    for lun in arr.luns.values():
        lun.commands.clear()
    _fence(arr)
    assert arr.sent("node1", PR_OUT, Out.PREEMPT_AND_ABORT) == {1: 1, 2: 1, 3: 1}
    assert arr.sent("node1", PR_IN, In.READ_FULL_STATUS) == {1: 1, 2: 1, 3: 1}
    assert arr.sent("node1", PR_IN, In.READ_RESERVATION) == {1: 0, 2: 0, 3: 0}
    assert all(N2.key not in k for k in arr.keys().values())


def test_status_from_read_full_status_agrees_with_keys_and_reservation():
    arr = NamedArray(n=1, profile="spc4")
    unfence(arr, "node1", "node2")
    disks = arr.factory("iqn.2026-11.org.hamon:obs", 5.0).resolve(
        [f"iscsi://{PORTALS[0]}:3260/{TARGET}/1"])
    t = disks[0].paths[0].transport()
    try:
        full = rsv.read_back(t, disks[0])
        tq.NO_FULL_STATUS.add(f"target:iscsi:{TARGET}")
        plain = rsv.read_back(t, disks[0])
        assert full.full is not None and plain.full is None
        assert sorted(full.keys) == sorted(plain.keys)
        assert full.reservation.key == plain.reservation.key
        assert full.reservation.type == plain.reservation.type
    finally:
        disks[0].close()
