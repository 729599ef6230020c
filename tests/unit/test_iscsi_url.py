"""iscsi:// URLs, the ISID scheme and the libiscsi ABI: what needs no target."""
from __future__ import annotations

import ctypes
import ctypes.util
import os
import subprocess
import sys
from pathlib import Path

import pytest

from hamon.lib.transport import libiscsi
from hamon.lib.transport.iscsi import IscsiTransport
from hamon.lib.transport.iscsi_url import IscsiUrl, derive_isid, parse_iscsi_url

IQN = "iqn.2003-01.org.example:disk1"
NODE = "iqn.2026-11.org.hamon:node1"
REPO = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("url, expected", [
    (f"iscsi://192.0.2.10/{IQN}/1", IscsiUrl("192.0.2.10", 3260, IQN, 1)),
    (f"iscsi://192.0.2.10:3261/{IQN}/0", IscsiUrl("192.0.2.10", 3261, IQN, 0)),
    (f"iscsi://SAN-A.example.com/{IQN}/7", IscsiUrl("san-a.example.com", 3260, IQN, 7)),
    (f"iscsi://[::1]/{IQN}/1", IscsiUrl("::1", 3260, IQN, 1)),
    (f"iscsi://[::1]:13260/{IQN}/1", IscsiUrl("::1", 13260, IQN, 1)),
    (f"iscsi://[2001:DB8:0:0::1]:3260/{IQN}/2", IscsiUrl("2001:db8::1", 3260, IQN, 2)),
    (f"ISCSI://host/{IQN}/255", IscsiUrl("host", 3260, IQN, 255)),
    ("iscsi://h/eui.02004567A425678D/3", IscsiUrl("h", 3260, "eui.02004567A425678D", 3)),
    ("iscsi://h/naa.52004567BA64678D/16383",
     IscsiUrl("h", 3260, "naa.52004567BA64678D", 16383)),
])
def test_parse_valid(url, expected):
    assert parse_iscsi_url(url) == expected


def test_portal_and_str_round_trip():
    u = parse_iscsi_url(f"iscsi://[::1]:13260/{IQN}/1")
    assert u.portal == "[::1]:13260"
    assert str(u) == f"iscsi://[::1]:13260/{IQN}/1"
    assert parse_iscsi_url(str(u)) == u
    assert parse_iscsi_url(f"iscsi://10.0.0.1/{IQN}/4").portal == "10.0.0.1:3260"


@pytest.mark.parametrize("url, why", [
    ("", "must start with iscsi://"),
    (f"http://host/{IQN}/1", "must start with iscsi://"),
    ("iscsi://", "exactly three parts"),
    (f"iscsi://host/{IQN}", "exactly three parts"),
    (f"iscsi://host/{IQN}/1/", "exactly three parts"),
    (f"iscsi://host/{IQN}/1/2", "exactly three parts"),
    ("iscsi://host//1", "target name is missing"),
    ("iscsi://host/disk1/1", "not an iSCSI name"),
    (f"iscsi:///{IQN}/1", "host is missing"),
    (f"iscsi://host/{IQN}/", "not a decimal number"),
    (f"iscsi://host/{IQN}/x", "not a decimal number"),
    (f"iscsi://host/{IQN}/-1", "not a decimal number"),
    (f"iscsi://host/{IQN}/16384", "out of range"),
    (f"iscsi://host:0/{IQN}/1", "out of range"),
    (f"iscsi://host:65536/{IQN}/1", "out of range"),
    (f"iscsi://host:abc/{IQN}/1", "not a number"),
    (f"iscsi://host:/{IQN}/1", "port after ':' is empty"),
    (f"iscsi://::1/{IQN}/1", "in brackets"),
    (f"iscsi://[::1/{IQN}/1", "closed with ']'"),
    (f"iscsi://[::1]x/{IQN}/1", "after the IPv6 address"),
    (f"iscsi://[::1]:/{IQN}/1", "port after ':' is empty"),
    (f"iscsi://[nothex]/{IQN}/1", "not an IPv6 address"),
    (f"iscsi://user%pw@host/{IQN}/1", "credentials"),
    (f"iscsi://ho st/{IQN}/1", "white space"),
    (f"iscsi://host/{IQN}/1?x=1", "query"),
    (f"iscsi://host_name/{IQN}/1", "not a host name"),
    (f"iscsi://host/{IQN}/\u0661", "not a decimal number"),  # ARABIC-INDIC DIGIT ONE
])
def test_parse_malformed(url, why):
    with pytest.raises(ValueError) as err:
        parse_iscsi_url(url)
    msg = str(err.value)
    assert why in msg
    assert "malformed iSCSI URL" in msg and "expected e.g. iscsi://" in msg


