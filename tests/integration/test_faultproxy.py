"""The fault proxy (tests/faultproxy.py) between libiscsi and a real tgtd.

Every fault is checked as IscsiTransport reports it, and every claim about the target's
state is read through a session of its own straight to tgtd (not through the proxy).
"""
from __future__ import annotations

import contextlib
import json
import os
import socket
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from hamon.lib.scsi.errors import Busy, CheckCondition, ReservationConflict, error_for
from hamon.lib.scsi.sense import SenseKey
from hamon.lib.sim import HARDWARE_ERROR, FaultKind, FaultRule
from hamon.lib.transport.base import CommandResult, PathError, PathTimeout
from hamon.lib.transport.iscsi import IscsiTransport
from tests.faultproxy import (
    FaultProxy,
    Pdu,
    ProxyError,
    _force_no_digests,
    read_pdu,
    rules_from_json,
    write_rules,
)
from tests.integration.tgt import Tgt, free_port

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
NODE1 = "iqn.2026-11.org.hamon:node1"
OBSERVER = "iqn.2026-11.org.hamon:observer"
K1, K2 = 0x1111_0000_0000_0001, 0x2222_0000_0000_0002
WE_RO = 5
GOOD, CHECK_CONDITION, BUSY, CONFLICT, TASK_SET_FULL = 0x00, 0x02, 0x08, 0x18, 0x28
PR_IN, PR_OUT = 0x5E, 0x5F
REGISTER, RESERVE, CLEAR = 0x00, 0x01, 0x03
READ_KEYS_SA, READ_RESERVATION_SA = 0x00, 0x01
TUR = bytes(6)
READ_KEYS = struct.pack(">BBxxxxxHB", PR_IN, READ_KEYS_SA, 4096, 0)
READ_RESERVATION = struct.pack(">BBxxxxxHB", PR_IN, READ_RESERVATION_SA, 4096, 0)
VPD_83 = struct.pack(">BBBHB", 0x12, 0x01, 0x83, 255, 0)


def pr_out(sa: int, rk: int, sark: int, pr_type: int = 0) -> tuple[bytes, bytes]:
    """PERSISTENT RESERVE OUT CDB and its 24-byte parameter list."""
    return (struct.pack(">BBBxxxxBBB", PR_OUT, sa, pr_type, 0, 24, 0),
            struct.pack(">QQ8x", rk, sark))


def settle(t: IscsiTransport) -> None:
    """Consume the new nexus's unit attentions (tgt: one power-on UA)."""
    for _ in range(5):
        r = t.execute(TUR)
        if r.status == GOOD:
            return
        assert r.status == CHECK_CONDITION and r.sense[2] & 0x0F == SenseKey.UNIT_ATTENTION, r
    raise AssertionError("unit attentions do not stop")


def keys_of(r: CommandResult) -> list[int]:
    assert r.status == GOOD, r
    _gen, length = struct.unpack(">II", r.data[:8])
    return [k for (k,) in struct.iter_unpack(">Q", r.data[8:8 + length])]


@pytest.fixture
def open_transport() -> Iterator[Callable[..., IscsiTransport]]:
    made: list[IscsiTransport] = []

    def make(url: str, initiator: str = NODE1, timeout: float = 3.0) -> IscsiTransport:
        t = IscsiTransport(path=url, initiator=initiator, timeout=timeout)
        made.append(t)
        return t

    yield make
    for t in made:
        t.close()


@pytest.fixture
def proxies() -> Iterator[Callable[..., FaultProxy]]:
    made: list[FaultProxy] = []

    def make(tgt: Tgt, portal: int = 0, **kw: object) -> FaultProxy:
        p = FaultProxy((tgt.hosts[portal], tgt.port), **kw).start()  # type: ignore[arg-type]
        made.append(p)
        return p

    yield make
    for p in made:
        p.stop()


