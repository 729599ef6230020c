"""hamon_disk's memory between actions: one small JSON file per resource in a tmpfs.

Why a file at all: Pacemaker runs the agent as a new process for every action, and two
answers need what an earlier action saw: whether a start began here (a stop must then
treat a dead disk as the active server's), and each path's last state (a monitor logs
KAMN725-W once per change, and sees a path *recover*, KAMN727-I). Why a tmpfs
(``/run/hamon``): none of it must survive a reboot; after one the disk itself says
whether this node's key is still there.
"""
from __future__ import annotations

import contextlib
import json
import os
import re
import tempfile
from typing import Any

from hamon.lib.disk import Disk

_UNSAFE = re.compile(r"[^A-Za-z0-9_.-]+")


class State:
    """The state file of one resource.

    ``active``: start has begun here and no stop completed since: this node may hold
    registrations even when no path answers. ``paths``: each path's last state.
    ``published``: the node attributes last written (only changes cost a process).
    """

    def __init__(self, directory: str, resource: str) -> None:
        self.path = os.path.join(directory, f"{_UNSAFE.sub('_', resource) or 'hamon'}.json")

    def load(self) -> dict[str, Any]:
        """What was saved; nothing (``{}``) when the file is missing or unreadable."""
        try:
            with open(self.path) as f:
                data = json.load(f)
        except (OSError, ValueError):
            return {}
        return data if isinstance(data, dict) else {}

    def save(self, data: dict[str, Any]) -> None:
        """Atomically (a temporary file renamed over it): a reader never sees half."""
        directory = os.path.dirname(self.path)
        os.makedirs(directory, mode=0o755, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".state-", dir=directory)
        try:
            with os.fdopen(fd, "w") as f:
                json.dump(data, f, sort_keys=True)
            os.replace(tmp, self.path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise

    def update(self, **changes: Any) -> dict[str, Any]:
        data = {**self.load(), **changes}
        self.save(data)
        return data


def path_states(disks: list[Disk]) -> dict[str, dict[str, str]]:
    """{disk: {path: state}}, as ``paths`` is saved."""
    return {d.name: {p.name: str(p.state) for p in d.paths} for d in disks}
