"""File descriptors for an action's paths: raise RLIMIT_NOFILE to what they need.

Every open path holds descriptors: an iSCSI session its socket (libiscsi may briefly hold
a second one while it reconnects or logs out), an SG_IO path its device node. Pacemaker
starts agents with the soft limit 1024, which capped a fence at about 510 LUNs x 2
paths. The soft limit may be raised up to the hard limit without privileges; beyond
it only the administrator can help (systemd's ``LimitNOFILE=`` for pacemaker.service,
or ``ulimit -Hn``), and :func:`ensure` says so in one line naming the numbers.
"""
from __future__ import annotations

import resource

#: Descriptors counted per path, and for everything else of the process (standard
#: streams, syslog, the journal, the poll loop's wake-up pipe, Python's own).
PER_PATH = 2
RESERVE = 64


def need(paths: int) -> int:
    return paths * PER_PATH + RESERVE


def ensure(paths: int) -> str | None:
    """Raise the soft RLIMIT_NOFILE to what ``paths`` paths need, at most to the hard
    limit. None when enough; otherwise the sentence to log (what is needed, what the
    limit is, how to raise it): the action goes on, and paths that cannot be opened
    fail as OPEN faults."""
    want = need(paths)
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY or want <= soft:
        return None
    target = want if hard == resource.RLIM_INFINITY else min(want, hard)
    if target > soft:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
        except (ValueError, OSError):
            pass
    if soft >= want:
        return None
    return (f"{paths} paths need about {want} open files, but this process may open only "
            f"{soft} (RLIMIT_NOFILE hard limit {hard}); paths beyond that fail to open. "
            "Raise the hard limit for the cluster (systemd: LimitNOFILE= in a drop-in "
            "for pacemaker.service; or ulimit -Hn) or list fewer devices per resource")
