"""Operands into disks: validation with bad inputs, URL grouping by LUN identity."""
import pytest

from hamon.lib.disk import DeviceError, DiskKind, PathState, split_operands
from hamon.lib.multipath import dmmp, hdlm
from hamon.lib.multipath.resolve import Resolver
from hamon.lib.sim import SimLun, SimTransport


@pytest.mark.parametrize("operand,message", [
    ("/dev/does-not-exist", "no such device"),
    ("/dev/null", "not a SCSI device"),
    ("/dev/shm", "not a block device"),
    ("sdb", "not a device path"),
    ("/etc/passwd", "not a device path"),
    ("nbd://host/x", "unknown URL scheme"),
])
def test_bad_operands_name_the_device_and_the_fix(operand, message):
    with pytest.raises(DeviceError) as err:
        Resolver(initiator="iqn.x:n").resolve([operand])
    assert message in str(err.value)
    assert operand.split("://")[0] in str(err.value)


def test_empty_device_list():
    with pytest.raises(DeviceError, match="no device given"):
        Resolver().resolve("")


def test_split_operands():
    assert split_operands(" /dev/sdb,/dev/sdc  iscsi://h/t/1 ,") == [
        "/dev/sdb", "/dev/sdc", "iscsi://h/t/1"]


def _sim_resolver(targets: dict[tuple[str, int], SimLun], dead: set[str] = frozenset()):
    """iscsi:// URLs answered by in-memory LUNs: (portal, iqn, lun) -> SimLun."""
    from hamon.lib.transport.base import PathError
    from hamon.lib.transport.iscsi_url import parse_iscsi_url

    def opener(url: str, initiator: str, timeout: float):
        u = parse_iscsi_url(url)
        if url in dead:
            class Dead(SimTransport):
                def execute(self, *a, **k):
                    raise PathError(url, "connection refused")
            return Dead(path=url)
        lun = targets[(u.target, u.lun)]
        return SimTransport(path=url, lun=lun, initiator=initiator, port=u.port)

    return Resolver(initiator="iqn.2026-11.org.hamon:node1", iscsi_opener=opener)


def test_urls_grouped_by_lun_identity():
    a, b = SimLun("a"), SimLun("b")
    r = _sim_resolver({("iqn.t:1", 1): a, ("iqn.t:1", 2): b})
    disks = r.resolve(["iscsi://127.0.0.1:3260/iqn.t:1/1", "iscsi://127.0.0.2:3261/iqn.t:1/1",
                       "iscsi://127.0.0.1:3260/iqn.t:1/2"])
    assert [(d.kind, d.wwid, len(d.paths)) for d in disks] == [
        (DiskKind.ISCSI, a.wwid, 2), (DiskKind.ISCSI, b.wwid, 1)]
    assert all(p.state is PathState.UP for d in disks for p in d.paths)


def test_unreachable_url_joins_its_target_lun_and_is_reported_failed():
    a = SimLun("a")
    dead = "iscsi://127.0.0.2:3261/iqn.t:1/1"
    r = _sim_resolver({("iqn.t:1", 1): a}, dead={dead})
    (d,) = r.resolve(["iscsi://127.0.0.1:3260/iqn.t:1/1", dead])
    assert [p.state for p in d.paths] == [PathState.UP, PathState.FAILED]
    assert "refused" in d.paths[1].reason


def test_unreachable_url_alone_is_its_own_failed_disk():
    dead = "iscsi://127.0.0.9:3260/iqn.t:9/1"
    (d,) = _sim_resolver({}, dead={dead}).resolve([dead])
    assert d.wwid is None and d.paths[0].state is PathState.FAILED


def test_same_lun_through_two_targets_is_one_disk_same_url_twice_refused():
    a = SimLun("a")
    r = _sim_resolver({("iqn.t:1", 1): a, ("iqn.t:2", 1): a})
    (d,) = r.resolve(["iscsi://127.0.0.1/iqn.t:1/1", "iscsi://127.0.0.1/iqn.t:2/1"])
    assert len(d.paths) == 2 and d.wwid == a.wwid  # as multipathd groups by WWID
    with pytest.raises(DeviceError, match="listed twice"):
        r.resolve(["iscsi://127.0.0.1/iqn.t:1/1", "iscsi://127.0.0.1/iqn.t:1/1"])


