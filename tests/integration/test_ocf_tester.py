"""resource-agents' own ``ocf-tester`` passes on hamon_disk against a tgtd LUN.

ocf-tester validates the meta-data against ra-api-1.dtd with xmllint, runs meta-data as
user ``nobody``, then validate-all, probes, start, monitor, the start-twice and
stop-twice idempotency checks, and the optional actions. As root it is run here, as a
cluster administrator would run it, with the dry-run OS termination (no path fails in
this test, so it is never used) and private journal and state directories.
"""
from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

TOP = Path(__file__).resolve().parents[2]
AGENT = TOP / "agents" / "ocf" / "hamon_disk"

pytestmark = pytest.mark.integration


def _missing() -> str | None:
    if shutil.which("ocf-tester") is None:
        return "ocf-tester not found (apt-get install resource-agents)"
    if shutil.which("xmllint") is None:
        return "xmllint not found: ocf-tester validates meta-data with it " \
               "(apt-get install libxml2-utils)"
    return None


@pytest.mark.skipif(_missing() is not None, reason=str(_missing()))
@pytest.mark.parametrize("node_from", ["env", "crm_node"])
def test_ocf_tester_passes(tgt, tmp_path, node_from, readable_checkout):
    # ocf-tester runs meta-data as nobody: the agent is run from a copy nobody can read
    # (a checkout under root's 0700 home is not), the same code as this checkout's
    agent = readable_checkout / "agents" / "ocf" / "hamon_disk"
    env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LANG": "C.UTF-8"}
    if node_from == "env":
        env["HAMON_NODE"] = "node1"       # else crm_node -n, else the host name
    argv = ["ocf-tester", "-v", "-n", "shared-disk",
            "-o", "dmmp_device=" + ",".join(tgt.urls(1)),
            "-o", f"journal={tmp_path}/journal", "-o", f"state_dir={tmp_path}/state",
            "-o", f"os_termination_dry_run={tmp_path}/terminate",
            str(agent)]
    p = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=300,
                       check=False)
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-3000:]
    assert f"{agent} passed all tests" in p.stdout
    assert "* rc=" not in p.stdout                      # no assertion of ocf-tester failed
    assert not (tmp_path / "terminate").exists()
    # the agent really held and released the LUN in between
    assert p.stderr.count("HAMN950-I") == 2 and p.stderr.count("HAMN952-I") == 2
    assert os.path.exists(tmp_path / "journal")
