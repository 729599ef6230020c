"""Session-wide rules for every tier."""
from __future__ import annotations

import os

import pytest

#: The cluster name every reservation key the tests derive is made with (hamon.lib.keys,
#: issue 12): explicit, so the host's own corosync configuration plays no part, and the
#: cluster tier's corosync (pcmk.Cluster's default) has the same name. QEMU guests never
#: see this variable; their agents take the name from the host's corosync.conf, and the
#: system tier's tests derive guest keys from there (test_fault_matrix_vm.key_for_node).
os.environ["HAMON_CLUSTER_NAME"] = "hamon-test"


def _no_skip() -> bool:
    return os.environ.get("HAMON_NO_SKIP") == "1"


def _reason(longrepr: object) -> str:
    return str(longrepr[2]) if isinstance(longrepr, tuple) and len(longrepr) == 3 \
        else str(longrepr)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """With HAMON_NO_SKIP=1 (./run-tests, CI) a skipped test is a failure, and so is an
    xfail (failing as expected, or passing unexpectedly): neither has shown what it claims.

    A real tier that skips because tgtd, Pacemaker or QEMU is missing has not passed;
    the run must install and start what it needs.
    """
    outcome = yield
    report = outcome.get_result()
    if not _no_skip():
        return
    if hasattr(report, "wasxfail"):
        why = report.wasxfail
        del report.wasxfail  # else the terminal reporter still counts it as x(fail|pass)
        report.outcome = "failed"
        report.longrepr = f"xfail under HAMON_NO_SKIP=1: {why or 'no reason given'}"
    elif report.skipped:
        report.outcome = "failed"
        report.longrepr = f"skipped under HAMON_NO_SKIP=1: {_reason(report.longrepr)}"


@pytest.hookimpl(hookwrapper=True)
def pytest_make_collect_report(collector):
    """Module-level skips (``pytest.skip(allow_module_level=True)``, a failing
    ``pytest.importorskip`` at import time) skip a whole file at collection, where the
    hook above never sees them: under HAMON_NO_SKIP=1 they fail the collection."""
    outcome = yield
    report = outcome.get_result()
    if _no_skip() and report.skipped:
        report.outcome = "failed"
        report.longrepr = (f"{collector.nodeid or collector.name}: skipped at collection "
                           f"under HAMON_NO_SKIP=1: {_reason(report.longrepr)}")


@pytest.fixture(scope="session")
def readable_checkout():
    """A copy of this checkout's ``agents/`` and ``hamon/`` that user ``nobody`` can read.

    ocf-tester runs meta-data as nobody, and a test does the same; from a checkout under
    a 0700 directory (root's home, where root usually clones) nobody cannot read the
    agent, so those runs use this copy: a fresh directory under /tmp, 0755, files 0644
    (0755 for the executables), removed at the end of the session.
    """
    import shutil
    import stat
    import tempfile
    from pathlib import Path

    top = Path(__file__).resolve().parents[1]
    root = Path(tempfile.mkdtemp(prefix="hamon-readable-"))
    try:
        for d in ("agents", "hamon"):
            shutil.copytree(top / d, root / d, symlinks=False,
                            ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        for p in [root, *root.rglob("*")]:
            executable = p.is_dir() or p.stat().st_mode & stat.S_IXUSR
            p.chmod(0o755 if executable else 0o644)
        yield root
    finally:
        shutil.rmtree(root, ignore_errors=True)
