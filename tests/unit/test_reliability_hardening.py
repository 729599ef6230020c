"""Hardening (issue 11, item 6), one test per point: the fence state file, timeouts, the
suggested commands of ``hamon recover``, forged KAMN lines, bounded reads, ``reservation
cancel`` with live nodes, and ``hamon ... | head``.

(The journal's O_NOFOLLOW and non-blocking open are in test_reliability_journal.py; every
bad value, as the processes meet it, in test_reliability_inputs.py.)
"""
from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from hamon import cli
from hamon.agents.disk.settings import ConfigError, parse_settings
from hamon.agents.fence import check as fence_check
from hamon.agents.fence import state as fence_state
from hamon.agents.fence.errors import ConfigError as FenceConfigError
from hamon.agents.fence.settings import Settings, settings_from
from hamon.lib import cluster, defaults, messages
from hamon.lib import reservation as rsv
from hamon.lib.identity import check_iscsi_name
from tests.unit import test_cli as tc
from tests.unit.test_cli import K1, failure_entry, hold, journal, run, state

san = tc.san          # the in-memory SAN behind hamon's resolver (a fixture)
emitted = tc.emitted  # every KAMN message (a fixture)

REPO = Path(__file__).resolve().parents[2]


# -- the fence state file -----------------------------------------------------------------
def _write(tmp_path: Path, monkeypatch, path: Path) -> None:
    monkeypatch.setenv(defaults.FENCE_STATE.name, str(path))
    s = Settings(devices=["iscsi://127.0.0.1/iqn.2026-11.org.hamon:t/1"], local_node="node1")
    fence_state.write_state(s, s.node("node1"))


def test_state_directory_is_0755_whatever_the_umask(tmp_path, monkeypatch):
    old = os.umask(0o077)
    try:
        _write(tmp_path, monkeypatch, tmp_path / "run" / "hamon" / "state")
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "run" / "hamon").stat().st_mode) == 0o755
    assert stat.S_IMODE((tmp_path / "run" / "hamon" / "state").stat().st_mode) == 0o644
    assert json.loads((tmp_path / "run" / "hamon" / "state").read_text())["node"] == "node1"


def test_state_file_never_writes_through_a_symlink(tmp_path, monkeypatch):
    victim = tmp_path / "victim"
    victim.write_text("precious\n")
    d = tmp_path / "state"
    d.mkdir()
    (d / "fence.state").symlink_to(victim)          # at the final name
    (d / "fence.state.tmp").symlink_to(victim)      # at the old fixed temporary name
    _write(tmp_path, monkeypatch, d / "fence.state")
    assert victim.read_text() == "precious\n"
    assert not (d / "fence.state").is_symlink()
    assert json.loads((d / "fence.state").read_text())["node"] == "node1"
    assert sorted(p.name for p in d.iterdir()) == ["fence.state", "fence.state.tmp"]


def test_state_directory_that_is_a_symlink_is_refused(tmp_path, monkeypatch, caplog):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (tmp_path / "link").symlink_to(elsewhere)
    _write(tmp_path, monkeypatch, tmp_path / "link" / "state")
    assert list(elsewhere.iterdir()) == []
    assert "symbolic link" in caplog.text


def test_watchdog_check_reads_the_state_bounded_and_not_through_a_symlink(tmp_path):
    real = tmp_path / "real"
    real.write_text(json.dumps({"devices": ["/dev/sdzz"], "key": "0x1",
                                "initiator": "iqn.2026-11.org.hamon:n1"}))
    link = tmp_path / "link"
    link.symlink_to(real)
    with pytest.raises(OSError):
        fence_state.read_text(str(link))
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    with pytest.raises(ValueError, match="not a regular file"):
        fence_state.read_text(str(fifo))  # and it did not block
    for bad in ("nan", "inf", 1e300, 0, -1):
        real.write_text(json.dumps({"devices": [], "key": "0x1", "scsi_timeout": bad,
                                    "initiator": "iqn.2026-11.org.hamon:n1"}))
        # an unusable bound is an unreadable state: no verdict (0), never a transport
        assert fence_check.check(str(real), resolver_factory=_no_transport) == 0


def _no_transport(*_a, **_k):
    raise AssertionError("the check reached a transport with a bad timeout")


# -- timeouts ------------------------------------------------------------------------------
@pytest.mark.parametrize("value", ["0", "-1", "nan", "inf", "1e300", "0.5", "301"])
def test_command_timeout_is_really_1_to_300(value):
    with pytest.raises(ConfigError, match="1 to 300"):
        parse_settings({"dmmp_device": "/dev/mapper/a", "command_timeout": value}, {},
                       node="node1")


@pytest.mark.parametrize("value", ["1", "5", "300", "2.5"])
def test_command_timeout_in_range_is_taken(value):
    s = parse_settings({"dmmp_device": "/dev/mapper/a", "command_timeout": value}, {},
                       node="node1")
    assert s.command_timeout == float(value)


