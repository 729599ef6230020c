"""The SCSI layer byte for byte against SPC-4 / SBC-3 layouts."""
import struct

import pytest

from hamon.lib.scsi import cdb, inquiry, pr
from hamon.lib.scsi.pr import PrInServiceAction as In
from hamon.lib.scsi.pr import PrOutServiceAction as Out
from hamon.lib.scsi.pr import ReservationType as RT


@pytest.mark.parametrize("action,code", [
    (Out.REGISTER, 0), (Out.RESERVE, 1), (Out.RELEASE, 2), (Out.CLEAR, 3),
    (Out.PREEMPT, 4), (Out.PREEMPT_AND_ABORT, 5),
    (Out.REGISTER_AND_IGNORE_EXISTING_KEY, 6)])
def test_pr_out_cdb_layout(action, code):
    c = pr.pr_out_cdb(action, RT.WRITE_EXCLUSIVE_REGISTRANTS_ONLY)
    # SPC-4 table 'PERSISTENT RESERVE OUT command': opcode, SA, scope|type, 2 reserved,
    # 4-byte parameter list length, control.
    assert c == bytes([0x5F, code, 0x05, 0, 0, 0, 0, 0, 24, 0])


def test_pr_out_params_layout():
    p = pr.pr_out_params(0x0102030405060708, 0x1112131415161718, aptpl=True,
                         all_tg_pt=True)
    assert len(p) == 24
    assert p[0:8] == bytes(range(1, 9))
    assert p[8:16] == bytes(range(0x11, 0x19))
    assert p[16:20] == bytes(4)
    assert p[20] == 0x05  # ALL_TG_PT (bit 2) | APTPL (bit 0)
    assert p[21:24] == bytes(3)
    assert pr.pr_out_params(1, 0, spec_i_pt=True)[20] == 0x08


def test_pr_out_params_rejects_oversized_key():
    with pytest.raises(ValueError, match="8-byte"):
        pr.pr_out_params(1 << 64)


@pytest.mark.parametrize("action,code", [(In.READ_KEYS, 0), (In.READ_RESERVATION, 1),
                                         (In.REPORT_CAPABILITIES, 2),
                                         (In.READ_FULL_STATUS, 3)])
def test_pr_in_cdb_layout(action, code):
    assert pr.pr_in_cdb(action, 0x1234) == bytes([0x5E, code, 0, 0, 0, 0, 0, 0x12, 0x34, 0])


def test_read_keys_parse_and_truncation():
    data = struct.pack(">II", 7, 16) + struct.pack(">QQ", 0xAA, 0xBB)
    k = pr.parse_read_keys(data)
    assert (k.generation, k.keys, k.truncated) == (7, (0xAA, 0xBB), False)
    short = pr.parse_read_keys(data[:16])
    assert short.keys == (0xAA,) and short.truncated
    with pytest.raises(pr.ResponseError):
        pr.parse_read_keys(b"\0\0")


def test_read_reservation_parse():
    none = pr.parse_read_reservation(struct.pack(">II", 3, 0))
    assert not none.held and none.key is None
    body = struct.pack(">Q4xxBxx", 0x686D, 0x05)
    held = pr.parse_read_reservation(struct.pack(">II", 4, 16) + body)
    assert held.held and held.key == 0x686D and held.type is RT.WRITE_EXCLUSIVE_REGISTRANTS_ONLY
    bad = struct.pack(">II", 4, 16) + struct.pack(">Q4xxBxx", 1, 0x09)
    with pytest.raises(pr.ResponseError, match="unknown type 9"):
        pr.parse_read_reservation(bad)


def test_report_capabilities_round_trip():
    raw = pr.build_capabilities({RT.WRITE_EXCLUSIVE, RT.EXCLUSIVE_ACCESS_ALL_REGISTRANTS},
                                all_tg_pt=True, ptpl=False)
    assert raw == bytes([0, 8, 0x04, 0x80, 0x02, 0x01, 0, 0])
    caps = pr.parse_report_capabilities(raw)
    assert caps.all_tg_pt_capable and not caps.ptpl_capable and caps.type_mask_valid
    assert caps.types == {RT.WRITE_EXCLUSIVE, RT.EXCLUSIVE_ACCESS_ALL_REGISTRANTS}


def test_read_full_status_parse_iscsi_transport_id():
    name = b"iqn.2026-11.org.hamon:node1,i,0x23d000000001\0"
    name += bytes(-len(name) % 4)
    tid = bytes([0x45, 0]) + struct.pack(">H", len(name)) + name
    desc = struct.pack(">Q4xBB4xHI", 0x686D01, 0x03, 0x05, 2, len(tid)) + tid
    fs = pr.parse_read_full_status(struct.pack(">II", 9, len(desc)) + desc)
    (e,) = fs.entries
    assert e.key == 0x686D01 and e.holder and e.all_tg_pt and e.relative_target_port == 2
    assert e.type is RT.WRITE_EXCLUSIVE_REGISTRANTS_ONLY
    assert str(e.initiator) == "iqn.2026-11.org.hamon:node1 isid 0x23d000000001"


