"""The seed's decision table for every combination, the OS termination observed, not run."""
import itertools

import pytest

from hamon.lib import termination
from hamon.lib.disk import Disk, DiskKind, Path, PathState
from hamon.lib.journal import Journal
from hamon.lib.termination import (
    OsAction,
    OsTerminator,
    Phase,
    TerminationKind,
    Verdict,
    act,
    decide,
    failures_of,
)


def disk(n_paths: int, n_failed: int, kind=DiskKind.DMMP, name="/dev/mapper/mpatha"):
    paths = []
    for i in range(n_paths):
        p = Path(f"/dev/sd{chr(ord('b') + i)}", lambda: None)
        p.mark(PathState.FAILED if i < n_failed else PathState.UP,
               "SG_IO: DID_NO_CONNECT" if i < n_failed else "")
        paths.append(p)
    return Disk(name if n_paths > 1 else "/dev/sdb", kind if n_paths > 1 else DiskKind.SCSI,
                paths)




CASES = [(1, 0), (1, 1), (2, 0), (2, 1), (2, 2), (4, 3), (4, 4)]
EXPECTED = {
    # phase: (verdict when some failed, verdict when all failed)
    Phase.TERMINATING: (Verdict.CONTINUE, Verdict.TERMINATE_OS),
    Phase.SWITCHOVER: (Verdict.DEGRADED, Verdict.FAIL),
    Phase.STANDBY: (Verdict.CONTINUE, Verdict.CONTINUE),
    Phase.RUNNING: (Verdict.DEGRADED, Verdict.FAIL),
}


@pytest.mark.parametrize("phase,case,kind", list(itertools.product(
    Phase, CASES, TerminationKind)))
def test_decision_table(tmp_path, captured, phase, case, kind):
    n_paths, n_failed = case
    d = disk(n_paths, n_failed)
    decision = decide(phase, failures_of([d]))
    some, every = EXPECTED[phase]
    if n_failed == 0:
        want = Verdict.CONTINUE
    elif n_failed == n_paths:
        want = every
    else:
        want = some
    assert decision.verdict is want

    term = OsTerminator(OsAction.REBOOT, dry_run_file=str(tmp_path / "dry"))
    journal = Journal(str(tmp_path / "journal"))
    requested = act(decision, alias="svc", host="node1", journal=journal, terminator=term,
                    termination_kind=kind)
    ids = [m.full_id for m in captured]
    assert ids.count("KAMN725-W") == n_failed
    assert ("KAMN726-E" in ids) is (n_failed == n_paths and n_failed > 0)
    terminated = want is Verdict.TERMINATE_OS
    assert requested is terminated
    assert bool(term.requested) is terminated
    assert (tmp_path / "dry").exists() is terminated
    assert ("HAMN954-E" in ids) is terminated
    if n_failed:
        (entry,) = journal.entries("failure")
        assert entry["termination"] == str(kind) and entry["phase"] == str(phase)
        assert entry["disks"][0]["all_failed"] is (n_failed == n_paths)
        assert len(entry["disks"][0]["failed"]) == n_failed
    else:
        assert journal.entries() == []


def test_messages_name_devices_as_ha_monitor_does(captured):
    d = disk(2, 1)
    act(decide(Phase.TERMINATING, failures_of([d])), alias="svc", host="node1",
        journal=None, terminator=None)
    (m,) = captured
    assert m.full_id == "KAMN725-W"
    assert m.fields["device"] == "mpatha(/dev/sdb)"
    assert m.fields["code"] == "IO-ERR" and m.fields["alias"] == "svc"
    assert m.text.startswith("Execution of the SCSI command on the device mpatha(/dev/sdb) "
                             "ended abnormally. (details code: IO-ERR, server: svc, ")


def test_os_action_none_does_not_terminate_and_says_so(tmp_path):
    term = OsTerminator(OsAction.NONE)
    d = disk(1, 1)
    assert act(decide(Phase.TERMINATING, failures_of([d])), alias="svc", host="n",
               journal=None, terminator=term) is False
    assert term.requested == []


def test_several_disks_one_all_failed_terminates(tmp_path):
    a, b = disk(2, 1), disk(2, 2, name="/dev/mapper/mpathb")
    decision = decide(Phase.TERMINATING, failures_of([a, b]))
    assert decision.verdict is Verdict.TERMINATE_OS
    assert [f.disk for f in decision.all_failed_disks] == ["/dev/mapper/mpathb"]


def test_terminator_dry_run_writes_durably(tmp_path):
    f = tmp_path / "dry"
    t = OsTerminator(OsAction.POWEROFF, dry_run_file=str(f))
    assert t.terminate("why")
    assert f.read_text() == "poweroff why\n"


def test_the_last_word_before_a_reset_goes_to_the_kernel_log(tmp_path, monkeypatch):
    """What reaches the serial console / pstore when syslog has no time to write: one
    line at KERN_CRIT, on one line whatever the reason holds; never an exception."""
    kmsg = tmp_path / "kmsg"
    monkeypatch.setattr(termination, "KMSG", str(kmsg))
    termination._to_kernel_log("hamon: terminating the OS (reboot): all paths\nfailed")
    assert kmsg.read_text() == "<2>hamon: terminating the OS (reboot): all paths failed\n"
    monkeypatch.setattr(termination, "KMSG", str(tmp_path / "no" / "such"))
    termination._to_kernel_log("ignored")  # best effort: no kernel log, no error


