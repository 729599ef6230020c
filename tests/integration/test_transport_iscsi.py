"""The libiscsi transport against a real tgtd on loopback.

CDBs are built inline with struct on purpose: this tier checks the transport (bytes in,
status/sense/data out), not hamon.lib.scsi.
"""
from __future__ import annotations

import json
import os
import socket
import statistics
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from hamon.lib.transport.base import CommandResult, PathError, PathTimeout
from hamon.lib.transport.iscsi import IscsiTransport
from hamon.lib.transport.iscsi_url import derive_isid, parse_iscsi_url
from tests.integration.tgt import Tgt, free_port

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
NODE1 = "iqn.2026-11.org.hamon:node1"
NODE2 = "iqn.2026-11.org.hamon:node2"
NODE3 = "iqn.2026-11.org.hamon:node3"
K1, K2 = 0x1111_0000_0000_0001, 0x2222_0000_0000_0002
WE_RO = 5
GOOD, CHECK_CONDITION, RESERVATION_CONFLICT = 0x00, 0x02, 0x18
UNIT_ATTENTION = 6
#: A new I_T nexus on tgt reports one power-on UA per LUN; allow a few more.
MAX_UAS = 4

TUR = bytes(6)


def inquiry_vpd(page: int, alloc: int) -> bytes:
    return struct.pack(">BBBHB", 0x12, 0x01, page, alloc, 0)


def pr_out(sa: int, rk: int, sark: int, pr_type: int = 0) -> tuple[bytes, bytes]:
    """PERSISTENT RESERVE OUT CDB (10 bytes, LU scope) and its 24-byte parameter list."""
    cdb = struct.pack(">BBBxxxxBBB", 0x5F, sa, pr_type, 0, 24, 0)
    return cdb, struct.pack(">QQ8x", rk, sark)


REGISTER, RESERVE, PREEMPT, REGISTER_AND_IGNORE = 0x00, 0x01, 0x04, 0x06
READ_KEYS = struct.pack(">BBxxxxxHB", 0x5E, 0x00, 4096, 0)


def write10(lba: int, blocks: int) -> bytes:
    return struct.pack(">BBIBHB", 0x2A, 0, lba, 0, blocks, 0)


def read10(lba: int, blocks: int) -> bytes:
    return struct.pack(">BBIBHB", 0x28, 0, lba, 0, blocks, 0)


def sense_key(sense: bytes) -> int:
    return (sense[1] if sense[0] & 0x7F in (0x72, 0x73) else sense[2]) & 0x0F


def asc_ascq(sense: bytes) -> tuple[int, int]:
    if sense[0] & 0x7F in (0x72, 0x73):
        return sense[2], sense[3]
    return sense[12], sense[13]


def keys_of(r: CommandResult) -> list[int]:
    assert r.status == GOOD, r
    _gen, length = struct.unpack(">II", r.data[:8])
    return [k for (k,) in struct.iter_unpack(">Q", r.data[8:8 + length])]


def until_not_ua(t: IscsiTransport, cdb: bytes, data_out: bytes | None = None,
                 data_in_len: int = 0) -> tuple[CommandResult, list[bytes]]:
    """Send ``cdb`` until it is not answered with UNIT ATTENTION; the UAs seen."""
    uas = []
    for _ in range(MAX_UAS + 1):
        r = t.execute(cdb, data_out, data_in_len)
        if r.status == CHECK_CONDITION and sense_key(r.sense) == UNIT_ATTENTION:
            uas.append(r.sense)
            continue
        return r, uas
    raise AssertionError(f"more than {MAX_UAS} unit attentions: {[u.hex() for u in uas]}")


@pytest.fixture
def open_transport() -> Iterator[Callable[..., IscsiTransport]]:
    """IscsiTransport factory; every transport is closed at the end of the test."""
    made: list[IscsiTransport] = []

    def make(url: str, initiator: str = NODE1, timeout: float = 3.0) -> IscsiTransport:
        t = IscsiTransport(path=url, initiator=initiator, timeout=timeout)
        made.append(t)
        return t

    yield make
    for t in made:
        t.close()