def url_via(proxy: FaultProxy, tgt: Tgt, lun: int = 1) -> str:
    url = proxy.url(tgt.target, lun)
    assert url == f"iscsi://{proxy.portal}/{tgt.target}/{lun}"
    return url


class Observer:
    """A session straight to tgtd (portal 0), as an independent reader."""

    def __init__(self, tgt: Tgt, open_transport: Callable[..., IscsiTransport]) -> None:
        self.t = open_transport(tgt.url(1), initiator=OBSERVER)
        settle(self.t)

    def keys(self) -> list[int]:
        return keys_of(self.t.execute(READ_KEYS, data_in_len=4096))

    def reservation(self) -> tuple[int, int] | None:
        r = self.t.execute(READ_RESERVATION, data_in_len=4096)
        assert r.status == GOOD, r
        length = struct.unpack_from(">I", r.data, 4)[0]
        if length < 16:
            return None
        return struct.unpack_from(">Q", r.data, 8)[0], r.data[21] & 0x0F


@pytest.fixture
def path(tgt: Tgt, proxies, open_transport):
    """(proxy, transport through it, observer straight to tgtd); UAs consumed."""
    proxy = proxies(tgt)
    t = open_transport(url_via(proxy, tgt))
    settle(t)
    return proxy, t, Observer(tgt, open_transport)


# ----------------------------------------------------------------- pass-through


def test_without_rules_everything_passes_unchanged(tgt: Tgt, path, open_transport):
    proxy, t, obs = path
    direct = open_transport(tgt.url(1), initiator="iqn.2026-11.org.hamon:direct")
    settle(direct)
    assert t.execute(VPD_83, data_in_len=255) == direct.execute(VPD_83, data_in_len=255)
    cdb, params = pr_out(REGISTER, 0, K1)
    assert t.execute(cdb, params) == CommandResult(GOOD)
    cdb, params = pr_out(RESERVE, K1, 0, WE_RO)
    assert t.execute(cdb, params) == CommandResult(GOOD)
    assert keys_of(t.execute(READ_KEYS, data_in_len=4096)) == [K1]
    assert obs.keys() == [K1]
    assert obs.reservation() == (K1, WE_RO)
    assert proxy.seen(PR_OUT, REGISTER) == 1 and proxy.seen(PR_OUT, RESERVE) == 1
    assert proxy.seen(PR_IN, READ_KEYS_SA) == 1
    assert proxy.seen(0x12) == 1 and proxy.seen(0x00) >= 1
    assert proxy.counts()[(PR_OUT, REGISTER)] == 1
    assert proxy.counts_by_lun()[(1, PR_IN, READ_KEYS_SA)] == 1
    assert proxy.faults() == {}


# ----------------------------------------------------------------- each kind


@pytest.mark.parametrize("rule,status,exc,sense", [
    (HARDWARE_ERROR, CHECK_CONDITION, CheckCondition, (SenseKey.HARDWARE_ERROR, 0x44, 0x00)),
    (FaultRule(FaultKind.CHECK_CONDITION, sense_key=0x3, asc=0x11, ascq=0x01),
     CHECK_CONDITION, CheckCondition, (SenseKey.MEDIUM_ERROR, 0x11, 0x01)),
    (FaultRule(FaultKind.CHECK_CONDITION, sense_key=0x2, asc=0x04, ascq=0x03),
     CHECK_CONDITION, CheckCondition, (SenseKey.NOT_READY, 0x04, 0x03)),
    (FaultRule(FaultKind.BUSY), BUSY, Busy, None),
    (FaultRule(FaultKind.TASK_SET_FULL), TASK_SET_FULL, Busy, None),
    (FaultRule(FaultKind.RESERVATION_CONFLICT), CONFLICT, ReservationConflict, None),
], ids=["hw-error", "medium-error", "not-ready", "busy", "task-set-full", "conflict"])
@pytest.mark.parametrize("command", ["pr-in", "pr-out"])
def test_status_faults_as_the_initiator_sees_them(path, rule, status, exc, sense, command):
    proxy, t, obs = path
    if command == "pr-in":
        proxy.set_rules(FaultRule(**{**rule.__dict__, "opcode": PR_IN}))
        r = t.execute(READ_KEYS, data_in_len=4096)
    else:
        proxy.set_rules(FaultRule(**{**rule.__dict__, "opcode": PR_OUT,
                                     "service_action": REGISTER}))
        r = t.execute(*pr_out(REGISTER, 0, K1))
    assert r.status == status
    assert r.data == b""
    err = error_for(r.status, r.sense)
    assert type(err) is exc or (exc is CheckCondition and isinstance(err, CheckCondition))
    if sense is None:
        assert r.sense == b""
    else:
        assert (err.sense.key, err.asc, err.ascq) == sense
    assert proxy.faults() == {rule.kind.value: 1}
    # Nothing happened on the target, and the session goes on (CmdSN consistent).
    assert obs.keys() == []
    assert t.execute(TUR) == CommandResult(GOOD)
    proxy.clear_rules()
    assert t.execute(*pr_out(REGISTER, 0, K2)) == CommandResult(GOOD)
    assert keys_of(t.execute(READ_KEYS, data_in_len=4096)) == [K2]
    assert obs.keys() == [K2]
    assert proxy.connections_accepted == 1  # no reconnect was needed


