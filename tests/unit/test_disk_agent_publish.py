"""hamon_disk writes a node attribute only when its value changed, and every value on
the first monitor after a start (issue 14, item 4): attrd_updater calls counted."""
from __future__ import annotations

from hamon.lib.pacemaker.ocf_call import ExitStatus
from tests.unit.test_disk_agent import Storage, two_nodes


def updates(n) -> list[str]:  # type: ignore[no-untyped-def]
    return [c[c.index("-n") + 1] for c in n.attrs.calls if "-U" in c]


def test_monitor_writes_only_changed_values(tmp_path):
    st = Storage(luns=3)
    n1, _ = two_nodes(tmp_path, st)
    assert n1.start() == ExitStatus.SUCCESS
    assert len(updates(n1)) == 3                      # start: every value
    n1.attrs.calls.clear()
    assert n1.monitor() == ExitStatus.SUCCESS
    assert len(updates(n1)) == 3                      # first monitor after start: every value
    n1.attrs.calls.clear()
    for _ in range(3):
        assert n1.monitor() == ExitStatus.SUCCESS
    assert updates(n1) == []                          # unchanged: no process at all
    st.fail(2, lun=2)
    assert n1.monitor() == ExitStatus.SUCCESS
    assert updates(n1) == ["hamon-paths-sim-2"]       # only the value that changed
    assert n1.attrs.values["hamon-paths-sim-2"] == "1/2"
    n1.attrs.calls.clear()
    st.restore(2)
    assert n1.monitor() == ExitStatus.SUCCESS
    assert updates(n1) == ["hamon-paths-sim-2"]
    assert n1.attrs.values == {f"hamon-paths-sim-{i}": "2/2" for i in (1, 2, 3)}


def test_a_failed_write_is_tried_again_and_a_restart_writes_everything(tmp_path, monkeypatch):
    st = Storage(luns=2)
    n1, _ = two_nodes(tmp_path, st)
    assert n1.start() == ExitStatus.SUCCESS
    real = n1.attrs.__class__.__call__
    failing = {"hamon-paths-sim-1"}

    def flaky(self, argv, timeout):  # type: ignore[no-untyped-def]
        if argv[argv.index("-n") + 1] in failing and "-U" in argv:
            self.calls.append(argv)
            return 1, "", "attrd is not running"
        return real(self, argv, timeout)

    monkeypatch.setattr(type(n1.attrs), "__call__", flaky)
    n1.attrs.calls.clear()
    assert n1.monitor() == ExitStatus.SUCCESS
    assert sorted(updates(n1)) == ["hamon-paths-sim-1", "hamon-paths-sim-2"]
    n1.attrs.calls.clear()
    failing.clear()
    assert n1.monitor() == ExitStatus.SUCCESS
    assert updates(n1) == ["hamon-paths-sim-1"]       # the failed one again, only it
    monkeypatch.undo()
    assert n1.stop() == ExitStatus.SUCCESS
    assert n1.attrs.values == {}
    n1.attrs.calls.clear()
    assert n1.start() == ExitStatus.SUCCESS
    assert len(updates(n1)) == 2
