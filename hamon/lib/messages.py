"""The message catalog, and the one place messages leave hamon: :func:`emit`.

Two kinds of IDs, told apart by the prefix (the rule, also in docs/messages.md):

* ``KAMNnnn`` is Hitachi HA Monitor's own ID, used only for a message HA Monitor defines,
  with its meaning, severity, fields and details codes. Where the manual publishes the
  text (KAMN725-W, KAMN727-I) hamon's is the manual's word for word: rendered with the
  manual's placeholders (``aa....aa``, ``bb....bb``, ...) it equals :attr:`MessageDef.manual`,
  which a unit test checks. KAMN725-W's host address carries the node and, in brackets, the
  reservation key it registered, so §7.5.12's check (the key in KAMN725-W against
  ``sg_persist --read-reservation``) can be done from the log. Where the text is not public
  (KAMN601-W, KAMN726-E, KAMN107-I, KAMN108-I) hamon keeps the ID and the meaning and
  writes the sentence in HA Monitor's style: "... (name: value, ...)".
* ``HAMNnnn`` is hamon's own (reservation acquired, preempted, released, cancelled, the OS
  termination, ...): HA Monitor has no such message, and a KAMN number of hamon's choosing
  could be one the product uses for something else. "HAMN" = "hamon", one letter from
  HA Monitor's prefix; the numbers are the ones these messages had as KAMN95x, so an old
  log filter ``KAMN95`` becomes ``HAMN95``.

Every message goes to syslog (the journal, when journald runs) with its ID at the start
of the text, and to stderr, which pacemaker-execd copies into the cluster log: it is seen
even on a node without a syslog daemon.

Cheap to import, because a fence imports it only when it has something to say: the
records are ``NamedTuple`` (docs/architecture.md, "What a fence loads"), ``datetime`` is
loaded by the first message, and the KAMN725-W details codes live with the faults they
describe
(:class:`hamon.lib.faults.DetailsCode`).
"""
from __future__ import annotations

import contextlib
import string
import sys
import syslog
import threading
from collections.abc import Callable
from enum import StrEnum
from typing import NamedTuple


class Severity(StrEnum):
    INFO = "I"
    WARNING = "W"
    ERROR = "E"

    @property
    def priority(self) -> int:
        return {"I": syslog.LOG_INFO, "W": syslog.LOG_WARNING, "E": syslog.LOG_ERR}[self.value]


class RecoveryCode(StrEnum):
    """KAMN727-I details codes."""

    STANDBY_CHECK = "STANDBY_CHECK"
    ONLINE_CHECK = "ONLINE_CHECK"
    ONLINE_CHECK_NO_KEY = "ONLINE_CHECK(NO_KEY)"


class MessageDef(NamedTuple):
    id: str
    severity: Severity
    template: str
    explanation: str
    #: HA Monitor's published text with its placeholders (aa....aa, ...), or None where
    #: the manual's text is not public (the meaning and fields are still HA Monitor's)
    manual: str | None = None

    @property
    def hamon_own(self) -> bool:
        """True for hamon's own messages (HAMN), False for HA Monitor's IDs (KAMN)."""
        return self.id.startswith(HAMON_PREFIX)

    @property
    def full_id(self) -> str:
        return f"{self.id}-{self.severity.value}"


#: the prefix of hamon's own message IDs; KAMN (HA Monitor's) is used only for HA Monitor's
HAMON_PREFIX = "HAMN"

