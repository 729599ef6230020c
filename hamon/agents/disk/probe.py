"""Path recovery: a path that failed at the last check and answers now (KAMN727-I).

Why a check and not just a message: a path can come back without its registration (a
target reset, a replaced port or HBA). If the active node failed over to such a path,
its writes would meet RESERVATION CONFLICT, so on the active node the returning path is
asked whether it still carries our key, and the key is registered on it again when it
does not (ONLINE_CHECK(NO_KEY)). On the standby, which holds nothing, it is only
reported (STANDBY_CHECK).
"""
from __future__ import annotations

from hamon.lib import messages
from hamon.lib.disk import Disk, PathFaulted, PathState
from hamon.lib.messages import RecoveryCode
from hamon.lib.reservation.path_key import key_on_path, register_path
from hamon.lib.scsi.errors import ScsiError
from hamon.lib.scsi.pr import format_key

from .context import DiskAgent


def recovered(agent: DiskAgent, disks: list[Disk], prev: dict[str, dict[str, str]],
              fix: bool, ours: set[str]) -> list[str]:
    """KAMN727-I for each path that failed last time and answers now.

    On the active node (``fix``) the path is asked whether it still carries our key:
    REGISTER with our key as both the old and the new key succeeds only through a
    nexus registered with it, and changes nothing else; RESERVATION CONFLICT means
    the key was lost (a target reset, a replaced port): ONLINE_CHECK(NO_KEY), and
    REGISTER AND IGNORE EXISTING KEY puts it back, or failover to this path would
    meet RESERVATION CONFLICT. On the standby (probes) it is STANDBY_CHECK.
    """
    s = agent.settings
    out = []
    for d in disks:
        for p in d.paths:
            if p.state is not PathState.UP or prev.get(d.name, {}).get(p.name) != "failed":
                continue
            label = d.path_label(p)
            if not fix or d.name not in ours:
                messages.emit("KAMN727", device=label, code=RecoveryCode.STANDBY_CHECK
                              if d.name not in ours else RecoveryCode.ONLINE_CHECK,
                              alias=s.alias)
                out.append(label)
                continue
            code = RecoveryCode.ONLINE_CHECK
            try:
                if not key_on_path(p, s.key):
                    code = RecoveryCode.ONLINE_CHECK_NO_KEY
                    register_path(p, s.key)
                    agent.say(f"{label}: key {format_key(s.key)} registered again")
            except PathFaulted:  # it failed again: not recovered (KAMN725-W follows)
                continue
            except ScsiError as err:  # an answer the check does not expect
                agent.say(f"{label}: key check failed: {err}")
            messages.emit("KAMN727", device=label, code=code, alias=s.alias)
            out.append(label)
    return out