def test_dmmp_show_paths_parse():
    text = "sdb active ready\nsdc failed faulty\n"
    assert dmmp.parse_show_paths(text) == {"sdb": ("active", "ready"),
                                           "sdc": ("failed", "faulty")}


HDLM_VIEW = """\
Paths:000002 OnlinePaths:000001
PathStatus   IO-Count     IO-Errors
Reduced      31           2

PathID PathName                  DskName                     iLU  ChaPort Status     Type IO-Count   IO-Errors  DNum HDevName
000000 0000.0000.0000000000000000.0001 HITACHI .OPEN-V          .410012 0A01 1A      Online     Own  20         0          -    sddlmaa
000001 0001.0000.0000000000000000.0001 HITACHI .OPEN-V          .410012 0A01 2A      Offline(E) Own  11         2          -    sddlmaa
KAPL01001-I The HDLM command completed normally. Operation name = view, completion time = 2026/11/25 06:00:00
"""


def test_hdlm_view_path_parse_with_spaces_in_disk_name():
    rows = hdlm.parse_view_path(HDLM_VIEW)
    assert [(r.path_id, r.status, r.hdev, r.online) for r in rows] == [
        ("000000", "Online", "sddlmaa", True), ("000001", "Offline(E)", "sddlmaa", False)]
    assert rows[1].hctl == "1:0:0:1"


def test_hdlm_without_dlnkmgr_says_so(monkeypatch):
    monkeypatch.setattr(hdlm, "dlnkmgr", lambda: None)
    with pytest.raises(DeviceError, match="dlnkmgr is not installed"):
        Resolver().resolve(["/dev/sddlmaa"])


def test_a_failed_path_says_what_the_os_knows_too():
    """Seen in the VM tier: an offline sd path fails to open with ENXIO, which alone does
    not tell the administrator that the device is offline."""
    from hamon.lib.disk import Path
    from hamon.lib.transport.base import PathError

    def gone():
        raise PathError("/dev/sdb", "cannot open: No such device or address (ENXIO)")

    p = Path("/dev/sdb", gone, os_state="offline, dm failed", os_failed=True)
    assert p.check() is PathState.FAILED
    assert p.reason == "cannot open: No such device or address (ENXIO) (OS: offline, dm failed)"
    lun = SimLun()
    ok = Path("/dev/sdc", lambda: SimTransport(path="/dev/sdc", lun=lun, initiator="i", port=1),
              os_state="running, dm failed", os_failed=True)
    assert ok.check() is PathState.UP and ok.reason == "answers, but running, dm failed"


def test_multipathd_is_asked_once_per_resolve_not_per_map(monkeypatch):
    """Seen in the VM tier (bench/fence_vs_fence_scsi): one `multipathd show paths`
    process per map was 60% of a fence action on 32 maps. One per resolve() call; the
    next call asks again (path states change between an agent's actions)."""
    from hamon.lib.multipath import sysfs

    calls = []

    def show():
        calls.append(1)
        return {"sda": ("active", "ready"), "sdb": ("failed", "faulty")}

    def inspect(dev):
        n = dev.rsplit("/", 1)[-1]
        return sysfs.NodeInfo(dev, f"/sys/devices/virtual/block/{n}", n, "block",
                              f"mpath-3600{n}", n, None, False)

    monkeypatch.setattr(dmmp, "multipathd_paths", show)
    monkeypatch.setattr(sysfs, "inspect", inspect)
    monkeypatch.setattr(sysfs, "slaves", lambda info: ["/dev/sda", "/dev/sdb"])
    monkeypatch.setattr(sysfs, "scsi_state", lambda name: "running")
    r = Resolver()
    disks = r.resolve(["/dev/mapper/mpatha", "/dev/mapper/mpathb", "/dev/mapper/mpathc"])
    assert len(calls) == 1 and len(disks) == 3
    assert [p.os_failed for p in disks[0].paths] == [False, True]
    r.resolve(["/dev/mapper/mpatha"])
    assert len(calls) == 2
