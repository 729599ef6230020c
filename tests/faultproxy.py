#!/usr/bin/env python3
"""A fault-injecting iSCSI path: a protocol-aware TCP proxy between initiator and target.

Why: a failing array answers (CHECK CONDITION, BUSY, ...) rather than going silent, and
hamon must treat such a path as failed. tgtd and LIO cannot be told to answer that way, so
this proxy sits on one path (one listening address in front of one target portal) and
answers chosen SCSI commands itself, by the rules of the in-memory target's vocabulary
(:class:`hamon.lib.sim.faults.FaultRule` / :class:`~hamon.lib.sim.faults.FaultKind`),
so a fault means the same thing in the unit, integration and VM tiers. Python stdlib only
(plus hamon.lib.sim.faults, itself stdlib and hamon.lib.scsi only): it runs in-process in
tests and as a script inside the QEMU guest.

What it does to a SCSI Command PDU (opcode 0x01) whose CDB matches the first rule:

- ``check-condition`` / ``busy`` / ``task-set-full`` / ``reservation-conflict``: the
  command is rewritten into a TEST UNIT READY (no data, R/W cleared, no immediate data;
  unsolicited Data-Out PDUs of that ITT are swallowed) and forwarded, so the target's
  CmdSN/StatSN stay consistent and nothing changes on the target; the target's answer is
  replaced by a SCSI Response with the rule's status (and fixed-format sense for CHECK
  CONDITION), keeping the target's StatSN/ExpCmdSN/MaxCmdSN. If the target answers that
  TEST UNIT READY with anything but GOOD (a UNIT ATTENTION), its answer goes through and
  the rule's hit is given back: the target's own condition takes precedence.
- ``swallow``: forwarded as TEST UNIT READY likewise, the answer never delivered.
- ``drop``: both TCP connections are closed.
- ``corrupt`` (PR IN only): forwarded; the first Data-In PDU's PR IN header is rewritten
  by :func:`hamon.lib.sim.faults.corrupt_pr_in` (the length claims more than is sent
  and is not a multiple of 8).

Everything else passes unchanged, except the login: the initiator's HeaderDigest /
DataDigest offers are rewritten to ``None`` (this proxy cannot check or recompute
digests), and a target answering anything but None is refused with a logged error.

In-process::

    from tests.faultproxy import FaultProxy
    from hamon.lib.sim import FaultRule, FaultKind, HARDWARE_ERROR
    with FaultProxy(("127.0.0.1", 3260)) as proxy:      # listens on 127.0.0.1:<free port>
        url = proxy.url(iqn, 1)                         # iscsi://127.0.0.1:<port>/iqn/1
        proxy.set_rules(FaultRule(FaultKind.CHECK_CONDITION, opcode=0x5E))
        ...
        proxy.seen(0x5E, 0)                             # READ KEYS commands seen

As a script (the QEMU guest)::

    python3 tests/faultproxy.py --listen 127.0.0.3:3260 --target 127.0.0.1:3260 \\
        --rules /run/faults.json [--stats /run/faultstats.json] [--ready FILE] [-q]

(``--ready`` is created once it listens; SIGTERM/SIGINT stop it; tests/system/guest/
storage.sh wraps this as ``faultproxy_start`` / ``fault_set``.)

The rules file is JSON, re-read whenever it changes (a missing or empty file = no rules;
a file that does not parse is logged and the previous rules stay)::

    {"rules": [{"kind": "check-condition", "opcode": "0x5e", "service_action": 0,
                "sense_key": 4, "asc": "0x44", "ascq": 0, "count": null}]}

Only ``kind`` is required; numbers may be JSON integers or strings like ``"0x5e"``.
Loading rules resets their counts. ``--stats`` writes the counters as JSON (see
:meth:`FaultProxy.stats`) whenever they change, at most every 0.2 s.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import signal
import socket
import struct
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make the repository importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from hamon.lib.sim.faults import (
    FaultKind,
    FaultPlan,
    FaultRule,
    corrupt_pr_in,
)

log = logging.getLogger("faultproxy")

BHS_LEN = 48
# Opcodes (RFC 7143 11.1.1), without the I bit.
OP_SCSI_CMD, OP_DATA_OUT, OP_LOGIN_REQ = 0x01, 0x05, 0x03
OP_SCSI_RESP, OP_DATA_IN, OP_LOGIN_RESP = 0x21, 0x25, 0x23
PR_IN = 0x5E
#: Opcodes whose CDB byte 1 carries a service action (bits 0..4).
SERVICE_ACTION_OPCODES = frozenset({0x5E, 0x5F, 0x9E, 0x9F, 0xA3, 0xA4, 0x7F})
#: How long a new connection may take to reach the target.
CONNECT_TIMEOUT = 5.0
POLL = 0.2
_DIGEST_KEYS = (b"HeaderDigest", b"DataDigest")


class ProxyError(RuntimeError):
    """The proxy cannot do what was asked (bad rules file, bad address)."""


# --------------------------------------------------------------------------- PDUs


@dataclass
class Pdu:
    """One iSCSI PDU: BHS (mutable), AHS and the data segment without its padding."""

    bhs: bytearray
    ahs: bytes
    data: bytes

    @property
    def opcode(self) -> int:
        return self.bhs[0] & 0x3F

    @property
    def itt(self) -> bytes:
        return bytes(self.bhs[16:20])

    def encode(self) -> bytes:
        """Wire bytes; TotalAHSLength and DataSegmentLength follow ``ahs`` and ``data``."""
        self.bhs[4] = len(self.ahs) // 4
        self.bhs[5:8] = len(self.data).to_bytes(3, "big")
        return bytes(self.bhs) + self.ahs + self.data + bytes(-len(self.data) % 4)


def _recv_exact(sock: socket.socket, n: int) -> bytes | None:
    buf = bytearray()
    while len(buf) < n:
        try:
            chunk = sock.recv(n - len(buf))
        except OSError:
            return None
        if not chunk:
            return None
        buf += chunk
    return bytes(buf)


def read_pdu(sock: socket.socket) -> Pdu | None:
    """The next PDU from ``sock`` (no digests), or None when the connection ended."""
    bhs = _recv_exact(sock, BHS_LEN)
    if bhs is None:
        return None
    ahs_len = bhs[4] * 4
    dsl = int.from_bytes(bhs[5:8], "big")
    rest = _recv_exact(sock, ahs_len + dsl + (-dsl % 4)) if ahs_len + dsl else b""
    if rest is None:
        return None
    return Pdu(bytearray(bhs), rest[:ahs_len], rest[ahs_len:ahs_len + dsl])


def wire_lun(bhs: bytes | bytearray) -> int:
    """The LUN of a SCSI Command BHS (peripheral or flat space addressing)."""
    return ((bhs[8] & 0x3F) << 8) | bhs[9]


def command_key(cdb: bytes) -> tuple[int, int | None]:
    """(opcode, service action) as the counters key commands; None = no service action."""
    if cdb[0] in SERVICE_ACTION_OPCODES:
        return cdb[0], cdb[1] & 0x1F
    return cdb[0], None


def _text_pairs(data: bytes) -> list[tuple[bytes, bytes]]:
    return [tuple(item.split(b"=", 1)) for item in data.split(b"\0")  # type: ignore[misc]
            if b"=" in item]


def _force_no_digests(data: bytes) -> bytes:
    """A login request's text with every digest offer replaced by ``None``."""
    items = data.split(b"\0")
    for i, item in enumerate(items):
        key = item.split(b"=", 1)[0]
        if key in _DIGEST_KEYS:
            items[i] = key + b"=None"
    return b"\0".join(items)


