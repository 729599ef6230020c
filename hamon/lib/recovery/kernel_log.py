"""The kernel's lines about the failed devices, for step 1 of the recovery procedure.

The one impure part of the recovery: it asks journald and dmesg, each through the one
bounded runner of :mod:`hamon.lib.cluster` (a hung journalctl must not hang ``hamon
recover``); the runner is injected so that tests need neither tool.
"""
from __future__ import annotations

import re
from collections.abc import Iterable
from datetime import datetime, timedelta

from hamon.lib import cluster
from hamon.lib.cluster import Runner

#: journalctl over several boots can take seconds; longer than the cluster tools' bound
KERNEL_LOG_TIMEOUT = 10.0
KERNEL_LINES_PER_DEVICE = 20


def kernel_messages(devices: Iterable[str], around: str | None = None, *,
                    runner: Runner = cluster.run, timeout: float = KERNEL_LOG_TIMEOUT,
                    limit: int = KERNEL_LINES_PER_DEVICE) -> dict[str, list[str]]:
    """Kernel lines naming each ``/dev/...`` device, around the failure's time.

    The failure usually happened in the *previous* boot (the OS was terminated), which
    ``dmesg`` no longer has: journald's kernel transport across boots is asked first,
    from ten minutes before to five after the entry, then ``dmesg`` for this boot.
    """
    names = {d: d.rsplit("/", 1)[-1] for d in devices if d.startswith("/dev/")}
    if not names:
        return {}
    texts = []
    argv = ["journalctl", "_TRANSPORT=kernel", "--no-pager", "-q", "-o", "short-iso"]
    when = _parse_time(around)
    if when is not None:
        argv += ["--since", (when - timedelta(minutes=10)).strftime("%Y-%m-%d %H:%M:%S"),
                 "--until", (when + timedelta(minutes=5)).strftime("%Y-%m-%d %H:%M:%S")]
    rc, out, _ = runner(argv, timeout)
    if rc == 0:
        texts.append(out)
    rc, out, _ = runner(["dmesg", "-T"], timeout)
    if rc == 0:
        texts.append(out)
    found: dict[str, list[str]] = {}
    for dev, base in names.items():
        pat = re.compile(rf"(?<![\w-]){re.escape(base)}(?![\w-])")
        lines = [ln for t in texts for ln in t.splitlines() if pat.search(ln)]
        if lines:
            found[dev] = list(dict.fromkeys(lines))[-limit:]
    return found


def _parse_time(text: str | None) -> datetime | None:
    if not text:
        return None
    try:
        t = datetime.fromisoformat(text)
    except ValueError:
        return None
    return t.astimezone() if t.tzinfo else t  # journalctl reads local time