def test_reservation_type_names():
    assert RT.parse("we-ro") is RT.WRITE_EXCLUSIVE_REGISTRANTS_ONLY
    assert RT.parse("5") is RT.WRITE_EXCLUSIVE_REGISTRANTS_ONLY
    assert RT.parse("EXCLUSIVE_ACCESS") is RT.EXCLUSIVE_ACCESS
    assert RT.WRITE_EXCLUSIVE_ALL_REGISTRANTS.all_registrants
    with pytest.raises(ValueError, match="WE-RO"):
        RT.parse("2")
    with pytest.raises(ValueError):
        RT.parse("bogus")


def test_other_cdbs():
    assert cdb.test_unit_ready_cdb() == bytes(6)
    assert cdb.inquiry_cdb() == bytes([0x12, 0, 0, 0, 255, 0])
    assert cdb.inquiry_cdb(0x83, 1024) == bytes([0x12, 1, 0x83, 0x04, 0x00, 0])
    assert cdb.write10_cdb(0x01020304, 2) == bytes([0x2A, 0, 1, 2, 3, 4, 0, 0, 2, 0])
    assert cdb.read10_cdb(7) == bytes([0x28, 0, 0, 0, 0, 7, 0, 0, 1, 0])


def test_vpd83_identity_prefers_naa_of_the_lu():
    naa = bytes.fromhex("6001405abcdef0123456789abcdef012")
    page = inquiry.build_device_identification(naa, "HAMON   lun1")
    ds = inquiry.parse_device_identification(page)
    assert [d.type for d in ds] == [3, 1]
    assert inquiry.lun_identity(ds) == "3" + naa.hex()
    # a target-port designator (association 1) is never the LUN's identity
    port_only = bytes([0, 0x83, 0, 8, 0x01, 0x13, 0, 4, 1, 2, 3, 4])
    assert inquiry.lun_identity(inquiry.parse_device_identification(port_only)) is None
    t10 = bytes([0, 0x83, 0, 12, 0x02, 0x01, 0, 8]) + b"IET 0001"
    assert inquiry.lun_identity(inquiry.parse_device_identification(t10)) == "1IET 0001"


def test_vpd80_and_standard_inquiry():
    assert inquiry.parse_unit_serial(bytes([0, 0x80, 0, 4]) + b"beaf") == "beaf"
    std = bytes([0, 0, 6, 2, 31, 0, 0, 0]) + b"LIO-ORG " + b"FILEIO".ljust(16) + b"4.0 "
    s = inquiry.parse_standard_inquiry(std)
    assert (s.vendor, s.product, s.revision) == ("LIO-ORG", "FILEIO", "4.0")
    with pytest.raises(ValueError):
        inquiry.parse_unit_serial(bytes([0, 0x83, 0, 0]))


def test_vpd83_identity_is_the_one_multipath_names_the_map_by():
    """tgt lists a locally assigned NAA (3) before its NAA 6; scsi_id, hence the dm map's
    WWID, takes the NAA 6 (seen in the VM tier: 360000000000000000e00000000010001). The
    same LUN seen as a map on one node and as a plain sd on another must be one identity:
    the fence agent orders devices by it."""
    def desig(dtype: int, value: bytes, code_set: int = 1) -> bytes:
        return bytes([code_set, dtype, 0, len(value)]) + value

    body = (desig(1, b"IET     00010001", 2) + desig(3, bytes.fromhex("3000000100000001"))
            + desig(3, bytes.fromhex("60000000000000000e00000000010001")))
    page = bytes([0, 0x83, 0, len(body)]) + body
    assert inquiry.lun_identity(inquiry.parse_device_identification(page)) == \
        "360000000000000000e00000000010001"
    # NAA 5 beats a locally assigned NAA; among equals the first in page order wins
    body = (desig(3, bytes.fromhex("3000000100000002")) + desig(3, bytes.fromhex(
        "5000000000000001")) + desig(3, bytes.fromhex("5000000000000002")))
    page = bytes([0, 0x83, 0, len(body)]) + body
    assert inquiry.lun_identity(inquiry.parse_device_identification(page)) == \
        "35000000000000001"
    # EUI-64 only when there is no NAA at all
    body = desig(2, bytes.fromhex("0011223344556677")) + desig(1, b"VEND    X", 2)
    page = bytes([0, 0x83, 0, len(body)]) + body
    assert inquiry.lun_identity(inquiry.parse_device_identification(page)) == \
        "20011223344556677"