def fault_response(rule: FaultRule, itt: bytes, target_bhs: bytes | bytearray,
                   expected_length: int) -> Pdu:
    """The SCSI Response PDU answering ITT ``itt`` with ``rule``'s status and sense.

    StatSN, ExpCmdSN and MaxCmdSN are the target's (from its answer to the rewritten
    command), so the initiator's numbering stays the target's. No data was transferred:
    a command that expected data gets residual underflow of all of it.
    """
    bhs = bytearray(BHS_LEN)
    bhs[0] = OP_SCSI_RESP
    bhs[1] = 0x80
    bhs[3] = int(rule.status() or 0)
    bhs[16:20] = itt
    bhs[24:36] = target_bhs[24:36]
    if expected_length:
        bhs[1] |= 0x02  # U: residual underflow
        bhs[44:48] = expected_length.to_bytes(4, "big")
    sense = rule.sense()
    data = struct.pack(">H", len(sense)) + sense if sense else b""
    return Pdu(bhs, b"", data)


# --------------------------------------------------------------------------- rules file


def _number(value: object, name: str) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool):
        raise ProxyError(f"rule field {name!r}: {value!r} is not a number")
    if isinstance(value, int):
        return value
    if isinstance(value, str):
        try:
            return int(value, 0)
        except ValueError:
            pass
    raise ProxyError(f"rule field {name!r}: {value!r} is not a number (e.g. 94 or \"0x5e\")")


