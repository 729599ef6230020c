"""The KAMN message catalog, and the one place messages leave hamon: :func:`emit`.

IDs, severities and the fields of KAMN601-W, KAMN725-W, KAMN726-E and KAMN727-I are HA
Monitor's, so administrators can reuse their HA Monitor runbooks and log filters:
KAMN725-W carries the device name, a details code (OPEN, IOCTL, ALREADY-RESERVATION,
IO-ERR), the server alias and a host address. The text of KAMN726-E is not public; ours
says what HA Monitor's means: every path of one shared disk failed.

Messages in the KAMN95x range are hamon's own (reservation acquired, preempted, released,
cancelled, OS termination): HA Monitor has no published equivalent, and the range is
chosen so they cannot be mistaken for one.

Every message goes to syslog (the journal, when journald runs) with its ID at the start
of the text, and to stderr, which pacemaker-execd copies into the cluster log: it is seen
even on a node without a syslog daemon.
"""
from __future__ import annotations

import contextlib
import sys
import syslog
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum


class Severity(StrEnum):
    INFO = "I"
    WARNING = "W"
    ERROR = "E"

    @property
    def priority(self) -> int:
        return {"I": syslog.LOG_INFO, "W": syslog.LOG_WARNING, "E": syslog.LOG_ERR}[self.value]


class DetailsCode(StrEnum):
    """KAMN725-W details codes (HA Monitor's)."""

    OPEN = "OPEN"                      # the device could not be opened / does not exist
    IOCTL = "IOCTL"                    # the device does not support SCSI reservation
    ALREADY_RESERVATION = "ALREADY-RESERVATION"  # reserved by another system
    IO_ERR = "IO-ERR"                  # an I/O error


class RecoveryCode(StrEnum):
    """KAMN727-I details codes."""

    STANDBY_CHECK = "STANDBY_CHECK"
    ONLINE_CHECK = "ONLINE_CHECK"
    ONLINE_CHECK_NO_KEY = "ONLINE_CHECK(NO_KEY)"


@dataclass(frozen=True)
class MessageDef:
    id: str
    severity: Severity
    template: str
    explanation: str

    @property
    def full_id(self) -> str:
        return f"{self.id}-{self.severity.value}"