def test_faulted_pr_out_changes_nothing_on_the_target(path):
    proxy, t, obs = path
    assert t.execute(*pr_out(REGISTER, 0, K1)).status == GOOD
    assert t.execute(*pr_out(RESERVE, K1, 0, WE_RO)).status == GOOD
    proxy.set_rules(FaultRule(FaultKind.CHECK_CONDITION, opcode=PR_OUT))
    for sa, rk, sark in [(CLEAR, K1, 0), (REGISTER, K1, 0), (REGISTER, K1, K2),
                         (RESERVE, K1, 0)]:
        r = t.execute(*pr_out(sa, rk, sark, WE_RO))
        assert r.status == CHECK_CONDITION
    assert obs.keys() == [K1]
    assert obs.reservation() == (K1, WE_RO)
    assert proxy.seen(PR_OUT) == 6 and proxy.faults() == {"check-condition": 4}


def test_swallow_times_out_within_the_command_timeout_and_changes_nothing(path):
    proxy, t, obs = path
    proxy.set_rules(FaultRule(FaultKind.SWALLOW, opcode=PR_OUT, count=1))
    start = time.monotonic()
    with pytest.raises(PathTimeout):
        t.execute(*pr_out(REGISTER, 0, K1), timeout=1.5)
    assert 1.4 <= time.monotonic() - start < 2.5
    assert obs.keys() == []
    # The rule was used up: on a new login (UA first) the next PR OUT goes through.
    settle(t)
    assert t.execute(*pr_out(REGISTER, 0, K1)).status == GOOD
    assert obs.keys() == [K1]
    assert proxy.faults() == {"swallow": 1}


def test_drop_is_a_path_error_at_once_and_the_next_login_works(path):
    proxy, t, obs = path
    proxy.set_rules(FaultRule(FaultKind.DROP, opcode=PR_IN, count=1))
    start = time.monotonic()
    with pytest.raises(PathError) as info:
        t.execute(READ_KEYS, data_in_len=4096, timeout=3)
    assert not isinstance(info.value, PathTimeout)
    assert time.monotonic() - start < 1.0
    settle(t)  # a new session (its power-on UA first)
    assert keys_of(t.execute(READ_KEYS, data_in_len=4096)) == []
    assert proxy.connections_accepted == 2
    assert proxy.faults() == {"drop": 1}
    assert obs.keys() == []