_RULE_FIELDS = ("opcode", "service_action", "sense_key", "asc", "ascq", "count")


def rule_from_dict(item: dict) -> FaultRule:
    """One rule from its JSON object; ProxyError names what is wrong."""
    if not isinstance(item, dict) or "kind" not in item:
        raise ProxyError(f"rule {item!r}: an object with at least \"kind\" is required")
    unknown = set(item) - {"kind", *_RULE_FIELDS}
    if unknown:
        raise ProxyError(f"rule {item!r}: unknown field(s) {sorted(unknown)}")
    try:
        kind = FaultKind(item["kind"])
    except ValueError:
        raise ProxyError(f"rule {item!r}: kind must be one of "
                         f"{[k.value for k in FaultKind]}") from None
    fields = {name: _number(item[name], name) for name in _RULE_FIELDS if name in item}
    for name in ("sense_key", "asc", "ascq"):
        if name in fields and fields[name] is None:
            raise ProxyError(f"rule {item!r}: {name} cannot be null")
    return FaultRule(kind, **fields)


def rules_from_json(text: str) -> list[FaultRule]:
    """Rules from the rules file's text: ``{"rules": [...]}`` or a bare list; "" = none."""
    if not text.strip():
        return []
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as err:
        raise ProxyError(f"rules file is not JSON: {err}") from None
    items = doc.get("rules", []) if isinstance(doc, dict) else doc
    if not isinstance(items, list):
        raise ProxyError("rules file: expected {\"rules\": [...]} or a list of rules")
    return [rule_from_dict(item) for item in items]


def rule_to_dict(rule: FaultRule) -> dict:
    return {"kind": rule.kind.value, **{name: getattr(rule, name) for name in _RULE_FIELDS}}


def rules_to_json(rules: Iterable[FaultRule]) -> str:
    return json.dumps({"rules": [rule_to_dict(r) for r in rules]}, indent=1)


