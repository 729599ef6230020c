"""hamon_disk as Pacemaker sees it: metadata, generated documents, the OCF exit codes."""
from __future__ import annotations

import importlib.machinery
import importlib.util
import io
import os
import shlex
import shutil
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from hamon.agents.disk import agent as hagent
from hamon.agents.disk import metadata as hmeta
from hamon.agents.disk.settings import HIDDEN_PARAMETERS, parse_settings
from hamon.agents.disk.state import State
from hamon.lib.messages import CATALOG

TOP = Path(__file__).resolve().parents[2]
AGENT = TOP / "agents" / "ocf" / "hamon_disk"
PYTHON = "/usr/bin/python3"  # Debian's: resource-agents' ocf.py is installed for it
DTD = Path("/usr/share/resource-agents/ra-api-1.dtd")
RNG = Path("/usr/share/resource-agents/metadata.rng")

GEN_DOCS = TOP / "tools" / "gen-docs"

needs_ra = pytest.mark.skipif(not Path("/usr/lib/ocf/lib/heartbeat/ocf.py").exists(),
                              reason="resource-agents is not installed")


@pytest.fixture(scope="module")
def docs():
    """tools/gen-docs as a module (it is a script without .py)."""
    loader = importlib.machinery.SourceFileLoader("gen_docs", str(GEN_DOCS))
    spec = importlib.util.spec_from_loader("gen_docs", loader)
    mod = importlib.util.module_from_spec(spec)
    sys.modules["gen_docs"] = mod  # dataclasses look their module up there
    loader.exec_module(mod)
    return mod


def run_agent(action: str, env: dict[str, str] | None = None, user: str | None = None,
              agent: Path = AGENT) -> subprocess.CompletedProcess[str]:
    """The agent as a process; as ``user`` through su (give ``agent`` a copy that user
    can read: the readable_checkout fixture)."""
    base = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "OCF_ROOT": "/usr/lib/ocf",
            "HAMON_NODE": "node1", **(env or {})}
    argv = [PYTHON, str(agent), action]
    if user:
        exports = " ".join(f"{k}={shlex.quote(v)}" for k, v in base.items())
        argv = ["su", user, "-s", "/bin/sh", "-c",
                f"cd / && env {exports} {shlex.quote(str(agent))} {action}"]
    return subprocess.run(argv, env=base, capture_output=True, text=True, timeout=60,
                          check=False)


@needs_ra
def test_checked_in_metadata_is_what_the_agent_prints():
    out = run_agent("meta-data")
    assert out.returncode == 0, out.stderr
    assert out.stdout == (TOP / "metadata" / "hamon_disk.xml").read_text()
    assert out.stdout == hmeta.metadata()


@needs_ra
def test_metadata_is_valid_against_both_resource_agents_schemas():
    from lxml import etree

    doc = etree.parse(str(TOP / "metadata" / "hamon_disk.xml"))
    dtd = etree.DTD(str(DTD))
    assert dtd.validate(doc), dtd.error_log
    rng = etree.RelaxNG(etree.parse(str(RNG)))
    assert rng.validate(doc), rng.error_log


@needs_ra
def test_descriptions_survive_ocf_py_unescaped_string_building():
    """ocf.py concatenates strings; _text/_attr make any text safe, and the round trip
    through the XML gives back exactly the parameter descriptions of PARAMETERS."""
    root = ET.fromstring(hmeta.metadata())
    got = {p.get("name"): (p.findtext("shortdesc"), p.findtext("longdesc"),
                           p.find("content").get("default"))
           for p in root.iter("parameter")}
    for name, short, long, _ctype, _unique, default in hmeta.PARAMETERS:
        assert got[name] == (short, long, default)
    ocf = hmeta.load_ocf()
    agent = ocf.Agent("x", shortdesc=hmeta.xml_text("a < b & c"),
                      longdesc=hmeta.xml_text("<x>"))
    agent.add_parameter("p", shortdesc=hmeta.xml_text("s"),
                        longdesc=hmeta.xml_text("l & <m>"),
                        default=hmeta.xml_attr('say "hi" & <bye>'))
    agent.add_action("start", timeout=10)
    parsed = ET.fromstring(agent.to_xml())
    assert parsed.findtext("shortdesc") == "a < b & c"
    assert parsed.find(".//content").get("default") == 'say "hi" & <bye>'


