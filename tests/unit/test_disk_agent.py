"""hamon_disk's actions on the in-memory target: the seed's rules, takeover, monitor.

The helpers (Storage, Node, two_nodes) are imported by the other test_disk_agent_* files.

``iscsi://`` URLs are what the agent resolves here too (grouped into disks by LUN identity,
exactly as on tgtd); the resolver's opener hands out :class:`SimTransport` s instead of
libiscsi sessions: portal ``127.0.0.N`` is target port ``N``.
"""
from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from hamon.agents.disk.context import DiskAgent
from hamon.agents.disk.monitor import monitor
from hamon.agents.disk.settings import ConfigError, parse_settings
from hamon.agents.disk.start import start
from hamon.agents.disk.stop import stop
from hamon.lib import command, messages
from hamon.lib import keys as keymod
from hamon.lib import reservation as rsv
from hamon.lib.identity import default_initiator
from hamon.lib.journal import Journal
from hamon.lib.multipath.resolve import Resolver
from hamon.lib.pacemaker import attributes
from hamon.lib.pacemaker.ocf_call import ExitStatus
from hamon.lib.pacemaker.termination_kind import Detection
from hamon.lib.reservation.write_probe import write_probe
from hamon.lib.scsi.errors import ReservationConflict
from hamon.lib.scsi.pr import ReservationType
from hamon.lib.sim import SimLun, SimTransport, TgtProfile
from hamon.lib.termination import OsAction, OsTerminator, TerminationKind

TARGET = "iqn.2026-11.org.hamon:sim"


@dataclass
class Storage:
    """LUNs 1..n, each reachable through ``portals`` target ports."""

    luns: int = 1
    portals: int = 2
    profile: object = TgtProfile
    lun: dict[int, SimLun] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.lun = {n: SimLun(f"lun{n}", profile=self.profile) for n in range(1, self.luns + 1)}

    def url(self, lun: int, portal: int) -> str:
        return f"iscsi://127.0.0.{portal}:3260/{TARGET}/{lun}"

    def urls(self, lun: int) -> list[str]:
        return [self.url(lun, p) for p in range(1, self.portals + 1)]

    def opener(self, url: str, initiator: str, timeout: float) -> SimTransport:
        host = url.split("//", 1)[1].split(":", 1)[0]
        lun = int(url.rsplit("/", 1)[1])
        return SimTransport(path=url, lun=self.lun[lun], initiator=initiator,
                            port=int(host.rsplit(".", 1)[1]), timeout=timeout)

    def fail(self, portal: int, lun: int | None = None) -> None:
        for n, sl in self.lun.items():
            if lun in (None, n):
                sl.fail_port(portal)

    def restore(self, portal: int) -> None:
        for sl in self.lun.values():
            sl.restore_port(portal)


@dataclass
class FakeAttrs:
    """attrd_updater as a runner: records the attribute values a node would show."""

    values: dict[str, str] = field(default_factory=dict)
    calls: list[list[str]] = field(default_factory=list)

    def __call__(self, argv: list[str], timeout: float) -> tuple[int, str, str]:
        self.calls.append(argv)
        name = argv[argv.index("-n") + 1]
        if "-U" in argv:
            self.values[name] = argv[argv.index("-U") + 1]
        elif "-D" in argv:
            self.values.pop(name, None)
        return 0, "", ""


