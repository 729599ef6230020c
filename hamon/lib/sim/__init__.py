"""The in-memory SPC-4 target, for fast unit tests only (never the only proof).

It stands beside ``transport/`` rather than in it: a target decodes CDBs (it needs
``scsi/``), while transports only carry them; keeping it apart keeps ``scsi/`` and
``transport/`` free of each other's loops. ``faults`` is the fault vocabulary shared with
the iSCSI fault proxy of the test tiers.
"""
from hamon.lib.sim.faults import HARDWARE_ERROR, FaultKind, FaultPlan, FaultRule, corrupt_pr_in
from hamon.lib.sim.target import SimLun, TargetProfile, TgtProfile
from hamon.lib.sim.transport import SimTransport

__all__ = ["HARDWARE_ERROR", "FaultKind", "FaultPlan", "FaultRule", "SimLun", "SimTransport",
           "TargetProfile", "TgtProfile", "corrupt_pr_in"]
