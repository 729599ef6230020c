"""The fault matrix against a real tgtd, with faults injected into real iSCSI paths.

Each path of the LUN runs through its own :class:`tests.faultproxy.FaultProxy` in front
of one tgtd portal; a cell puts a rule (the vocabulary of the in-memory target) on one
path of two, on every path, or on the only path of a single-path disk, runs the real
agent process (``agents/ocf/hamon_disk`` as pacemaker-execd runs it,
``agents/fence_hamon_scsi`` as pacemaker-fenced runs it), and then reads the LUN through
a session of its own, straight to tgtd and not through a proxy (``Tgt.observe``).

Checked per cell: the exit code, exactly one KAMN725-W per faulted path (the agent's
stderr, which pacemaker-execd copies into the cluster log), KAMN726-E and the OS
termination (dry run) where every path failed, the journal's verdict, and the keys and
holder on the LUN afterwards.
"""
from __future__ import annotations

import json
import os
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from hamon.lib import keys as keymod
from hamon.lib.journal import Journal
from hamon.lib.scsi.sense import SenseKey
from hamon.lib.sim import FaultKind, FaultRule
from tests.fake_cluster import fake_cluster
from tests.faultproxy import FaultProxy
from tests.integration.tgt import Tgt

pytestmark = pytest.mark.integration

TOP = Path(__file__).resolve().parents[2]
DISK_AGENT = TOP / "agents" / "ocf" / "hamon_disk"
FENCE_AGENT = TOP / "agents" / "fence_hamon_scsi"
PYTHON = "/usr/bin/python3"
K1, K2 = keymod.key_for_node("node1"), keymod.key_for_node("node2")
#: hamon_disk's node_keys: the cluster's members with their keys, as crm_node -l would
#: name them (start takes a disk only from a member's key)
MEMBERS = f"node1=0x{K1:x},node2=0x{K2:x}"
#: the cluster name the keys are derived with, for processes with a clean environment
CLUSTER = {"HAMON_CLUSTER_NAME": os.environ["HAMON_CLUSTER_NAME"]}
PR_IN, PR_OUT = 0x5E, 0x5F

FAULTS: dict[str, tuple[FaultRule, ...]] = {
    "hardware-error": (FaultRule(FaultKind.CHECK_CONDITION, sense_key=SenseKey.HARDWARE_ERROR,
                                 asc=0x44),),
    "pr-only-hardware-error": (FaultRule(FaultKind.CHECK_CONDITION, opcode=PR_IN),
                               FaultRule(FaultKind.CHECK_CONDITION, opcode=PR_OUT)),
    "busy": (FaultRule(FaultKind.BUSY),),
    "swallow": (FaultRule(FaultKind.SWALLOW),),
    "drop": (FaultRule(FaultKind.DROP),),
    "corrupt-pr-in": (FaultRule(FaultKind.CORRUPT, opcode=PR_IN),),
}
EXTENTS: dict[str, tuple[int, tuple[int, ...]]] = {
    "one-of-two": (2, (0,)),
    "every-path": (2, (0, 1)),
    "single-path": (1, (0,)),
}
CELLS = [(f, e) for f in FAULTS for e in EXTENTS]
IDS = [f"{f}-{e}" for f, e in CELLS]
#: The short matrix for the actions whose logic is shared with a cell above.
SHORT = [(f, e) for f in ("hardware-error", "swallow") for e in EXTENTS]
SHORT_IDS = [f"{f}-{e}" for f, e in SHORT]
#: Every action ends within its timeouts even when a path swallows commands: with a
#: 1-second command timeout a few seconds are the whole budget (a hang would be 60 s).
ACTION_BOUND = 15.0


@dataclass
class San:
    """tgtd with one data LUN, a fault proxy in front of each portal."""

    tgt: Tgt
    proxies: list[FaultProxy]

    def urls(self, paths: int, lun: int = 1) -> list[str]:
        return [f"iscsi://{p.portal}/{self.tgt.target}/{lun}" for p in self.proxies[:paths]]

    def inject(self, fault: str, ports: tuple[int, ...]) -> None:
        for i in ports:
            self.proxies[i].set_rules(*FAULTS[fault])

    def clear(self) -> None:
        for p in self.proxies:
            p.clear_rules()

    def registered(self) -> list[int]:
        return list(self.tgt.observe([1])[0].keys)

    def holder(self) -> int | None:
        res = self.tgt.observe([1])[0].reservation
        return res.key if res.held else None


@pytest.fixture
def san(tgt_factory) -> Iterator[San]:
    t = tgt_factory(luns=1)
    proxies = [FaultProxy((host, t.port)).start() for host in t.hosts]
    try:
        yield San(t, proxies)
    finally:
        for p in proxies:
            p.stop()