@dataclass
class Node:
    """One cluster node's view: its settings, state dir, journal and fakes."""

    name: str
    storage: Storage
    tmp: Path
    params: dict[str, str]
    kind: TerminationKind = TerminationKind.NORMAL
    attrs: FakeAttrs = field(default_factory=FakeAttrs)
    env: dict[str, str] = field(default_factory=dict)
    os_action: str = "reboot"

    @property
    def dry_run(self) -> Path:
        return self.tmp / f"{self.name}.terminate"

    @property
    def journal(self) -> Journal:
        return Journal(str(self.tmp / f"{self.name}.journal"))

    def agent(self, **overrides: object) -> DiskAgent:
        env = {"OCF_RESOURCE_INSTANCE": "shared-disk", **self.env}
        params = {"os_termination": self.os_action, "state_dir": str(self.tmp / self.name),
                  "journal": self.journal.path, **self.params}
        s = parse_settings(params, env, node=self.name)
        resolver = Resolver(initiator=default_initiator(self.name), timeout=1.0,
                            iscsi_opener=self.storage.opener)
        kw: dict[str, object] = dict(
            resolver=resolver,
            terminator=OsTerminator(OsAction(self.os_action),
                                    dry_run_file=None if self.os_action == "none"
                                    else str(self.dry_run)),
            journal=self.journal, attributes=attributes.Attributes(node=self.name,
                                                             runner=self.attrs),
            detect=lambda: Detection(self.kind, f"test: {self.kind}"),
            # the cluster's members (crm_node -l): node3 is one that runs no resource
            node_names=lambda: ["node1", "node2", "node3"], env=env, log=lambda _t: None)
        kw.update(overrides)
        return DiskAgent(s, **kw)  # type: ignore[arg-type]

    def start(self) -> int:
        return start(self.agent())

    def stop(self) -> int:
        return stop(self.agent())

    def monitor(self, probe: bool = False) -> int:
        return monitor(self.agent(), probe=probe)


def two_nodes(tmp: Path, storage: Storage, **params: str) -> tuple[Node, Node]:
    p = {"dmmp_device": " ".join(u for n in storage.lun for u in storage.urls(n)), **params}
    return Node("node1", storage, tmp, dict(p)), Node("node2", storage, tmp, dict(p))


# ------------------------------------------------------------------------------ tests
K1, K2, K3 = (keymod.key_for_node(n) for n in ("node1", "node2", "node3"))
OCF11 = {"OCF_RA_VERSION_MAJOR": "1", "OCF_RA_VERSION_MINOR": "1"}




def ids(captured: list[messages.Message]) -> list[str]:
    return [m.full_id for m in captured]


def lun_disk(storage: Storage, node: str, lun: int = 1):
    """The LUN as another process of ``node`` sees it (for writes and reads in tests)."""
    r = Resolver(initiator=default_initiator(node), timeout=1.0, iscsi_opener=storage.opener)
    return r.resolve(storage.urls(lun))


def write(storage: Storage, node: str) -> str | None:
    disks = lun_disk(storage, node)
    try:
        r = write_probe(disks, 7, node.encode()).results[0]
        return None if r.ok else type(r.error).__name__
    finally:
        for d in disks:
            d.close()


# -- start -------------------------------------------------------------------------------------
def test_start_registers_every_path_reserves_and_is_idempotent(tmp_path, captured):
    st = Storage()
    n1, n2 = two_nodes(tmp_path, st)
    assert n1.monitor(probe=True) == ExitStatus.NOT_RUNNING
    assert n1.start() == ExitStatus.SUCCESS
    lun = st.lun[1]
    assert sorted(lun.registrations) == [(default_initiator("node1"), 1),
                                         (default_initiator("node1"), 2)]
    assert lun.registrations[lun.holder] == K1 and lun.rtype.short == "WE-RO"
    assert n1.attrs.values == {"hamon-paths-sim-1": "2/2"}
    assert ids(captured) == ["HAMN950-I"]
    assert n1.start() == ExitStatus.SUCCESS          # a started resource starts again
    assert ids(captured) == ["HAMN950-I"]            # ... without claiming it anew
    assert n1.monitor() == ExitStatus.SUCCESS
    assert n2.monitor(probe=True) == ExitStatus.NOT_RUNNING  # the standby's probe
    assert write(st, "node1") is None and write(st, "node2") == "ReservationConflict"
    (entry,) = n1.journal.entries("start")[:1]
    assert entry["key"] == f"0x{K1:x}" and entry["disks"][0]["acquired"] is True


def test_standby_start_forcibly_obtains_the_disk_and_names_the_victim(tmp_path, captured):
    st = Storage()
    n1, n2 = two_nodes(tmp_path, st)
    assert n1.start() == 0
    assert n2.start() == 0
    m = next(m for m in captured if m.id == "HAMN951")
    assert m.full_id == "HAMN951-W"
    assert f"preempted key = 0x{K1:x} (node1)" in m.text
    assert set(st.lun[1].keys()) == {K2}
    assert write(st, "node1") == "ReservationConflict" and write(st, "node2") is None
    assert n1.monitor() == ExitStatus.NOT_RUNNING     # node1 lost it: not running there
    assert n2.monitor() == ExitStatus.SUCCESS
    entry = n2.journal.entries("start")[-1]
    assert entry["disks"][0]["preempted"]["node"] == "node1"


