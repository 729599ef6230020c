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
    assert failback.hdlm_path_id("HDLM Offline(C) (PathID 000001)") == "000001"
    assert failback.hdlm_path_id("running") is None
    assert failback.hdlm_path_id(None) is None


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