@dataclass
class Run:
    rc: int
    stdout: str
    stderr: str

    def kamn(self, full_id: str) -> list[str]:
        return [line for line in self.stderr.splitlines() if line.startswith(full_id)]


def check_725(run: Run, san: San, ports: tuple[int, ...]) -> None:
    """Exactly one KAMN725-W per faulted path, naming that path (a multipath disk's
    path in brackets after the disk's name, a single-path disk by its only path)."""
    lines = run.kamn("KAMN725-W")
    assert len(lines) == len(ports), run.stderr
    for i in ports:
        path = san.urls(2)[i]
        named = [ln for ln in lines if f"({path})" in ln or f"device {path} " in ln]
        assert len(named) == 1, run.stderr


@dataclass
class DiskNode:
    name: str
    tmp: Path

    @property
    def journal(self) -> Journal:
        return Journal(str(self.tmp / f"{self.name}.journal"))

    @property
    def dry_run(self) -> Path:
        return self.tmp / f"{self.name}.terminate"

    def run(self, action: str, urls: list[str]) -> Run:
        env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "OCF_ROOT": "/usr/lib/ocf",
               "OCF_RESOURCE_INSTANCE": "shared-disk", "HAMON_NODE": self.name,
               "OCF_RA_VERSION_MAJOR": "1", "OCF_RA_VERSION_MINOR": "1",
               f"OCF_RESKEY_{'dmmp_device' if len(urls) > 1 else 'scsi_device'}":
                   ",".join(urls),
               "OCF_RESKEY_command_timeout": "1",
               "OCF_RESKEY_journal": self.journal.path,
               "OCF_RESKEY_state_dir": str(self.tmp / f"{self.name}.state"),
               "OCF_RESKEY_os_termination_dry_run": str(self.dry_run),
               # keys of this test's cluster: its name, and its members (no crm_node here)
               "OCF_RESKEY_cluster_name": os.environ["HAMON_CLUSTER_NAME"],
               "OCF_RESKEY_node_keys": MEMBERS,
               "OCF_RESKEY_CRM_meta_interval": "30000" if action == "monitor" else "0"}
        t0 = time.monotonic()
        p = subprocess.run([PYTHON, str(DISK_AGENT), action], env=env, capture_output=True,
                           text=True, timeout=60, check=False)
        elapsed = time.monotonic() - t0
        assert elapsed < ACTION_BOUND, f"{action} took {elapsed:.1f} s: {p.stderr}"
        return Run(p.returncode, p.stdout, p.stderr)

    def last(self) -> dict:
        entries = self.journal.entries()
        return entries[-1] if entries else {}


def fence(node: str, *args: str) -> Run:
    t0 = time.monotonic()
    p = subprocess.run([str(FENCE_AGENT), "--local-node", node, "--scsi-timeout", "1",
                        *args], capture_output=True, text=True, timeout=60, check=False,
                       env={"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", **CLUSTER})
    elapsed = time.monotonic() - t0
    assert elapsed < ACTION_BOUND, f"{args} took {elapsed:.1f} s: {p.stderr}"
    return Run(p.returncode, p.stdout, p.stderr)


# ------------------------------------------------------------------------- hamon_disk
@pytest.mark.parametrize(("fault", "extent"), CELLS, ids=IDS)
def test_stop(san, tmp_path, fault, extent):
    paths, ports = EXTENTS[extent]
    n1 = DiskNode("node1", tmp_path)
    urls = san.urls(paths)
    assert n1.run("start", urls).rc == 0
    assert san.registered() and set(san.registered()) == {K1} and san.holder() == K1
    san.inject(fault, ports)
    r = n1.run("stop", urls)
    check_725(r, san, ports)
    san.clear()
    if len(ports) < paths:
        assert r.rc == 0, r.stderr
        assert not r.kamn("KAMN726-E") and not n1.dry_run.exists()
        assert san.registered() == [] and san.holder() is None
        assert n1.last()["verdict"] == "continue"
    else:
        assert r.rc == 1, r.stderr
        assert len(r.kamn("KAMN726-E")) == 1 and r.kamn("HAMN954-E")
        assert n1.dry_run.read_text().startswith("reboot ")
        assert K1 in san.registered() and san.holder() == K1
        assert n1.last()["verdict"] == "terminate-os"


@pytest.mark.parametrize(("fault", "extent"), CELLS, ids=IDS)
def test_monitor(san, tmp_path, fault, extent):
    paths, ports = EXTENTS[extent]
    n1 = DiskNode("node1", tmp_path)
    urls = san.urls(paths)
    assert n1.run("start", urls).rc == 0
    san.inject(fault, ports)
    r = n1.run("monitor", urls)
    check_725(r, san, ports)
    san.clear()
    assert r.rc == (190 if len(ports) < paths else 1), r.stderr
    assert set(san.registered()) == {K1} and san.holder() == K1
    assert not n1.dry_run.exists()