def test_start_removes_every_other_registration(tmp_path, captured):
    """A stale registrant (a crashed node, a leftover unfence) could write under WE-RO."""
    st = Storage()
    n1, _ = two_nodes(tmp_path, st)
    stale = lun_disk(st, "node3")
    assert rsv.register(stale, K3).ok
    for d in stale:
        d.close()
    assert write(st, "node3") is None
    assert n1.start() == 0
    assert set(st.lun[1].keys()) == {K1}
    assert "HAMN956-W" in ids(captured)
    assert write(st, "node3") == "ReservationConflict"


FOREIGN = 0x4841_4D4F_4E00_0001   # e.g. HA Monitor's, or another cluster's key
WE_RO = ReservationType.WRITE_EXCLUSIVE_REGISTRANTS_ONLY


def held_by(st: Storage) -> int:
    lun = st.lun[1]
    return lun.registrations[lun.holder]


def test_start_refuses_a_foreign_holder_and_preempts_nothing(tmp_path, captured):
    """A key of no node of this cluster is never taken (HA Monitor §7.5.11); the exit
    reason names the key and the command that clears it."""
    st = Storage()
    n1, _ = two_nodes(tmp_path, st)
    other = lun_disk(st, "outsider")
    assert rsv.register(other, FOREIGN).ok and rsv.reserve(other, FOREIGN, WE_RO).ok
    for d in other:
        d.close()
    agent = n1.agent()
    assert start(agent) == ExitStatus.ERR_GENERIC
    assert f"key 0x{FOREIGN:x}" in agent.reason and "Nothing was preempted" in agent.reason
    assert "hamon reservation cancel" in agent.reason and "monscsiclr shared-disk" in \
        agent.reason
    (m,) = [m for m in captured if m.full_id == "KAMN725-W"]
    assert m.fields["code"] == "ALREADY-RESERVATION"
    assert (m.fields["host"], m.fields["hostkey"]) == ("-", f"{FOREIGN:x}")
    assert "HAMN951-W" not in ids(captured) and "HAMN956-W" not in ids(captured)
    # read directly: the foreign key still holds, node1 registered nothing
    assert set(st.lun[1].keys()) == {FOREIGN} and held_by(st) == FOREIGN


def test_start_refuses_a_foreign_registrant_too(tmp_path, captured):
    st = Storage()
    n1, _ = two_nodes(tmp_path, st)
    other = lun_disk(st, "outsider")
    assert rsv.register(other, FOREIGN).ok
    for d in other:
        d.close()
    assert n1.start() == ExitStatus.ERR_GENERIC
    assert set(st.lun[1].keys()) == {FOREIGN}


def test_start_obtains_the_disk_from_a_members_key_new_old_or_explicit(tmp_path, captured):
    for holder_key, params in ((K2, {}), (keymod.legacy_key("node2"), {}),
                               (0x1002, {"node_keys": "node2=0x1002"})):
        st = Storage()
        n1, _ = two_nodes(tmp_path / f"{holder_key:x}", st, **params)
        held = lun_disk(st, "node2")
        assert rsv.register(held, holder_key).ok
        assert rsv.reserve(held, holder_key, WE_RO).ok
        for d in held:
            d.close()
        captured.clear()
        assert n1.start() == ExitStatus.SUCCESS
        assert set(st.lun[1].keys()) == {K1} and held_by(st) == K1
        (m,) = [m for m in captured if m.id == "HAMN951"]
        assert "node2" in m.fields["victim"]


