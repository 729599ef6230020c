"""HAMON_NO_SKIP=1 turns every kind of skip into a failure (issue 11, item 7): a skip
mark, pytest.skip() in a test, a module-level skip, a failing importorskip, an xfail and
an unexpected pass of an xfail. Tested by running pytest on small files next to a copy
of tests/conftest.py, in a process of its own; without the variable they skip as usual."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

CONFTEST = Path(__file__).resolve().parents[1] / "conftest.py"

CASES = {
    "test_mark.py": "import pytest\n@pytest.mark.skip(reason='r')\ndef test_a():\n    pass\n",
    "test_skipif.py": "import pytest\n@pytest.mark.skipif(True, reason='r')\n"
                      "def test_a():\n    pass\n",
    "test_call.py": "import pytest\ndef test_a():\n    pytest.skip('r')\n",
    "test_fixture.py": "import pytest\n@pytest.fixture\ndef f():\n    pytest.skip('r')\n"
                       "def test_a(f):\n    pass\n",
    "test_module.py": "import pytest\npytest.skip('r', allow_module_level=True)\n"
                      "def test_a():\n    pass\n",
    "test_importorskip.py": "import pytest\npytest.importorskip('hamon_no_such_module')\n"
                            "def test_a():\n    pass\n",
    "test_importorskip_in_test.py": "import pytest\ndef test_a():\n"
                                    "    pytest.importorskip('hamon_no_such_module')\n",
    "test_xfail.py": "import pytest\n@pytest.mark.xfail(reason='r')\ndef test_a():\n"
                     "    assert False\n",
    "test_xfail_call.py": "import pytest\ndef test_a():\n    pytest.xfail('r')\n",
    "test_xpass.py": "import pytest\n@pytest.mark.xfail(reason='r')\ndef test_a():\n"
                     "    pass\n",
}


def _run(tmp_path: Path, name: str, no_skip: bool) -> subprocess.CompletedProcess[str]:
    d = tmp_path / name.removesuffix(".py")
    d.mkdir()
    shutil.copy(CONFTEST, d / "conftest.py")
    (d / name).write_text(CASES[name])
    env = {k: v for k, v in os.environ.items() if k != "HAMON_NO_SKIP"}
    if no_skip:
        env["HAMON_NO_SKIP"] = "1"
    return subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                           "-rA", str(d)], cwd=d, env=env, capture_output=True, text=True,
                          timeout=120, check=False)


@pytest.mark.parametrize("name", sorted(CASES))
def test_every_kind_of_skip_fails_under_hamon_no_skip(tmp_path, name):
    p = _run(tmp_path, name, no_skip=True)
    # 1: tests failed; 2: a collection error interrupted the run (a module-level skip)
    assert p.returncode in (1, 2), p.stdout + p.stderr
    assert "HAMON_NO_SKIP=1" in p.stdout, p.stdout
    assert " skipped" not in p.stdout.splitlines()[-1], p.stdout
    assert "xfailed" not in p.stdout and "xpassed" not in p.stdout, p.stdout


@pytest.mark.parametrize("name", sorted(CASES))
def test_without_it_skips_stay_skips(tmp_path, name):
    p = _run(tmp_path, name, no_skip=False)
    # 5: "no tests collected" when the only file skipped itself at collection
    assert p.returncode in (0, 5), p.stdout + p.stderr
    last = p.stdout.splitlines()[-1]
    assert "skipped" in last or "xfailed" in last or "xpassed" in last, p.stdout