@pytest.mark.parametrize(("fault", "extent"), CELLS, ids=IDS)
def test_start_of_the_standby(san, tmp_path, fault, extent):
    paths, ports = EXTENTS[extent]
    n1, n2 = DiskNode("node1", tmp_path), DiskNode("node2", tmp_path)
    urls = san.urls(paths)
    assert n1.run("start", urls).rc == 0
    san.inject(fault, ports)
    r = n2.run("start", urls)
    check_725(r, san, ports)
    san.clear()
    if len(ports) < paths:
        assert r.rc == 0, r.stderr
        assert set(san.registered()) == {K2} and san.holder() == K2
    else:
        assert r.rc == 1, r.stderr
        assert r.kamn("KAMN726-E") and r.kamn("HAMN955-E")
        assert set(san.registered()) == {K1} and san.holder() == K1


@pytest.mark.parametrize(("fault", "extent"), SHORT, ids=SHORT_IDS)
def test_probe_on_the_standby(san, tmp_path, fault, extent):
    paths, ports = EXTENTS[extent]
    n1, n2 = DiskNode("node1", tmp_path), DiskNode("node2", tmp_path)
    urls = san.urls(paths)
    assert n1.run("start", urls).rc == 0
    before = san.tgt.observe([1])[0]
    san.inject(fault, ports)
    r = n2.run("monitor", urls)   # interval 30000 -> a monitor; the standby is not running
    check_725(r, san, ports)
    san.clear()
    assert r.rc in ((7,) if len(ports) < paths else (7, 1)), r.stderr
    assert san.tgt.observe([1])[0] == before


# ------------------------------------------------------------------------- fence agent
def _unfence(san: San, urls: list[str]) -> None:
    for n in ("node1", "node2"):
        r = fence(n, "-o", "on", "-n", n, "-d", ",".join(urls))
        assert r.rc == 0, r.stderr


@pytest.mark.parametrize(("fault", "extent"), CELLS, ids=IDS)
def test_fence_off(san, fault, extent):
    paths, ports = EXTENTS[extent]
    urls = san.urls(paths)
    _unfence(san, urls)
    assert {K1, K2} <= set(san.registered())
    san.inject(fault, ports)
    r = fence("node1", "-o", "off", "-n", "node2", "-d", ",".join(urls))
    san.clear()
    if len(ports) < paths:
        assert (r.rc, r.stdout) == (0, "Success: Powered OFF\n"), r.stderr
        assert K2 not in san.registered() and K1 in san.registered()
    else:
        assert r.rc == 1, r.stderr
        err = [line for line in r.stderr.splitlines() if "ERROR" in line]
        assert len(err) == 1 and all(p.portal in err[0] for p in san.proxies[:paths]), \
            r.stderr
        assert K2 in san.registered()


@pytest.mark.parametrize(("fault", "extent"), SHORT, ids=SHORT_IDS)
def test_fence_on(san, fault, extent):
    paths, ports = EXTENTS[extent]
    urls = san.urls(paths)
    san.inject(fault, ports)
    r = fence("node1", "-o", "on", "-n", "node1", "-d", ",".join(urls))
    san.clear()
    if len(ports) < paths:
        assert r.rc == 0, r.stderr
        assert "path failed" in r.stderr and K1 in san.registered()
    else:
        assert r.rc == 1 and K1 not in san.registered(), r.stderr


@pytest.mark.parametrize(("fault", "extent"), SHORT, ids=SHORT_IDS)
def test_fence_status(san, fault, extent):
    paths, ports = EXTENTS[extent]
    urls = san.urls(paths)
    _unfence(san, urls)
    san.inject(fault, ports)
    r = fence("node1", "-o", "status", "-n", "node2", "-d", ",".join(urls))
    san.clear()
    if len(ports) < paths:
        assert (r.rc, r.stdout) == (0, "Status: ON\n"), r.stderr
    else:
        assert r.rc == 1 and "cannot tell" in r.stderr, r.stderr


# ------------------------------------------------------------------------- the CLI
def hamon(*args: str, cluster_dir: Path | None = None) -> Run:
    """``python -m hamon``; with ``cluster_dir``, in a cluster where node2 alone is alive
    (tests/fake_cluster.py)."""
    env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "PYTHONPATH": str(TOP), **CLUSTER}
    if cluster_dir is not None:
        env = fake_cluster(cluster_dir, ["node2"], offline=["node1"], node="node2", env=env)
    p = subprocess.run([PYTHON, "-m", "hamon", "--timeout", "1", *args], cwd=TOP,
                       capture_output=True, text=True, timeout=60, check=False, env=env)
    return Run(p.returncode, p.stdout, p.stderr)