def write_rules(path: str | os.PathLike, rules: Iterable[FaultRule]) -> None:
    """Replace a rules file atomically (a proxy watching it never reads half of it)."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(rules_to_json(rules))
    os.replace(tmp, path)


# --------------------------------------------------------------------------- proxy


@dataclass
class _Corrupt:
    """A PR IN whose answer is to be corrupted, and whether that happened yet."""

    rule: FaultRule
    cdb: bytes
    done: bool = False


@dataclass
class _Pending:
    """A faulted command on its way: the rule and what the initiator expected."""

    rule: FaultRule
    expected_length: int


class _Connection:
    """One initiator connection and its twin to the target: two pump threads."""

    def __init__(self, proxy: FaultProxy, client: socket.socket, server: socket.socket,
                 peer: str) -> None:
        self.proxy = proxy
        self.client = client
        self.server = server
        self.peer = peer
        self.lock = threading.Lock()
        self.pending: dict[bytes, _Pending] = {}  # ITT -> fault awaiting the target
        self.no_data_out: set[bytes] = set()  # ITTs whose Data-Out PDUs are swallowed
        self.corrupt: dict[bytes, _Corrupt] = {}  # ITT -> a PR IN answer to corrupt
        self.closed = threading.Event()
        self.threads = [
            threading.Thread(target=self._pump, args=(client, server, self._upstream),
                             name=f"faultproxy-up-{peer}", daemon=True),
            threading.Thread(target=self._pump, args=(server, client, self._downstream),
                             name=f"faultproxy-down-{peer}", daemon=True),
        ]

    def start(self) -> None:
        for t in self.threads:
            t.start()

    def close(self, why: str = "") -> None:
        if self.closed.is_set():
            return
        self.closed.set()
        if why:
            log.info("%s: closing %s: %s", self.proxy.name, self.peer, why)
        for s in (self.client, self.server):
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)
            with contextlib.suppress(OSError):
                s.close()

    def join(self, timeout: float) -> None:
        for t in self.threads:
            if t is not threading.current_thread():
                t.join(timeout)

    def _pump(self, src: socket.socket, dst: socket.socket,
              handle: Callable[[Pdu], Pdu | None]) -> None:
        try:
            while not self.closed.is_set():
                pdu = read_pdu(src)
                if pdu is None:
                    break
                out = handle(pdu)
                if out is None:
                    continue
                dst.sendall(out.encode())
        except OSError:
            pass
        except Exception:  # a bug here must not leave a half-open path behind
            log.exception("%s: %s: proxy error", self.proxy.name, self.peer)
        finally:
            self.close()
            self.proxy._forget(self)

    # -- initiator -> target -----------------------------------------------------

    def _upstream(self, pdu: Pdu) -> Pdu | None:
        op = pdu.opcode
        if op == OP_LOGIN_REQ:
            pdu.data = _force_no_digests(pdu.data)
            return pdu
        if op == OP_DATA_OUT:
            with self.lock:
                swallow = pdu.itt in self.no_data_out
            return None if swallow else pdu
        if op != OP_SCSI_CMD:
            return pdu
        itt = pdu.itt
        cdb = bytes(pdu.bhs[32:48])
        with self.lock:  # a new command with this ITT: the old task is over
            self.no_data_out.discard(itt)
            self.pending.pop(itt, None)
            self._end_corrupt(itt)
        rule = self.proxy._take(wire_lun(pdu.bhs), cdb)
        if rule is None:
            return pdu
        if rule.kind == FaultKind.DROP:
            self.proxy._count_fault(rule, applied=True)
            self.close(f"rule drop: command {cdb[0]:02x}h")
            return None
        if rule.kind == FaultKind.CORRUPT:
            with self.lock:
                self.corrupt[itt] = _Corrupt(rule, cdb)
            return pdu
        expected = int.from_bytes(pdu.bhs[20:24], "big")
        with self.lock:
            self.pending[itt] = _Pending(rule, expected)
            self.no_data_out.add(itt)
        # TEST UNIT READY in its place: F set, R/W cleared, attributes kept, no data.
        pdu.bhs[1] = 0x80 | (pdu.bhs[1] & 0x07)
        pdu.bhs[20:24] = bytes(4)
        pdu.bhs[32:48] = bytes(16)
        pdu.ahs = b""
        pdu.data = b""
        return pdu

    def _end_corrupt(self, itt: bytes) -> None:
        """The task of ``itt`` ended (call with the lock held); an answer that had
        nothing to corrupt (e.g. a UNIT ATTENTION) gives the rule's hit back."""
        job = self.corrupt.pop(itt, None)
        if job is not None and not job.done:
            self.proxy._refund(job.rule)

    # -- target -> initiator -----------------------------------------------------

    def _downstream(self, pdu: Pdu) -> Pdu | None:
        op = pdu.opcode
        if op == OP_LOGIN_RESP:
            for key, value in _text_pairs(pdu.data):
                if key in _DIGEST_KEYS and value != b"None":
                    msg = (f"target {self.proxy.target_portal} negotiated "
                           f"{key.decode()}={value.decode(errors='replace')}: this proxy "
                           "cannot handle digests; configure the initiator with "
                           "HeaderDigest=None and DataDigest=None")
                    self.proxy.errors.append(msg)
                    log.error("%s: %s", self.proxy.name, msg)
                    self.close("digests negotiated")
                    return None
            return pdu
        itt = pdu.itt
        if op == OP_DATA_IN:
            with self.lock:
                if itt in self.pending:
                    return None  # cannot happen for a TEST UNIT READY; never leak data
                job = self.corrupt.get(itt)
                offset = int.from_bytes(pdu.bhs[40:44], "big")
                if job is not None and not job.done and offset == 0 and len(pdu.data) >= 8:
                    pdu.data = corrupt_pr_in(job.cdb, pdu.data)
                    job.done = True
                    self.proxy._count_fault(job.rule, applied=True)
                if pdu.bhs[1] & 0x01:  # S: the status is in this PDU, the task is done
                    self._end_corrupt(itt)
            return pdu
        if op != OP_SCSI_RESP:
            return pdu
        with self.lock:
            self._end_corrupt(itt)
            pending = self.pending.pop(itt, None)
        if pending is None:
            return pdu
        rule = pending.rule
        if pdu.bhs[2] != 0 or pdu.bhs[3] != 0:
            # The target's own answer (e.g. UNIT ATTENTION) takes precedence.
            self.proxy._refund(rule)
            return pdu
        self.proxy._count_fault(rule, applied=True)
        if rule.kind == FaultKind.SWALLOW:
            return None
        return fault_response(rule, itt, pdu.bhs, pending.expected_length)