CATALOG: dict[str, MessageDef] = {m.id: m for m in (
    # ---- HA Monitor's messages (KAMN): its IDs, meanings and fields
    MessageDef("KAMN107", Severity.INFO,
               "The {command} command started. (server: {alias})",
               "monscsiclr (hamon monscsiclr) starts releasing the reservations of every "
               "device of the server alias (HA Monitor §9.21). One CLEARED or FAILED line "
               "per device follows, then KAMN108-I."),
    MessageDef("KAMN108", Severity.INFO,
               "The {command} command ended. (result: {result}, server: {alias})",
               "monscsiclr finished: SUCCESS when every device was released, FAILURE when "
               "at least one was not (the command then exits 1)."),
    MessageDef("KAMN601", Severity.WARNING,
               "The device {device} cannot be used for SCSI reservation. "
               "(reason: {reason}, server: {alias})",
               "The device could not be opened or does not support SCSI persistent "
               "reservations. KAMN725-W with details code OPEN or IOCTL follows."),
    MessageDef("KAMN725", Severity.WARNING,
               "Execution of the SCSI command on the device {device} ended abnormally. "
               "(details code: {code}, server: {alias}, host address: {host} (0x{hostkey}))",
               "A SCSI command through one path of a shared disk failed. Details codes: "
               "OPEN (the device could not be opened or does not exist), IOCTL (the "
               "device does not support SCSI reservation), ALREADY-RESERVATION (another "
               "system holds the reservation; the host address is then the holder's: its "
               "node when hamon can name it, and its key), IO-ERR (an I/O error). "
               "Otherwise the host address is this node and the key it registers: the key "
               "that HA Monitor §7.5.12 compares with `sg_persist --in --no-inquiry "
               "--read-reservation DEV`. For a DMMP device the name is the map followed by "
               "the failed path in parentheses.",
               manual="Execution of the SCSI command on the device aa....aa ended "
               "abnormally. (details code: bb....bb, server: cc....cc, host address: "
               "dd....dd (0xee....ee))"),
    MessageDef("KAMN726", Severity.ERROR,
               "All paths to the device {device} failed. (server: {alias}, failed paths: "
               "{failed})",
               "Every path of one shared disk (or its only path) failed; issued with "
               "KAMN725-W. While the active server is terminating, hamon terminates the OS "
               "so that the standby can take the disk over safely. During a switchover the "
               "switchover fails. Recover with `hamon recover`."),
    MessageDef("KAMN727", Severity.INFO,
               "Recovery of the device {device} was detected. (details code: {code}, "
               "server: {alias})",
               "A path that had failed answers again. STANDBY_CHECK: seen by the standby's "
               "periodic check; ONLINE_CHECK: seen by the active server's reservation "
               "check; ONLINE_CHECK(NO_KEY): the path answers but lost its key; hamon "
               "registers the key on it again.",
               manual="Recovery of the device aa....aa was detected. (details code: "
               "bb....bb, server: cc....cc)"),
    # ---- hamon's own messages (HAMN): HA Monitor has none of these
    MessageDef("HAMN950", Severity.INFO,
               "The reservation of the shared disk was acquired. (device name = {device}, "
               "key = {key}, type = {type}, alias = {alias})",
               "This node registered its key on every path and holds the reservation."),
    MessageDef("HAMN951", Severity.WARNING,
               "The reservation of the shared disk was forcibly obtained. (device name = "
               "{device}, key = {key}, preempted key = {victim}, alias = {alias})",
               "A key of another node of this cluster held the disk; this node preempted "
               "it, as HA Monitor's standby does on a planned or abnormal switchover."),
    MessageDef("HAMN952", Severity.INFO,
               "The reservation of the shared disk was released. (device name = {device}, "
               "key = {key}, alias = {alias})",
               "This node released the reservation and removed its key."),
    MessageDef("HAMN953", Severity.WARNING,
               "The reservation of the shared disk was cancelled. (device name = {device}, "
               "previous holder = {holder}, by = {by})",
               "An administrator cancelled the reservation (HA Monitor 7.5.12): every "
               "registration and the reservation were cleared."),
    MessageDef("HAMN954", Severity.ERROR,
               "The OS will be terminated to protect the shared disk. (action = {action}, "
               "alias = {alias}, device name = {device})",
               "Follows KAMN726-E while the active server terminates. With action none the "
               "OS is not terminated and the stop fails, so Pacemaker fences the node."),
    MessageDef("HAMN955", Severity.ERROR,
               "The reservation of the shared disk could not be obtained. (device name = "
               "{device}, reason = {reason}, alias = {alias})",
               "Start could not acquire the disk; the resource does not start here."),
    MessageDef("HAMN956", Severity.WARNING,
               "The registration of another system was removed from the shared disk. "
               "(device name = {device}, key = {key}, removed key = {victim}, "
               "alias = {alias})",
               "Under a registrants-only reservation every registered system may write, so "
               "the starting server removes every other key of this cluster's nodes: "
               "only the active server can write the disk."),
    MessageDef("HAMN957", Severity.ERROR,
               "The OS is not terminated because os_termination is none; the stop fails "
               "so that the cluster fences this system. (alias = {alias}, device name = "
               "{device})",
               "Follows KAMN726-E while the active server terminates, in place of "
               "HAMN954-E, when OS termination is switched off. The stop exits with an "
               "error, and Pacemaker escalates to fencing the node."),
)}

#: the placeholders the manual uses for a message's variable parts, in order of appearance
MANUAL_PLACEHOLDERS = ("aa....aa", "bb....bb", "cc....cc", "dd....dd", "ee....ee")


def with_manual_placeholders(d: MessageDef) -> str:
    """The template with its fields replaced, in order, by the manual's placeholders: for
    a message whose text is public this equals :attr:`MessageDef.manual`."""
    names = [f for _, f, _, _ in string.Formatter().parse(d.template) if f]
    return d.template.format(**dict(zip(names, MANUAL_PLACEHOLDERS, strict=False)))


def key_hex(key: int | str | None) -> str | None:
    """A key as KAMN725-W's host address carries it after ``0x``: hex digits only."""
    if key is None or key == "":
        return None
    if isinstance(key, int):
        return f"{key:x}"
    text = str(key).strip()
    return text[2:] if text.lower().startswith("0x") else text


class Message(NamedTuple):
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
    from datetime import UTC, datetime  # 3 ms at import: only once there is a message

    d = CATALOG[msg_id]
    if "hostkey" in fields:
        fields["hostkey"] = key_hex(fields["hostkey"])  # type: ignore[arg-type]
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