def test_parse_rejects_non_strings():
    with pytest.raises(ValueError):
        parse_iscsi_url(None)  # type: ignore[arg-type]


# -------------------------------------------------------------------------- ISID

URL = parse_iscsi_url(f"iscsi://127.0.0.1/{IQN}/1")


def test_isid_is_six_bytes_of_random_type():
    isid = derive_isid(NODE, URL)
    assert len(isid) == 6 and isid[0] == 0x80


def test_isid_golden_value():
    """Pinned: changing the scheme orphans registrations made with the old ISIDs."""
    assert derive_isid(NODE, URL).hex() == GOLDEN


#: sha256("hamon-isid-v1\0<initiator>\0<host>\0<port>\0<target>\0<lun>")[:5], type 0x80.
GOLDEN = "8013b07ce07d"


def test_isid_depends_on_initiator_and_every_part_of_the_path():
    base = derive_isid(NODE, URL)
    others = [
        derive_isid("iqn.2026-11.org.hamon:node2", URL),
        derive_isid(NODE, parse_iscsi_url(f"iscsi://127.0.0.2/{IQN}/1")),
        derive_isid(NODE, parse_iscsi_url(f"iscsi://127.0.0.1:3261/{IQN}/1")),
        derive_isid(NODE, parse_iscsi_url(f"iscsi://127.0.0.1/{IQN}x/1")),
        derive_isid(NODE, parse_iscsi_url(f"iscsi://127.0.0.1/{IQN}/2")),
    ]
    assert base not in others and len(set(others)) == len(others)


def test_isid_ignores_spelling_differences_of_the_same_path():
    """iSCSI names compare case-insensitively; the default port may be written or not."""
    base = derive_isid(NODE, URL)
    assert derive_isid(NODE.upper(), URL) == base
    assert derive_isid(NODE, parse_iscsi_url(f"iscsi://127.0.0.1:3260/{IQN.upper()}/1")) == base


def test_isid_is_the_same_in_another_process():
    code = ("from hamon.lib.transport.iscsi_url import derive_isid, parse_iscsi_url as p;"
            f"print(derive_isid({NODE!r}, p({str(URL)!r})).hex())")
    env = dict(os.environ, PYTHONPATH=str(REPO), PYTHONHASHSEED="123")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                         text=True, check=True).stdout.strip()
    assert out == derive_isid(NODE, URL).hex()


def test_a_shared_sessions_isid_is_its_lun_set_and_one_lun_keeps_the_old_nexus():
    """A session shared by several LUNs of a target takes the ISID of that LUN set: a
    one-LUN set is exactly the path's own ISID (a one-LUN resource keeps its nexus), the
    order and repetition of the LUNs do not matter, and distinct sets are distinct
    nexuses (two resources of one node on one target never reinstate each other)."""
    assert derive_isid(NODE, URL, luns=[1]) == derive_isid(NODE, URL)
    assert derive_isid(NODE, URL, luns=[1]).hex() == GOLDEN
    assert derive_isid(NODE, URL, luns=[3, 1, 2, 1]) == derive_isid(NODE, URL, luns={1, 2, 3})
    sets = [derive_isid(NODE, URL, luns=s) for s in ([1], [1, 2], [2], [1, 2, 3], [12])]
    assert len(set(sets)) == len(sets)
    assert derive_isid(NODE, URL, "watchdog", [1, 2]) != derive_isid(NODE, URL, "", [1, 2])


def test_shared_sessions_one_per_portal_and_target(monkeypatch):
    """SharedSessions (no I/O here): the paths of one portal and target share one
    session whose ISID is the action's LUN set there; other portals and targets get
    their own; a transport closed leaves the session to the others."""
    from hamon.lib.transport.iscsi import SharedSessions

    urls = [parse_iscsi_url(f"iscsi://192.0.2.{h}/{IQN}{t}/{lun}")
            for h in (1, 2) for t in ("", "x") for lun in (1, 2, 5)]
    ss = SharedSessions(NODE, urls)
    assert len(ss) == 4
    ts = [ss.transport(str(u), 3.0) for u in urls]
    groups: dict[int, list[IscsiTransport]] = {}
    for t in ts:
        groups.setdefault(id(t.session), []).append(t)
    assert sorted(len(g) for g in groups.values()) == [3, 3, 3, 3]
    for g in groups.values():
        u = g[0].url
        assert {t.url.lun for t in g} == {1, 2, 5}
        assert {(t.url.host, t.url.target) for t in g} == {(u.host, u.target)}
        assert g[0].isid == derive_isid(NODE, u, luns=[1, 2, 5]) != derive_isid(NODE, u)
        assert g[0].session._users == 3
        g[0].close()
        g[0].close()  # idempotent: leaves the session once
        assert g[1].session._users == 2 and not g[1].connected
    alone = IscsiTransport(path=str(urls[0]), initiator=NODE)
    assert alone.session is not ts[0].session and alone.isid == derive_isid(NODE, urls[0])