class FaultProxy:
    """One faulty path: listens on ``listen`` and forwards to the portal ``target``.

    ``listen`` port 0 picks a free port (see :attr:`address` / :attr:`portal`). Rules are
    set in-process with :meth:`set_rules` / :meth:`add_rules` / :meth:`clear_rules`, or
    read from ``rules_file`` whenever it changes. ``start()`` / ``stop()`` or ``with``.
    """

    def __init__(self, target: tuple[str, int] | str,
                 listen: tuple[str, int] | str = ("127.0.0.1", 0),
                 rules: Iterable[FaultRule] = (), *, name: str = "",
                 rules_file: str | os.PathLike | None = None,
                 stats_file: str | os.PathLike | None = None) -> None:
        self.target = parse_hostport(target) if isinstance(target, str) else target
        self._listen_at = parse_hostport(listen) if isinstance(listen, str) else listen
        self.plan = FaultPlan(list(rules))
        self.name = name or f"faultproxy->{self.target_portal}"
        self.rules_file = Path(rules_file) if rules_file else None
        self.stats_file = Path(stats_file) if stats_file else None
        self.errors: list[str] = []
        self._counts: Counter[tuple[int, int, int | None]] = Counter()
        self._faults: Counter[str] = Counter()
        self._counts_lock = threading.Lock()
        self._changed = threading.Event()
        self._conns: set[_Connection] = set()
        self._conns_lock = threading.Lock()
        self._sock: socket.socket | None = None
        self._address: tuple[str, int] | None = None
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._rules_stamp: tuple | None = None
        self.connections_accepted = 0
        self.reloads = 0  # rules files loaded (the guest's fault_set waits for this)

    # -- life --------------------------------------------------------------------

    def start(self) -> FaultProxy:
        host, port = self._listen_at
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError as err:
            sock.close()
            raise ProxyError(f"{self.name}: cannot listen on {host}:{port}: {err}") from None
        sock.listen(16)
        sock.settimeout(POLL)
        self._sock = sock
        self._address = sock.getsockname()[:2]
        if self.rules_file is not None:
            self._reload_rules()
        self._threads = [threading.Thread(target=self._accept_loop, daemon=True,
                                          name=f"{self.name}-accept")]
        if self.rules_file is not None or self.stats_file is not None:
            self._threads.append(threading.Thread(target=self._watch_loop, daemon=True,
                                                  name=f"{self.name}-watch"))
        for t in self._threads:
            t.start()
        log.info("%s: listening on %s", self.name, self.portal)
        return self

    def stop(self, timeout: float = 5.0) -> None:
        """Stop listening, close every connection, join the threads (bounded)."""
        self._stop.set()
        if self._sock is not None:
            with contextlib.suppress(OSError):
                self._sock.close()
        conns = self.drop_connections()
        for c in conns:
            c.join(timeout)
        for t in self._threads:
            t.join(timeout)
        if self.stats_file is not None:
            self._write_stats()

    def __enter__(self) -> FaultProxy:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def address(self) -> tuple[str, int]:
        """Where initiators connect: (host, port)."""
        if self._address is None:
            raise ProxyError(f"{self.name}: not started")
        return self._address

    @property
    def portal(self) -> str:
        """``host:port`` (IPv6 in brackets) for an iscsi:// URL or iscsiadm -p."""
        host, port = self.address
        return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"

    def url(self, target_iqn: str, lun: int) -> str:
        """The ``iscsi://`` URL of ``lun`` of ``target_iqn`` through this proxy (a path
        for :class:`hamon.lib.transport.iscsi.IscsiTransport`)."""
        return f"iscsi://{self.portal}/{target_iqn}/{lun}"

    @property
    def target_portal(self) -> str:
        host, port = self.target
        return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"

    # -- rules -------------------------------------------------------------------

    def set_rules(self, *rules: FaultRule) -> None:
        """Replace the rules (their counts start afresh)."""
        self.plan.replace(list(rules))

    def add_rules(self, *rules: FaultRule) -> None:
        self.plan.add(*rules)

    def clear_rules(self) -> None:
        self.plan.clear()

    def rules(self) -> list[FaultRule]:
        return self.plan.rules()

    @property
    def live_connections(self) -> int:
        """Connections open right now (an initiator logged in and not yet gone)."""
        with self._conns_lock:
            return len(self._conns)

    def drop_connections(self) -> list[_Connection]:
        """Close every live connection now (a path cut); new ones are still accepted."""
        with self._conns_lock:
            conns = list(self._conns)
        for c in conns:
            c.close("drop_connections")
        return conns

    # -- counters ----------------------------------------------------------------

    def seen(self, opcode: int | None = None, service_action: int | None = None,
             lun: int | None = None) -> int:
        """How many SCSI commands came from initiators (faulted ones included) with this
        opcode / service action / LUN; None = any."""
        with self._counts_lock:
            return sum(n for (ln, op, sa), n in self._counts.items()
                       if (opcode is None or op == opcode)
                       and (service_action is None or sa == service_action)
                       and (lun is None or ln == lun))

    def counts(self) -> dict[tuple[int, int | None], int]:
        """Commands seen by (opcode, service action), all LUNs together."""
        out: Counter[tuple[int, int | None]] = Counter()
        with self._counts_lock:
            for (_lun, op, sa), n in self._counts.items():
                out[op, sa] += n
        return dict(out)

    def counts_by_lun(self) -> dict[tuple[int, int, int | None], int]:
        """Commands seen by (LUN, opcode, service action)."""
        with self._counts_lock:
            return dict(self._counts)

    def faults(self) -> dict[str, int]:
        """How many times each kind was applied (delivered to the initiator as such)."""
        with self._counts_lock:
            return dict(self._faults)

    def reset_counts(self) -> None:
        with self._counts_lock:
            self._counts.clear()
            self._faults.clear()
        self._changed.set()

    def stats(self) -> dict:
        """Everything countable, JSON-ready (what ``--stats`` writes)."""
        with self._counts_lock:
            commands = [{"lun": ln, "opcode": op, "service_action": sa, "count": n}
                        for (ln, op, sa), n in sorted(self._counts.items(),
                                                      key=lambda kv: str(kv[0]))]
            faults = dict(self._faults)
        with self._conns_lock:
            live = len(self._conns)
        return {"listen": self.portal, "target": self.target_portal, "commands": commands,
                "faults": faults, "connections": live,
                "connections_accepted": self.connections_accepted, "reloads": self.reloads,
                "rules": [rule_to_dict(r) for r in self.rules()], "errors": self.errors}

    # -- internals ---------------------------------------------------------------

    def _take(self, lun: int, cdb: bytes) -> FaultRule | None:
        with self._counts_lock:
            self._counts[(lun, *command_key(cdb))] += 1
        self._changed.set()
        rule = self.plan.take(cdb)
        if rule is not None:
            log.info("%s: command %s LUN %d: rule %s", self.name, cdb[:2].hex(), lun,
                     rule.kind.value)
        return rule

    def _refund(self, rule: FaultRule) -> None:
        self.plan.refund(rule)
        log.info("%s: target answered first (not GOOD); rule %s not applied", self.name,
                 rule.kind.value)

    def _count_fault(self, rule: FaultRule, applied: bool) -> None:
        if applied:
            with self._counts_lock:
                self._faults[rule.kind.value] += 1
            self._changed.set()

    def _forget(self, conn: _Connection) -> None:
        with self._conns_lock:
            self._conns.discard(conn)
        self._changed.set()

    def _accept_loop(self) -> None:
        assert self._sock is not None
        while not self._stop.is_set():
            try:
                client, peer = self._sock.accept()
            except TimeoutError:
                continue
            except OSError:
                break
            client.settimeout(None)
            try:
                server = socket.create_connection(self.target, timeout=CONNECT_TIMEOUT)
            except OSError as err:
                log.warning("%s: cannot reach target %s for %s: %s", self.name,
                            self.target_portal, peer, err)
                client.close()
                continue
            server.settimeout(None)
            for s in (client, server):
                s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            conn = _Connection(self, client, server, f"{peer[0]}:{peer[1]}")
            with self._conns_lock:
                if self._stop.is_set():
                    conn.close()
                    break
                self._conns.add(conn)
                self.connections_accepted += 1
            conn.start()
            self._changed.set()

    def _watch_loop(self) -> None:
        last_write = 0.0
        while not self._stop.wait(POLL):
            if self.rules_file is not None:
                self._reload_rules()
            if self.stats_file is not None and self._changed.is_set() \
                    and time.monotonic() - last_write >= POLL:
                self._changed.clear()
                self._write_stats()
                last_write = time.monotonic()

    def _reload_rules(self) -> None:
        assert self.rules_file is not None
        try:
            st = self.rules_file.stat()
            stamp: tuple | None = (st.st_ino, st.st_mtime_ns, st.st_size)
        except FileNotFoundError:
            stamp = None
        if stamp == self._rules_stamp:
            return
        self._rules_stamp = stamp
        try:
            text = self.rules_file.read_text() if stamp is not None else ""
            rules = rules_from_json(text)
        except (OSError, ProxyError) as err:
            msg = f"{self.rules_file}: {err}; keeping the previous rules"
            self.errors.append(msg)
            log.error("%s: %s", self.name, msg)
            return
        self.plan.replace(rules)
        self.reloads += 1
        log.info("%s: %d rule(s) from %s", self.name, len(rules), self.rules_file)
        self._changed.set()

    def _write_stats(self) -> None:
        assert self.stats_file is not None
        tmp = self.stats_file.with_name(f".{self.stats_file.name}.tmp")
        try:
            tmp.write_text(json.dumps(self.stats(), indent=1))
            os.replace(tmp, self.stats_file)
        except OSError as err:
            log.warning("%s: cannot write %s: %s", self.name, self.stats_file, err)