def run_in_subprocess(code: str, **args: object) -> dict:
    """Run ``code`` in a fresh interpreter (a second process, like a second agent run).

    ``code`` sees ``args`` and sets ``out``; the dict comes back through JSON.
    """
    script = ("import json, sys\nargs = json.loads(sys.argv[1])\nout = {}\n" + code
              + "\nprint(json.dumps(out))\n")
    env = dict(os.environ, PYTHONPATH=str(REPO))
    proc = subprocess.run([sys.executable, "-c", script, json.dumps(args)], env=env,
                          capture_output=True, text=True, timeout=30, check=False)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout.splitlines()[-1])


SUBPROCESS_PRELUDE = """
from hamon.lib.transport.iscsi import IscsiTransport
t = IscsiTransport(path=args["url"], initiator=args["initiator"], timeout=5)
out["isid"] = t.isid.hex()
"""


# ------------------------------------------------------------------- basics

def test_first_command_gets_raw_unit_attention_sense_then_good(tgt: Tgt, open_transport):
    t = open_transport(tgt.url(1))
    first = t.execute(TUR)
    assert first.status == CHECK_CONDITION
    assert first.sense[0] & 0x7F in (0x70, 0x72)
    assert sense_key(first.sense) == UNIT_ATTENTION
    assert asc_ascq(first.sense)[0] == 0x29  # power on, reset or bus device reset
    if first.sense[0] & 0x7F == 0x70:  # fixed format: exactly 8 + additional length
        assert len(first.sense) == 8 + first.sense[7]
    r, uas = until_not_ua(t, TUR)
    assert r == CommandResult(GOOD)
    assert len(uas) <= MAX_UAS
    assert t.execute(TUR) == CommandResult(GOOD)  # the session is reused: no new UA


def test_inquiry_vpd_83_returns_what_was_transferred(tgt: Tgt, open_transport):
    t = open_transport(tgt.url(1))
    r, _ = until_not_ua(t, inquiry_vpd(0x83, 255), data_in_len=255)
    assert r.status == GOOD
    assert r.data[1] == 0x83
    page_len = struct.unpack(">H", r.data[2:4])[0]
    assert len(r.data) == 4 + page_len < 255  # truncated to what the target sent
    assert page_len > 4  # at least one designator
    # A smaller allocation length is honoured and so is the data_in_len bound.
    r = t.execute(inquiry_vpd(0x83, 8), data_in_len=8)
    assert r.status == GOOD and len(r.data) == 8


def test_illegal_request_sense_is_returned_verbatim(tgt: Tgt, open_transport):
    t = open_transport(tgt.url(1))
    until_not_ua(t, TUR)
    r = t.execute(bytes([0xFF, 0, 0, 0, 0, 0]))  # no such opcode
    assert r.status == CHECK_CONDITION
    assert sense_key(r.sense) == 0x05 and asc_ascq(r.sense) == (0x20, 0x00)


