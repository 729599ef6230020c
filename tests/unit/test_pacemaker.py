"""What Pacemaker exposes, read the way hamon_disk reads it: termination kind, attributes."""
from __future__ import annotations

import shutil
import time

import pytest

from hamon.lib import cluster
from hamon.lib.pacemaker import attributes, ocf_call
from hamon.lib.pacemaker.attributes import Attributes
from hamon.lib.pacemaker.ocf_call import ExitStatus
from hamon.lib.pacemaker.termination_kind import (
    Peer,
    StopFacts,
    classify,
    decide_termination,
    detect_termination,
)
from hamon.lib.termination import TerminationKind as K

NOW = 1_800_000_000
ENV = {"OCF_RESKEY_CRM_meta_on_node": "node1"}


#: node2 as an online member that can take the service over (the usual two-node case)
PEER_ONLINE = 'in_ccm="true" crmd="online" join="member" expected="member"'


def cib(*, resources: str = "", constraints: str = "", nodes: str = "", status: str = "",
        quorum: str = "1", peer: str = PEER_ONLINE, peer_status: str = "") -> str:
    return f"""<cib have-quorum="{quorum}" epoch="1" num_updates="0" admin_epoch="0">
  <configuration>
    <crm_config/>
    <nodes>
      <node id="1" uname="node1">{nodes}</node>
      <node id="2" uname="node2"/>
    </nodes>
    <resources>{resources or PRIMITIVE}</resources>
    <constraints>{constraints}</constraints>
  </configuration>
  <status>
    <node_state id="1" uname="node1" in_ccm="true" crmd="online" join="member"
                expected="member"><transient_attributes id="1">
      <instance_attributes id="status-1">{status}</instance_attributes>
    </transient_attributes></node_state>
    <node_state id="2" uname="node2" {peer}><transient_attributes id="2">
      <instance_attributes id="status-2">{peer_status}</instance_attributes>
    </transient_attributes></node_state>
  </status>
</cib>"""


PRIMITIVE = '<primitive id="shared-disk" class="ocf" provider="hamon" type="hamon_disk"/>'
GROUP = f"""<group id="service">{PRIMITIVE}
  <primitive id="fs" class="ocf" provider="heartbeat" type="Filesystem"/></group>"""


def meta(name: str, value: str) -> str:
    return (f'<meta_attributes id="m"><nvpair id="m-{name}" name="{name}" '
            f'value="{value}"/></meta_attributes>')


def nv(name: str, value: str) -> str:
    return f'<nvpair id="status-1-{name}" name="{name}" value="{value}"/>'


def kind(xml: str | None, env: dict | None = None, rsc: str = "shared-disk") -> K:
    return classify(xml, resource=rsc, node="node1", env=ENV if env is None else env,
                    now=NOW).kind


def test_run_by_hand_is_a_normal_termination():
    assert kind(cib(), env={}) is K.NORMAL


def test_target_role_stopped_from_env_or_cib_is_normal():
    assert kind(None, env={**ENV, "OCF_RESKEY_CRM_meta_target_role": "Stopped"}) is K.NORMAL
    disabled = PRIMITIVE.replace("/>", f">{meta('target-role', 'Stopped')}</primitive>")
    assert kind(cib(resources=disabled)) is K.NORMAL
    group_disabled = GROUP.replace('<group id="service">',
                                   f'<group id="service">{meta("target-role", "Stopped")}')
    assert kind(cib(resources=group_disabled)) is K.NORMAL


def test_an_unreadable_cib_is_unknown_and_says_why():
    d = classify(None, resource="shared-disk", node="node1", env=ENV, cib_error="timeout")
    assert d.kind is K.UNKNOWN and any("timeout" in s for s in d.signals)


def test_lost_quorum_is_abnormal():
    assert kind(cib(quorum="0")) is K.ABNORMAL