def parse_hostport(text: str) -> tuple[str, int]:
    """``host:port`` or ``[v6]:port`` -> (host, port)."""
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit() or not host:
        raise ProxyError(f"{text!r}: expected HOST:PORT (IPv6 as [addr]:port)")
    return host.strip("[]"), int(port)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--listen", required=True, help="HOST:PORT initiators connect to")
    parser.add_argument("--target", required=True, help="HOST:PORT of the target portal")
    parser.add_argument("--rules", help="JSON rules file, re-read when it changes")
    parser.add_argument("--stats", help="write the counters as JSON to this file")
    parser.add_argument("--ready", help="create this file once listening")
    parser.add_argument("-q", "--quiet", action="store_true", help="log warnings only")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING if args.quiet else logging.INFO,
                        format="%(asctime)s %(name)s: %(message)s", stream=sys.stderr)
    try:
        proxy = FaultProxy(args.target, args.listen, name=f"faultproxy {args.listen}",
                           rules_file=args.rules, stats_file=args.stats).start()
    except ProxyError as err:
        print(f"faultproxy: {err}", file=sys.stderr)
        return 2
    done = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: done.set())
    if args.ready:
        Path(args.ready).write_text(f"{os.getpid()}\n")
    while not done.wait(1.0):
        pass
    proxy.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