@pytest.mark.parametrize(("fault", "extent"), SHORT, ids=SHORT_IDS)
def test_cli_paths_reports_the_faulted_path(san, fault, extent):
    paths, ports = EXTENTS[extent]
    urls = san.urls(paths)
    san.inject(fault, ports)
    r = hamon("--node", "node1", "--json", "paths", ",".join(urls))
    san.clear()
    (disk,) = json.loads(r.stdout)
    states = {p["path"]: p["state"] for p in disk["paths"]}
    assert [states[u] for u in urls] == ["failed" if i in ports else "up"
                                         for i in range(paths)]
    assert r.rc == (0 if len(ports) < paths else 1), r.stderr


def test_recover_after_a_stop_whose_live_path_refused_pr_out(san, tmp_path):
    """Issue 10's last case: one path dead, the live one refuses PR OUT during the stop.
    Every path failed (KAMN726-E, OS termination), and hamon recover's step 4 agrees
    with the reservation read from the disk now."""
    n1 = DiskNode("node1", tmp_path)
    urls = san.urls(2)
    assert n1.run("start", urls).rc == 0
    san.proxies[0].set_rules(FaultRule(FaultKind.SWALLOW))
    san.proxies[1].set_rules(FaultRule(FaultKind.CHECK_CONDITION, opcode=PR_OUT))
    r = n1.run("stop", urls)
    san.clear()
    assert r.rc == 1 and r.kamn("KAMN726-E") and n1.dry_run.exists(), r.stderr
    assert n1.last()["verdict"] == "terminate-os"
    assert san.holder() == K1
    rec = hamon("--node", "node1", "--json", "recover", "--journal", n1.journal.path,
                ",".join(urls))
    plan = json.loads(rec.stdout)
    step4 = next(s for s in plan["steps"] if s["step"] == 4)
    assert step4["applies"] != "no", step4   # the reservation IS held: never "nothing"


def _hold(san: San, tmp_path: Path, urls: list[str]) -> None:
    assert DiskNode("node1", tmp_path).run("start", urls).rc == 0
    assert san.holder() == K1


@pytest.mark.parametrize(("fault", "extent"), SHORT, ids=SHORT_IDS)
def test_cli_keys_and_reservation(san, tmp_path, fault, extent):
    paths, ports = EXTENTS[extent]
    urls = san.urls(paths)
    _hold(san, tmp_path, urls)
    san.inject(fault, ports)
    keys = hamon("--json", "keys", ",".join(urls))
    res = hamon("--json", "reservation", ",".join(urls))
    san.clear()
    for r in (keys, res):
        assert "Traceback" not in r.stderr
        for i in ports:   # every path that failed is named: on stderr when routed around,
            path = san.urls(2)[i]      # else in the disk's error ("no path works (...)")
            named = r.stderr if len(ports) < paths else r.stdout
            assert f"({path}): path failed" in named if len(ports) < paths else \
                f"{path}: " in named, r.stdout + r.stderr
    if len(ports) < paths:   # read through the working path: the LUN's truth
        assert keys.rc == 0 and res.rc == 0, keys.stderr + res.stderr
        listed = json.loads(keys.stdout)[0]["keys"]   # one entry per registered nexus
        assert listed == [f"0x{K1:x}"] * len(san.registered())
        assert json.loads(res.stdout)[0]["key"] == f"0x{K1:x}"
    else:
        assert keys.rc == 1 and res.rc == 1
        assert json.loads(keys.stdout)[0]["keys"] is None
        assert json.loads(res.stdout)[0]["ok"] is False


@pytest.mark.parametrize(("fault", "extent"), SHORT, ids=SHORT_IDS)
def test_cli_cancel(san, tmp_path, fault, extent):
    """hamon reservation cancel of a dead node's reservation: through the working path
    when one path faults (verified by the observer), refused with exit 1 and nothing
    changed when no path works."""
    paths, ports = EXTENTS[extent]
    urls = san.urls(paths)
    _hold(san, tmp_path, urls)
    san.inject(fault, ports)
    r = hamon("--node", "node2", "--nodes", "node1,node2", "reservation", "cancel",
              ",".join(urls), "--journal", str(tmp_path / "cancel.journal"),
              cluster_dir=tmp_path / "cluster")
    san.clear()
    assert "Traceback" not in r.stderr
    if len(ports) < paths:
        assert r.rc == 0, r.stdout + r.stderr
        assert san.holder() is None and K1 not in san.registered()
    else:
        assert r.rc == 1, r.stdout + r.stderr
        assert san.holder() == K1 and K1 in san.registered()
