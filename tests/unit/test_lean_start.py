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
#: What no fence action loads (issue 14): dataclasses (Python 3.11 compiles ~6 methods per
#: class at import) and what they pull (inspect, ast, dis), OpenSSL's hashlib, and the
#: rooms of other actions and other device kinds.
NEVER = {"dataclasses", "inspect", "ast", "dis", "hashlib", "_hashlib", "ipaddress",
         "hamon.lib.multipath.hdlm", "hamon.lib.multipath.dmmp",
         "hamon.lib.reservation.withdrawal", "hamon.lib.reservation.write_probe",
         "hamon.lib.reservation.path_key", "hamon.lib.devcheck"}
#: ... and with iscsi:// devices only, the sysfs side of /dev paths.
NEVER_ISCSI = NEVER | {"hamon.lib.multipath.sysfs", "hamon.lib.multipath.single"}
#: Loaded only to say something (a KAMN725-W for a failed path).
SPEAKING = {"hamon.lib.messages", "datetime"}
#: Two paths to one LUN on a port nothing listens on: login fails at once (refused).
CLOSED = ",".join(f"iscsi://127.0.0.{i}:1/iqn.2026-12.org.hamon:closed/1" for i in (1, 2))


def _startup() -> set[str]:
    """What this interpreter loads before any code of ours (a venv's site hooks load
    ipaddress, say): not the agent's doing, so not held against it."""
    p = subprocess.run([sys.executable, "-c", "import sys; print(*sys.modules)"],
                       capture_output=True, text=True, timeout=60, check=True)
    loaded = set(p.stdout.split())
    assert "sys" in loaded and not {"dataclasses", "inspect"} & loaded, loaded
    return loaded


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
    assert {"hamon.agents.fence.actions", "hamon.agents.fence.fencer",
            "hamon.lib.multipath.single"} <= loaded  # it got as far as the device
    assert "hamon.agents.fence.state" not in loaded  # only on (this node) writes it
    assert not (NEVER | SPEAKING) & loaded - _startup(), sorted((NEVER | SPEAKING) & loaded)


def test_off_on_iscsi_urls_loads_no_dataclass_and_only_the_iscsi_rooms():
    """An ``off`` that gets as far as the login (refused: nothing listens on port 1)
    loaded the iSCSI transport, and none of what :data:`NEVER_ISCSI` names."""
    p, loaded = _imports("-o", "off", "-n", "node2", "-d", CLOSED, "--local-node", "node1")
    assert p.returncode == 1 and "cannot connect to 127.0.0.1:1" in p.stderr, p.stderr
    assert {"hamon.lib.transport.iscsi", "hamon.lib.transport.libiscsi",
            "hamon.lib.multipath.iscsi_group"} <= loaded
    assert not NEVER_ISCSI & loaded - _startup(), sorted(NEVER_ISCSI & loaded)


def test_the_whole_fence_path_imports_no_dataclass():
    """fencing.py, the engine and every transport an action may use, imported in a fresh
    interpreter: not one dataclass is generated (``dataclasses`` is never imported), and
    nothing that only speaks, leaves a disk or reads sysfs is loaded."""
    code = ("import sys; sys.path.append('/usr/share/fence'); import fencing; "
            "import hamon.agents.fence.actions, hamon.agents.fence.agent; "
            "import hamon.lib.transport.iscsi, hamon.lib.transport.iscsi_url, "
            "hamon.lib.transport.loop, hamon.lib.transport.sgio; print(*sys.modules)")
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                       timeout=60, check=False, cwd=TOP)
    assert p.returncode == 0, p.stderr
    loaded = set(p.stdout.split())
    assert {"fencing", "hamon.agents.fence.fencer", "hamon.lib.transport.sgio"} <= loaded
    bad = (NEVER_ISCSI | SPEAKING) & loaded - _startup()
    assert not bad, sorted(bad)


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