@pytest.mark.parametrize("keys", [[], [K1], [K1, K2]])
def test_corrupt_read_keys_header_claims_more_than_sent(path, tgt, open_transport, keys):
    proxy, t, _obs = path
    for n, key in enumerate(keys):
        other = open_transport(tgt.url(1), initiator=f"iqn.2026-11.org.hamon:reg{n}")
        settle(other)
        assert other.execute(*pr_out(REGISTER, 0, key)).status == GOOD
    proxy.set_rules(FaultRule(FaultKind.CORRUPT, count=1))
    assert t.execute(TUR) == CommandResult(GOOD)  # not PR IN: not charged
    r = t.execute(READ_KEYS, data_in_len=4096)
    assert r.status == GOOD
    generation, claimed = struct.unpack_from(">II", r.data)
    assert generation == len(keys)
    assert len(r.data) == 8 + 8 * len(keys)  # the bytes sent are the target's
    assert r.data[8:] == b"".join(struct.pack(">Q", k) for k in keys)
    assert claimed > len(r.data) - 8 and claimed % 8 != 0
    assert proxy.faults() == {"corrupt": 1}
    assert keys_of(t.execute(READ_KEYS, data_in_len=4096)) == keys  # count=1: used up


def test_corrupt_read_reservation(path):
    proxy, t, _obs = path
    assert t.execute(*pr_out(REGISTER, 0, K1)).status == GOOD
    assert t.execute(*pr_out(RESERVE, K1, 0, WE_RO)).status == GOOD
    proxy.set_rules(FaultRule(FaultKind.CORRUPT, opcode=PR_IN,
                              service_action=READ_RESERVATION_SA))
    assert keys_of(t.execute(READ_KEYS, data_in_len=4096)) == [K1]  # other SA untouched
    r = t.execute(READ_RESERVATION, data_in_len=4096)
    claimed = struct.unpack_from(">I", r.data, 4)[0]
    assert len(r.data) == 24 and claimed > 16 and claimed % 8 != 0


# ----------------------------------------------------------------- sessions, rules


def test_session_stays_consistent_through_many_faults(path):
    """Alternating faulted and normal commands, immediate data included, on one
    connection: no reconnect, every answer the expected one (CmdSN/StatSN in step)."""
    proxy, t, obs = path
    for _ in range(10):
        proxy.set_rules(FaultRule(FaultKind.CHECK_CONDITION, opcode=PR_OUT, count=1))
        assert t.execute(*pr_out(REGISTER, 0, K1)).status == CHECK_CONDITION
        assert t.execute(*pr_out(REGISTER, 0, K1)).status == GOOD
        proxy.set_rules(FaultRule(FaultKind.BUSY, count=1))
        assert t.execute(READ_KEYS, data_in_len=4096).status == BUSY
        assert keys_of(t.execute(READ_KEYS, data_in_len=4096)) == [K1]
        assert t.execute(*pr_out(REGISTER, K1, 0)).status == GOOD  # unregister
    assert proxy.connections_accepted == 1
    assert proxy.faults() == {"check-condition": 10, "busy": 10}
    assert obs.keys() == []


def test_unit_attention_of_the_target_takes_precedence(tgt, proxies, open_transport):
    """A new nexus's power-on UA goes through; the rule's hit is given back."""
    proxy = proxies(tgt, rules=[FaultRule(FaultKind.CHECK_CONDITION, count=1)])
    t = open_transport(url_via(proxy, tgt))
    first = t.execute(READ_KEYS, data_in_len=4096)
    assert first.status == CHECK_CONDITION
    assert first.sense[2] & 0x0F == SenseKey.UNIT_ATTENTION
    second = t.execute(READ_KEYS, data_in_len=4096)
    assert second.sense[2] & 0x0F == SenseKey.HARDWARE_ERROR
    assert t.execute(READ_KEYS, data_in_len=4096).status == GOOD


