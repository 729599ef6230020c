"""Fixtures of the cluster tier: one real two-node cluster for the whole session.

    cluster_session  session-scoped Cluster (started on first use, ~6 s; stopped after the
                     last test that needs it)
    cluster          the same Cluster, reset to the baseline before and after each test
    fence_recorder   tests/cluster/fence_recorder installed (also as fence_recorder_fabric),
                     with a record file and helpers to read the calls

See README.md in this directory.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import time
from pathlib import Path

import pytest

from .pcmk import REPO, Cluster, ClusterError, preflight

HERE = Path(__file__).resolve().parent



def _keep_setting() -> bool | None:
    v = os.environ.get("HAMON_CLUSTER_KEEP")
    return None if v is None else v not in ("", "0", "no", "false")


def _sigterm(signum, frame):
    raise KeyboardInterrupt(f"signal {signum}")


def _start(c: Cluster) -> None:
    try:
        c.start()
    except BaseException:
        c.stop()
        raise
    print(f"\nhamon cluster: started in {c.startup_seconds:.1f}s, work dir {c.workdir}",
          file=sys.stderr)


def _finish(c: Cluster, session) -> None:
    """Stop the cluster; keep its work dir (logs, CIBs) if a test failed or
    HAMON_CLUSTER_KEEP=1 (HAMON_CLUSTER_KEEP=0: never)."""
    if c._stopped:
        return
    keep = _keep_setting()
    if keep is None:
        keep = session.testsfailed > 0
    c.keep = keep
    if keep and c.workdir:
        (c.workdir / "KEPT").write_text(time.ctime() + "\n")
    c.stop()


@pytest.fixture(scope="session")
def cluster_session(request):
    """The tier's one Cluster. Started on first use; stopped after the last test that
    uses it (see pytest_runtest_teardown below), so later tiers do not share the CPU with
    it; started again if a later test asks for it."""
    why = preflight()
    if why:
        pytest.skip(f"cluster tier: {why}")
    # A SIGTERM (CI timeout) should stop the session and run the finalizers like Ctrl-C
    # does, not just kill pytest. The nodes die with pytest in any case (PR_SET_PDEATHSIG),
    # but the bridge and the work dir would stay until the next run removes them.
    if signal.getsignal(signal.SIGTERM) in (signal.SIG_DFL, None):
        signal.signal(signal.SIGTERM, _sigterm)
    c = Cluster(python_packages={"hamon": REPO / "hamon"}, keep=False)
    _start(c)
    _CLUSTERS.append(c)
    yield c
    _finish(c, request.session)


_CLUSTERS: list[Cluster] = []


@pytest.fixture
def cluster(cluster_session):
    """The session cluster at its baseline: both nodes online, no resources, stonith
    disabled, no test agents. Reset again afterwards (resources first, then agents)."""
    c = cluster_session
    if c._stopped:
        _start(c)
        c._dirty = False
    if getattr(c, "_dirty", True):
        c.reset()
    c._dirty = True
    yield c
    c.reset()
    c._dirty = False


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_teardown(item, nextitem):
    yield
    if nextitem is None or "cluster_session" not in getattr(nextitem, "fixturenames", ()):
        for c in _CLUSTERS:
            _finish(c, item.session)


class FenceRecorder:
    """The fence_recorder agent as installed on the nodes, and its record file."""

    def __init__(self, cluster: Cluster):
        self.cluster = cluster
        self.record_file = cluster.shared_dir / f"fence-{time.monotonic_ns()}.jsonl"

    def calls(self, action: str | None = None, plug: str | None = None) -> list[dict]:
        try:
            lines = self.record_file.read_text().splitlines()
        except FileNotFoundError:
            return []
        out = [json.loads(x) for x in lines if x.strip()]
        return [c for c in out if (action is None or c["action"] == action)
                and (plug is None or c["plug"] == plug)]

    def wait_call(self, action: str, plug: str | None = None, timeout: float = 60,
                  count: int = 1) -> list[dict]:
        return self.cluster.wait_until(
            lambda: (lambda cs: cs if len(cs) >= count else None)(self.calls(action, plug)),
            timeout, what=f"{count} fence_recorder {action} call(s) for {plug or 'any'}",
        )

    def create(self, device: str = "fr", agent: str = "fence_recorder",
               hosts: str | None = None, node: str = "node1", extra: tuple = ()) -> None:
        """pcs stonith create DEVICE AGENT record_file=... pcmk_host_list=... EXTRA..."""
        hosts = hosts or " ".join(self.cluster.node_names)
        self.cluster.pcs(node, "stonith", "create", device, agent,
                         f"record_file={self.record_file}", f"pcmk_host_list={hosts}", *extra)


@pytest.fixture
def fence_recorder(cluster):
    for name in ("fence_recorder", "fence_recorder_fabric"):
        cluster.install_agent(fence=HERE / "fence_recorder", name=name)
    return FenceRecorder(cluster)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    rep = outcome.get_result()
    if rep.when == "call" and rep.failed:
        c = item.funcargs.get("cluster") or item.funcargs.get("cluster_session")
        if isinstance(c, Cluster) and c.workdir:
            try:
                rep.sections.append(("cluster snapshot", c.snapshot()))
                for name in c.node_names:
                    log = c.log_file(name)
                    if log.exists():
                        tail = log.read_text(errors="replace").splitlines()[-80:]
                        rep.sections.append((f"{name} {log}", "\n".join(tail)))
            except (ClusterError, OSError) as e:
                rep.sections.append(("cluster snapshot", f"unavailable: {e}"))
