"""The house's import rules hold: no loop, nothing importing upward, agents apart, the
in-memory target only in tests, no room over the size bar (tools/import-graph)."""
from __future__ import annotations

import importlib.machinery
import importlib.util
from pathlib import Path

import pytest

TOOL = Path(__file__).resolve().parents[2] / "tools" / "import-graph"


@pytest.fixture(scope="module")
def ig():
    loader = importlib.machinery.SourceFileLoader("import_graph", str(TOOL))
    spec = importlib.util.spec_from_loader("import_graph", loader)
    mod = importlib.util.module_from_spec(spec)
    loader.exec_module(mod)
    return mod


def test_hamon_has_no_loop_no_upward_import_and_keeps_its_wings_apart(ig):
    g = ig.graph()
    assert len(g) > 40  # the graph was read, not an empty directory
    assert ig.violations(g) == []


def test_no_module_is_over_the_size_bar(ig):
    assert ig.too_large() == []


def test_the_checker_sees_a_loop_an_upward_import_and_a_test_only_import(ig):
    g = {
        "hamon.lib.disk": {"hamon.lib.multipath.dmmp"},
        "hamon.lib.multipath.dmmp": {"hamon.lib.disk"},
        "hamon.lib.scsi.pr": {"hamon.lib.reservation"},
        "hamon.lib.reservation": {"hamon.lib.sim.target"},
        "hamon.lib.sim.target": set(),
        "hamon.agents.fence.agent": {"hamon.agents.disk.settings"},
        "hamon.agents.disk.settings": set(),
    }
    bad = ig.violations(g)
    assert "loop: hamon.lib.disk -> hamon.lib.multipath.dmmp" in bad
    assert any(b.startswith("upward: hamon.lib.scsi.pr") for b in bad)
    assert any(b.startswith("test-only: hamon.lib.reservation") for b in bad)
    assert any(b.startswith("apart: hamon.agents.fence.agent") for b in bad)
    assert len(bad) == 4


def test_imports_inside_functions_and_under_type_checking_count(ig, tmp_path, monkeypatch):
    pkg = tmp_path / "hamon" / "lib"
    pkg.mkdir(parents=True)
    (tmp_path / "hamon" / "__init__.py").write_text("")
    (pkg / "__init__.py").write_text("")
    (pkg / "a.py").write_text("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n"
                              "    from hamon.lib.b import X\n")
    (pkg / "b.py").write_text("def f():\n    from hamon.lib import a\n")
    monkeypatch.setattr(ig, "ROOT", tmp_path)
    g = ig.graph()
    assert g["hamon.lib.a"] == {"hamon.lib.b"} and g["hamon.lib.b"] == {"hamon.lib.a"}
    assert ig.cycles(g) == [["hamon.lib.a", "hamon.lib.b"]]
