"""A lean start (issue 14, item 3): -o metadata imports no engine, libiscsi is loaded
without forking, the agent leaves through os._exit with everything flushed.

The fence wing keeps it by construction (hamon/agents/fence/agent.py): the agent module
imports only the option table and the error types, both import-free; the engine
(actions, and through it the fencer and hamon.lib) is imported once fencing.py has
answered the documentation actions.
"""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from hamon.agents.fence import errors, options, settings
from hamon.lib.scsi.pr import ReservationType

TOP = Path(__file__).resolve().parents[2]
AGENT = TOP / "agents" / "fence_hamon_scsi"
#: Every hamon module a documentation run may load.
DOCS_ONLY = {"hamon", "hamon.agents", "hamon.agents.fence", "hamon.agents.fence.agent",
             "hamon.agents.fence.options", "hamon.agents.fence.errors"}


def _imports(*args: str) -> tuple[subprocess.CompletedProcess[str], set[str]]:
    p = subprocess.run([sys.executable, "-X", "importtime", str(AGENT), *args],
                       capture_output=True, text=True, timeout=60, check=False)
    loaded = {line.rsplit("|", 1)[-1].strip() for line in p.stderr.splitlines()
              if line.startswith("import time:")}
    return p, loaded


def test_settings_take_the_defaults_the_metadata_shows():
    s = settings.Settings(devices=["/dev/sdb"], local_node="node1")
    assert s.rtype is ReservationType.WRITE_EXCLUSIVE_REGISTRANTS_ONLY
    assert s.rtype.short == options.DEFAULT_TYPE_SHORT
    assert s.alias == options.DEFAULT_ALIAS == "fence_hamon_scsi"
    assert s.scsi_timeout == options.DEFAULT_SCSI_TIMEOUT == 5.0


def test_metadata_imports_no_engine_and_exits_cleanly():
    p, loaded = _imports("-o", "metadata")
    assert p.returncode == 0, p.stderr
    assert p.stdout.rstrip().endswith("</resource-agent>")  # flushed before os._exit
    assert "hamon.agents.fence.agent" in loaded
    assert {m for m in loaded if m.startswith("hamon")} <= DOCS_ONLY, \
        sorted(m for m in loaded if m.startswith("hamon"))
    assert not {"typing", "dataclasses", "inspect", "hashlib"} & loaded, loaded


def test_an_action_loads_the_engine_on_demand():
    """The other side of the boundary: an action does get the engine (and fails here with
    its one line, since the device does not exist)."""
    p, loaded = _imports("-o", "off", "-n", "node2", "-d", "/dev/sdzz",
                         "--local-node", "node1")
    assert p.returncode == 1 and "/dev/sdzz" in p.stderr, p.stderr
    assert {"hamon.agents.fence.actions", "hamon.agents.fence.fencer"} <= loaded
    assert "hamon.agents.fence.state" not in loaded  # only on (this node) writes it


def test_a_bad_option_exits_1_with_its_message_through_the_same_exit():
    p = subprocess.run([sys.executable, str(AGENT), "-o", "off", "--no-such-option"],
                       capture_output=True, text=True, timeout=60, check=False)
    assert p.returncode == 1 and p.stderr.strip(), (p.returncode, p.stderr)


def test_libiscsi_is_loaded_by_soname_without_ctypes_util():
    code = ("import sys; from hamon.lib.transport import libiscsi; libiscsi.library(); "
            "print('ctypes.util' in sys.modules)")
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                       timeout=60, check=False, cwd=TOP)
    assert p.returncode == 0 and p.stdout.strip() == "False", p.stderr


def test_a_config_error_is_a_fence_error():
    assert issubclass(errors.ConfigError, errors.FenceError)