@pytest.mark.parametrize("constraint,want", [
    ('<rsc_location id="cli-ban-shared-disk-on-node1" rsc="shared-disk" role="Started" '
     'node="node1" score="-INFINITY"/>', K.PLANNED),
    ('<rsc_location id="cli-prefer-shared-disk" rsc="shared-disk" role="Started" '
     'node="node2" score="INFINITY"/>', K.PLANNED),
    ('<rsc_location id="cli-prefer-service" rsc="service" role="Started" '
     'node="node2" score="INFINITY"/>', K.PLANNED),           # the group was moved
    ('<rsc_location id="cli-prefer-shared-disk" rsc="shared-disk" role="Started" '
     'node="node1" score="INFINITY"/>', K.UNKNOWN),           # prefers us: not a move away
    ('<rsc_location id="loc-admin" rsc="shared-disk" node="node1" score="-INFINITY"/>',
     K.UNKNOWN),                                              # not pcs resource move/ban
])
def test_move_and_ban_constraints_are_planned(constraint, want):
    assert kind(cib(resources=GROUP, constraints=constraint)) is want


def test_standby_and_shutdown_are_planned():
    standby = ('<instance_attributes id="n1"><nvpair id="n1-standby" name="standby" '
               'value="on"/></instance_attributes>')
    assert kind(cib(nodes=standby)) is K.PLANNED
    assert kind(cib(status=nv("standby", "on"))) is K.PLANNED
    assert kind(cib(status=nv("shutdown", "1800000000"))) is K.PLANNED
    assert kind(cib(status=nv("shutdown", "0"))) is K.UNKNOWN


def test_a_recent_failure_of_the_resource_or_its_group_is_abnormal():
    fresh = nv("fail-count-shared-disk#monitor_30000", "1") + \
        nv("last-failure-shared-disk#monitor_30000", str(NOW - 5))
    assert kind(cib(status=fresh)) is K.ABNORMAL
    sibling = nv("fail-count-fs#monitor_20000", "1") + \
        nv("last-failure-fs#monitor_20000", str(NOW - 5))
    assert kind(cib(resources=GROUP, status=sibling)) is K.ABNORMAL
    d = classify(cib(status=nv("fail-count-shared-disk#monitor_30000", "1")
                     + nv("last-failure-shared-disk#monitor_30000", str(NOW - 3600))),
                 resource="shared-disk", node="node1", env=ENV, now=NOW)
    assert d.kind is K.UNKNOWN and "old failures" in d.reason


def test_precedence_disable_beats_an_old_failure_and_move_beats_standby():
    disabled = PRIMITIVE.replace("/>", f">{meta('target-role', 'Stopped')}</primitive>")
    failure = nv("fail-count-shared-disk", "1") + nv("last-failure-shared-disk", str(NOW))
    assert kind(cib(resources=disabled, status=failure)) is K.NORMAL
    ban = ('<rsc_location id="cli-ban-shared-disk-on-node1" rsc="shared-disk" '
           'node="node1" score="-INFINITY"/>')
    assert kind(cib(constraints=ban, status=failure)) is K.PLANNED


def test_clone_instance_names_are_looked_up_by_resource_id():
    assert ocf_call.resource_id("shared-disk:1") == "shared-disk"
    ban = ('<rsc_location id="cli-ban-shared-disk-on-node1" rsc="shared-disk" '
           'node="node1" score="-INFINITY"/>')
    assert kind(cib(constraints=ban), rsc="shared-disk:0") is K.PLANNED


def test_detect_reads_the_cib_once_with_a_bound():
    calls = []

    def runner(argv, timeout):
        calls.append((argv, timeout))
        return 0, cib(status=nv("standby", "on")), ""

    d = detect_termination("shared-disk", "node1", env=ENV, timeout=2.5, runner=runner)
    assert d.kind is K.PLANNED and calls == [(["cibadmin", "-Q"], 2.5)]

    def hung(argv, timeout):
        return 124, "", "cibadmin did not answer within 2.5 s"

    d = detect_termination("shared-disk", "node1", env=ENV, timeout=2.5, runner=hung)
    assert d.kind is K.UNKNOWN and "2.5 s" in " ".join(d.signals)


