"""Who this node is: its cluster node name and its default iSCSI initiator name.

Pacemaker's name for a node is what keys are derived from, so it is asked first
(``crm_node -n``, bounded), then ``uname -n``. The default initiator name for ``iscsi://``
devices is derived from the node name, so node1 and node2 on one machine (tests, the
demo) are two distinct initiators, and the same node is the same initiator every run.
"""
from __future__ import annotations

import functools
import os
import re

from hamon.lib import cluster, defaults

INITIATOR_PREFIX = "iqn.2026-11.org.hamon"
_IQN_UNSAFE = re.compile(r"[^a-z0-9.\-:]")

#: RFC 3720 3.2.6: an iSCSI name is at most 223 bytes, of the three types below. Its
#: characters (after stringprep, which folds case) are letters, digits, ``-``, ``.`` and
#: ``:``; hamon takes the ASCII ones and compares case-insensitively.
ISCSI_NAME_MAX = 223


@functools.cache
def _name_forms() -> tuple[re.Pattern[str], ...]:
    """The three forms, compiled on first use: 2.5 ms at every fence's start otherwise,
    and only a configured name is checked (a derived one is well-formed by making)."""
    return (re.compile(r"iqn\.[0-9]{4}-(0[1-9]|1[0-2])"       # iqn.yyyy-mm
                       r"\.[a-z0-9]([a-z0-9-]*[a-z0-9])?"      # .reversed.domain
                       r"(\.[a-z0-9]([a-z0-9-]*[a-z0-9])?)*"
                       r"(:[a-z0-9.:-]*)?", re.IGNORECASE),    # [:unique string]
            re.compile(r"eui\.[0-9a-f]{16}", re.IGNORECASE),  # EUI-64
            re.compile(r"naa\.([0-9a-f]{16}|[0-9a-f]{32})", re.IGNORECASE))  # RFC 3980


ISCSI_NAME_FORMS = ("iqn.YYYY-MM.reversed.domain[:name] (e.g. "
                    f"{INITIATOR_PREFIX}:node1), eui. + 16 hex digits, or naa. + 16 or 32 "
                    "hex digits")


def check_iscsi_name(name: str, what: str = "iscsi_initiator") -> str:
    """``name`` if it is one well-formed iSCSI name (RFC 3720 3.2.6), else ValueError
    naming ``what`` and the forms: a name with a blank or a control character in it
    would reach the target as another name than the one configured, or none."""
    if not name:
        raise ValueError(f"{what}: empty; give an iSCSI name: {ISCSI_NAME_FORMS}")
    shown = ascii(name) if not name.isprintable() else repr(name)
    if len(name.encode()) > ISCSI_NAME_MAX:
        raise ValueError(f"{what}: longer than {ISCSI_NAME_MAX} bytes (RFC 3720)")
    if any(c.isspace() or c == "," for c in name):
        raise ValueError(f"{what}: {shown} is not one iSCSI name (it has a blank or a "
                         f"comma); give one of: {ISCSI_NAME_FORMS}")
    if not any(rx.fullmatch(name) for rx in _name_forms()):
        raise ValueError(f"{what}: {shown} is not an iSCSI name; give one of: "
                         f"{ISCSI_NAME_FORMS}")
    return name


def local_node_name(timeout: float = cluster.TIMEOUT) -> str:
    """Pacemaker's name for this node; the kernel's host name when Pacemaker cannot say."""
    on_node = "OCF_RESKEY_CRM_meta_on_node"  # Pacemaker's spelling, lower case and all
    env = os.environ.get(on_node) or defaults.NODE.get()
    if env:
        return env
    rc, out, _ = cluster.run(["crm_node", "-n"], timeout)
    if rc == 0 and out.strip():
        return out.strip()
    return os.uname().nodename


def default_initiator(node: str) -> str:
    """``iqn.2026-11.org.hamon:<node>``: RFC 3720 allows lower case, digits, . - :"""
    return f"{INITIATOR_PREFIX}:{_IQN_UNSAFE.sub('-', node.lower())}"