@needs_ra
def test_test_hooks_are_read_but_not_shown_to_administrators(tmp_path):
    """os_termination_dry_run is for tests and demos: neither the metadata (pcs, the
    checked-in XML) nor the man page lists it, yet the agent still honours it."""
    assert HIDDEN_PARAMETERS == ("os_termination_dry_run",)
    names = {p.get("name") for p in ET.fromstring(hmeta.metadata()).iter("parameter")}
    page = (TOP / "man" / "ocf_hamon_hamon_disk.7").read_text()
    for hidden in HIDDEN_PARAMETERS:
        assert hidden not in names and hidden.replace("_", "") not in page.replace("_", "")
        assert hidden not in (TOP / "metadata" / "hamon_disk.xml").read_text()
    s = parse_settings({"scsi_device": "/dev/sdb",
                        "os_termination_dry_run": str(tmp_path / "t")}, env={}, node="n1")
    assert s.dry_run_file == str(tmp_path / "t")
    s = parse_settings({"scsi_device": "/dev/sdb"},
                       env={"HAMON_OS_TERMINATION_DRY_RUN": str(tmp_path / "e")}, node="n1")
    assert s.dry_run_file == str(tmp_path / "e")


@needs_ra
def test_man_page_and_message_catalog_are_current(docs):
    assert docs.main(["--check", "hamon_disk"]) == 0, "run tools/gen-docs (make docs)"


@needs_ra
def test_man_page_renders_every_parameter_action_and_message():
    page = (TOP / "man" / "ocf_hamon_hamon_disk.7").read_text()
    for name, *_ in hmeta.PARAMETERS:
        assert f"\\fB{name}\\fR" in page
    for m in CATALOG.values():
        assert m.full_id.replace("-", "\\-") in page
    assert shutil.which("man"), "man is needed (tools/apt/base.txt installs man-db, groff)"
    out = subprocess.run(["man", "-l", "-"], input=page, capture_output=True, text=True,
                         env={"MANWIDTH": "80", "PATH": os.environ["PATH"]}, timeout=30)
    assert "SUPPORTED PARAMETERS" in out.stdout and "KAMN726-E" in out.stdout, out.stderr


def test_messages_md_lists_the_whole_catalog(docs):
    text = docs.messages_md()
    for m in CATALOG.values():
        assert f"## {m.full_id}" in text and m.explanation in text


# -- the agent process ------------------------------------------------------------------------
@needs_ra
@pytest.mark.skipif(os.geteuid() != 0, reason="su needs root")
def test_meta_data_works_as_nobody_as_ocf_tester_runs_it(readable_checkout):
    agent = readable_checkout / "agents" / "ocf" / "hamon_disk"
    out = run_agent("meta-data", user="nobody", agent=agent)
    assert out.returncode == 0, out.stderr
    assert out.stdout == (TOP / "metadata" / "hamon_disk.xml").read_text()


@needs_ra
def test_usage_and_unknown_actions():
    out = subprocess.run([PYTHON, str(AGENT), "--help"], capture_output=True, text=True,
                         timeout=30, env={"OCF_ROOT": "/usr/lib/ocf"})
    assert out.returncode == 0 and "validate-all" in out.stdout
    assert run_agent("promote", {"OCF_RESKEY_dmmp_device": "/dev/mapper/x"}).returncode == 3


@needs_ra
def test_configuration_errors(tmp_path):
    env = {"HAMON_STATE_DIR": str(tmp_path), "OCF_RESOURCE_INSTANCE": "shared-disk"}
    out = run_agent("validate-all", env)
    assert out.returncode == 6 and "ocf-exit-reason:give exactly one" in out.stderr
    assert run_agent("start", env).returncode == 6
    # a probe of a resource that cannot run here: not running; a stop of it: done
    assert run_agent("monitor", {**env, "OCF_RESKEY_CRM_meta_interval": "0"}).returncode == 7
    assert run_agent("stop", env).returncode == 0
    # ... unless a start began on this node: then the stop cannot confirm anything
    State(str(tmp_path), "shared-disk").update(active=True)
    out = run_agent("stop", env)
    assert out.returncode == 6, out.stderr
    bad = run_agent("validate-all", {**env, "OCF_RESKEY_scsi_device": "/dev/hamon-nope"})
    assert bad.returncode == 5 and "no such device" in bad.stderr


@needs_ra
def test_handle_maps_config_errors_without_a_process(tmp_path, monkeypatch):
    ocf = hmeta.load_ocf()
    monkeypatch.setattr("sys.stderr", io.StringIO())
    env = {"OCF_RESOURCE_INSTANCE": "r", "HAMON_STATE_DIR": str(tmp_path),
           "OCF_RESKEY_CRM_meta_interval": "0"}
    monkeypatch.delenv("OCF_RESKEY_scsi_device", raising=False)
    monkeypatch.delenv("OCF_RESKEY_dmmp_device", raising=False)
    assert hagent.handle("monitor", ocf, env) == 7
    assert hagent.handle("validate-all", ocf, env) == 6
