"""validate-all, and start's first look: is every ``/dev`` operand a shared SCSI disk here?

Why apart from the settings: parsing the parameters does no I/O and runs on every
action; this looks at the node's device nodes (:mod:`hamon.lib.devcheck`). A name that
is not a shared disk on this node is OCF_ERR_INSTALLED, which Pacemaker does not retry
here, instead of a start that fails over and over.
"""
from __future__ import annotations

from hamon.lib.devcheck import NoDevice, NotADisk, check_device
from hamon.lib.pacemaker.ocf_call import ExitStatus

from .context import DiskAgent


def validate(agent: DiskAgent) -> int:
    """Parameters were parsed already (ConfigError otherwise); every ``/dev`` operand
    exists on this node and is a shared SCSI disk (OCF_ERR_INSTALLED otherwise)."""
    return check_devices(agent, missing_ok=False)


def check_devices(agent: DiskAgent, missing_ok: bool) -> int:
    """OCF_ERR_INSTALLED, with the reason, for the first ``/dev`` operand that is not
    a shared SCSI disk on this node (a directory, FIFO, regular file, /dev/null, a
    loop device, a partition: see :mod:`hamon.lib.devcheck`), or that is missing
    unless ``missing_ok`` (a start meets a vanished path as KAMN725-W OPEN)."""
    for op in agent.settings.operands:
        try:
            check_device(op, agent.settings.node)
        except NoDevice as err:
            if not missing_ok:
                return agent.fail(ExitStatus.ERR_INSTALLED, str(err))
        except NotADisk as err:
            return agent.fail(ExitStatus.ERR_INSTALLED, str(err))
    return int(ExitStatus.SUCCESS)
