"""Who this node is: its cluster node name and its default iSCSI initiator name.

Pacemaker's name for a node is what keys are derived from, so it is asked first
(``crm_node -n``, bounded), then ``uname -n``. The default initiator name for ``iscsi://``
devices is derived from the node name, so node1 and node2 on one machine (tests, the
demo) are two distinct initiators, and the same node is the same initiator every run.
"""
from __future__ import annotations

import os
import re
import shutil
import subprocess

INITIATOR_PREFIX = "iqn.2026-11.org.hamon"
_IQN_UNSAFE = re.compile(r"[^a-z0-9.\-:]")


def local_node_name(timeout: float = 5.0) -> str:
    """Pacemaker's name for this node; the kernel's host name when Pacemaker cannot say."""
    on_node = "OCF_RESKEY_CRM_meta_on_node"  # Pacemaker's spelling, lower case and all
    env = os.environ.get(on_node) or os.environ.get("HAMON_NODE")
    if env:
        return env
    if shutil.which("crm_node"):
        try:
            out = subprocess.run(["crm_node", "-n"], capture_output=True, text=True,
                                 timeout=timeout, check=False)
            name = out.stdout.strip()
            if out.returncode == 0 and name:
                return name
        except (OSError, subprocess.TimeoutExpired):
            pass
    return os.uname().nodename


def default_initiator(node: str) -> str:
    """``iqn.2026-11.org.hamon:<node>``: RFC 3720 allows lower case, digits, . - :"""
    return f"{INITIATOR_PREFIX}:{_IQN_UNSAFE.sub('-', node.lower())}"