@pytest.mark.skipif(shutil.which("cibadmin") is None, reason="pacemaker-cli-utils missing")
def test_detect_with_the_real_cibadmin_on_a_saved_cib(tmp_path, monkeypatch):
    f = tmp_path / "cib.xml"
    f.write_text(cib(constraints='<rsc_location id="cli-prefer-shared-disk" '
                     'rsc="shared-disk" node="node2" score="INFINITY"/>'))
    monkeypatch.setenv("CIB_file", str(f))
    t0 = time.monotonic()
    d = detect_termination("shared-disk", "node1", env=ENV)
    assert d.kind is K.PLANNED, d
    assert time.monotonic() - t0 < cluster.TIMEOUT


def test_the_real_runner_is_bounded_and_never_raises():
    assert cluster.run(["hamon-no-such-tool"], 1)[0] == 127
    rc, _, err = cluster.run(["sleep", "5"], 0.2)
    assert rc == 124 and "0.2 s" in err


# -- attributes, exit codes -------------------------------------------------------------------
def test_path_attribute_names_are_short_unique_and_visible_in_crm_mon():
    names = attributes.path_attribute_names([
        "/dev/mapper/mpatha", "/dev/sdb",
        "iscsi://10.0.0.1:3260/iqn.2026-11.org.example:disk1/1",
        "/dev/mapper/mpatha", "/dev/disk/by-id/wwn-0x6001"])
    assert names == ["hamon-paths-mpatha", "hamon-paths-sdb", "hamon-paths-disk1-1",
                     "hamon-paths-mpatha-2", "hamon-paths-wwn-0x6001"]
    # crm_mon -A hides names starting with #, fail-count, last-failure, shutdown, ...
    assert all(n.startswith("hamon-paths-") for n in names)


def test_attributes_use_attrd_updater_and_swallow_its_absence():
    calls = []

    def runner(argv, timeout):
        calls.append(argv)
        return (127, "", "attrd_updater: not installed")

    a = Attributes(node="node1", runner=runner)
    assert a.set("hamon-paths-mpatha", "1/2") is False
    assert a.delete("hamon-paths-mpatha") is False
    assert calls == [["attrd_updater", "-n", "hamon-paths-mpatha", "-U", "1/2", "-N", "node1"],
                     ["attrd_updater", "-n", "hamon-paths-mpatha", "-D", "-N", "node1"]]
    assert len(a.errors) == 2


def test_exit_codes_and_ocf_versions():
    assert ExitStatus.DEGRADED == 190 and ExitStatus.NOT_RUNNING == 7
    assert not ocf_call.supports_degraded({})
    assert not ocf_call.supports_degraded({"OCF_RA_VERSION_MAJOR": "1",
                                       "OCF_RA_VERSION_MINOR": "0"})
    assert ocf_call.supports_degraded({"OCF_RA_VERSION_MAJOR": "1", "OCF_RA_VERSION_MINOR": "1"})
    assert ocf_call.is_probe("monitor", {"OCF_RESKEY_CRM_meta_interval": "0"})
    assert ocf_call.is_probe("monitor", {})
    assert not ocf_call.is_probe("monitor", {"OCF_RESKEY_CRM_meta_interval": "30000"})
    assert not ocf_call.is_probe("start", {})


# -- the termination kind, cell by cell (issue 12, part 3) -----------------------------------

UP = Peer("node2", online=True)
FACTS = StopFacts(node="node1", peers=(UP,), now=NOW)


def facts(**kw) -> StopFacts:
    return StopFacts(**{**FACTS.__dict__, **kw})


FRESH = (("shared-disk", 1, NOW - 5),)
OLD = (("shared-disk", 1, NOW - 3600),)
BAN = (("cli-ban-shared-disk-on-node1", "node1", "-INFINITY"),)
PREFER = (("cli-prefer-shared-disk", "node2", "INFINITY"),)

