"""The ``hamon`` command end to end on the in-memory target: status, recover, cancel.

Nothing here asks a real cluster, a real multipathd or a real journal: membership, the
CIB, kernel logs and command execution are replaced per test, and the node is always
given with --node (crm_node may answer on a machine where the cluster tier runs).
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Sequence
from typing import Any

import pytest

from hamon import cli
from hamon.lib import cluster, failback, messages
from hamon.lib import keys as keymod
from hamon.lib import reservation as rsv
from hamon.lib.disk import Disk, DiskKind, Path, split_operands
from hamon.lib.identity import default_initiator
from hamon.lib.journal import Journal
from hamon.lib.multipath.resolve import Resolver
from hamon.lib.recovery import kernel_log
from hamon.lib.scsi.pr import ReservationType
from hamon.lib.sim import SimLun, SimTransport, TgtProfile
from hamon.lib.transport.iscsi_url import parse_iscsi_url

TARGET = "iqn.2026-11.org.hamon:sim"
K1, K2, K3 = (keymod.key_for_node(n) for n in ("node1", "node2", "node3"))
WE_RO = ReservationType.WRITE_EXCLUSIVE_REGISTRANTS_ONLY
MPATH, HDLM = "/dev/mapper/mpatha", "/dev/sddlmaa"


class San:
    """Sim LUNs behind iscsi:// URLs (127.0.0.N = target port N), plus DMMP and HDLM
    disks whose paths are sim paths with the multipath software's view attached."""

    def __init__(self) -> None:
        self.luns = {i: SimLun(f"lun{i}", profile=TgtProfile) for i in (1, 2, 3)}
        self.os_failed: dict[str, bool] = {"/dev/sdb": False, "/dev/sdc": True}

    @staticmethod
    def url(lun: int, port: int) -> str:
        return f"iscsi://127.0.0.{port}:3260/{TARGET}/{lun}"

    def urls(self, lun: int) -> str:
        return ",".join(self.url(lun, p) for p in (1, 2))

    def open(self, url: str, initiator: str, timeout: float) -> SimTransport:
        u = parse_iscsi_url(url)
        port = int(u.host.rsplit(".", 1)[-1])
        return SimTransport(path=url, lun=self.luns[u.lun], initiator=initiator, port=port,
                            timeout=timeout)

    def mp_disk(self, name: str, initiator: str) -> Disk:
        lun = self.luns[3]
        paths = []
        for port, dev in ((1, "/dev/sdb"), (2, "/dev/sdc")):
            bad = self.os_failed[dev]
            if name == HDLM:
                state = f"HDLM {'Offline(E)' if bad else 'Online'} (PathID 00000{port - 1})"
            else:
                state = f"running, dm {'failed' if bad else 'active'}"
            paths.append(Path(dev, lambda p=port, d=dev: SimTransport(
                path=d, lun=lun, initiator=initiator, port=p), os_state=state, os_failed=bad,
                path_id=f"00000{port - 1}" if name == HDLM else None))
        return Disk(name, DiskKind.HDLM if name == HDLM else DiskKind.DMMP, paths, lun.wwid)

    def resolver(self, initiator: str, timeout: float = 10.0) -> Resolver:
        san = self

        class R(Resolver):
            def resolve(self, operands):  # type: ignore[override]
                if isinstance(operands, str):
                    operands = split_operands(operands)
                if operands and operands[0] in (MPATH, HDLM):
                    return [san.mp_disk(operands[0], self.initiator or "")]
                return super().resolve(operands)

        return R(initiator=initiator, timeout=timeout, iscsi_opener=self.open)

    def node(self, node: str, lun: int = 1) -> list[Disk]:
        """The disk as ``node`` sees it, for setting the scene."""
        return self.resolver(default_initiator(node)).resolve(self.urls(lun))


@pytest.fixture
def san(monkeypatch, tmp_path) -> San:
    s = San()
    monkeypatch.setattr(sys.modules[__name__], "RESOLVER", s.resolver)
    monkeypatch.setattr(cluster, "membership", no_cluster)
    monkeypatch.setattr(cluster, "run", lambda argv, timeout: (127, "", f"{argv[0]}: absent"))
    monkeypatch.setattr(kernel_log, "kernel_messages", lambda devs, around=None, **kw: {})
    monkeypatch.setenv("HAMON_JOURNAL", str(tmp_path / "journal"))
    monkeypatch.setenv("HAMON_DISKS_FILE", str(tmp_path / "disks"))
    monkeypatch.setattr(failback.subprocess, "run", forbidden)
    return s


#: The resolver factory every ``run`` gives the command: the san fixture's in-memory SAN
#: (hamon.cli.main's public seam, ``resolver_factory``).
RESOLVER: cli.ResolverFactory | None = None


