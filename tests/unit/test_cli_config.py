"""Configured disks (CIB + disks file) and cluster membership, without a cluster."""
from __future__ import annotations

import pytest

from hamon.lib import cluster, config

CIB = """<cib><configuration><resources>
  <primitive id="shared-disk" class="ocf" provider="hamon" type="hamon_disk">
    <instance_attributes id="shared-disk-ia">
      <nvpair id="a" name="dmmp_device" value="/dev/mapper/mpatha,/dev/mapper/mpathb"/>
      <nvpair id="b" name="os_termination" value="reboot"/>
    </instance_attributes>
  </primitive>
  <group id="g"><primitive id="disk2" class="ocf" provider="hamon" type="hamon_disk">
    <instance_attributes id="i2"><nvpair id="c" name="scsi_device" value="/dev/sdx"/>
    <nvpair id="d" name="iscsi_initiator" value="iqn.2026-11.org.example:n1"/>
    </instance_attributes></primitive></group>
  <primitive id="storage-fence" class="stonith" type="fence_hamon_scsi">
    <instance_attributes id="f"><nvpair id="e" name="devices"
      value="/dev/mapper/mpatha iscsi://127.0.0.1/iqn.2026-11.org.hamon:tgt/1"/>
    </instance_attributes></primitive>
  <primitive id="other" class="ocf" provider="heartbeat" type="Filesystem">
    <instance_attributes id="o"><nvpair id="x" name="device" value="/dev/sdz"/>
    </instance_attributes></primitive>
  <primitive id="empty" class="ocf" provider="hamon" type="hamon_disk"/>
</resources></configuration></cib>"""


def test_parse_cib_finds_hamon_primitives_only():
    got = config.parse_cib(CIB)
    assert [(s.origin, s.operands, s.initiator) for s in got] == [
        ("CIB shared-disk (ocf:hamon:hamon_disk)",
         ("/dev/mapper/mpatha", "/dev/mapper/mpathb"), None),
        ("CIB disk2 (ocf:hamon:hamon_disk)", ("/dev/sdx",), "iqn.2026-11.org.example:n1"),
        ("CIB storage-fence (stonith:fence_hamon_scsi)",
         ("/dev/mapper/mpatha", "iscsi://127.0.0.1/iqn.2026-11.org.hamon:tgt/1"), None)]


def test_parse_cib_bad_xml():
    with pytest.raises(config.ConfigError, match="not readable XML"):
        config.parse_cib("<cib>")


def test_disks_file_format():
    got = config.parse_disks_file(
        "# shared disks\n\n/dev/mapper/mpatha   # the database\n"
        "iscsi://a/iqn.2026-11.x:t/1, iscsi://b/iqn.2026-11.x:t/1 initiator=iqn.2026-11.x:n\n",
        "/etc/hamon/disks")
    assert [(s.origin, s.operands, s.initiator) for s in got] == [
        ("/etc/hamon/disks:3", ("/dev/mapper/mpatha",), None),
        ("/etc/hamon/disks:4", ("iscsi://a/iqn.2026-11.x:t/1", "iscsi://b/iqn.2026-11.x:t/1"),
         "iqn.2026-11.x:n")]


@pytest.mark.parametrize("line,why", [("/dev/sdb key=1", "unknown setting"),
                                      ("initiator=iqn.x", "no device")])
def test_disks_file_errors_name_file_and_line(line, why):
    with pytest.raises(config.ConfigError, match=rf"^f:1: {why}"):
        config.parse_disks_file(line, "f")


def test_configured_disks_union_and_notes(tmp_path, monkeypatch):
    f = tmp_path / "disks"
    f.write_text("/dev/mapper/mpatha\n/dev/sdq\n")
    seen = []

    def runner(argv, timeout):
        seen.append((argv, timeout))
        return 0, CIB, ""

    conf = config.configured_disks(str(f), runner=runner, timeout=3)
    assert seen == [(["cibadmin", "-Q", "-o", "resources"], 3)]
    assert conf.operands() == ["/dev/mapper/mpatha", "/dev/mapper/mpathb", "/dev/sdx",
                               "iscsi://127.0.0.1/iqn.2026-11.org.hamon:tgt/1", "/dev/sdq"]
    # the CIB cannot be read: a note; no file at the default place: a note
    monkeypatch.setenv("HAMON_DISKS_FILE", str(tmp_path / "none"))
    conf = config.configured_disks(runner=lambda a, t: (102, "", "Could not connect\n"))
    assert conf.sources == []
    assert conf.notes == ["CIB not read: Could not connect", f"{tmp_path}/none: none"]
    # a file named explicitly must exist
    with pytest.raises(config.ConfigError, match="no such file"):
        config.configured_disks(str(tmp_path / "none"), cib=False)


def test_run_is_bounded_and_never_raises():
    assert cluster.run(["no-such-tool-hamon"], 1)[0] == 127
    assert cluster.run(["sleep", "5"], 0.2) == (124, "", "sleep did not answer within 0.2 s")
    assert cluster.run(["true"], 5)[0] == 0


def fake(answers):
    def runner(argv, timeout):
        return answers[" ".join(argv)]
    return runner


CRM_MON = """<pacemaker-result api-version="2.25" request="crm_mon -1 --output-as=xml">
  <summary><current_dc present="true" name="node1" with_quorum="true"/></summary>
  <nodes><node name="node1" id="1" online="true" type="member"/>
         <node name="node2" id="2" online="false" type="member"/>
         <node name="remote1" id="remote1" online="true" type="remote"/></nodes>
</pacemaker-result>"""


