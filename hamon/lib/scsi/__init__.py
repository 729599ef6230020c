"""The SCSI protocol, as bytes: CDBs, parameter lists, responses, status and sense.

Written by hand on purpose. We looked for a maintained Python library that builds
PERSISTENT RESERVE IN/OUT and decodes sense exactly, and found none fit for a fence
agent: PyPI ``pyscsi`` 2.1.0 has no persistent-reservation commands, ``cython-iscsi`` 1.0
does not expose sense data and ``cython-sgio`` 1.1.2 hides the status byte behind a fixed
30-minute timeout. sg3_utils (libsgutils2) has all of it, but only over SG_IO, so it could
not serve the userspace iSCSI path, and binding half of it through ctypes would cost more
than the ~400 lines here. Names follow SPC-4 and sg3_utils (``sg_persist``) so that what
hamon prints can be compared with ``sg_persist -k/-r/-c/-s`` line by line.

This package knows nothing of devices or transports: it turns intentions into bytes and
bytes into typed answers. :mod:`hamon.lib.command` joins it to any
:class:`~hamon.lib.transport.base.Transport`.
"""
from hamon.lib.scsi.errors import (
    Busy,
    CheckCondition,
    IllegalRequest,
    NotReady,
    ReservationConflict,
    ScsiError,
    TaskAborted,
    UnitAttention,
)
from hamon.lib.scsi.pr import (
    PrInServiceAction,
    PrOutServiceAction,
    ReservationType,
)

__all__ = [
    "Busy",
    "CheckCondition",
    "IllegalRequest",
    "NotReady",
    "PrInServiceAction",
    "PrOutServiceAction",
    "ReservationConflict",
    "ReservationType",
    "ScsiError",
    "TaskAborted",
    "UnitAttention",
]