def cluster_says(monkeypatch, online: str, *, here: Sequence[str] = (),
                 quorate: bool | None = True) -> None:
    """Inject what the cluster says (hamon.lib.cluster, the one adapter): exactly the
    nodes of ``online`` (a comma list) are alive, ``here`` the hamon_disk resources active
    on this node."""
    nodes = dict.fromkeys(split_operands(online), True)
    monkeypatch.setattr(cluster, "membership", lambda timeout=0, runner=None:
                        cluster.Membership(nodes, quorate, "crm_node -l"))
    monkeypatch.setattr(cluster, "active_disk_resources",
                        lambda node, timeout=0, runner=None: list(here))


def no_cluster(timeout: float = 0, runner: Any = None) -> cluster.Membership:
    raise cluster.ClusterUnavailable("error: Could not connect to controller")


def forbidden(*a: Any, **kw: Any) -> None:
    raise AssertionError(f"a command was run: {a}")


@pytest.fixture
def emitted():
    got: list[messages.Message] = []
    undo = messages.subscribe(got.append)
    yield got
    undo()


def run(capsys, *argv: str) -> tuple[int, str, str]:
    try:
        rc = cli.main(["--node", "node1", *argv], resolver_factory=RESOLVER)
    except SystemExit as ex:  # argparse's own usage errors
        rc = int(ex.code or 0)
    out, err = capsys.readouterr()
    return rc, out, err


def one_line(err: str) -> str:
    """The error contract: exactly one line, starting with 'hamon:', no traceback."""
    lines = [ln for ln in err.splitlines() if not ln.startswith(("KAMN", "HAMN"))]
    assert len(lines) == 1 and lines[0].startswith("hamon: "), err
    assert "Traceback" not in err
    return lines[0]


def journal(tmp_path) -> Journal:
    return Journal(str(tmp_path / "journal"))


def failure_entry(disk: str, kind: str, termination: str, *,
                  paths: tuple[str, ...] = ("/dev/sdb", "/dev/sdc"),
                  wwid: str | None = None) -> dict[str, Any]:
    return {"phase": "terminating", "verdict": "terminate-os", "termination": termination,
            "alias": "svc", "node": "node2", "resource": "shared-disk", "os_action": "reboot",
            "disks": [{"disk": disk, "kind": kind, "wwid": wwid, "paths_total": len(paths),
                       "all_failed": True,
                       "failed": [{"label": p, "path": p, "reason": "DID_NO_CONNECT",
                                   "code": "IO-ERR"} for p in paths]}]}


def hold(san: San, node: str, lun: int = 1, key: int | None = None) -> None:
    d = san.node(node, lun)
    k = key or keymod.key_for_node(node)
    assert rsv.register(d, k).ok and rsv.reserve(d, k, WE_RO).ok


# -- status ------------------------------------------------------------------------------
def test_status_of_named_devices_json(san, tmp_path, capsys):
    hold(san, "node2")
    assert rsv.register(san.node("node1"), K1).ok
    journal(tmp_path).append("failure", **failure_entry(san.url(1, 1), "iscsi", "normal",
                                                        paths=(san.url(1, 1),)))
    rc, out, _ = run(capsys, "--nodes", "node2", "status", san.urls(1), "--json")
    assert rc == 0
    doc = json.loads(out)
    (d,) = doc["disks"]
    assert d["kind"] == "iscsi" and d["paths_up"] == d["paths_total"] == 2
    assert d["holder"] == f"0x{K2:x} (node2)"
    assert sorted(set(d["reservation"]["keys"])) == sorted([f"0x{K1:x}", f"0x{K2:x}"])
    assert d["last_entry"]["kind"] == "failure"
    assert "failure on node2 while terminating (normal" in d["last_entry_summary"]
    assert doc["journal"]["torn"] == []


def test_status_of_configured_disks_cib_and_file(san, tmp_path, capsys, monkeypatch):
    cib = (f'<resources><primitive id="shared-disk" class="ocf" provider="hamon" '
           f'type="hamon_disk"><instance_attributes id="i"><nvpair id="n" '
           f'name="scsi_device" value="{san.urls(1)}"/></instance_attributes></primitive>'
           f'<primitive id="fence" class="stonith" type="fence_hamon_scsi">'
           f'<instance_attributes id="f"><nvpair id="m" name="devices" '
           f'value="{san.urls(1)},{san.urls(2)}"/></instance_attributes></primitive>'
           f'</resources>')
    monkeypatch.setattr(cluster, "run", lambda argv, t: (0, cib, ""))
    (tmp_path / "disks").write_text(f"{san.url(2, 2)}\n/dev/hamon-nonexistent\n")
    hold(san, "node1", lun=2)
    san.luns[2].fail_port(2)
    j = journal(tmp_path)
    j.append("failure", **failure_entry(san.url(2, 1), "iscsi", "planned",
                                        paths=(san.url(2, 1),)))
    with open(j.path, "ab") as f:
        f.write(b"0badc0de {\"kind\": \"fail")  # a torn last line
    rc, out, _ = run(capsys, "status")
    assert rc == 1  # a failed path and an unresolvable configured disk
    assert f"{san.url(1, 1)}  (iscsi, wwid {san.luns[1].wwid})  2/2 paths up  " \
           "[CIB shared-disk (ocf:hamon:hamon_disk)]" in out
    assert f"{san.url(2, 1)}  (iscsi, wwid {san.luns[2].wwid})  1/2 paths up  " \
           "[CIB fence (stonith:fence_hamon_scsi)]" in out
    assert f"holder  0x{K1:x} (node1), WE-RO" in out
    assert "journal 20" in out and "failure on node2 while terminating (planned" in out
    assert "/dev/hamon-nonexistent  [" in out and "cannot be resolved: " in out
    assert "1 torn or damaged line(s) (2), not trusted" in out
    assert out.count("paths up") == 2  # lun 2 named twice (fence + file): shown once