def writes_seen(monkeypatch) -> list[tuple[str, str]]:
    """termination's open() replaced: every file it writes is (path, text) in the list
    returned, once closed; nothing reaches /dev/kmsg or /proc/sysrq-trigger."""
    import io

    written: list[tuple[str, str]] = []

    class Sink(io.StringIO):
        def __init__(self, path):
            super().__init__()
            self.path = path

        def close(self):
            written.append((self.path, self.getvalue()))
            super().close()

    monkeypatch.setattr(termination, "open", lambda path, mode="r": Sink(path),
                        raising=False)
    return written


def test_real_termination_logs_to_the_kernel_first_then_sysrq(monkeypatch):
    """Without dry run: one line to /dev/kmsg (serial console, pstore: what an admin
    reads after the reset), then the SysRq key; observed through a fake open()."""
    written = writes_seen(monkeypatch)
    assert OsTerminator(OsAction.POWEROFF).terminate("all paths failed: /dev/sdb\nx")
    assert written == [("/dev/kmsg", "<2>hamon: terminating the OS (poweroff): all paths "
                                     "failed: /dev/sdb x\n"),
                       ("/proc/sysrq-trigger", "o")]


def test_the_messages_that_decided_a_termination_reach_the_kernel_log_first(monkeypatch):
    """KAMN725-W per failed path and KAMN726-E go to /dev/kmsg before the reason and the
    SysRq key: syslog and stderr may die with the OS (a stop that terminates it never
    returns, so pacemaker-execd never copies its stderr; VM cluster, 2026-12-02)."""
    written = writes_seen(monkeypatch)
    d = disk(2, 2)
    assert act(decide(Phase.TERMINATING, failures_of([d])), alias="svc", host="node1",
               journal=None, terminator=OsTerminator(OsAction.REBOOT))
    kmsg = [text for path, text in written if path == "/dev/kmsg"]
    assert [t.split()[1] for t in kmsg] == ["KAMN725-W", "KAMN725-W", "KAMN726-E",
                                            "terminating"]
    assert all(t.startswith("<2>hamon: ") and t.endswith("\n") for t in kmsg)
    assert "mpatha(/dev/sdb)" in kmsg[0] and "mpatha(/dev/sdc)" in kmsg[1]
    assert "/dev/mapper/mpatha" in kmsg[2]
    assert written[-1] == ("/proc/sysrq-trigger", "b")


def test_a_dry_run_writes_nothing_to_the_kernel_log(monkeypatch, tmp_path):
    opened: list[str] = []
    real_open = open

    def spy(path, mode="r"):
        opened.append(path)
        return real_open(path, mode)

    monkeypatch.setattr(termination, "open", spy, raising=False)
    assert act(decide(Phase.TERMINATING, failures_of([disk(2, 2)])), alias="svc",
               host="node1", journal=None,
               terminator=OsTerminator(OsAction.REBOOT, dry_run_file=str(tmp_path / "dry")))
    assert opened == [str(tmp_path / "dry")]


def test_kernel_log_unwritable_does_not_stop_the_termination(monkeypatch):
    keys = []

    def fake_open(path, mode="r"):
        if path == "/dev/kmsg":
            raise PermissionError(path)
        import io

        class Key(io.StringIO):
            def close(self):
                keys.append(self.getvalue())
                super().close()
        return Key()

    monkeypatch.setattr(termination, "open", fake_open, raising=False)
    assert OsTerminator(OsAction.CRASH).terminate("x")
    assert keys == ["c"]


def _no_sysrq(monkeypatch):
    def fake_open(path, mode="r"):
        if path == "/proc/sysrq-trigger":
            raise PermissionError(13, "Permission denied")
        raise FileNotFoundError(path)
    monkeypatch.setattr(termination, "open", fake_open, raising=False)


def test_sysrq_refused_the_fallback_command_terminates(monkeypatch):
    _no_sysrq(monkeypatch)
    ran = []
    monkeypatch.setattr(termination.cluster, "run",
                        lambda argv, timeout: ran.append(argv) or (0, "", ""))
    t = OsTerminator(OsAction.REBOOT)
    assert t.terminate("x") and ran == [["reboot", "-f"]] and t.failure == ""


def test_neither_sysrq_nor_the_fallback_is_no_claim_of_termination(monkeypatch):
    """reboot -f missing or hung: terminate() says False (the stop then fails and
    Pacemaker fences the node) and never raises out of the stop."""
    _no_sysrq(monkeypatch)
    t = OsTerminator(OsAction.REBOOT)
    monkeypatch.setattr(termination.cluster, "run",
                        lambda argv, timeout: (124, "", "reboot did not answer within 30 s"))
    assert t.terminate("x") is False
    assert "Permission denied" in t.failure and "did not answer" in t.failure
    t = OsTerminator(OsAction.CRASH)  # no fallback command for a crash dump
    assert t.terminate("x") is False and "sysrq-trigger" in t.failure