def test_takeover_when_pacemaker_cannot_name_the_nodes_in_time(tmp_path, captured,
                                                               monkeypatch):
    """crm_node -l timing out during a takeover (the VM cluster's run 10: 5.7-7.7 s in a
    loaded guest) must not make the failed node's key "foreign": its name comes from
    corosync.conf's nodelist. A key of no configured node is still refused."""
    from hamon.lib import cluster

    conf = tmp_path / "corosync.conf"
    conf.write_text("totem {\n cluster_name: hamon-test\n}\nnodelist {\n node {\n"
                    "  name: node1\n  nodeid: 1\n }\n node {\n  name: node2\n"
                    "  nodeid: 2\n }\n}\n")
    monkeypatch.setattr(cluster, "COROSYNC_CONF", str(conf))
    silent = lambda argv, t: (124, "", "crm_node did not answer within 5 s")  # noqa: E731
    names = lambda: cluster.node_names(runner=silent)  # noqa: E731
    for other_key, ok in ((K2, True), (FOREIGN, False)):
        st = Storage()
        n1, _ = two_nodes(tmp_path / f"{other_key:x}", st)
        held = lun_disk(st, "node2")
        assert rsv.register(held, other_key).ok and rsv.reserve(held, other_key, WE_RO).ok
        for d in held:
            d.close()
        rc = start(n1.agent(node_names=names))
        if ok:  # read directly: node1 holds, node2's key is gone
            assert rc == ExitStatus.SUCCESS
            assert set(st.lun[1].keys()) == {K1} and held_by(st) == K1
        else:
            assert rc == ExitStatus.ERR_GENERIC
            assert set(st.lun[1].keys()) == {FOREIGN} and held_by(st) == FOREIGN


def test_allow_foreign_keys_takes_the_disk_for_a_migration(tmp_path, captured):
    st = Storage()
    n1, _ = two_nodes(tmp_path, st, allow_foreign_keys="true")
    other = lun_disk(st, "outsider")
    assert rsv.register(other, FOREIGN).ok and rsv.reserve(other, FOREIGN, WE_RO).ok
    for d in other:
        d.close()
    assert n1.start() == ExitStatus.SUCCESS
    assert set(st.lun[1].keys()) == {K1} and held_by(st) == K1


def test_another_clusters_node1_is_foreign(tmp_path, captured):
    st = Storage()
    n1, _ = two_nodes(tmp_path, st)
    theirs = keymod.key_for_node("node2", "another-cluster")
    other = lun_disk(st, "node2")
    assert rsv.register(other, theirs).ok and rsv.reserve(other, theirs, WE_RO).ok
    for d in other:
        d.close()
    assert n1.start() == ExitStatus.ERR_GENERIC
    assert held_by(st) == theirs


def test_start_with_some_paths_failed_goes_on_and_every_path_failed_fails(tmp_path, captured):
    st = Storage()
    n1, _ = two_nodes(tmp_path, st)
    st.fail(2)
    assert n1.start() == ExitStatus.SUCCESS
    assert ids(captured).count("KAMN725-W") == 1 and "KAMN726-E" not in ids(captured)
    assert n1.attrs.values == {"hamon-paths-sim-1": "1/2"}
    assert n1.stop() == 0
    captured.clear()
    st.fail(1)
    a = n1.agent()
    assert start(a) == ExitStatus.ERR_GENERIC
    assert ids(captured) == ["KAMN725-W", "KAMN725-W", "KAMN726-E", "HAMN955-E"]
    assert "switchover fails" in a.reason
    assert not n1.dry_run.exists()                      # §7.5.10: no OS termination
    entry = n1.journal.entries("failure")[-1]
    assert entry["phase"] == "switchover" and entry["verdict"] == "fail"


def test_an_all_registrants_reservation_is_taken_over_by_removing_the_others(
        tmp_path, captured):
    """Under WE-AR every registrant holds the reservation: registering makes this node a
    holder, and removing the other keys leaves it the only one, type unchanged."""
    st = Storage()
    n1, _ = two_nodes(tmp_path, st)
    other = lun_disk(st, "node2")
    assert rsv.register(other, K2).ok
    assert rsv.reserve(other, K2, ReservationType.WRITE_EXCLUSIVE_ALL_REGISTRANTS).ok
    for d in other:
        d.close()
    assert n1.start() == 0
    assert set(st.lun[1].keys()) == {K1} and st.lun[1].rtype.short == "WE-AR"
    assert "HAMN956-W" in ids(captured)
    assert n1.monitor() == ExitStatus.SUCCESS
    assert write(st, "node2") == "ReservationConflict"


