"""The VM tier (see README.md here): every test in tests/system boots QEMU.

Fixture `vm`: `vm(scenario, *args, **kw)` runs one scenario in a fresh VM (vm.run) with
its run directory under the test's tmp_path and returns the VMResult; the summary of every
run (how it ended, timings, output tails, console tail) is printed, so pytest shows it for
a failed test. Nothing here skips: without QEMU or the kernel package the tests fail and
say how to get them (CI installs them with `tools/bootstrap system`).
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import pytest
import vm as _vm

HERE = Path(__file__).resolve().parent


def pytest_collection_modifyitems(config, items):
    for item in items:
        if HERE in Path(str(item.fspath)).resolve().parents:
            item.add_marker(pytest.mark.system)


@pytest.fixture(scope="session")
def vm_kernel():
    if shutil.which(_vm.QEMU) is None:
        pytest.fail(
            f"{_vm.QEMU} not found: the VM tier needs QEMU; run `tools/bootstrap system` "
            "(Debian packages in tools/apt/system.txt)",
            pytrace=False,
        )
    try:
        k = _vm.kernel()
        _vm.initramfs(k)
    except _vm.VMError as e:
        pytest.fail(f"VM tier not ready: {e}", pytrace=False)
    return k


@pytest.fixture
def vm(vm_kernel, tmp_path):
    n = 0

    def run(scenario, *args, **kw):
        nonlocal n
        kw.setdefault("workdir", tmp_path / f"vm{n}")
        n += 1
        r = _vm.run(scenario, *args, **kw)
        print(f"=== VM run {scenario}\n{r.summary()}")
        return r

    return run


def pytest_terminal_summary(terminalreporter):
    """The VM cluster's scenarios, one row each: wall time, takeover time and the checker's
    counts per LUN (test_vm_cluster.py), shown whether the tests' output was captured
    or not."""
    mod = next((m for n, m in list(sys.modules.items())
                if n.rsplit(".", 1)[-1] == "test_vm_cluster"), None)
    if mod is None or not getattr(mod, "RESULTS", None):
        return
    terminalreporter.section("VM cluster: scenarios and the checker's counts")
    for line in mod.results_table():
        terminalreporter.write_line(line)