def test_membership_from_crm_node():
    m = cluster.membership(runner=fake({"crm_node -l": (0, "1 node1 member\n2 node2 lost\n", ""),
                                       "crm_node -q": (0, "1\n", "")}))
    assert m.nodes == {"node1": True, "node2": False} and m.quorate is True
    assert m.online() == {"node1"} and m.source == "crm_node -l"


def test_membership_falls_back_to_crm_mon():
    m = cluster.membership(runner=fake({
        "crm_node -l": (102, "", "error: Could not connect to controller: Connection refused"),
        "crm_mon -1 --output-as=xml": (0, CRM_MON, "")}))
    assert m.nodes == {"node1": True, "node2": False} and m.quorate is True


def test_membership_no_quorum_is_reported():
    m = cluster.membership(runner=fake({"crm_node -l": (0, "1 node1 member\n", ""),
                                       "crm_node -q": (1, "0\n", "")}))
    assert m.quorate is False


def test_membership_unavailable_says_why():
    with pytest.raises(cluster.ClusterUnavailable,
                       match=r"Could not connect to controller.*crm_mon: not installed"):
        cluster.membership(runner=fake({
            "crm_node -l": (102, "", "error: Could not connect to controller\n"),
            "crm_mon -1 --output-as=xml": (127, "", "crm_mon: not installed")}))


CRM_MON_RESOURCES = """<pacemaker-result><resources>
  <group id="g" number_resources="2">
    <resource id="shared-disk" resource_agent="ocf:hamon:hamon_disk" role="Started"
              active="true"><node name="node1" id="1" cached="true"/></resource>
    <resource id="fs" resource_agent="ocf:heartbeat:Filesystem" role="Started"
              active="true"><node name="node1" id="1" cached="true"/></resource>
  </group>
  <resource id="other-disk" resource_agent="ocf:hamon:hamon_disk" role="Stopped"
            active="false"/>
  <resource id="disk3" resource_agent="ocf:hamon:hamon_disk" role="Started"
            active="true"><node name="node2" id="2" cached="true"/></resource>
</resources></pacemaker-result>"""


def test_active_disk_resources():
    run = fake({"crm_mon -1 --output-as=xml": (0, CRM_MON_RESOURCES, "")})
    assert cluster.active_disk_resources("node1", runner=run) == ["shared-disk"]
    assert cluster.active_disk_resources("node2", runner=run) == ["disk3"]
    assert cluster.active_disk_resources("node3", runner=run) == []
    with pytest.raises(cluster.ClusterUnavailable, match="Connection refused"):
        cluster.active_disk_resources("node1", runner=fake({
            "crm_mon -1 --output-as=xml": (102, "", "crm_mon: Connection refused\n")}))


def test_node_keys_name_explicit_keys():
    cib = """<resources><primitive id="f" class="stonith" type="fence_hamon_scsi">
      <instance_attributes id="a"><nvpair id="b" name="devices" value="/dev/sdb"/>
      <nvpair id="c" name="node_keys" value="node1=0x1001, node2=1002,bad=0,worse"/>
      </instance_attributes></primitive>
      <primitive id="o" class="stonith" type="fence_scsi"><instance_attributes id="d">
      <nvpair id="e" name="node_keys" value="node9=0x9"/></instance_attributes></primitive>
    </resources>"""
    assert config.parse_node_keys(cib) == {0x1001: "node1", 0x1002: "node2"}
    assert config.parse_node_keys("<broken") == {}
    assert config.configured_node_keys(runner=lambda a, t: (0, cib, "")) == {
        0x1001: "node1", 0x1002: "node2"}
    assert config.configured_node_keys(runner=lambda a, t: (102, "", "no")) == {}


DEBIAN_COROSYNC_CONF = """totem {
	version: 2
	cluster_name: debian
	interface {
		linknumber: 0
	}
}
nodelist {
	# Change/uncomment/add node sections below
	node {
		# Hostname of the node
		name: node1
		# Cluster membership node identifier
		nodeid: 1
		# Address of first link
		ring0_addr: 127.0.0.1
	}
	node {
		ring0_addr: 10.0.0.2
		nodeid: 2
	}
}
"""


def test_conf_nodes_from_corosync_conf_nodelist():
    """name, else ring0_addr, in the file's order; the totem's interface block is no node."""
    assert cluster.conf_nodes(DEBIAN_COROSYNC_CONF) == ["node1", "10.0.0.2"]
    assert cluster.conf_nodes("totem {\n\tcluster_name: x\n}\n") == []


def test_conf_nodes_without_the_file(tmp_path, monkeypatch):
    monkeypatch.setattr(cluster, "COROSYNC_CONF", str(tmp_path / "absent.conf"))
    assert cluster.conf_nodes() == []
    (tmp_path / "absent.conf").write_text(DEBIAN_COROSYNC_CONF)
    assert cluster.conf_nodes() == ["node1", "10.0.0.2"]


def test_node_names_fall_back_to_corosync_conf_when_pacemaker_cannot_answer(
        tmp_path, monkeypatch):
    """crm_node -l first; where it does not answer in time (a loaded node during a
    takeover), corosync.conf's nodelist: who is configured is the question."""
    conf = tmp_path / "corosync.conf"
    monkeypatch.setattr(cluster, "COROSYNC_CONF", str(conf))
    answers = lambda argv, t: (0, "1 node1 member\n2 node2 lost\n", "")  # noqa: E731
    silent = lambda argv, t: (124, "", "crm_node did not answer within 5 s")  # noqa: E731
    assert cluster.node_names(runner=answers) == ["node1", "node2"]
    assert cluster.node_names(runner=silent) == []  # no file: nothing says
    conf.write_text(DEBIAN_COROSYNC_CONF)
    assert cluster.node_names(runner=silent) == ["node1", "10.0.0.2"]
    assert cluster.node_names(runner=answers) == ["node1", "node2"]  # Pacemaker first