def test_two_proxies_are_two_paths_of_one_lun(tgt, proxies, open_transport):
    p0, p1 = proxies(tgt, 0), proxies(tgt, 1)
    t0, t1 = open_transport(url_via(p0, tgt)), open_transport(url_via(p1, tgt))
    settle(t0)
    settle(t1)
    id0 = t0.execute(VPD_83, data_in_len=255)
    assert id0.status == GOOD and id0 == t1.execute(VPD_83, data_in_len=255)
    assert t0.execute(*pr_out(REGISTER, 0, K1)).status == GOOD
    assert t1.execute(*pr_out(REGISTER, 0, K1)).status == GOOD
    obs = Observer(tgt, open_transport)
    assert obs.keys() == [K1, K1]  # two I_T nexuses: two paths
    p0.set_rules(HARDWARE_ERROR)
    assert t0.execute(READ_KEYS, data_in_len=4096).status == CHECK_CONDITION
    assert keys_of(t1.execute(READ_KEYS, data_in_len=4096)) == [K1, K1]  # other path clean
    assert p1.faults() == {} and p0.faults() == {"check-condition": 1}
    assert tgt.hosts[0] != tgt.hosts[1] and p0.target != p1.target


def test_rules_file_is_reread_when_it_changes(tgt, proxies, open_transport, tmp_path):
    rules = tmp_path / "rules.json"
    proxy = proxies(tgt, rules_file=rules)
    t = open_transport(url_via(proxy, tgt))
    settle(t)
    write_rules(rules, [FaultRule(FaultKind.BUSY, opcode=PR_IN)])
    deadline = time.monotonic() + 3
    while proxy.rules() == [] and time.monotonic() < deadline:
        time.sleep(0.05)
    assert t.execute(READ_KEYS, data_in_len=4096).status == BUSY
    rules.write_text("{not json")
    deadline = time.monotonic() + 3
    while not proxy.errors and time.monotonic() < deadline:
        time.sleep(0.05)
    assert proxy.errors and "not JSON" in proxy.errors[-1]
    assert t.execute(READ_KEYS, data_in_len=4096).status == BUSY  # previous rules kept
    rules.unlink()
    deadline = time.monotonic() + 3
    while proxy.rules() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert t.execute(READ_KEYS, data_in_len=4096).status == GOOD


def test_script_mode_with_rules_and_stats_files(tgt, open_transport, tmp_path):
    rules, stats, ready = tmp_path / "rules.json", tmp_path / "stats.json", tmp_path / "ready"
    rules.write_text(json.dumps({"rules": [
        {"kind": "check-condition", "opcode": "0x5e", "service_action": 0, "count": 1}]}))
    port = free_port(("127.0.0.1",))
    proc = subprocess.Popen(
        [sys.executable, str(REPO / "tests" / "faultproxy.py"), "--listen",
         f"127.0.0.1:{port}", "--target", f"{tgt.hosts[0]}:{tgt.port}", "--rules",
         str(rules), "--stats", str(stats), "--ready", str(ready)],
        env={k: v for k, v in os.environ.items() if k != "PYTHONPATH"},
        stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 10
        while not ready.exists() and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.05)
        assert ready.exists(), proc.stderr.read() if proc.poll() is not None else "no ready"
        t = open_transport(f"iscsi://127.0.0.1:{port}/{tgt.target}/1")
        settle(t)
        r = t.execute(READ_KEYS, data_in_len=4096)
        assert error_for(r.status, r.sense).sense.key == SenseKey.HARDWARE_ERROR
        assert t.execute(READ_KEYS, data_in_len=4096).status == GOOD
        t.close()
    finally:
        proc.terminate()
        _, err = proc.communicate(timeout=10)
    assert proc.returncode == 0, err
    doc = json.loads(stats.read_text())
    assert doc["faults"] == {"check-condition": 1}
    assert {"lun": 1, "opcode": PR_IN, "service_action": 0, "count": 2} in doc["commands"]
    assert "rule check-condition" in err


# ----------------------------------------------------------------- no tgt needed


def test_login_digest_offers_become_none():
    text = b"InitiatorName=iqn.x\0HeaderDigest=CRC32C,None\0DataDigest=CRC32C\0MaxR=1\0"
    assert _force_no_digests(text) == (b"InitiatorName=iqn.x\0HeaderDigest=None\0"
                                       b"DataDigest=None\0MaxR=1\0")


