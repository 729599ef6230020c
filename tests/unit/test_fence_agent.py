"""fence_hamon_scsi as Pacemaker and administrators see it: options, stdin, exit codes.

Two ways in: the agent's run() in this process with the in-memory target behind it
(the whole fencing.py flow, fast and observable), and the real agent script as a
subprocess for everything that needs no storage (metadata, help, every error path, the
time bounds against a target that never answers).
"""
from __future__ import annotations

import io
import json
import logging
import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from hamon.agents.fence import actions
from hamon.agents.fence import agent as fence_agent
from hamon.agents.fence.fencer import Fencer
from hamon.lib import defaults
from hamon.lib import keys as keymod
from hamon.lib.scsi.pr import ReservationType as RT
from tests.unit.test_fence_core import N1, N2, SimArray, unfence

REPO = Path(__file__).resolve().parents[2]
AGENT = REPO / "agents" / "fence_hamon_scsi"
PYTHON = "/usr/bin/python3"


# --------------------------------------------------------------------- in-process
class Run:
    """agent.run() with argv or stdin; returns (exit code, stdout, stderr)."""

    def __init__(self, monkeypatch, capsys, arr: SimArray) -> None:
        self.mp, self.capsys, self.arr = monkeypatch, capsys, arr
        self.devices = ",".join(arr.urls())

    def __call__(self, *argv: str, stdin: str | None = None) -> tuple[int, str, str]:
        self.mp.setattr(sys, "argv", ["fence_hamon_scsi", *argv])
        if stdin is not None:
            self.mp.setattr(sys, "argv", ["fence_hamon_scsi"])
            self.mp.setattr(sys, "stdin", io.StringIO(stdin))
        root = logging.getLogger()
        handlers, level = root.handlers[:], root.level
        try:
            rc = fence_agent.run()
        except SystemExit as e:
            rc = e.code if isinstance(e.code, int) else 1
        finally:
            root.handlers[:] = handlers
            root.setLevel(level)
        out, err = self.capsys.readouterr()
        return rc, out, err

    def cli(self, action: str, *extra: str, node: str | None = None,
            local: str = "node1") -> tuple[int, str, str]:
        args = ["-o", action, "-d", self.devices, "--local-node", local, *extra]
        if node:
            args += ["-n", node]
        return self(*args)


@pytest.fixture
def arr() -> SimArray:
    return SimArray(n=3, profile="tgt")


@pytest.fixture
def run(monkeypatch, capsys, arr, tmp_path) -> Run:
    monkeypatch.setattr(actions, "resolver", arr.factory)  # the in-memory target
    monkeypatch.setenv(defaults.FENCE_STATE.name, str(tmp_path / "state.json"))
    monkeypatch.delenv("PCMK_service", raising=False)
    return Run(monkeypatch, capsys, arr)


def error_lines(err: str) -> list[str]:
    return [line for line in err.splitlines() if line.strip()]


def test_on_registers_and_records_state_for_the_watchdog(run, arr, tmp_path):
    rc, out, err = run.cli("on", node="node1")
    assert (rc, out.strip(), err) == (0, "Success: Powered ON", "")
    assert all(N1.key in lun.registrations.values() for lun in arr.luns.values())
    state = json.loads((tmp_path / "state.json").read_text())
    assert state["node"] == "node1" and state["key"] == f"0x{N1.key:x}"
    assert state["devices"] == arr.urls()


def test_on_with_verbose_says_what_it_did_about_old_registrations(run):
    """On tgt every run is a new nexus, so each 'on' finds the previous run's entry and
    replaces it; an administrator sees that with -v (and no warning without it)."""
    assert run.cli("on", node="node1")[0] == 0
    rc, _, err = run.cli("on", "-v", node="node1")
    assert rc == 0 and "old I_T nexus" in err and "registered node1" in err, err
    assert run.cli("on", node="node1")[2] == ""


