"""Durable state: what was terminating, which disk, which paths failed, when.

Recovery after an OS termination needs to know what hamon saw just before it pulled the
plug, so every entry is on stable storage before the OS is terminated: one line per
entry, appended, ``fsync``-ed (and the directory too when the file is new).

Format: ``<crc32 as 8 hex> <json>\\n``. A line whose checksum does not match, that is not
JSON, or that has no final newline (the machine stopped in the middle of the write) is
reported as torn and never trusted; later entries stay readable. sqlite would also
survive a torn write, but a text file can be read with ``cat`` from a rescue shell at
3 a.m., and appending one line needs nothing more.

The journal is a record, never a gate: the file is opened without blocking and without
following a symbolic link (``O_NONBLOCK | O_NOFOLLOW | O_APPEND``), and anything but a
regular file (a FIFO, a device, a directory) is refused with :class:`JournalError`
instead of being waited on or written into. Reading is bounded the same way
(:data:`MAX_READ`): ``--journal /dev/zero`` or a FIFO is an error, not a hang.
"""
from __future__ import annotations

import errno
import json
import os
import zlib
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from hamon.lib import defaults
from hamon.lib.regular_file import NotRegularFile, open_regular, read_regular

#: The most a journal read takes in (bytes). Years of entries are a few MB; more than
#: this is not a journal (or ``/dev/zero``), and reading it would exhaust memory.
MAX_READ = 64 * 1024 * 1024


class JournalError(NotRegularFile):
    """The journal path is not a regular file, or is too large to be one (errno set)."""


def default_path() -> str:
    return defaults.JOURNAL.get()


@dataclass(frozen=True)
class Record:
    line: int
    entry: dict[str, Any] | None
    valid: bool
    problem: str = ""


def _encode(entry: dict[str, Any]) -> bytes:
    body = json.dumps(entry, sort_keys=True, separators=(",", ":")).encode()
    return b"%08x " % zlib.crc32(body) + body + b"\n"


def _decode(raw: bytes) -> tuple[dict[str, Any] | None, str]:
    if not raw.endswith(b"\n"):
        return None, "torn write: the entry has no end"
    raw = raw[:-1]
    if len(raw) < 10 or raw[8:9] != b" ":
        return None, "torn or damaged entry: no checksum"
    crc, body = raw[:8], raw[9:]
    try:
        if int(crc, 16) != zlib.crc32(body):
            return None, "damaged entry: checksum mismatch"
        entry = json.loads(body)
    except ValueError:
        return None, "damaged entry: not readable"
    if not isinstance(entry, dict):
        return None, "damaged entry: not an object"
    return entry, ""


class Journal:
    def __init__(self, path: str | None = None) -> None:
        self.path = path or default_path()

    def append(self, kind: str, **data: Any) -> dict[str, Any]:
        """Append one entry and make it durable before returning."""
        entry = {"kind": kind, "time": datetime.now(UTC).isoformat(timespec="seconds"),
                 **data}
        directory = os.path.dirname(os.path.abspath(self.path))
        os.makedirs(directory, mode=0o755, exist_ok=True)
        new = not os.path.lexists(self.path)
        try:
            fd = open_regular(self.path, os.O_RDWR | os.O_APPEND | os.O_CREAT)
        except NotRegularFile as err:
            raise JournalError(err.errno, err.strerror, self.path) from None
        try:
            size = os.fstat(fd).st_size
            prefix = b""
            if size and os.pread(fd, 1, size - 1) != b"\n":
                prefix = b"\n"  # close a torn line so it stays apart
            data = prefix + _encode(entry)
            if os.write(fd, data) != len(data):
                raise JournalError(errno.ENOSPC, "short write (file system full?)",
                                   self.path)
            os.fsync(fd)
        finally:
            os.close(fd)
        if new:
            dfd = os.open(directory, os.O_RDONLY)
            try:
                os.fsync(dfd)
            finally:
                os.close(dfd)
        return entry

    def records(self) -> list[Record]:
        """Every line, checked. Bounded: a FIFO, a device or a file larger than
        :data:`MAX_READ` raises JournalError instead of hanging or filling memory."""
        try:
            raw = read_regular(self.path, MAX_READ)
        except FileNotFoundError:
            return []
        except NotRegularFile as err:
            why = (f"larger than {MAX_READ // (1024 * 1024)} MB: not a hamon journal"
                   if err.errno == errno.EFBIG else err.strerror)
            raise JournalError(err.errno, why, self.path) from None
        lines = raw.splitlines(keepends=True)
        out = []
        for i, raw in enumerate(lines, 1):
            if raw.strip() == b"":
                continue
            entry, problem = _decode(raw)
            out.append(Record(i, entry, entry is not None, problem))
        return out

    def entries(self, kind: str | None = None) -> list[dict[str, Any]]:
        return [r.entry for r in self.records()
                if r.valid and r.entry and (kind is None or r.entry.get("kind") == kind)]

    def last(self, kind: str | None = None, device: str | None = None
             ) -> dict[str, Any] | None:
        for e in reversed(self.entries(kind)):
            if device is None or device in [d.get("disk") for d in e.get("disks", [])]:
                return e
        return None

    def torn(self) -> list[Record]:
        return [r for r in self.records() if not r.valid]
