"""A lean start (issue 14, item 3): -o metadata imports no engine, libiscsi is loaded
without forking, the agent leaves through os._exit with everything flushed."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from hamon import fence, fence_core

TOP = Path(__file__).resolve().parents[2]
AGENT = TOP / "agents" / "fence_hamon_scsi"


def test_metadata_defaults_agree_with_fence_core():
    assert fence.DEFAULT_ALIAS == fence_core.DEFAULT_ALIAS
    assert fence.DEFAULT_SCSI_TIMEOUT == fence_core.DEFAULT_SCSI_TIMEOUT
    assert fence_core.DEFAULT_TYPE.short == fence.DEFAULT_TYPE_SHORT


def test_metadata_imports_no_engine_and_exits_cleanly():
    p = subprocess.run([sys.executable, "-X", "importtime", str(AGENT), "-o", "metadata"],
                       capture_output=True, text=True, timeout=60, check=False)
    assert p.returncode == 0, p.stderr
    assert p.stdout.rstrip().endswith("</resource-agent>")  # flushed before os._exit
    loaded = {line.rsplit("|", 1)[-1].strip() for line in p.stderr.splitlines()
              if line.startswith("import time:")}
    assert "hamon.fence" in loaded
    assert not {m for m in loaded if m.startswith(("hamon.lib", "hamon.fence_core"))}, \
        sorted(m for m in loaded if m.startswith("hamon"))
    assert not {"typing", "dataclasses", "inspect", "hashlib"} & loaded, loaded


def test_a_bad_option_exits_1_with_its_message_through_the_same_exit():
    p = subprocess.run([sys.executable, str(AGENT), "-o", "off", "--no-such-option"],
                       capture_output=True, text=True, timeout=60, check=False)
    assert p.returncode == 1 and p.stderr.strip(), (p.returncode, p.stderr)


def test_libiscsi_is_loaded_by_soname_without_ctypes_util():
    code = ("import sys; from hamon.lib.transport import iscsi; iscsi._lib(); "
            "print('ctypes.util' in sys.modules)")
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                       timeout=60, check=False, cwd=TOP)
    assert p.returncode == 0 and p.stdout.strip() == "False", p.stderr


def test_config_error_is_a_fence_error_served_lazily():
    assert issubclass(fence.ConfigError, fence_core.FenceError)
    assert fence.ConfigError.__module__ == "hamon.fence"