# -- stop --------------------------------------------------------------------------------------
def test_stop_releases_and_unregisters_so_the_node_cannot_write(tmp_path, captured):
    st = Storage()
    n1, n2 = two_nodes(tmp_path, st)
    assert n1.start() == 0
    assert n1.stop() == ExitStatus.SUCCESS
    assert st.lun[1].keys() == [] and st.lun[1].rtype is None
    assert "HAMN952-I" in ids(captured)
    assert n1.attrs.values == {}                           # attribute removed
    assert n1.stop() == ExitStatus.SUCCESS                # a stopped resource stops again
    assert n1.monitor() == ExitStatus.NOT_RUNNING
    captured.clear()
    assert n2.start() == 0
    assert "HAMN951-W" not in ids(captured)               # nothing left to preempt
    assert write(st, "node1") == "ReservationConflict"
    (entry,) = n1.journal.entries("stop")
    assert entry["termination"] == "normal" and entry["termination_reason"]


def test_stop_with_one_of_two_paths_failed_completes_and_removes_every_registration(
        tmp_path, captured):
    st = Storage()
    n1, n2 = two_nodes(tmp_path, st)
    n1.kind = TerminationKind.PLANNED
    assert n1.start() == 0
    st.fail(2)
    captured.clear()
    a = n1.agent()
    assert stop(a) == ExitStatus.SUCCESS, a.reason
    assert ids(captured) == ["HAMN952-I", "KAMN725-W"]
    assert "mpath" not in captured[1].text
    assert not n1.dry_run.exists()
    # the dead path's registration went too (self-preempt through the live path)
    assert st.lun[1].keys() == [] and st.lun[1].rtype is None
    st.restore(2)
    assert write(st, "node1") is None  # no reservation now; ...
    assert n2.start() == 0
    assert write(st, "node1") == "ReservationConflict"  # ... and none of node1's keys left
    entry = n1.journal.entries("failure")[-1]
    assert entry["phase"] == "terminating" and entry["verdict"] == "continue"
    assert entry["termination"] == "planned"


def test_stop_with_every_path_failed_journals_durably_then_terminates(tmp_path, captured):
    st = Storage()
    n1, _ = two_nodes(tmp_path, st)
    n1.kind = TerminationKind.NORMAL
    assert n1.start() == 0
    st.fail(1)
    st.fail(2)
    captured.clear()
    seen_at_termination: list[list[dict]] = []

    class Watching(OsTerminator):
        def terminate(self, reason: str, last_words=()) -> bool:
            seen_at_termination.append(n1.journal.entries("failure"))
            return super().terminate(reason)

    a = n1.agent(terminator=Watching(OsAction.REBOOT, dry_run_file=str(n1.dry_run)))
    assert stop(a) == ExitStatus.ERR_GENERIC
    assert ids(captured) == ["KAMN725-W", "KAMN725-W", "KAMN726-E", "HAMN954-E"]
    assert n1.dry_run.read_text().startswith("reboot all paths failed")
    assert "dry run" in a.reason
    (before,) = seen_at_termination
    assert before and before[-1]["verdict"] == "terminate-os"   # durable before the call
    entry = n1.journal.entries("failure")[-1]
    assert entry["termination"] == "normal" and entry["disks"][0]["all_failed"]
    assert entry["os_action"] == "reboot"
    assert n1.journal.torn() == []


def test_os_termination_none_says_so_and_fails_the_stop(tmp_path, captured):
    st = Storage()
    n1, _ = two_nodes(tmp_path, st)
    n1.os_action = "none"
    assert n1.start() == 0
    st.fail(1)
    st.fail(2)
    captured.clear()
    a = n1.agent()
    assert stop(a) == ExitStatus.ERR_GENERIC
    assert ids(captured) == ["KAMN725-W", "KAMN725-W", "KAMN726-E", "HAMN957-E"]
    assert "fences" in a.reason and not n1.dry_run.exists()


def test_an_os_that_cannot_be_terminated_is_not_claimed_terminated(tmp_path, captured):
    """SysRq and reboot -f both refused: the stop fails naming why, so that Pacemaker
    fences the node; it never says the OS is being terminated."""
    st = Storage()
    n1, _ = two_nodes(tmp_path, st)
    assert n1.start() == 0
    st.fail(1)
    st.fail(2)

    class Refused(OsTerminator):
        def terminate(self, reason: str, last_words=()) -> bool:
            self.failure = "/proc/sysrq-trigger: Permission denied; reboot -f: exit 1"
            return False

    a = n1.agent(terminator=Refused(OsAction.REBOOT))
    assert stop(a) == ExitStatus.ERR_GENERIC
    assert "could not be terminated" in a.reason and "Permission denied" in a.reason
    assert "being terminated" not in a.reason


