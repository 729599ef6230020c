"""What Pacemaker exposes, read the way hamon_disk reads it: termination kind, attributes."""
from __future__ import annotations

import shutil
import time

import pytest

from hamon.lib import pacemaker as pcmk
from hamon.lib.pacemaker import Attributes, ExitStatus, classify, detect_termination
from hamon.lib.termination import TerminationKind as K

NOW = 1_800_000_000
ENV = {"OCF_RESKEY_CRM_meta_on_node": "node1"}


def cib(*, resources: str = "", constraints: str = "", nodes: str = "", status: str = "",
        quorum: str = "1") -> str:
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
    <node_state id="1" uname="node1"><transient_attributes id="1">
      <instance_attributes id="status-1">{status}</instance_attributes>
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
    assert pcmk.resource_id("shared-disk:1") == "shared-disk"
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
    assert time.monotonic() - t0 < pcmk.CLUSTER_TIMEOUT


def test_the_real_runner_is_bounded_and_never_raises():
    assert pcmk.run(["hamon-no-such-tool"], 1)[0] == 127
    rc, _, err = pcmk.run(["sleep", "5"], 0.2)
    assert rc == 124 and "0.2 s" in err


# -- attributes, exit codes -------------------------------------------------------------------
def test_path_attribute_names_are_short_unique_and_visible_in_crm_mon():
    names = pcmk.path_attribute_names([
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
    assert not pcmk.supports_degraded({})
    assert not pcmk.supports_degraded({"OCF_RA_VERSION_MAJOR": "1",
                                       "OCF_RA_VERSION_MINOR": "0"})
    assert pcmk.supports_degraded({"OCF_RA_VERSION_MAJOR": "1", "OCF_RA_VERSION_MINOR": "1"})
    assert pcmk.is_probe("monitor", {"OCF_RESKEY_CRM_meta_interval": "0"})
    assert pcmk.is_probe("monitor", {})
    assert not pcmk.is_probe("monitor", {"OCF_RESKEY_CRM_meta_interval": "30000"})
    assert not pcmk.is_probe("start", {})