@pytest.mark.parametrize("value", ["0", "-1", "nan", "inf", "1e300", "301"])
def test_scsi_timeout_is_1_to_300_before_any_transport(value):
    with pytest.raises(FenceConfigError, match="1 to 300"):
        settings_from({"--devices": "iscsi://h/iqn.2026-11.org.x:t/1",
                       "--scsi-timeout": value, "--local-node": "node1"})


# -- forged messages -----------------------------------------------------------------------
def test_a_newline_in_any_field_cannot_start_a_kamn_line():
    forged = "svc\nKAMN954-E The OS will be terminated to protect the shared disk."
    m = messages.format_message("KAMN725", device="/dev/sdb\r\x1b[2K", code="IO-ERR",
                                alias=forged, host="node1\u2028KAMN727-I")
    text = str(m)
    assert "\n" not in text and "\r" not in text and "\x1b" not in text
    assert "\u2028" not in text
    assert text.count("KAMN") == 3 and text.startswith("KAMN725-W ")
    assert "svc\\x0aKAMN954-E" in text and "\\u2028" in text


def test_an_alias_with_control_characters_is_refused_by_the_agent():
    with pytest.raises(ConfigError, match="control characters"):
        parse_settings({"dmmp_device": "/dev/mapper/a", "alias": "a\nKAMN954-E x"}, {},
                       node="node1")


def test_iscsi_names_per_rfc3720():
    for good in ("iqn.2026-11.org.hamon:node1", "IQN.2026-11.ORG.HAMON:NODE1",
                 "eui.02004567A425678D", "naa.52004567BA64678D"):
        assert check_iscsi_name(good) == good
    for bad in ("iqn.2026-11.org.hamon:a b", "iqn.2026-11", "iqn.26-11.org.x",
                "eui.02004567A425678", "naa.123", "iscsi.x", "iqn.2026-11.org.x:\t"):
        with pytest.raises(ValueError):
            check_iscsi_name(bad)


# -- hamon recover: suggested commands are quoted -------------------------------------------
def test_recover_quotes_device_names_in_suggested_commands(san, tmp_path, capsys):
    evil = "/dev/mapper/a b;touch /tmp/pwned"
    journal(tmp_path).append("failure", **failure_entry(evil, "dmmp", "normal",
                                                        paths=("/dev/sdb",)))
    rc, out, _ = run(capsys, "recover")
    assert rc == 0
    lines = [ln.strip() for ln in out.splitlines() if "hamon reservation cancel" in ln]
    assert lines == ["run: hamon reservation cancel '/dev/mapper/a b;touch /tmp/pwned'"]


# -- reservation cancel with live nodes ------------------------------------------------------
def test_cancel_never_names_this_node_as_a_live_node_whose_key_was_cleared(
        san, tmp_path, capsys, emitted, monkeypatch):
    tc.cluster_says(monkeypatch, "node1,node2")
    hold(san, "node2")
    assert rsv.register(san.node("node1"), K1).ok
    rc, out, _ = run(capsys, "reservation", "cancel", san.urls(1), "--force")
    assert rc == 0
    assert "live node node2 was cleared too" in out
    assert "live node node1" not in out             # node1's registration was restored
    assert K1 in state(san)[1]
    (e,) = journal(tmp_path).entries("cancel")
    assert e["forced"] is True
    assert e["overrides"] == ["--force"]
    (m,) = [m for m in emitted if m.id == "HAMN953"]
    assert m.fields["by"] == "node1 (--force)"


def test_cancel_with_the_cluster_membership_is_not_forced(san, tmp_path, capsys,
                                                         monkeypatch):
    hold(san, "node2")
    monkeypatch.setattr(cluster, "membership", lambda timeout=0, runner=None:
                        cluster.Membership({"node1": True, "node2": False}, True, "crm_node"))
    rc, _, err = run(capsys, "reservation", "cancel", san.urls(1))
    assert rc == 0, err
    (e,) = journal(tmp_path).entries("cancel")
    assert e["forced"] is False and e["overrides"] == []


# -- | head --------------------------------------------------------------------------------
def test_a_closed_stdout_ends_quietly_with_141():
    env = {**os.environ, "PYTHONPATH": str(REPO), "HAMON_NODE": "node1"}
    p = subprocess.Popen([sys.executable, "-m", "hamon", "key", "node1"], env=env,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    p.stdout.close()  # the reader is gone before hamon writes (as `| head -0`)
    _, err = p.communicate(timeout=60)
    assert p.returncode == cli.EXIT_BROKEN_PIPE == 141
    assert err == b"", err.decode()


def test_head_after_the_first_line_is_quiet_in_a_shell():
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    p = subprocess.run(["bash", "-c", "set -o pipefail; "
                        f"{sys.executable} -m hamon --help | head -1; echo \"rc=$?\""],
                       env=env, capture_output=True, text=True, timeout=60)
    assert p.stderr == "", p.stderr
    assert p.stdout.splitlines()[0].startswith("usage: hamon")