CATALOG: dict[str, MessageDef] = {m.id: m for m in (
    MessageDef("KAMN601", Severity.WARNING,
               "The device cannot be used for SCSI reservation. "
               "(device name = {device}, reason = {reason})",
               "The device could not be opened or does not support SCSI persistent "
               "reservations. KAMN725-W with details code OPEN or IOCTL follows."),
    MessageDef("KAMN725", Severity.WARNING,
               "A SCSI command to the shared disk ended abnormally. (device name = "
               "{device}, details code = {code}, alias = {alias}, host address = {host})",
               "A SCSI command through one path of a shared disk failed. Details codes: "
               "OPEN (the device could not be opened or does not exist), IOCTL (the "
               "device does not support SCSI reservation), ALREADY-RESERVATION (another "
               "system holds the reservation; host address is the holder's key), IO-ERR "
               "(an I/O error). For a DMMP device the name is the map followed by the "
               "failed path in parentheses."),
    MessageDef("KAMN726", Severity.ERROR,
               "All paths to the shared disk failed. (device name = {device}, "
               "alias = {alias}, failed paths = {failed})",
               "Every path of one shared disk (or its only path) failed. While the active "
               "server is terminating, hamon terminates the OS so that the standby can "
               "take the disk over safely. During a switchover the switchover fails. "
               "Recover with `hamon recover`."),
    MessageDef("KAMN727", Severity.INFO,
               "Recovery of the device was detected. (device name = {device}, "
               "details code = {code}, alias = {alias})",
               "A path that had failed answers again. STANDBY_CHECK: seen by the standby's "
               "periodic check; ONLINE_CHECK: seen by the active server's reservation "
               "check; ONLINE_CHECK(NO_KEY): the path answers but lost its key; hamon "
               "registers the key on it again."),
    MessageDef("KAMN950", Severity.INFO,
               "The reservation of the shared disk was acquired. (device name = {device}, "
               "key = {key}, type = {type}, alias = {alias})",
               "This node registered its key on every path and holds the reservation."),
    MessageDef("KAMN951", Severity.WARNING,
               "The reservation of the shared disk was forcibly obtained. (device name = "
               "{device}, key = {key}, preempted key = {victim}, alias = {alias})",
               "Another key held the disk; this node preempted it, as HA Monitor's standby "
               "does on a planned or abnormal switchover."),
    MessageDef("KAMN952", Severity.INFO,
               "The reservation of the shared disk was released. (device name = {device}, "
               "key = {key}, alias = {alias})",
               "This node released the reservation and removed its key."),
    MessageDef("KAMN953", Severity.WARNING,
               "The reservation of the shared disk was cancelled. (device name = {device}, "
               "previous holder = {holder}, by = {by})",
               "An administrator cancelled the reservation (HA Monitor 7.5.12): every "
               "registration and the reservation were cleared."),
    MessageDef("KAMN954", Severity.ERROR,
               "The OS will be terminated to protect the shared disk. (action = {action}, "
               "alias = {alias}, device name = {device})",
               "Follows KAMN726-E while the active server terminates. With action none the "
               "OS is not terminated and the stop fails, so Pacemaker fences the node."),
    MessageDef("KAMN955", Severity.ERROR,
               "The reservation of the shared disk could not be obtained. (device name = "
               "{device}, reason = {reason}, alias = {alias})",
               "Start could not acquire the disk; the resource does not start here."),
    MessageDef("KAMN956", Severity.WARNING,
               "The registration of another system was removed from the shared disk. "
               "(device name = {device}, key = {key}, removed key = {victim}, "
               "alias = {alias})",
               "Under a registrants-only reservation every registered system may write, so "
               "the starting server removes every key but its own (hamon_disk "
               "registrations=exclusive): only the active server can write the disk."),
    MessageDef("KAMN957", Severity.ERROR,
               "The OS is not terminated because os_termination is none; the stop fails "
               "so that the cluster fences this system. (alias = {alias}, device name = "
               "{device})",
               "Follows KAMN726-E while the active server terminates, in place of "
               "KAMN954-E, when OS termination is switched off. The stop exits with an "
               "error, and Pacemaker escalates to fencing the node."),
)}


@dataclass(frozen=True)
class Message:
    id: str
    severity: Severity
    text: str
    fields: dict[str, str]
    time: str

    @property
    def full_id(self) -> str:
        return f"{self.id}-{self.severity.value}"

    def __str__(self) -> str:
        return f"{self.full_id} {self.text}"


_listeners: list[Callable[[Message], None]] = []
_lock = threading.Lock()
_syslog_open = False


def subscribe(fn: Callable[[Message], None]) -> Callable[[], None]:
    """Receive every emitted message (journal, tests); returns an unsubscribe function."""
    with _lock:
        _listeners.append(fn)
    return lambda: _listeners.remove(fn) if fn in _listeners else None


def _printable(text: str) -> str:
    """Control and other non-printable characters as visible escapes (``\\x0a``): a
    field (an alias, a device name from the configuration) must never start a line of
    its own in the log, where it could pass for a KAMN message hamon did not issue."""
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else
                   (f"\\x{ord(c):02x}" if ord(c) < 0x100 else f"\\u{ord(c):04x}")
                   for c in text)


def format_message(msg_id: str, **fields: object) -> Message:
    d = CATALOG[msg_id]
    values = {k: ("-" if v is None or v == "" else _printable(str(v)))
              for k, v in fields.items()}
    text = d.template.format_map(_Default(values))
    return Message(d.id, d.severity, text, values,
                   datetime.now(UTC).isoformat(timespec="seconds"))


class _Default(dict):
    def __missing__(self, key: str) -> str:
        return "-"


def emit(msg_id: str, *, stderr: bool = True, **fields: object) -> Message:
    """Log one catalog message to syslog and stderr (and to subscribers)."""
    global _syslog_open
    m = format_message(msg_id, **fields)
    with _lock:
        if not _syslog_open:
            syslog.openlog("hamon", syslog.LOG_PID, syslog.LOG_DAEMON)
            _syslog_open = True
        listeners = list(_listeners)
    syslog.syslog(m.severity.priority, str(m))
    if stderr:
        with contextlib.suppress(OSError):
            print(str(m), file=sys.stderr, flush=True)
    for fn in listeners:
        fn(m)
    return m