def test_a_pool_gives_one_session_per_isid_across_resolves():
    """Two resolve() calls of one resolver naming the same LUN set must not log in twice
    with one ISID at once (a target may reinstate, i.e. close, the first)."""
    from hamon.lib.transport.iscsi import SharedSessions

    urls = [parse_iscsi_url(f"iscsi://192.0.2.1/{IQN}/{lun}") for lun in (1, 2)]
    pool: dict = {}
    first, again = (SharedSessions(NODE, urls, pool=pool) for _ in range(2))
    assert first.session(urls[0]) is again.session(urls[1])
    other = SharedSessions(NODE, urls[:1], pool=pool)  # another LUN set: another nexus
    assert other.session(urls[0]) is not first.session(urls[0])
    assert len(pool) == 2


# --------------------------------------------------------------------- transport

def test_transport_is_lazy_and_validates():
    t = IscsiTransport(path=f"iscsi://192.0.2.1/{IQN}/1", initiator=NODE)  # TEST-NET: unused
    assert not t.connected and t.url.lun == 1 and t.isid == derive_isid(NODE, t.url)
    t.close()
    with pytest.raises(ValueError, match="malformed"):
        IscsiTransport(path="iscsi://host/1", initiator=NODE)
    for bad in ("", "iqn.x y"):
        with pytest.raises(ValueError, match="initiator"):
            IscsiTransport(path=str(URL), initiator=bad)


def test_execute_validates_before_any_io():
    t = IscsiTransport(path=f"iscsi://192.0.2.1/{IQN}/1", initiator=NODE)
    with pytest.raises(ValueError, match="CDB"):
        t.execute(b"")
    with pytest.raises(ValueError, match="CDB"):
        t.execute(bytes(17))
    with pytest.raises(ValueError, match="bidirectional"):
        t.execute(bytes(6), data_out=b"x", data_in_len=4)
    assert not t.connected


def test_wire_lun_uses_flat_addressing_above_255():
    assert libiscsi.wire_lun(0) == 0 and libiscsi.wire_lun(255) == 255
    assert libiscsi.wire_lun(256) == 0x4100 and libiscsi.wire_lun(16383) == 0x7FFF


@pytest.mark.parametrize("segment, sense", [
    (bytes.fromhex("0012700006000000000a00000000290000000000"),
     bytes.fromhex("700006000000000a00000000290000000000")),
    (bytes.fromhex("00087206290000000000") + b"\0\0", bytes.fromhex("7206290000000000")),
    (b"\x00", b""),
    (b"", b""),
    (b"\x00\x00", b""),
])
def test_sense_from_segment(segment, sense):
    """RFC 7143 11.4.7.2: SenseLength (2 bytes), sense, then possibly padding/response."""
    assert libiscsi.sense_from_segment(segment) == sense


# ------------------------------------------------------------------ libiscsi ABI

#: libiscsi 1.19 on LP64, checked against <iscsi/scsi-lowlevel.h> (libiscsi-dev) with
#: offsetof() when this was written; CI has neither the header nor a C compiler.
SCSI_TASK_OFFSETS = {
    "status": 0, "cdb_size": 4, "xfer_dir": 8, "expxferlen": 12, "cdb": 16,
    "residual_status": 32, "residual": 40, "sense": 48, "datain": 64, "mem": 80,
    "ptr": 88, "itt": 96, "cmdsn": 100, "lun": 104, "iovector_in": 112,
    "iovector_out": 144,
}


@pytest.mark.skipif(ctypes.sizeof(ctypes.c_void_p) != 8, reason="LP64 layout")
def test_scsi_task_layout_lp64():
    assert ctypes.sizeof(libiscsi.ScsiTask) == 176
    for name, offset in SCSI_TASK_OFFSETS.items():
        assert getattr(libiscsi.ScsiTask, name).offset == offset, name
    assert libiscsi.ScsiTask.datain.offset + libiscsi._ScsiData.data.offset == 72
    assert ctypes.sizeof(libiscsi.IscsiData) == 16


@pytest.mark.skipif(ctypes.util.find_library("iscsi") is None, reason="no libiscsi")
def test_library_loads_with_prototypes():
    lib = libiscsi.library()
    assert lib.iscsi_create_context.restype is ctypes.c_void_p
    ctx = lib.iscsi_create_context(NODE.encode())
    assert ctx
    assert lib.iscsi_set_isid_random(ctx, 0x123456, 0xABCD) == 0
    assert lib.iscsi_destroy_context(ctx) == 0