def test_stop_of_a_never_started_resource_never_terminates(tmp_path, captured):
    st = Storage()
    _, n2 = two_nodes(tmp_path, st)
    st.fail(1)
    st.fail(2)
    assert n2.stop() == ExitStatus.SUCCESS
    assert "HAMN954-E" not in ids(captured) and not n2.dry_run.exists()


def test_missing_device_node_is_open_failure_with_kamn601(tmp_path, captured):
    st = Storage()
    n = Node("node1", st, tmp_path, {"scsi_device": "/dev/hamon-no-such-disk"})
    n.agent().state.update(active=True)
    a = n.agent()
    assert stop(a) == ExitStatus.ERR_GENERIC
    assert ids(captured) == ["KAMN601-W", "KAMN725-W", "KAMN726-E", "HAMN954-E"]
    assert captured[1].fields["code"] == "OPEN"
    # started here and not stopped: the vanished disk is this node's failure ...
    assert n.monitor(probe=True) == ExitStatus.ERR_GENERIC
    # ... while on a node that never started it, it is just not running
    fresh = Node("node2", st, tmp_path, {"scsi_device": "/dev/hamon-no-such-disk"})
    assert fresh.monitor(probe=True) == ExitStatus.NOT_RUNNING


# -- the seed's table, through the agent ----------------------------------------------------
STOP_CASES = list(itertools.product((1, 2), ("none", "some", "all"),
                                    (TerminationKind.NORMAL, TerminationKind.PLANNED,
                                     TerminationKind.ABNORMAL)))


@pytest.mark.parametrize("paths,failed,kind", [c for c in STOP_CASES
                                               if not (c[0] == 1 and c[1] == "some")])
def test_stop_decision_table(tmp_path, captured, paths, failed, kind):
    st = Storage(portals=paths)
    if paths == 1:
        node = Node("node1", st, tmp_path, {"scsi_device": st.url(1, 1)})
    else:
        node = Node("node1", st, tmp_path, {"dmmp_device": " ".join(st.urls(1))})
    node.kind = kind
    assert node.start() == 0
    n_failed = {"none": 0, "some": 1, "all": paths}[failed]
    for p in range(1, n_failed + 1):
        st.fail(p)
    captured.clear()
    rc = node.stop()
    got = ids(captured)
    assert got.count("KAMN725-W") == n_failed
    everything = n_failed == paths
    assert ("KAMN726-E" in got) is everything
    assert node.dry_run.exists() is everything          # the OS termination, observed
    assert rc == (ExitStatus.ERR_GENERIC if everything else ExitStatus.SUCCESS)
    entries = node.journal.entries("failure" if n_failed else "stop")
    assert entries[-1]["termination"] == str(kind)
    if n_failed:
        assert entries[-1]["verdict"] == ("terminate-os" if everything else "continue")


# -- monitor -----------------------------------------------------------------------------------
def test_monitor_degraded_logs_once_and_recovery_is_kamn727(tmp_path, captured):
    st = Storage()
    n1, _ = two_nodes(tmp_path, st)
    assert n1.start() == 0
    st.fail(2)
    captured.clear()
    n1.env = dict(OCF11)
    assert n1.monitor() == ExitStatus.DEGRADED
    n1.env = {}
    assert n1.monitor() == ExitStatus.SUCCESS           # OCF 1.0 caller: 190 unknown
    assert ids(captured) == ["KAMN725-W"]               # once per change, not per interval
    assert n1.attrs.values == {"hamon-paths-sim-1": "1/2"}
    st.restore(2)
    assert n1.monitor() == ExitStatus.SUCCESS
    assert ids(captured)[-1] == "KAMN727-I"
    assert captured[-1].fields["code"] == "ONLINE_CHECK"
    assert n1.attrs.values == {"hamon-paths-sim-1": "2/2"}