def test_rules_json_parses_and_names_what_is_wrong():
    assert rules_from_json("") == []
    assert rules_from_json('[{"kind": "busy", "opcode": "0x5f", "count": 2}]') == [
        FaultRule(FaultKind.BUSY, opcode=0x5F, count=2)]
    assert rules_from_json('{"rules": [{"kind": "check-condition"}]}') == [HARDWARE_ERROR]
    for bad, why in [('{"rules": [{"kind": "melt"}]}', "kind must be one of"),
                     ('[{"kind": "busy", "opcod": 1}]', "unknown field"),
                     ('[{"kind": "busy", "opcode": "five"}]', "not a number"),
                     ('[{"opcode": 1}]', "kind")]:
        with pytest.raises(ProxyError, match=why):
            rules_from_json(bad)


def test_login_through_the_proxy_offers_no_digests_and_refuses_a_target_that_wants_them():
    """A fake target that answers HeaderDigest=CRC32C: the proxy forwards the initiator's
    offer rewritten to None, and when the target insists, closes the connection with an
    error that says what to configure."""
    listener = socket.create_server(("127.0.0.1", 0))
    received: list[bytes] = []

    def target() -> None:
        conn, _ = listener.accept()
        with conn:
            pdu = read_pdu(conn)
            received.append(pdu.data)
            answer = Pdu(bytearray(48), b"", b"HeaderDigest=CRC32C\0DataDigest=None\0")
            answer.bhs[0] = 0x23
            conn.sendall(answer.encode())
            conn.settimeout(5)
            with contextlib.suppress(OSError):
                conn.recv(1)

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    with FaultProxy(listener.getsockname()) as proxy, \
            socket.create_connection(proxy.address, timeout=5) as client:
        login = Pdu(bytearray(48), b"", b"InitiatorName=iqn.x\0HeaderDigest=CRC32C,None\0"
                    b"DataDigest=CRC32C,None\0")
        login.bhs[0] = 0x43
        client.sendall(login.encode())
        assert client.recv(48) == b""  # closed, the login response withheld
        thread.join(5)
        assert received == [b"InitiatorName=iqn.x\0HeaderDigest=None\0DataDigest=None\0"]
        assert "HeaderDigest=CRC32C" in proxy.errors[0]
        assert "HeaderDigest=None and DataDigest=None" in proxy.errors[0]
    listener.close()


@pytest.mark.parametrize("blocks", [1, 16, 256])
def test_faulted_write_sends_no_data_and_the_session_goes_on(path, tgt, open_transport,
                                                             blocks):
    """A WRITE(10) answered by a rule: its immediate data (and any Data-Out) never reaches
    tgtd, the block keeps its old content (read straight from tgtd), and the next write on
    the same connection lands."""
    proxy, t, _obs = path
    write = struct.pack(">BBIBHB", 0x2A, 0, 8, 0, blocks, 0)
    read = struct.pack(">BBIBHB", 0x28, 0, 8, 0, blocks, 0)
    direct = open_transport(tgt.url(1), initiator="iqn.2026-11.org.hamon:direct")
    settle(direct)
    before = direct.execute(read, data_in_len=512 * blocks)
    assert before.status == GOOD
    payload = bytes([0xA5]) * (512 * blocks)
    proxy.set_rules(FaultRule(FaultKind.CHECK_CONDITION, opcode=0x2A, count=1))
    r = t.execute(write, payload)
    assert r.status == CHECK_CONDITION and r.sense[2] & 0x0F == SenseKey.HARDWARE_ERROR
    assert direct.execute(read, data_in_len=512 * blocks) == before
    assert t.execute(write, payload) == CommandResult(GOOD)
    assert direct.execute(read, data_in_len=512 * blocks).data == payload
    assert proxy.connections_accepted == 1 and proxy.faults() == {"check-condition": 1}