def test_status_exit_codes_are_0_on_2_off(run):
    run.cli("on", node="node1")
    assert run.cli("status", node="node1")[:2] == (0, "Status: ON\n")
    assert run.cli("status", node="node2")[:2] == (2, "Status: OFF\n")


def test_off_from_stdin_as_pacemaker_sends_it(run, arr):
    unfence(arr, "node1", "node2")
    stdin = (f"action=off\nnodename=node2\nport=node2\ndevices={run.devices}\n"
             "local_node=node1\nnodeid=2\n# a comment\n")
    rc, out, _err = run(stdin=stdin)
    assert (rc, out) == (0, "Success: Powered OFF\n")
    assert arr.keys() == {i: {N1.key} for i in arr.luns}
    assert run(stdin=stdin)[:2] == (0, "Success: Already OFF\n")


def test_fenced_node_fencing_back_fails_with_one_line(run, arr):
    unfence(arr, "node1", "node2")
    assert run.cli("off", node="node2", local="node1")[0] == 0
    keys = arr.keys()
    rc, out, err = run.cli("off", node="node1", local="node2")
    assert rc == 1 and out == ""
    lines = error_lines(err)
    assert len(lines) == 1 and "ERROR" in lines[0] and "arbiter" in lines[0]
    assert "has been fenced itself" in lines[0]
    assert arr.keys() == keys


def test_off_never_reports_success_when_our_key_is_gone_and_the_victim_too(run, arr):
    """Victim absent everywhere is 'Already OFF' only if this node still holds the LUNs:
    a fenced node must never report the other one fenced."""
    unfence(arr, "node3")
    rc, out, err = run.cli("off", node="node2", local="node1")
    assert rc == 1 and "Already" not in out
    assert "not registered" in err


def test_reboot_is_not_an_action_of_a_fabric_fencing_agent(run):
    rc, _, err = run.cli("reboot", node="node2")
    assert rc == 1 and "Unrecognised action 'reboot'" in err


def test_list_status_names_nodes_from_corosync_and_shows_unknown_keys(run, arr, tmp_path):
    cmap = tmp_path / "corosync-cmapctl"
    cmap.write_text("#!/bin/sh\nprintf '%s\\n' 'nodelist.local_node_pos (u32) = 0' "
                    "'nodelist.node.0.name (str) = node1' "
                    "'nodelist.node.0.nodeid (u32) = 1' "
                    "'nodelist.node.1.ring0_addr (str) = node2'\n")
    cmap.chmod(0o755)
    unfence(arr, "node1", "node2", "node3")
    rc, out, _ = run.cli("list-status", "--corosync-cmap-path", str(cmap))
    assert rc == 0
    lines = out.splitlines()
    assert f"node1,0x{N1.key:x},ON" in lines
    assert f"node2,0x{N2.key:x},ON" in lines
    k3 = f"0x{keymod.key_for_node('node3'):x}"          # not in corosync: shown by key
    assert f"{k3},{k3},ON" in lines
    run.cli("off", node="node2")
    rc, out, _ = run.cli("list", "--corosync-cmap-path", str(cmap))
    assert f"node2,0x{N2.key:x}" in out.splitlines()


def test_monitor_is_quiet_when_devices_answer_and_one_line_when_not(run, arr):
    assert run.cli("monitor") == (0, "", "")
    for p in (1, 2):
        arr.luns[2].fail_port(p)
    rc, _out, err = run.cli("monitor")
    assert rc == 1 and len(error_lines(err)) == 1 and "no path answers" in err


def test_reservation_type_node_keys_and_initiators_are_used(run, arr):
    rc, _, err = run.cli("on", "--reservation-type", "EA-RO", "--node-keys",
                         "node1=0xabc1,node2=0xabc2", "--iscsi-initiator",
                         "node1=iqn.2026-11.org.example:n1", node="node1")
    assert rc == 0, err
    for lun in arr.luns.values():
        assert lun.rtype is RT.EXCLUSIVE_ACCESS_REGISTRANTS_ONLY
        assert {ini.split("/s")[0] for ini, _ in lun.registrations} == {
            "iqn.2026-11.org.example:n1"}
        assert set(lun.registrations.values()) == {0xABC1}


