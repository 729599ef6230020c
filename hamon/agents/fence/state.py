"""The state file: what ``on`` registered, written by the agent, read by the watchdog hook.

A watchdog test script gets no parameters, so fence_hamon_scsi_check cannot be told the
devices, key and initiator; ``on`` records them here (``off`` never needs the file: it
derives both keys). Writer and reader of one format live in one module so they cannot
drift apart.

Both sides treat the file as hostile ground (``/run/hamon`` is root's, but a wrong
permission must not become a way in): the writer never writes through a symlink and
replaces the file as a whole; the reader opens a regular file only, not through a
symlink, bounded, without blocking (a FIFO planted there must not hang the watchdog).
"""
from __future__ import annotations

import contextlib
import errno
import json
import logging
import os
import stat
import tempfile
from typing import TYPE_CHECKING, NamedTuple

from hamon.agents.fence.options import DEFAULT_SCSI_TIMEOUT
from hamon.lib import defaults
from hamon.lib.keys import parse_key
from hamon.lib.regular_file import NotRegularFile, read_regular
from hamon.lib.scsi.pr import format_key

if TYPE_CHECKING:
    from hamon.agents.fence.settings import Node, Settings

#: Where ``on`` records what it registered, for the watchdog hook (fence_hamon_scsi_check).
#: The state file is a few hundred bytes; a larger one is not ours.
STATE_MAX = 1024 * 1024
#: The recorded scsi_timeout must be a usable bound (seconds).
STATE_TIMEOUT_MAX = 300.0

log = logging.getLogger("fence_hamon_scsi")


def state_path() -> str:
    return defaults.FENCE_STATE.get()


class Recorded(NamedTuple):
    """What ``on`` recorded: the devices, this node's key and initiator, the bound."""

    devices: list[str]
    key: int
    initiator: str
    scsi_timeout: float


def write_state(s: Settings, node: Node) -> None:
    """What ``on`` registered, for the watchdog hook: devices, key, initiator.

    Not needed by ``off`` (it derives both keys); only fence_hamon_scsi_check reads it,
    because a watchdog test script gets no parameters. Best effort: a failure to write it
    is a warning, never a failed unfencing. Written as a whole or not at all: a temporary
    file of a unique name (``mkstemp``: created, never opened through a symlink someone
    left there) in the same directory, then ``os.replace`` (which replaces a symlink at
    the final name, never writes through it). The directory is created 0755 whatever
    the umask, and a directory that is a symlink is refused.
    """
    path = state_path()
    directory = os.path.dirname(os.path.abspath(path))
    data = {"node": node.name, "key": format_key(node.key), "initiator": node.initiator,
            "devices": s.devices, "scsi_timeout": s.scsi_timeout}
    try:
        try:
            os.mkdir(directory, 0o755)
            os.chmod(directory, 0o755)  # mkdir's mode is masked by the umask
        except FileExistsError:
            pass
        except FileNotFoundError:
            os.makedirs(directory, 0o755, exist_ok=True)
            os.chmod(directory, 0o755)
        if stat.S_ISLNK(os.lstat(directory).st_mode):
            raise OSError(0, f"{directory} is a symbolic link; not following it")
        fd, tmp = tempfile.mkstemp(prefix=".fence_hamon_scsi.", suffix=".tmp",
                                   dir=directory)
        try:
            with os.fdopen(fd, "w") as f:
                os.fchmod(f.fileno(), 0o644)
                json.dump(data, f, indent=1)
                f.write("\n")
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise
    except OSError as err:
        log.warning("could not record the unfencing for fence_hamon_scsi_check in %s: %s",
                    path, err.strerror or err)


def read_text(path: str) -> str:
    """The state file's text: a regular file, not through a symlink, bounded, opened
    without blocking. FileNotFoundError when ``on`` has not run; OSError or ValueError
    when the file is not one this agent wrote."""
    try:
        raw = read_regular(path, STATE_MAX, follow=False)
    except NotRegularFile as err:
        raise ValueError("too large to be the state file" if err.errno == errno.EFBIG
                         else "not a regular file") from None
    return raw.decode()


def read_state(path: str) -> Recorded:
    """The recorded unfencing; FileNotFoundError when there is none, and OSError,
    ValueError, KeyError or TypeError when the file is unusable (an unusable bound
    included: nan, inf or 1e300 is no bound at all)."""
    state = json.loads(read_text(path))
    timeout = float(state.get("scsi_timeout", DEFAULT_SCSI_TIMEOUT))
    if not 0 < timeout <= STATE_TIMEOUT_MAX:
        raise ValueError(f"scsi_timeout {timeout!r} out of range")
    return Recorded(list(state["devices"]), parse_key(state["key"]), str(state["initiator"]),
                    timeout)