def test_status_without_any_configured_disk(san, capsys):
    rc, _, err = run(capsys, "status")
    assert rc == 2
    line = one_line(err)
    assert "no configured shared disk found (CIB not read: cibadmin: absent" in line
    assert "hamon status DEV" in line


def test_status_bad_device_on_command_line(san, capsys):
    rc, _, err = run(capsys, "status", "mpatha")
    assert rc == 2 and "not a device path" in one_line(err)


# -- recover -----------------------------------------------------------------------------
def test_recover_no_journal(san, capsys):
    rc, out, _ = run(capsys, "recover")
    assert rc == 0 and "No disk failure is recorded" in out


def test_recover_dmmp_normal_no_tty_prints_but_does_not_run(san, tmp_path, capsys,
                                                             monkeypatch):
    monkeypatch.setattr("sys.stdin.isatty", lambda: False)
    hold(san, "node2", lun=3)
    journal(tmp_path).append("failure", **failure_entry(MPATH, "dmmp", "normal"))
    rc, out, _ = run(capsys, "recover")
    assert rc == 0
    assert "termination: normal" in out
    assert "Step 3. Fail back the recovered path with the multipath software  [TO DO]" in out
    assert "$ multipathd reinstate path sdc" in out
    assert "Failback commands not run: no terminal to confirm on" in out
    assert "Step 4. Cancel the reservation  [TO DO]" in out
    assert f"run: hamon reservation cancel {MPATH}" in out
    assert f"held now by 0x{K2:x} (node2) (WE-RO)" in out  # named from the entry's node


def test_recover_names_the_holder_from_corosync_conf(san, tmp_path, capsys, monkeypatch):
    """A node rebooted after a failure runs ``hamon recover`` before its cluster is up:
    no membership, the journal names only itself. The peer that took the disk is named
    from corosync.conf's nodelist, not left as "a node not named here"."""
    monkeypatch.setattr("sys.stdin.isatty", lambda: False)
    hold(san, "node3", lun=3)
    journal(tmp_path).append("failure", **failure_entry(MPATH, "dmmp", "normal"))
    rc, out, _ = run(capsys, "recover")
    assert rc == 0 and f"held now by 0x{K3:x} (a hamon key of a node not named here)" in out
    conf = tmp_path / "corosync.conf"
    conf.write_text("totem {\n    cluster_name: hamon-test\n}\nnodelist {\n"
                    "    node {\n        ring0_addr: 10.0.0.1\n        name: node1\n"
                    "        nodeid: 1\n    }\n    node {\n        name: node3\n"
                    "        nodeid: 3\n        ring0_addr: 10.0.0.3\n    }\n}\n")
    monkeypatch.setattr(cluster, "COROSYNC_CONF", str(conf))
    rc, out, _ = run(capsys, "recover")
    assert rc == 0 and f"held now by 0x{K3:x} (node3) (WE-RO)" in out


def test_recover_dmmp_yes_runs_failback(san, tmp_path, capsys, monkeypatch):
    calls = []

    def fake_run(argv, **kw):
        calls.append(argv)
        return subprocess.CompletedProcess(argv, 0, "ok\n", "")

    monkeypatch.setattr(failback.subprocess, "run", fake_run)
    journal(tmp_path).append("failure", **failure_entry(MPATH, "dmmp", "planned"))
    rc, out, _ = run(capsys, "recover", "--yes")
    assert rc == 0
    assert calls == [["multipathd", "reinstate", "path", "sdc"]]
    assert "$ multipathd reinstate path sdc: ok: ok" in out
    assert "Step 4. Cancel the reservation  [not applicable]" in out


