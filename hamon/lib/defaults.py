"""Every default path and every ``HAMON_*`` environment override, in one place.

Why one module: the same variable was read in several rooms (the journal's path by the
disk agent, the CLI and the journal itself), each with its own fallback, so a default
could drift apart between the agent that writes a file and the command that reads it.
Here each setting is one :class:`Setting`: its variable, its default, and why it exists.
Stdlib only, no dataclasses: the fence agent's lean start imports it. The transports'
own switches (``HAMON_NO_LOOP``, ``HAMON_ISCSI_DEBUG``) stay in ``transport/``: it is the
floor below the library and reads nothing of it.
"""
from __future__ import annotations

import os
from collections.abc import Mapping


class Setting:
    """One ``HAMON_*`` variable and the default used when it is unset or empty."""

    __slots__ = ("default", "doc", "name")

    def __init__(self, name: str, default: str, doc: str) -> None:
        self.name, self.default, self.doc = name, default, doc

    def get(self, env: Mapping[str, str] | None = None) -> str:
        """The variable's value, else the default ("" when there is none)."""
        return (os.environ if env is None else env).get(self.name) or self.default

    def is_set(self, env: Mapping[str, str] | None = None) -> bool:
        return self.name in (os.environ if env is None else env)

    def enabled(self, env: Mapping[str, str] | None = None) -> bool:
        """A switch: set to anything but "", "0", "no", "false"."""
        return self.get(env).strip().lower() not in ("", "0", "no", "false")


# -- where hamon keeps its files ------------------------------------------------------------
JOURNAL = Setting("HAMON_JOURNAL", "/var/lib/hamon/journal",
                  "the journal of failures and stops (``hamon recover`` reads it)")
STATE_DIR = Setting("HAMON_STATE_DIR", "/run/hamon",
                    "hamon_disk's per-resource state files (lost at boot, on purpose)")
DISKS_FILE = Setting("HAMON_DISKS_FILE", "/etc/hamon/disks",
                     "shared disks outside the CIB, for ``hamon status``")
FENCE_STATE = Setting("HAMON_FENCE_STATE", "/run/hamon/fence_hamon_scsi.state",
                      "the devices and key fence_hamon_scsi unfenced with, for the "
                      "watchdog hook")
STONITH_SYSCONFIG = Setting("HAMON_STONITH_SYSCONFIG", "/etc/sysconfig/stonith",
                            "the watchdog hook's configuration (fence_scsi_check's file)")

# -- who this node is -----------------------------------------------------------------------
CLUSTER_NAME = Setting("HAMON_CLUSTER_NAME", "",
                       "the cluster name keys are derived from, when corosync cannot say")
NODE = Setting("HAMON_NODE", "", "this node's name, when Pacemaker cannot say")

# -- switches for tests and troubleshooting -------------------------------------------------
DEBUG = Setting("HAMON_DEBUG", "", "``hamon``: a traceback instead of one line on error")
CHECK_DRY_RUN = Setting("HAMON_CHECK_DRY_RUN", "",
                        "the watchdog hook reports instead of rebooting (tests)")
OS_TERMINATION_DRY_RUN = Setting("HAMON_OS_TERMINATION_DRY_RUN", "",
                                 "KAMN726-E is logged but the OS is not terminated (tests)")

ALL = (JOURNAL, STATE_DIR, DISKS_FILE, FENCE_STATE, STONITH_SYSCONFIG, CLUSTER_NAME, NODE,
       DEBUG, CHECK_DRY_RUN, OS_TERMINATION_DRY_RUN)