def test_recovered_path_without_its_key_is_registered_again(tmp_path, captured):
    st = Storage()
    n1, _ = two_nodes(tmp_path, st)
    assert n1.start() == 0
    st.fail(2)
    assert n1.monitor() == 0
    del st.lun[1].registrations[(default_initiator("node1"), 2)]  # e.g. a replaced port
    st.restore(2)
    captured.clear()
    assert n1.monitor() == ExitStatus.SUCCESS
    assert ids(captured) == ["KAMN727-I"]
    assert "ONLINE_CHECK(NO_KEY)" in captured[0].text
    assert st.lun[1].registrations[(default_initiator("node1"), 2)] == K1


def test_monitor_every_path_failed_is_a_failure_and_never_terminates(tmp_path, captured):
    st = Storage()
    n1, _ = two_nodes(tmp_path, st)
    assert n1.start() == 0
    st.fail(1)
    st.fail(2)
    captured.clear()
    a = n1.agent()
    assert monitor(a) == ExitStatus.ERR_GENERIC
    assert "every path" in a.reason
    assert ids(captured) == ["KAMN725-W", "KAMN725-W", "KAMN726-E"]
    assert n1.monitor(probe=True) == ExitStatus.ERR_GENERIC
    assert not n1.dry_run.exists()
    assert n1.journal.entries("failure")[-1]["phase"] == "running"


def test_probe_on_the_standby_is_read_only_and_says_standby_check(tmp_path, captured):
    st = Storage()
    n1, n2 = two_nodes(tmp_path, st)
    assert n1.start() == 0
    st.fail(2)
    captured.clear()
    commands_before = len(st.lun[1].commands)
    assert n2.monitor(probe=True) == ExitStatus.NOT_RUNNING
    assert ids(captured) == ["KAMN725-W"]
    from hamon.lib.scsi.pr import PERSISTENT_RESERVE_OUT
    assert not [c for _, c in st.lun[1].commands[commands_before:]
                if c[0] == PERSISTENT_RESERVE_OUT]
    assert n2.journal.entries() == [] and not n2.dry_run.exists()
    st.restore(2)
    assert n2.monitor(probe=True) == ExitStatus.NOT_RUNNING
    assert "STANDBY_CHECK" in captured[-1].text


def test_monitor_reports_a_disk_held_by_someone_else_as_failure(tmp_path):
    st = Storage(luns=2)
    n1, _ = two_nodes(tmp_path, st)
    assert n1.start() == 0
    other = lun_disk(st, "node2", lun=2)
    assert rsv.register(other, K2).ok
    assert rsv.preempt(other, K2, K1, ReservationType(5)).ok
    for d in other:
        d.close()
    a = n1.agent()
    assert monitor(a) == ExitStatus.ERR_GENERIC
    assert "node2" in a.reason


def test_missing_attrd_never_fails_an_action(tmp_path):
    st = Storage()
    n1, _ = two_nodes(tmp_path, st)
    runner = lambda argv, timeout: (127, "", "attrd_updater: not installed")  # noqa: E731
    a = n1.agent(attributes=attributes.Attributes(runner=runner))
    assert start(a) == 0
    assert a.attributes.errors


def test_after_takeover_no_path_of_the_old_holder_may_write(tmp_path):
    st = Storage()
    n1, n2 = two_nodes(tmp_path, st)
    assert n1.start() == 0 and n2.start() == 0
    for port in (1, 2):
        t = SimTransport(path=st.url(1, port), lun=st.lun[1],
                         initiator=default_initiator("node1"), port=port)
        with pytest.raises(ReservationConflict):
            command.write_block(t, 3, bytes(512))


# -- settings ----------------------------------------------------------------------------------
@pytest.mark.parametrize("params,words", [
    ({}, "neither"),
    ({"scsi_device": "/dev/sdb", "dmmp_device": "/dev/mapper/a"}, "both"),
    ({"scsi_device": "/dev/mapper/mpatha"}, "dmmp_device"),
    ({"dmmp_device": "/dev/sdb"}, "scsi_device"),
    ({"dmmp_device": "sdb"}, "not a device"),
    ({"dmmp_device": "/dev/mapper/a /dev/mapper/a"}, "twice"),
    ({"dmmp_device": "/dev/mapper/a", "reservation_type": "WE"}, "WE-RO"),
    ({"dmmp_device": "/dev/mapper/a", "reservation_type": "9"}, "unknown reservation type"),
    ({"dmmp_device": "/dev/mapper/a", "os_termination": "halt"}, "reboot, poweroff"),
    ({"dmmp_device": "/dev/mapper/a", "reservation_key": "0"}, "not allowed"),
    ({"dmmp_device": "/dev/mapper/a", "command_timeout": "0"}, "1 to 300"),
])
def test_bad_parameters_say_what_to_fix(params, words):
    with pytest.raises(ConfigError, match=words):
        parse_settings(params, {}, node="node1")