def test_recover_failback_failure_is_one_line_exit_1(san, tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(failback.subprocess, "run", lambda argv, **kw:
                        subprocess.CompletedProcess(argv, 1, "", "timeout\n"))
    journal(tmp_path).append("failure", **failure_entry(MPATH, "dmmp", "normal"))
    rc, out, err = run(capsys, "recover", "--yes")
    assert rc == 1
    assert "FAILED (exit 1): timeout" in out
    assert one_line(err) == "hamon: 1 of 1 failback command(s) failed; see above"


@pytest.mark.parametrize("answer,ran", [("y", True), ("", False), (EOFError, False)])
def test_recover_asks_on_a_terminal(san, tmp_path, capsys, monkeypatch, answer, ran):
    calls = []
    monkeypatch.setattr("sys.stdin.isatty", lambda: True)

    def fake_input(prompt):
        assert "Run the 1 failback command(s) of step 3 now? [y/N]" in prompt
        if answer is EOFError:
            raise EOFError
        return answer

    monkeypatch.setattr("builtins.input", fake_input)
    monkeypatch.setattr(failback.subprocess, "run", lambda argv, **kw: calls.append(argv)
                        or subprocess.CompletedProcess(argv, 0, "ok", ""))
    journal(tmp_path).append("failure", **failure_entry(MPATH, "dmmp", "normal"))
    rc, out, _ = run(capsys, "recover", MPATH)
    assert rc == 0
    assert bool(calls) is ran
    assert ("Not run." in out) is not ran


def test_recover_hdlm_runs_dlnkmgr_online(san, tmp_path, capsys, monkeypatch):
    calls = []
    monkeypatch.setattr(failback.subprocess, "run", lambda argv, **kw: calls.append(argv)
                        or subprocess.CompletedProcess(argv, 0, "", ""))
    monkeypatch.setattr("hamon.lib.multipath.hdlm.dlnkmgr", lambda: None)
    journal(tmp_path).append("failure", **failure_entry(HDLM, "hdlm", "abnormal"))
    rc, _, _ = run(capsys, "recover", "--yes")
    assert rc == 0
    assert calls == [["dlnkmgr", "online", "-pathid", "000001", "-s"]]


def test_recover_single_path_nothing_to_fail_back_json(san, tmp_path, capsys):
    hold(san, "node2")
    url = san.url(1, 1)
    journal(tmp_path).append("failure", **failure_entry(url, "scsi", "normal", paths=(url,)))
    rc, out, _ = run(capsys, "recover", "--json", url)
    assert rc == 0
    doc = json.loads(out)
    steps = {s["step"]: s for s in doc["steps"]}
    assert steps[3]["applies"] == "no" and doc["failback"]["results"] == []
    assert steps[4]["applies"] == "yes"
    assert steps[4]["suggested"] == [f"hamon reservation cancel {url}"]
    assert doc["termination"] == "normal" and doc["entry_line"] == 1


def test_recover_json_yes_runs_and_reports(san, tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(failback.subprocess, "run", lambda argv, **kw:
                        subprocess.CompletedProcess(argv, 0, "ok", ""))
    journal(tmp_path).append("failure", **failure_entry(MPATH, "dmmp", "normal"))
    rc, out, _ = run(capsys, "recover", "--json", "--yes")
    doc = json.loads(out)
    assert rc == 0 and doc["failback"]["run"] is True
    assert doc["failback"]["results"][0]["command"] == "multipathd reinstate path sdc"
    # without --yes, JSON never prompts and never runs
    monkeypatch.setattr(failback.subprocess, "run", forbidden)
    rc, out, _ = run(capsys, "recover", "--json")
    assert rc == 0 and "give --yes" in json.loads(out)["failback"]["note"]


def test_recover_torn_journal_warns_and_step4_is_check(san, tmp_path, capsys):
    hold(san, "node2")
    url = san.url(1, 1)
    j = journal(tmp_path)
    j.append("failure", **failure_entry(url, "iscsi", "planned", paths=(url,)))
    j.append("failure", **failure_entry(url, "iscsi", "normal", paths=(url,)))
    with open(j.path, "rb+") as f:
        f.truncate(len(f.read()) - 40)  # the second entry torn
    rc, out, _ = run(capsys, "recover", url)
    assert rc == 0
    assert "warning: journal line 2: torn write" in out
    assert "termination: unknown" in out
    assert "Step 4. Cancel the reservation  [CHECK]" in out


def test_recover_from_entry_iscsi_two_paths(san, tmp_path, capsys):
    hold(san, "node1")
    u1, u2 = san.url(1, 1), san.url(1, 2)
    journal(tmp_path).append("failure", **failure_entry(u1, "iscsi", "abnormal",
                                                        paths=(u1, u2)))
    rc, out, _ = run(capsys, "recover")
    assert rc == 0
    assert f"{u1} (iscsi): 2/2 path(s) answer" in out      # both URLs resolved again
    assert "VMware ESXi" in out
    assert "Step 2. Resolve the cause (do not fail back yet)  [done]" in out


def test_recover_device_gone_but_recorded(san, tmp_path, capsys):
    journal(tmp_path).append("failure", **failure_entry("/dev/hamon-gone", "scsi", "normal",
                                                        paths=("/dev/hamon-gone",)))
    rc, out, _ = run(capsys, "recover", "/dev/hamon-gone")
    assert rc == 0
    assert "/dev/hamon-gone: cannot be opened now: /dev/hamon-gone: no such device" in out
    assert "a single path: nothing to fail back" in out


def test_recover_unknown_device_not_recorded_is_usage_error(san, capsys):
    rc, _, err = run(capsys, "recover", "/dev/hamon-gone")
    assert rc == 2 and "no such device" in one_line(err)


def test_recover_unreadable_journal(san, tmp_path, capsys):
    rc, _, err = run(capsys, "recover", "--journal", str(tmp_path))  # a directory
    assert rc == 2 and "cannot read the journal: not a regular file" in one_line(err)


# -- reservation cancel --------------------------------------------------------------------
def state(san: San, lun: int = 1) -> tuple[Any, list[int]]:
    lu = san.luns[lun]
    return lu.holder, sorted(lu.keys())


def test_cancel_stale_key_of_a_dead_node(san, tmp_path, capsys, emitted, monkeypatch):
    cluster_says(monkeypatch, "node1")
    hold(san, "node2")
    assert rsv.register(san.node("node1"), K1).ok  # node1 is unfenced (registered)
    url = san.url(1, 1)  # node2's failure is on record: that is how node2 is named
    journal(tmp_path).append("failure", **failure_entry(url, "iscsi", "normal", paths=(url,)))
    rc, out, err = run(capsys, "reservation", "cancel", san.urls(1))
    assert rc == 0, err
    assert f"reservation cancelled (was held by 0x{K2:x} (node2) WE-RO" in out
    holder, keys = state(san)
    assert holder is None
    assert keys == [K1, K1]  # node2's key gone; node1's own registration restored
    (m,) = [m for m in emitted if m.id == "HAMN953"]
    assert m.full_id == "HAMN953-W" and m.fields["holder"] == f"0x{K2:x} (node2)"
    assert m.fields["by"] == "node1"  # the cluster's word, nothing overridden
    assert m.fields["device"] == san.url(1, 1)
    (e,) = journal(tmp_path).entries("cancel")
    assert e["node"] == "node1" and e["forced"] is False
    assert e["overrides"] == []
    assert e["disks"][0]["holder_node"] == "node2" and e["disks"][0]["reregistered"]


def test_cancel_refused_when_a_live_node_holds_it(san, tmp_path, capsys, emitted,
                                                  monkeypatch):
    cluster_says(monkeypatch, "node1,node2")
    hold(san, "node2")
    before = state(san)
    rc, _, err = run(capsys, "reservation", "cancel", san.urls(1))
    assert rc == 3
    line = one_line(err)
    assert f"held by 0x{K2:x} (node2), and node2 is a live cluster node" in line
    assert "Nothing was changed" in line and "--force" in line
    assert state(san) == before
    assert not [m for m in emitted if m.id == "HAMN953"]
    assert journal(tmp_path).entries("cancel") == []


def test_cancel_uses_the_cluster_membership(san, capsys, monkeypatch):
    hold(san, "node2")
    monkeypatch.setattr(cluster, "membership", lambda timeout=0, runner=None:
                        cluster.Membership({"node1": True, "node2": False}, True, "crm_node"))
    rc, _, _ = run(capsys, "reservation", "cancel", san.urls(1))
    assert rc == 0 and state(san)[0] is None


def test_cancel_cluster_unreachable_needs_force(san, tmp_path, capsys, emitted):
    hold(san, "node2")
    rc, _, err = run(capsys, "reservation", "cancel", san.urls(1))
    assert rc == 3
    assert "the cluster cannot be asked who is alive (error: Could not connect" in \
        one_line(err)
    assert state(san)[0] is not None
    rc, _, err = run(capsys, "reservation", "cancel", san.urls(1), "--force")
    assert rc == 0, err
    assert state(san)[0] is None
    assert [m.fields["by"] for m in emitted if m.id == "HAMN953"] == ["node1 (--force)"]
    assert journal(tmp_path).entries("cancel")[0]["forced"] is True


def test_cancel_without_quorum_needs_force(san, capsys, monkeypatch):
    hold(san, "node2")
    monkeypatch.setattr(cluster, "membership", lambda timeout=0, runner=None:
                        cluster.Membership({"node1": True, "node2": False}, False, "crm_node"))
    rc, _, err = run(capsys, "reservation", "cancel", san.urls(1))
    assert rc == 3 and "no quorum" in one_line(err)


def test_cancel_own_reservation_refused_while_a_hamon_disk_runs_here(san, capsys,
                                                                    monkeypatch):
    hold(san, "node1")
    monkeypatch.setattr(cluster, "membership", lambda timeout=0, runner=None:
                        cluster.Membership({"node1": True, "node2": True}, True, "crm_node"))
    monkeypatch.setattr(cluster, "active_disk_resources", lambda node, timeout=0: ["db-disk"])
    rc, _, err = run(capsys, "reservation", "cancel", san.urls(1))
    assert rc == 3
    assert "node1 (this node: hamon_disk db-disk active here) is a live cluster node" in \
        one_line(err)
    assert state(san)[0] is not None


def test_cancel_own_stale_reservation_after_reboot(san, tmp_path, capsys, monkeypatch,
                                                   emitted):
    """node1's OS was terminated holding the disk; booted again, it runs no hamon_disk:
    its own reservation is stale and this is where the administrator cancels it."""
    hold(san, "node1")
    monkeypatch.setattr(cluster, "membership", lambda timeout=0, runner=None:
                        cluster.Membership({"node1": True, "node2": True}, True, "crm_node"))
    monkeypatch.setattr(cluster, "active_disk_resources", lambda node, timeout=0: [])
    rc, out, err = run(capsys, "reservation", "cancel", san.urls(1))
    assert rc == 0, err
    assert f"was held by 0x{K1:x} (node1) WE-RO" in out
    assert state(san) == (None, [K1, K1])  # reservation gone, own registration restored
    assert [m.fields["by"] for m in emitted if m.id == "HAMN953"] == ["node1"]


def test_cancel_own_reservation_when_crm_mon_cannot_say(san, capsys, monkeypatch):
    hold(san, "node1")
    monkeypatch.setattr(cluster, "membership", lambda timeout=0, runner=None:
                        cluster.Membership({"node1": True}, True, "crm_node"))
    rc, _, err = run(capsys, "reservation", "cancel", san.urls(1))
    assert rc == 3
    assert "held by this node's own key (0x" in one_line(err)
    assert "crm_mon cannot say whether a hamon_disk resource runs here (crm_mon: absent)" \
        in one_line(err)


@pytest.mark.parametrize("online,here,rc", [("node1", ["db-disk"], 3), ("node1", [], 0),
                                            ("node1,node2", [], 0), ("node2", [], 0)])
def test_cancel_own_reservation_by_what_runs_here(san, capsys, monkeypatch, online, here,
                                                  rc):
    cluster_says(monkeypatch, online, here=here)
    hold(san, "node1")
    assert run(capsys, "reservation", "cancel", san.urls(1))[0] == rc
    assert (state(san)[0] is None) is (rc == 0)


def test_cancel_refused_for_a_foreign_key(san, capsys, monkeypatch):
    cluster_says(monkeypatch, "node1")
    hold(san, "node2", key=0x1234)
    rc, _, err = run(capsys, "reservation", "cancel", san.urls(1))
    assert rc == 3
    assert "0x1234 (not a hamon-derived key): hamon cannot tell" in one_line(err)
    assert "node_keys" in one_line(err)


NODE_KEYS_CIB = ('<resources><primitive id="fence" class="stonith" type="fence_hamon_scsi">'
                 '<instance_attributes id="i"><nvpair id="k" name="node_keys" '
                 'value="node1=0x1001,node2=0x1002"/></instance_attributes></primitive>'
                 '</resources>')


@pytest.mark.parametrize("online,rc", [("node1", 0), ("node1,node2", 3)])
def test_cancel_explicit_keys_named_by_node_keys(san, capsys, monkeypatch, emitted,
                                                 online, rc):
    monkeypatch.setattr(cluster, "run", lambda argv, t: (0, NODE_KEYS_CIB, ""))
    cluster_says(monkeypatch, online)
    hold(san, "node2", key=0x1002)
    got, out, err = run(capsys, "reservation", "cancel", san.urls(1))
    assert got == rc
    if rc == 0:
        assert "was held by 0x1002 (node2) WE-RO" in out
        assert [m.fields["holder"] for m in emitted if m.id == "HAMN953"] == \
            ["0x1002 (node2)"]
    else:
        assert "held by 0x1002 (node2), and node2 is a live cluster node" in one_line(err)


def test_cancel_nothing_held(san, tmp_path, capsys, emitted, monkeypatch):
    cluster_says(monkeypatch, "node1")
    assert rsv.register(san.node("node2"), K2).ok
    rc, out, _ = run(capsys, "reservation", "cancel", san.urls(1))
    assert rc == 0 and "no reservation is held: nothing to cancel" in out
    assert state(san)[1] == [K2, K2]  # registrations are left alone
    assert not emitted and journal(tmp_path).entries("cancel") == []


def test_cancel_notes_live_registrations_it_cleared(san, capsys, monkeypatch):
    cluster_says(monkeypatch, "node1,node3")
    hold(san, "node2")
    assert rsv.register(san.node("node3"), K3).ok
    rc, out, _ = run(capsys, "reservation", "cancel", san.urls(1))
    assert rc == 0
    assert "registration of live node node3 was cleared too; restore it with: " \
           "stonith_admin --unfence node3" in out
    assert state(san) == (None, [])  # node1 was not registered: nothing restored


def test_cancel_json(san, capsys, monkeypatch):
    cluster_says(monkeypatch, "node1")
    hold(san, "node2")
    rc, out, _ = run(capsys, "--json", "reservation", "cancel", san.urls(1))
    doc = json.loads(out)
    assert rc == 0 and doc["disks"][0]["result"] == "cancelled"
    assert doc["disks"][0]["keys_before"] == [f"0x{K2:x}"]
    assert doc["disks"][0]["holder"] == f"0x{K2:x}" and doc["disks"][0]["type"] == "WE-RO"
    assert doc["forced"] is False and doc["overrides"] == []


def test_cancel_no_path_answers(san, capsys, monkeypatch):
    cluster_says(monkeypatch, "node1")
    san.luns[1].fail_port(1)
    san.luns[1].fail_port(2)
    rc, _, err = run(capsys, "reservation", "cancel", san.urls(1))
    assert rc == 1
    assert "cannot read the reservation through any path" in one_line(err)


def test_cancel_journal_unwritable(san, tmp_path, capsys, monkeypatch):
    cluster_says(monkeypatch, "node1")
    hold(san, "node2")
    (tmp_path / "file").write_text("")
    rc, _, err = run(capsys, "reservation", "cancel", san.urls(1),
                     "--journal", str(tmp_path / "file" / "journal"))
    assert rc == 1
    assert one_line(err).startswith("hamon: reservation cancelled, but the journal could "
                                     "not be updated")
    assert state(san)[0] is None


def test_recover_after_cancel_reports_step4_done(san, tmp_path, capsys, monkeypatch):
    cluster_says(monkeypatch, "node1")
    hold(san, "node2")
    url = san.url(1, 1)
    journal(tmp_path).append("failure", **failure_entry(url, "iscsi", "normal", paths=(url,),
                                                        wwid=san.luns[1].wwid))
    assert run(capsys, "reservation", "cancel", san.urls(1))[0] == 0
    rc, out, _ = run(capsys, "recover", url)
    assert rc == 0
    assert "Step 4. Cancel the reservation  [done]" in out
    assert "cancelled already" in out and "cancelled by node1" in out


# -- reservation show, parsing, errors -----------------------------------------------------
def test_reservation_show_still_works(san, capsys):
    hold(san, "node2")
    for argv in (["reservation", san.urls(1)], ["reservation", "show", san.urls(1)]):
        rc, out, _ = run(capsys, "--nodes", "node2", *argv)
        assert rc == 0 and f"reserved WE-RO by key 0x{K2:x} (node2)" in out


@pytest.mark.parametrize("argv,why", [
    (["reservation", "--force", "iscsi://127.0.0.1/iqn.2026-11.x:t/1"], "belong to"),
    (["reservation", "cancel"], "name at least one device"),
    (["recover", "--bogus"], "unrecognized arguments"),
    # who is alive is the cluster's word: no option overrides it (--force is on record)
    (["reservation", "cancel", "iscsi://127.0.0.1/iqn.2026-11.x:t/1", "--nodes-online",
      "node1"], "unrecognized arguments: --nodes-online"),
    (["monscsiclr", "svc", "--nodes-online", "node1"], "unrecognized arguments"),
    (["frobnicate"], "invalid choice"),
])
def test_usage_errors_are_one_line_exit_2(san, capsys, argv, why):
    rc, _, err = run(capsys, *argv)
    assert rc == 2
    assert why in one_line(err)


def test_internal_error_is_one_line(san, capsys, monkeypatch):
    def boom(node, cluster=None):
        raise KeyError("surprise")

    monkeypatch.setattr(keymod, "parts", boom)
    rc, _, err = run(capsys, "key")
    assert rc == 1
    assert one_line(err).startswith("hamon: internal error: KeyError")
    monkeypatch.setenv("HAMON_DEBUG", "1")
    with pytest.raises(KeyError):
        cli.main(["--node", "node1", "key"])


def test_options_before_the_command_are_kept(san, capsys):
    rc, out, _ = run(capsys, "--json", "key", "node2")
    assert rc == 0 and json.loads(out) == {
        "node": "node2", "key": f"0x{K2:x}", "cluster": "hamon-test",
        "cluster_part": f"{K2 >> 32:08x}", "node_part": f"{K2 & 0xFFFFFFFF:08x}",
        "old_key": f"0x{keymod.legacy_key('node2'):x}"}
    rc, out, _ = run(capsys, "--cluster-name", "other", "key", "node2")
    assert rc == 0 and f"0x{keymod.key_for_node('node2', 'other'):x}" in out
    assert "cluster other:" in out and "old key" in out


def test_monscsiclr_takes_the_devices_of_the_alias_from_the_cib(san, tmp_path, capsys,
                                                                monkeypatch):
    """The alias of a hamon_disk resource (its alias parameter, else its id) names its
    devices; another resource's and the fence device's are left alone; the CLEARED lines
    match what an observer reads afterwards."""
    cib = (f'<resources><primitive id="shared-disk" class="ocf" provider="hamon" '
           f'type="hamon_disk"><instance_attributes id="i"><nvpair id="n" '
           f'name="dmmp_device" value="{san.urls(1)}"/><nvpair id="a" name="alias" '
           f'value="svc"/></instance_attributes></primitive>'
           f'<primitive id="other" class="ocf" provider="hamon" type="hamon_disk">'
           f'<instance_attributes id="o"><nvpair id="p" name="dmmp_device" '
           f'value="{san.urls(2)}"/></instance_attributes></primitive></resources>')
    monkeypatch.setattr(cluster, "run", lambda argv, t: (0, cib, ""))
    cluster_says(monkeypatch, "node1")
    hold(san, "node2", lun=1)
    hold(san, "node2", lun=2)
    rc, out, _ = run(capsys, "--node", "node1", "monscsiclr", "svc")
    assert rc == 0, out
    assert out.splitlines() == [
        "KAMN107-I The monscsiclr command started. (server: svc)",
        f"CLEARED {san.url(1, 1)}",
        "KAMN108-I The monscsiclr command ended. (result: SUCCESS, server: svc)"]
    assert san.luns[1].holder is None and not san.luns[1].registrations   # released
    assert san.luns[2].registrations[san.luns[2].holder] == K2   # alias "other": kept
    rc, _, err = run(capsys, "--node", "node1", "monscsiclr", "nosuch")
    assert rc == 2 and "known: other, svc" in err


def test_monscsiclr_decides_device_by_device_and_asks_what_runs_here_once(
        san, tmp_path, capsys, monkeypatch, emitted):
    """Two devices held by this node's own key while its hamon_disk runs (refused, both),
    one held by a dead node (released): crm_mon is asked once, the refusals change
    nothing, and only the released device is on record."""
    lines = [f"{' '.join(san.urls(n).split(','))} alias=svc" for n in (1, 2, 3)]
    (tmp_path / "disks").write_text("\n".join(lines) + "\n")
    cluster_says(monkeypatch, "node1", here=["svc-disk"])
    asked = []
    here = cluster.active_disk_resources
    monkeypatch.setattr(cluster, "active_disk_resources",
                        lambda node, timeout=0, runner=None: asked.append(node) or here(node))
    hold(san, "node1", lun=1)
    hold(san, "node2", lun=2)
    hold(san, "node1", lun=3)
    rc, out, _ = run(capsys, "--nodes", "node2", "monscsiclr", "svc", "--no-cib")
    assert rc == 1
    got = out.splitlines()
    assert got[1].startswith(f"FAILED {san.url(1, 1)}: refused: ")
    assert "node1 (this node: hamon_disk svc-disk active here)" in got[1]
    assert got[2] == f"CLEARED {san.url(2, 1)}"
    assert got[3].startswith(f"FAILED {san.url(3, 1)}: refused: ")
    assert "result: FAILURE" in got[4]
    assert asked == ["node1"]
    assert [san.luns[n].holder is None for n in (1, 2, 3)] == [False, True, False]
    (e,) = journal(tmp_path).entries("cancel")
    assert [d["disk"] for d in e["disks"]] == [san.url(2, 1)] and e["overrides"] == []
    assert e["disks"][0]["holder"] == f"0x{K2:x}"
    assert [m.fields["holder"] for m in emitted if m.id == "HAMN953"] == [f"0x{K2:x} (node2)"]


def test_cluster_name_option_reaches_every_key_derivation_as_an_argument(
        san, tmp_path, capsys, monkeypatch):
    """``--cluster-name`` is passed to every derivation (never through the environment,
    never left to corosync): with it, asking hamon.lib.keys for the cluster's name is a
    bug this test catches, in every command that names or derives keys."""
    other = keymod.key_for_node("node2", "other")
    hold(san, "node2", lun=1, key=other)
    journal(tmp_path).append("failure", **failure_entry(san.urls(1), "iscsi", "normal",
                                                        paths=(san.url(1, 1),)))

    def asked(explicit=None):
        raise AssertionError("the cluster name was looked up although --cluster-name "
                             "was given")

    monkeypatch.setattr(keymod, "cluster_name", asked)
    monkeypatch.setattr("sys.stdin.isatty", lambda: False)
    cluster_says(monkeypatch, "node1,node2")
    named = f"0x{other:x} (node2)"
    for argv, expect in (
            (["key", "node2"], f"0x{other:x}"),
            (["--nodes", "node2", "keys", san.urls(1)], named),
            (["--nodes", "node2", "status", san.urls(1)], named),
            (["--nodes", "node2", "reservation", "show", san.urls(1), "--json"], '"node2"'),
            (["--nodes", "node2", "recover", san.urls(1)], named)):
        rc, out, err = run(capsys, "--cluster-name", "other", *argv)
        assert "AssertionError" not in err and expect in out, (argv, rc, out, err)
    # cancel: node2 is alive and holds with its key of cluster "other": refused, named
    rc, out, err = run(capsys, "--cluster-name", "other", "reservation", "cancel",
                       san.urls(1))
    assert rc == 3 and "AssertionError" not in err and named in err, (rc, out, err)
    assert "node2 is a live cluster node" in err
    assert os.environ.get("HAMON_CLUSTER_NAME") != "other"