CELLS = [
    # (cell, facts, kind) -- every rule of RULES_DOC and the precedence between them
    ("by-hand", facts(by_pacemaker=False), K.NORMAL),
    ("disable-env", facts(env_target_role="Stopped"), K.NORMAL),
    ("disable-cib", facts(target_role=("shared-disk", "Stopped")), K.NORMAL),
    ("disable-group", facts(target_role=("service", "Stopped")), K.NORMAL),
    ("started-role-is-no-signal", facts(target_role=("shared-disk", "Started")), K.UNKNOWN),
    ("disable-beats-failure", facts(target_role=("shared-disk", "Stopped"),
                                    failures=FRESH), K.NORMAL),
    ("cib-unreadable", facts(cib_read=False, cib_error="timeout"), K.UNKNOWN),
    ("disable-env-without-cib", facts(env_target_role="Stopped", cib_read=False),
     K.NORMAL),
    ("quorum-lost", facts(quorum=False), K.ABNORMAL),
    ("ban", facts(cli_constraints=BAN), K.PLANNED),
    ("move", facts(cli_constraints=PREFER), K.PLANNED),
    ("prefer-here-is-no-move",
     facts(cli_constraints=(("cli-prefer-shared-disk", "node1", "INFINITY"),)), K.UNKNOWN),
    ("ban-of-another-node",
     facts(cli_constraints=(("cli-ban-shared-disk-on-node2", "node2", "-INFINITY"),)),
     K.UNKNOWN),
    ("move-beats-failure", facts(cli_constraints=BAN, failures=FRESH), K.PLANNED),
    ("standby-peer-takes-over", facts(standby="permanent", standby_value="on"), K.PLANNED),
    ("standby-transient", facts(standby="transient", standby_value="on"), K.PLANNED),
    ("standby-all", facts(standby="permanent", standby_value="on",
                          peers=(Peer("node2", online=True, standby=True),)), K.NORMAL),
    ("shutdown-peer-takes-over", facts(shutdown="1800000000"), K.PLANNED),
    ("shutdown-zero-is-no-signal", facts(shutdown="0"), K.UNKNOWN),
    ("cluster-stop-all", facts(shutdown="1800000000",
                               peers=(Peer("node2", online=True, shutting_down=True),)),
     K.NORMAL),
    ("last-node-stops", facts(shutdown="1800000000", peers=(Peer("node2"),)), K.NORMAL),
    ("single-node-cluster-stops", facts(shutdown="1800000000", peers=()), K.NORMAL),
    ("shutdown-one-of-three-up", facts(shutdown="1800000000", peers=(
        Peer("node2", online=True, shutting_down=True), Peer("node3", online=True))),
     K.PLANNED),
    ("recent-failure", facts(failures=FRESH), K.ABNORMAL),
    ("old-failure-is-not-counted", facts(failures=OLD), K.UNKNOWN),
    ("peer-unclean", facts(peers=(Peer("node2", unclean=True),)), K.ABNORMAL),
    ("no-signal", facts(), K.UNKNOWN),
]


@pytest.mark.parametrize(("cell", "f", "want"), CELLS, ids=[c[0] for c in CELLS])
def test_termination_kind_cell(cell, f, want):
    d = decide_termination(f)
    assert d.kind is want, (cell, d)
    assert d.reason                                   # always says why
    if want is K.UNKNOWN:
        assert "Pacemaker" in d.reason or "CIB" in d.reason


def test_whole_cluster_stop_from_the_cib_is_normal_and_a_lone_shutdown_is_planned():
    down = nv("shutdown", "1800000000")
    assert kind(cib(status=down, peer_status=nv("shutdown", "1800000001"))) is K.NORMAL
    assert kind(cib(status=down, peer='in_ccm="false" crmd="offline" expected="down"')) \
        is K.NORMAL                                   # the other node stopped first
    assert kind(cib(status=down)) is K.PLANNED        # node2 runs on: the service goes there
    d = classify(cib(status=down), resource="shared-disk", node="node1", env=ENV, now=NOW)
    assert "node2" in d.reason and "peer node2: can take over" in d.signals


def test_an_unclean_peer_from_the_cib_is_abnormal():
    assert kind(cib(peer='in_ccm="false" crmd="offline" expected="member"')) is K.ABNORMAL


def test_all_nodes_in_standby_from_the_cib_is_normal():
    standby = ('<instance_attributes id="n1"><nvpair id="n1-standby" name="standby" '
               'value="on"/></instance_attributes>')
    assert kind(cib(nodes=standby, peer_status=nv("standby", "on"))) is K.NORMAL
