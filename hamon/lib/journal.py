"""Durable state: what was terminating, which disk, which paths failed, when.

Recovery after an OS termination needs to know what hamon saw just before it pulled the
plug, so every entry is on stable storage before the OS is terminated: one line per
entry, appended, ``fsync``-ed (and the directory too when the file is new).

Format: ``<crc32 as 8 hex> <json>\\n``. A line whose checksum does not match, that is not
JSON, or that has no final newline (the machine stopped in the middle of the write) is
reported as torn and never trusted; later entries stay readable. sqlite would also
survive a torn write, but a text file can be read with ``cat`` from a rescue shell at
3 a.m., and appending one line needs nothing more.
"""
from __future__ import annotations

import json
import os
import zlib
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

DEFAULT_PATH = "/var/lib/hamon/journal"


def default_path() -> str:
    return os.environ.get("HAMON_JOURNAL") or DEFAULT_PATH


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
        new = not os.path.exists(self.path)
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            size = os.fstat(fd).st_size
            prefix = b""
            if size:
                with open(self.path, "rb") as f:
                    f.seek(size - 1)
                    if f.read(1) != b"\n":
                        prefix = b"\n"  # close a torn line so it stays apart
            os.write(fd, prefix + _encode(entry))
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
        try:
            with open(self.path, "rb") as f:
                lines = f.readlines()
        except FileNotFoundError:
            return []
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