def test_explicit_key_for_off_as_fence_scsi_has_it(run, arr):
    unfence(arr, "node1", "node2")
    rc, out, _ = run.cli("off", "-k", f"{N2.key:x}")
    assert (rc, out) == (0, "Success: Powered OFF\n")
    assert arr.keys() == {i: {N1.key} for i in arr.luns}


def test_on_for_another_node_through_local_device_paths_is_refused(run):
    rc, _, err = run("-o", "on", "-n", "node2", "--local-node", "node1",
                     "-d", "/dev/sdzz")
    assert rc == 1
    assert "run it on node2" in err and len(error_lines(err)) == 1


def test_delay_waits_before_off(run, arr):
    unfence(arr, "node1", "node2")
    t0 = time.monotonic()
    assert run.cli("off", "--delay", "1", node="node2")[0] == 0
    assert time.monotonic() - t0 >= 1.0


def test_unexpected_errors_are_one_line_without_traceback(run, arr, monkeypatch):
    unfence(arr, "node1", "node2")

    def boom(*_a, **_k):
        raise RuntimeError("simulated bug")

    monkeypatch.setattr(Fencer, "fence", boom)
    rc, _, err = run.cli("off", node="node2")
    assert rc == 1
    assert "off failed unexpectedly: RuntimeError: simulated bug" in err
    assert "Traceback" not in err and len(error_lines(err)) == 1


@pytest.mark.parametrize(("extra", "message"), [
    (["--reservation-type", "XX"], "reservation_type"),
    (["--node-keys", "node1"], "node_keys: 'node1' is not NODE=VALUE"),
    (["--node-keys", "node1=0x5,node2=0x5"], "same reservation key"),
    (["--node-keys", "node1=0"], "reservation key 0 is not allowed"),
    (["-k", "0"], "key: reservation key 0 is not allowed"),
    (["-k", "xyz"], "not 1 to 16 hex digits"),
    (["--iscsi-initiator", "iqn.a iqn.b"], "not one iSCSI name"),
    (["--scsi-timeout", "0"], "scsi_timeout '0': seconds, 1 to 300"),
])
def test_validate_all_rejects_bad_options_with_one_line(run, extra, message):
    rc, out, err = run.cli("validate-all", *extra, node="node2")
    assert rc == 1 and out == ""
    assert message in err and len(error_lines(err)) == 1, err


def test_validate_all_accepts_a_good_configuration(run):
    assert run.cli("validate-all", node="node2") == (0, "", "")


def test_validate_all_fails_when_a_device_does_not_answer(run, arr):
    arr.luns[3].fail_port(1)
    arr.luns[3].fail_port(2)
    rc, _, err = run.cli("validate-all", node="node2")
    assert rc == 1 and "/3: no path answers" in err


def test_validate_all_without_devices(run):
    rc, _, err = run("-o", "validate-all", "-n", "node2")
    assert rc == 1 and "devices is required" in err


# --------------------------------------------------------------------- subprocess
def agent(*args: str, stdin: str | None = None, env: dict[str, str] | None = None,
          timeout: float = 30) -> subprocess.CompletedProcess[str]:
    e = dict(os.environ, HAMON_NODE="node1")
    e.pop("PCMK_service", None)
    e.update(env or {})
    return subprocess.run([str(AGENT), *args], input=stdin, capture_output=True, text=True,
                          env=e, timeout=timeout, check=False)


def test_help_lists_our_options_and_fence_scsi_names():
    p = agent("-h")
    assert p.returncode == 0
    for opt in ("--devices", "--key", "--aptpl", "--reservation-type", "--node-keys",
                "--local-node", "--iscsi-initiator", "--scsi-timeout", "--plug", "--delay",
                "--power-timeout", "--debug-file", "--verbose", "--logfile"):
        assert opt in p.stdout, opt


