"""The OCF contract of one agent call: the exit codes, and what the call's environment says.

The ``pacemaker`` Python module (Pacemaker >= 2.1.6) is used for DEGRADED when it is
importable; on bookworm it is not, so the same numbers are defined here. ``DEGRADED`` is
only returned to a caller that announces OCF >= 1.1 (``OCF_RA_VERSION_MAJOR``/``MINOR``,
which Pacemaker >= 2.1 sets): older managers read 190 as a hard error. The environment
readers are pure functions of a mapping, so tests pass a dict instead of patching
``os.environ``.
"""
from __future__ import annotations

import os
from collections.abc import Mapping
from enum import IntEnum


def _degraded_code() -> int:
    """Pacemaker's own number for "degraded" when its Python module is installed."""
    try:
        from pacemaker import ExitStatus as _Pcmk  # type: ignore[import-not-found]
    except Exception:
        return 190
    return int(getattr(_Pcmk, "DEGRADED", 190))


class ExitStatus(IntEnum):
    """OCF exit codes; resource-agents' ocf.py stops at 9 and has no DEGRADED."""

    SUCCESS = 0
    ERR_GENERIC = 1
    ERR_ARGS = 2
    ERR_UNIMPLEMENTED = 3
    ERR_PERM = 4
    ERR_INSTALLED = 5
    ERR_CONFIGURED = 6
    NOT_RUNNING = 7
    DEGRADED = _degraded_code()  # OCF 1.1: running, but with reduced redundancy


def ocf_version(env: Mapping[str, str] | None = None) -> tuple[int, int]:
    """The OCF version the caller speaks (1.0 when it does not say, e.g. ocf-tester)."""
    env = os.environ if env is None else env
    try:
        return (int(env.get("OCF_RA_VERSION_MAJOR", "1")),
                int(env.get("OCF_RA_VERSION_MINOR", "0")))
    except ValueError:
        return 1, 0


def supports_degraded(env: Mapping[str, str] | None = None) -> bool:
    """True when the caller understands OCF 1.1's DEGRADED (190)."""
    return ocf_version(env) >= (1, 1)


def is_probe(action: str, env: Mapping[str, str] | None = None) -> bool:
    """A probe: a monitor with interval 0 (or none), Pacemaker's "is it running here?"."""
    env = os.environ if env is None else env
    return action == "monitor" and env.get("OCF_RESKEY_CRM_meta_interval", "0") in ("0", "")


def run_by_pacemaker(env: Mapping[str, str] | None = None) -> bool:
    """Pacemaker's scheduler passes the target node with every action; people do not."""
    env = os.environ if env is None else env
    return bool(env.get("OCF_RESKEY_CRM_meta_on_node"))


def resource_id(instance: str) -> str:
    """``shared-disk:0`` (a clone instance) -> ``shared-disk``, the id in the CIB."""
    return instance.split(":", 1)[0]