def test_defaults_follow_the_fence_agents_derivation():
    s = parse_settings({"dmmp_device": "/dev/mapper/mpatha"},
                       {"OCF_RESOURCE_INSTANCE": "shared-disk:0"}, node="node1")
    assert s.key == K1 and s.initiator == default_initiator("node1")
    assert s.rtype.short == "WE-RO" and s.os_action is OsAction.REBOOT
    assert s.alias == "shared-disk" and s.dry_run_file is None
    assert s.command_timeout == 5
    s = parse_settings({"scsi_device": "/dev/sdb", "reservation_key": "0x1234"}, {},
                       node="node1")
    assert s.key == 0x1234


def test_a_disk_that_refuses_reservation_reads_is_a_failure_not_running(tmp_path, captured):
    """ILLEGAL REQUEST to READ KEYS on every path: each path ended the command abnormally
    (IOCTL: the device does not do persistent reservations), so every path failed."""
    st = Storage()
    n1, _ = two_nodes(tmp_path, st)
    assert n1.start() == 0
    real = st.lun[1]._pr_in

    def refuse(nexus, cdb):
        from hamon.lib.sim.target import _illegal
        raise _illegal()

    st.lun[1]._pr_in = refuse  # type: ignore[method-assign]
    try:
        a = n1.agent()
        assert monitor(a) == ExitStatus.ERR_GENERIC
        assert a.reason.startswith("every path of") and a.reason.endswith("failed")
        assert ids(captured).count("KAMN725-W") == 2 and "KAMN726-E" in ids(captured)
        assert all(m.fields["code"] == "IOCTL" for m in captured
                   if m.full_id == "KAMN725-W")
    finally:
        st.lun[1]._pr_in = real  # type: ignore[method-assign]


def test_an_unwritable_state_dir_does_not_fail_a_monitor(tmp_path):
    st = Storage()
    n1, _ = two_nodes(tmp_path, st)
    assert n1.start() == 0
    blocker = tmp_path / "file"
    blocker.write_text("")
    a = n1.agent()
    a.state.path = str(blocker / "x.json")   # a directory that cannot exist
    assert monitor(a) == ExitStatus.SUCCESS


def test_preempted_active_node_says_already_reservation_with_the_holder(tmp_path, captured):
    st = Storage()
    n1, n2 = two_nodes(tmp_path, st)
    assert n1.start() == 0 and n2.start() == 0
    captured.clear()
    assert n1.monitor() == ExitStatus.NOT_RUNNING
    (m,) = captured
    assert m.full_id == "KAMN725-W" and m.fields["code"] == "ALREADY-RESERVATION"
    assert (m.fields["host"], m.fields["hostkey"]) == ("node2", f"{K2:x}")  # the holder
    assert f"host address: node2 (0x{K2:x}))" in m.text   # HA Monitor's text, §7.5.12
    captured.clear()
    assert n1.monitor(probe=True) == ExitStatus.NOT_RUNNING and captured == []


def test_a_device_without_persistent_reservations_is_kamn601_ioctl(tmp_path, captured):
    st = Storage()
    n1, _ = two_nodes(tmp_path, st)

    def refuse(nexus, cdb, params):
        from hamon.lib.sim.target import _illegal
        raise _illegal(0x20, 0)

    st.lun[1]._pr_out = refuse  # type: ignore[method-assign]
    a = n1.agent()
    assert start(a) == ExitStatus.ERR_INSTALLED
    assert ids(captured)[:2] == ["KAMN601-W", "KAMN725-W"]
    assert captured[1].fields["code"] == "IOCTL" and "HAMN955-E" in ids(captured)
