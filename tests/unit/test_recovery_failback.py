"""Failback commands (step 3): which path, which command, run bounded and reported."""
from __future__ import annotations

import subprocess

from hamon.lib import failback
from hamon.lib.recovery.observed import PathNow


def cp(rc: int, out: str = "", err: str = "") -> subprocess.CompletedProcess[str]:
    return subprocess.CompletedProcess([], rc, out, err)


def test_commands_are_the_vendors_own():
    assert failback.dmmp_reinstate("/dev/sdc") == ("multipathd", "reinstate", "path", "sdc")
    assert failback.hdlm_online("000001") == ("dlnkmgr", "online", "-pathid", "000001", "-s")


def test_assess_offers_only_recovered_paths():
    paths = [PathNow("/dev/sdb", "up", os_state="dm active"),
             PathNow("/dev/sdc", "up", os_state="dm failed", os_failed=True),
             PathNow("/dev/sdd", "failed", "refused", "dm failed", True),
             PathNow("/dev/sde", "failed", "refused", "dm active")]
    a = failback.assess("/dev/mapper/mpatha", "dmmp", paths)
    assert [c.shell for c in a.commands] == ["multipathd reinstate path sdc"]
    assert a.not_yet == ("/dev/sdd", "/dev/sde")
    assert a.active == ("/dev/sdb",)
    assert a.commands[0].as_dict()["disk"] == "/dev/mapper/mpatha"


def test_assess_unknown_software_builds_no_command():
    a = failback.assess("d", "iscsi", [PathNow("u", "up", os_failed=True)])
    assert a.commands == () and "no multipath software" in a.unknown[0]


def test_run_reports_each_result_and_goes_on_after_a_failure():
    calls = []
    answers = iter([cp(0, "ok\n"), cp(0, "fail\n"), cp(1, "", "timeout"),
                    subprocess.TimeoutExpired("x", 30), FileNotFoundError(2, "No such file")])

    def executor(argv, **kw):
        calls.append((argv, kw["timeout"]))
        a = next(answers)
        if isinstance(a, Exception):
            raise a
        return a

    cmds = [failback.Command("d", f"/dev/sd{c}", failback.dmmp_reinstate(f"sd{c}"), "")
            for c in "bcdef"]
    rs = failback.run(cmds, timeout=7, executor=executor)
    assert [r.ok for r in rs] == [True, False, False, False, False]
    assert rs[1].output == "fail"          # multipathd's "fail" with exit 0 is a failure
    assert rs[2].exit_code == 1 and rs[2].output == "timeout"
    assert rs[3].exit_code is None and "no answer within 7 s" in rs[3].output
    assert "No such file" in rs[4].output
    assert all(t == 7 for _, t in calls) and len(calls) == 5
    assert rs[0].as_dict()["command"] == "multipathd reinstate path sdb"


def test_hdlm_command_uses_the_path_id_carried_as_data():
    """The PathID travels as a field, never read back out of the text shown to people."""
    paths = [PathNow("/dev/sdb", "up", "", "HDLM Online (PathID 000000)", False, "000000"),
             PathNow("/dev/sdc", "up", "", "HDLM Offline(E) (PathID 000007)", True, "000001")]
    a = failback.assess("/dev/sddlmaa", "hdlm", paths, dlnkmgr="/opt/x/dlnkmgr")
    assert [c.argv for c in a.commands] == [("/opt/x/dlnkmgr", "online", "-pathid", "000001",
                                            "-s")]
    assert a.commands[0].path == "/dev/sdc" and a.active == ("/dev/sdb",)
    # a PathID in the state text alone is not data: no command, the way to find it said
    text_only = [PathNow("/dev/sdc", "up", "", "HDLM Offline(E) (PathID 000001)", True)]
    b = failback.assess("/dev/sddlmaa", "hdlm", text_only)
    assert b.commands == () and "dlnkmgr view -path" in b.unknown[0]


def test_hdlm_discovery_puts_each_path_id_on_its_path(monkeypatch):
    from hamon.lib.disk import Path
    from hamon.lib.multipath import hdlm
    from hamon.lib.recovery.observed import disk_now
    from tests.unit.test_disk_resolve import HDLM_VIEW

    monkeypatch.setattr(hdlm, "dlnkmgr", lambda: "/opt/x/dlnkmgr")
    monkeypatch.setattr(hdlm.subprocess, "run", lambda argv, **kw: cp(0, HDLM_VIEW))
    monkeypatch.setattr(hdlm.sysfs, "block_for_hctl",
                        lambda hctl: {"0:0:0:1": "/dev/sdb", "1:0:0:1": "/dev/sdc"}[hctl])

    class Opener:
        def open_sgio(self, dev):
            raise AssertionError("no path is opened to discover the paths")

    disk = hdlm.resolve("/dev/sddlmaa", Opener())  # type: ignore[arg-type]
    assert [(p.name, p.path_id, p.os_failed) for p in disk.paths] == [
        ("/dev/sdb", "000000", False), ("/dev/sdc", "000001", True)]
    assert isinstance(disk.paths[0], Path)
    now = disk_now(disk)                              # what hamon recover works from
    assert [p.path_id for p in now.paths] == ["000000", "000001"]