@pytest.mark.parametrize(("args", "stdin", "message"), [
    (["-o", "off", "-n", "node2"], None, "devices is required"),
    (["-o", "off", "-n", "node2", "-d", "/dev/sdzz"], None, "/dev/sdzz: no such device"),
    (["-o", "off", "-n", "node2", "-d", "/dev/null"], None, "/dev/null: not a SCSI device"),
    (["-o", "off", "-n", "node2", "-d", "iscsi://10.0.0.1/notaniqn/1"], None,
     "malformed iSCSI URL"),
    (["-o", "off", "-n", "node2", "-d", "nfs://x/y"], None, "unknown URL scheme"),
    (["-o", "validate-all", "-n", "node2", "-k", "0", "-d", "/dev/sdzz"], None,
     "key 0 is not allowed"),
    ([], "action=validate-all\nport=node2\ndevices=/dev/sdzz\n", "/dev/sdzz: no such device"),
    ([], "action=off\nport=node2\n", "devices is required"),
])
def test_every_error_is_one_line_and_exit_1(args, stdin, message):
    p = agent(*args, stdin=stdin)
    assert p.returncode == 1, p
    lines = error_lines(p.stderr)
    assert len(lines) == 1 and message in lines[0], p.stderr
    assert "Traceback" not in p.stderr and p.stdout == ""


def test_connection_refused_is_fast_and_named():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    url = f"iscsi://127.0.0.1:{port}/iqn.2026-11.org.hamon:none/1"
    t0 = time.monotonic()
    p = agent("-o", "off", "-n", "node2", "-d", url)
    assert time.monotonic() - t0 < 5
    assert p.returncode == 1 and "refused" in p.stderr and url in p.stderr
    assert len(error_lines(p.stderr)) == 1


@pytest.fixture
def silent_target():
    """A TCP listener that accepts and never answers: a hung iSCSI target."""
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(16)
    conns: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        srv.settimeout(0.2)
        while not stop.is_set():
            try:
                conns.append(srv.accept()[0])
            except OSError:
                continue

    t = threading.Thread(target=accept, daemon=True)
    t.start()
    yield f"iscsi://127.0.0.1:{srv.getsockname()[1]}/iqn.2026-11.org.hamon:hung/1"
    stop.set()
    t.join()
    for c in conns:
        c.close()
    srv.close()


def test_a_hung_target_costs_scsi_timeout_per_attempt_then_one_line(silent_target):
    t0 = time.monotonic()
    p = agent("-o", "off", "-n", "node2", "-d", silent_target, "--scsi-timeout", "1")
    took = time.monotonic() - t0
    assert p.returncode == 1 and 1.0 <= took < 6, (took, p.stderr)
    assert "no answer within 1" in p.stderr or "timed out" in p.stderr.lower(), p.stderr
    assert len(error_lines(p.stderr)) == 1


def test_power_timeout_is_a_hard_bound_for_the_whole_action(silent_target):
    t0 = time.monotonic()
    p = agent("-o", "off", "-n", "node2", "-d", silent_target, "--scsi-timeout", "30",
              "--power-timeout", "2")
    took = time.monotonic() - t0
    assert p.returncode == 1 and 2.0 <= took < 5, (took, p.stderr)
    assert "did not finish within power_timeout (2 s)" in p.stderr
    assert len(error_lines(p.stderr)) == 1


def test_logfile_receives_the_output(tmp_path):
    log = tmp_path / "agent.log"
    p = agent("-o", "off", "-n", "node2", "-d", "/dev/sdzz", "--logfile", str(log))
    assert p.returncode == 1 and p.stderr == ""
    assert "/dev/sdzz: no such device" in log.read_text()


def test_agent_finds_the_checkout_when_not_installed():
    src = AGENT.read_text()
    assert '"@HAMON_PYTHONPATH@"' in src and 'sys.path.append("/usr/share/fence")' in src
    assert src.startswith("#!/usr/bin/python3\n")
