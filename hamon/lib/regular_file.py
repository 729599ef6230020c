"""Opening and reading files hamon is *told* the name of, without being led astray.

The journal, the disks file and the fence agent's state file are named by
configuration or by the command line, and any of them may be the wrong thing: a FIFO
(a read or a write would block the OS termination or the watchdog), a device
(``/dev/zero``: a read never ends), a directory, a symlink planted where the file
should be, a huge file. One place opens such names: without blocking, regular files
only, bounded reads, and (for writers, and readers that ask) never through a final
symbolic link. The standard library has no such call; this module is it.
"""
from __future__ import annotations

import errno
import os
import stat


class NotRegularFile(OSError):
    """The name is not a regular file, or it is larger than the reader's bound."""


def open_regular(path: str, flags: int = os.O_RDONLY, mode: int = 0o644, *,
                 follow: bool = False) -> int:
    """``os.open`` that never blocks, returns only a regular file's descriptor
    (NotRegularFile otherwise) and, unless ``follow``, never follows a final symlink."""
    flags |= os.O_NONBLOCK | os.O_CLOEXEC | (0 if follow else os.O_NOFOLLOW)
    fd = os.open(path, flags, mode)
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise NotRegularFile(errno.EINVAL, "not a regular file", path)
    except BaseException:
        os.close(fd)
        raise
    return fd


def read_regular(path: str, limit: int, *, follow: bool = True) -> bytes:
    """At most ``limit`` bytes of a regular file; NotRegularFile (EFBIG) when larger."""
    fd = open_regular(path, os.O_RDONLY, follow=follow)
    with os.fdopen(fd, "rb") as f:
        raw = f.read(limit + 1)
    if len(raw) > limit:
        raise NotRegularFile(errno.EFBIG, f"larger than {limit} bytes", path)
    return raw