def test_data_out_and_data_in_round_trip(tgt: Tgt, open_transport):
    """128 KiB is more than FirstBurstLength (64 KiB): immediate data, then R2T."""
    t = open_transport(tgt.url(2))
    blocks = 256
    pattern = bytes((i * 7 + i // 512) & 0xFF for i in range(blocks * 512))
    r, _ = until_not_ua(t, write10(100, blocks), data_out=pattern)
    assert r == CommandResult(GOOD)
    r = t.execute(read10(100, blocks), data_in_len=blocks * 512)
    assert r.status == GOOD and r.data == pattern


# ------------------------------------------------------ persistent reservations

def test_registration_is_seen_by_a_second_process(tgt: Tgt, open_transport):
    url = tgt.url(1)
    t = open_transport(url)
    cdb, params = pr_out(REGISTER, 0, K1)
    r, _ = until_not_ua(t, cdb, params)
    assert r == CommandResult(GOOD)
    t.close()
    out = run_in_subprocess(SUBPROCESS_PRELUDE + """
import struct
for _ in range(5):
    r = t.execute(bytes.fromhex(args["cdb"]), data_in_len=4096)
    if r.status == 0:
        break
n = struct.unpack(">I", r.data[4:8])[0]
out["keys"] = [k for (k,) in struct.iter_unpack(">Q", r.data[8:8 + n])]
t.close()
""", url=url, initiator=NODE1, cdb=READ_KEYS.hex())
    assert out["keys"] == [K1]
    assert out["isid"] == t.isid.hex() == derive_isid(NODE1, parse_iscsi_url(url)).hex()


def test_same_initiator_and_path_is_the_same_isid_in_another_process(tgt: Tgt,
                                                                      open_transport):
    """The ISID on the wire, as tgtd logged it, for logins from three processes.

    (Not shown by session reinstatement: libiscsi without CHAP starts the login in the
    operational stage, and tgt looks for a live session with the same ISID only in the
    security stage, so on tgt two sessions with one initiator port coexist.)
    """
    tgt.set_debug(True)
    t = open_transport(tgt.url(1))
    until_not_ua(t, TUR)
    code = SUBPROCESS_PRELUDE + "t.execute(bytes(6)); t.close()"
    run_in_subprocess(code, url=tgt.url(1), initiator=NODE1)  # same path, same name
    run_in_subprocess(code, url=tgt.url(2), initiator=NODE1)  # another LUN
    run_in_subprocess(code, url=tgt.url(1, portal=1), initiator=NODE1)  # another portal
    run_in_subprocess(code, url=tgt.url(1), initiator=NODE2)  # another name
    isids = [isid for isid, _tsih in tgt.created_sessions()]
    assert len(isids) == 5
    assert isids[0] == isids[1] == t.isid
    assert isids[0][0] & 0xC0 == 0x80  # ISID type "random"
    assert len(set(isids[1:])) == 4


def test_tgt_binds_a_registration_to_the_session_not_to_the_isid(tgt: Tgt, open_transport):
    """tgt 1.0.85 deviates from SPC-4 here, and the reservation layer must know it.

    tgt identifies a registrant by (TSIH, session creation time), not by initiator port
    (name + ISID). After a new login with the very same ISID the old registration is
    still listed but belongs to nobody: REGISTER with the old key conflicts, and
    REGISTER AND IGNORE EXISTING KEY adds a second entry with the same key. On LIO
    (SPC-4 proper) the stable ISID makes the new session the same registrant.
    """
    url = tgt.url(1)
    t = open_transport(url)
    until_not_ua(t, TUR)
    cdb, params = pr_out(REGISTER, 0, K1)
    assert t.execute(cdb, params) == CommandResult(GOOD)
    t.close()
    t2 = open_transport(url)
    assert t2.isid == t.isid
    cdb, params = pr_out(REGISTER, K1, K2)
    r, _ = until_not_ua(t2, cdb, params)
    assert r.status == RESERVATION_CONFLICT
    cdb, params = pr_out(REGISTER_AND_IGNORE, 0, K1)
    assert t2.execute(cdb, params) == CommandResult(GOOD)
    assert keys_of(t2.execute(READ_KEYS, data_in_len=4096)) == [K1, K1]


def test_two_initiator_names_are_two_registrants(tgt: Tgt, open_transport):
    n1 = open_transport(tgt.url(1), NODE1)
    n2 = open_transport(tgt.url(1), NODE2)
    assert n1.isid != n2.isid
    for t, key in ((n1, K1), (n2, K2)):
        cdb, params = pr_out(REGISTER, 0, key)
        r, _ = until_not_ua(t, cdb, params)
        assert r == CommandResult(GOOD)
    assert sorted(keys_of(n1.execute(READ_KEYS, data_in_len=4096))) == [K1, K2]
    cdb, params = pr_out(REGISTER, K1, K2)  # node2 cannot act with node1's key
    assert n2.execute(cdb, params).status == RESERVATION_CONFLICT
    assert {s.initiator for s in tgt.sessions()} == {NODE1, NODE2}


def test_preempted_and_unregistered_writers_get_reservation_conflict(tgt: Tgt,
                                                                      open_transport):
    n1 = open_transport(tgt.url(1), NODE1)
    n2 = open_transport(tgt.url(1, portal=1), NODE2)
    n3 = open_transport(tgt.url(1), NODE3)
    block = bytes(512)
    for t, key in ((n1, K1), (n2, K2)):
        cdb, params = pr_out(REGISTER, 0, key)
        assert until_not_ua(t, cdb, params)[0] == CommandResult(GOOD)
    cdb, params = pr_out(RESERVE, K1, 0, WE_RO)
    assert n1.execute(cdb, params) == CommandResult(GOOD)
    assert n2.execute(write10(0, 1), block) == CommandResult(GOOD)  # registrant: allowed

    cdb, params = pr_out(PREEMPT, K1, K2, WE_RO)
    assert n1.execute(cdb, params) == CommandResult(GOOD)
    r, uas = until_not_ua(n2, write10(0, 1), block)
    assert r.status == RESERVATION_CONFLICT and r.sense == b""
    assert len(uas) <= 1  # tgt: one UA for the preempted nexus, then conflicts
    assert n2.execute(write10(0, 1), block).status == RESERVATION_CONFLICT

    r, _ = until_not_ua(n3, write10(0, 1), block)  # never registered
    assert r.status == RESERVATION_CONFLICT
    assert n1.execute(write10(0, 1), block) == CommandResult(GOOD)  # the holder writes


# --------------------------------------------------------------- path failures

def test_hung_target_gives_path_timeout_within_the_bound(tgt: Tgt, open_transport):
    bound, slack = 1.0, 0.5
    live = open_transport(tgt.url(1), timeout=bound)
    until_not_ua(live, TUR)
    fresh = open_transport(tgt.url(2), timeout=bound)
    with tgt.stopped():
        for t, phase in ((live, "command"), (fresh, "login")):
            start = time.monotonic()
            with pytest.raises(PathTimeout) as err:
                t.execute(TUR)
            elapsed = time.monotonic() - start
            assert bound <= elapsed < bound + slack, (phase, elapsed)
            assert phase in str(err.value)
            assert not t.connected
        # A per-call timeout overrides the transport's.
        start = time.monotonic()
        with pytest.raises(PathTimeout):
            live.execute(TUR, timeout=0.3)
        assert 0.3 <= time.monotonic() - start < 0.3 + slack
    r, _ = until_not_ua(live, TUR)  # tgtd continued: a new session works
    assert r == CommandResult(GOOD)


def test_close_is_bounded_when_the_target_hangs(tgt: Tgt, open_transport):
    t = open_transport(tgt.url(1), timeout=5.0)
    until_not_ua(t, TUR)
    with tgt.stopped():
        start = time.monotonic()
        t.close()
        assert time.monotonic() - start < 2.0 + 0.5  # LOGOUT_BOUND + slack
    with pytest.raises(PathError, match="closed"):
        t.execute(TUR)
    t.close()  # idempotent


def test_hung_target_times_out_in_parallel_threads(tgt: Tgt, open_transport):
    """Waits run without the GIL: four hung transports cost one bound, not four."""
    bound = 1.0
    transports = [open_transport(tgt.url(1 + i % 2, portal=i // 2), f"{NODE1}-{i}",
                                 timeout=bound) for i in range(4)]
    errors: list[BaseException] = []

    def run(t: IscsiTransport) -> None:
        try:
            t.execute(TUR)
        except PathTimeout as err:
            errors.append(err)

    with tgt.stopped():
        start = time.monotonic()
        threads = [threading.Thread(target=run, args=(t,)) for t in transports]
        for th in threads:
            th.start()
        for th in threads:
            th.join()
        elapsed = time.monotonic() - start
    assert len(errors) == 4
    assert elapsed < 2 * bound


def test_many_transports_work_concurrently(tgt: Tgt, open_transport):
    transports = [open_transport(tgt.url(1 + i % 2, portal=i % 2), f"{NODE1}-c{i}")
                  for i in range(8)]
    failures: list[str] = []

    def run(t: IscsiTransport) -> None:
        try:
            until_not_ua(t, TUR)
            for _ in range(25):
                r = t.execute(inquiry_vpd(0x83, 255), data_in_len=255)
                if r.status != GOOD or r.data[1] != 0x83:
                    failures.append(f"{t.path}: {r}")
        except Exception as err:  # reported below, with the path
            failures.append(f"{t.path}: {err!r}")

    threads = [threading.Thread(target=run, args=(t,)) for t in transports]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert failures == []
    assert len(tgt.sessions()) == 8


def test_connection_refused_is_a_fast_path_error(open_transport):
    url = f"iscsi://127.0.0.1:{free_port(('127.0.0.1',))}/iqn.2026-11.org.hamon:none/1"
    t = open_transport(url, timeout=5.0)
    start = time.monotonic()
    with pytest.raises(PathError) as err:
        t.execute(TUR)
    assert time.monotonic() - start < 0.5
    assert not isinstance(err.value, PathTimeout)
    assert "refused" in str(err.value)
    assert err.value.path == url


def test_unknown_target_is_a_path_error(tgt: Tgt, open_transport):
    url = tgt.url(1).replace(tgt.target, tgt.target + "-nonexistent")
    with pytest.raises(PathError, match=r"(?i)target not found"):
        open_transport(url).execute(TUR)


def test_removed_portal_fails_the_live_session_of_that_path_only(tgt: Tgt, open_transport):
    a = open_transport(tgt.url(1, portal=0))
    b = open_transport(tgt.url(1, portal=1))
    until_not_ua(a, TUR)
    until_not_ua(b, TUR)
    assert tgt.remove_portal(1) == 1
    with pytest.raises(PathError, match="refused"):
        b.execute(TUR)
    assert a.execute(TUR) == CommandResult(GOOD)
    assert len(tgt.sessions()) == 1
    tgt.restore_portal(1)
    assert until_not_ua(b, TUR)[0] == CommandResult(GOOD)


def test_session_closed_by_the_target_while_idle_is_reopened(tgt: Tgt, open_transport):
    """Found before sending, so no command is lost or sent twice: a new login, and the
    new nexus's unit attention, instead of a PathError for a path that is fine."""
    t = open_transport(tgt.url(1))
    until_not_ua(t, TUR)
    (old,) = tgt.sessions()
    tgt.adm("--op", "delete", "--mode", "conn", "--tid", "1", "--sid", str(old.sid),
            "--cid", "0")
    deadline = time.monotonic() + 2
    while tgt.sessions() and time.monotonic() < deadline:
        time.sleep(0.01)
    r = t.execute(TUR)
    assert r.status == CHECK_CONDITION and sense_key(r.sense) == UNIT_ATTENTION
    assert [s.sid for s in tgt.sessions()] != [old.sid]


def _ipv6_loopback() -> str | None:
    """Why [::1] cannot be listened on here, or None: the one reason to skip."""
    try:
        with socket.socket(socket.AF_INET6) as s:
            s.bind(("::1", 0))
    except OSError as err:
        return f"no IPv6 loopback on this machine: {err.strerror}"
    return None


def test_ipv6_portal(tgt: Tgt, open_transport):
    why = _ipv6_loopback()
    if why:
        pytest.skip(why)  # a failure under HAMON_NO_SKIP=1, as every skip
    n = tgt.add_portal("[::1]")  # any other error is a failure, not a skip
    url = tgt.url(1, portal=n)
    assert url.startswith("iscsi://[::1]:")
    assert until_not_ua(open_transport(url), TUR)[0] == CommandResult(GOOD)


# ------------------------------------------------------------------ measurement

def test_pr_out_round_trip_on_loopback(tgt: Tgt, open_transport):
    """Median of 200 PR OUT (REGISTER AND IGNORE EXISTING KEY, idempotent) on one session."""
    t = open_transport(tgt.url(1))
    until_not_ua(t, TUR)
    cdb, params = pr_out(REGISTER_AND_IGNORE, 0, K1)
    samples = []
    for _ in range(200):
        start = time.perf_counter()
        r = t.execute(cdb, params)
        samples.append(time.perf_counter() - start)
        assert r.status == GOOD
    median = statistics.median(samples)
    p95 = sorted(samples)[int(len(samples) * 0.95)]
    print(f"\nPR OUT round trip on loopback (libiscsi/ctypes -> tgtd): median "
          f"{median * 1e6:.0f} us, p95 {p95 * 1e6:.0f} us, n={len(samples)}")
    assert median < 0.05
