"""SG_IO transport without a SCSI kernel: header packing, result decoding, error paths.

The host has no SCSI, so the ioctl is replaced by a fake "kernel" where a real one is
needed; /dev/null stands for a character device that does not speak SG_IO. The VM tier
runs the real ioctl against real disks.
"""
from __future__ import annotations

import ctypes
import os
import threading
import time

import pytest

from hamon.lib.transport import sgio
from hamon.lib.transport.base import CommandResult, PathError, PathTimeout
from hamon.lib.transport.sgio import SgIoHdr, SgioTransport, build_request, decode_result

FIXED_UA = bytes.fromhex("700006000000000a00000000290000000000")
TUR = bytes(6)
INQUIRY = bytes([0x12, 0, 0, 0, 96, 0])

# ------------------------------------------------------------------ the struct

#: LP64 Linux (x86_64, aarch64). Checked against <scsi/sg.h> with offsetof() when this was
#: written; a compile-time check is not run here because CI machines have no C compiler.
EXPECTED_OFFSETS = {
    "interface_id": 0, "dxfer_direction": 4, "cmd_len": 8, "mx_sb_len": 9,
    "iovec_count": 10, "dxfer_len": 12, "dxferp": 16, "cmdp": 24, "sbp": 32,
    "timeout": 40, "flags": 44, "pack_id": 48, "usr_ptr": 56, "status": 64,
    "masked_status": 65, "msg_status": 66, "sb_len_wr": 67, "host_status": 68,
    "driver_status": 70, "resid": 72, "duration": 76, "info": 80,
}


@pytest.mark.skipif(ctypes.sizeof(ctypes.c_void_p) != 8, reason="LP64 layout")
def test_header_layout_matches_lp64():
    assert ctypes.sizeof(SgIoHdr) == 88
    for name, offset in EXPECTED_OFFSETS.items():
        assert getattr(SgIoHdr, name).offset == offset, name


def test_sg_io_request_number():
    assert sgio.SG_IO == 0x2285


# ------------------------------------------------------------ building requests

def test_build_no_data():
    req = build_request(TUR, None, 0, 2.5)
    h = req.hdr
    assert h.interface_id == ord("S")
    assert h.dxfer_direction == sgio.SG_DXFER_NONE and h.dxfer_len == 0 and not h.dxferp
    assert h.cmd_len == 6 and ctypes.string_at(h.cmdp, h.cmd_len) == TUR
    assert h.mx_sb_len == 252 and h.sbp == ctypes.addressof(req.sense)
    assert h.timeout == 2500


def test_build_data_out():
    payload = bytes(range(24))
    req = build_request(bytes([0x5F, 0, 0, 0, 0, 0, 0, 0, 24, 0]), payload, 0, 1)
    h = req.hdr
    assert h.dxfer_direction == sgio.SG_DXFER_TO_DEV and h.dxfer_len == 24
    assert ctypes.string_at(h.dxferp, 24) == payload


def test_build_data_in():
    req = build_request(INQUIRY, None, 96, 1)
    assert req.hdr.dxfer_direction == sgio.SG_DXFER_FROM_DEV
    assert req.hdr.dxfer_len == 96 and req.hdr.dxferp == ctypes.addressof(req.data)


def test_timeout_is_never_zero():
    """0 would mean the kernel's default of 60 s."""
    assert build_request(TUR, None, 0, 0.0001).hdr.timeout == 1
    assert build_request(TUR, None, 0, 0).hdr.timeout == 1


@pytest.mark.parametrize("cdb, out, inlen", [(b"", None, 0), (bytes(261), None, 0),
                                             (TUR, b"x", 4), (TUR, None, -1)])
def test_build_rejects_bad_requests(cdb, out, inlen):
    with pytest.raises(ValueError):
        build_request(cdb, out, inlen, 1)


# -------------------------------------------------------------- decoding results

def completed(cdb=TUR, data_out=None, data_in_len=0, *, status=0, sense=b"", data=b"",
              resid=None, host=0, driver=0):
    """A request as the kernel would hand it back."""
    req = build_request(cdb, data_out, data_in_len, 1)
    req.hdr.status = status
    req.hdr.masked_status = (status >> 1) & 0x7F
    ctypes.memmove(req.sense, sense, len(sense))
    req.hdr.sb_len_wr = len(sense)
    if data:
        ctypes.memmove(req.data, data, len(data))
    req.hdr.resid = data_in_len - len(data) if resid is None else resid
    req.hdr.host_status = host
    req.hdr.driver_status = driver
    return req


def test_decode_good_with_short_data_in():
    req = completed(INQUIRY, None, 96, data=b"A" * 36)
    assert decode_result("/dev/sdz", req) == CommandResult(0, b"", b"A" * 36)


def test_decode_check_condition_returns_raw_sense():
    req = completed(status=0x02, sense=FIXED_UA, driver=sgio.DRIVER_SENSE)
    assert decode_result("/dev/sdz", req) == CommandResult(0x02, FIXED_UA, b"")


def test_decode_descriptor_sense_untouched():
    desc = bytes.fromhex("7206290000000000")
    req = completed(status=0x02, sense=desc, driver=sgio.DRIVER_SENSE)
    assert decode_result("/dev/sdz", req).sense == desc


def test_decode_reservation_conflict():
    assert decode_result("/dev/sdz", completed(status=0x18)) == CommandResult(0x18)


def test_decode_nonsense_resid_is_clamped():
    req = completed(INQUIRY, None, 96, data=b"B" * 96, resid=-5)
    assert decode_result("/dev/sdz", req).data == b"B" * 96
    req = completed(INQUIRY, None, 96, resid=500)
    assert decode_result("/dev/sdz", req).data == b""


@pytest.mark.parametrize("host, name", [(0x0F, "DID_TRANSPORT_FAILFAST"),
                                        (0x01, "DID_NO_CONNECT"), (0x0E, "DID_TRANSPORT_DISRUPTED"),
                                        (0x7E, "0x7e")])
def test_host_status_is_a_path_error(host, name):
    with pytest.raises(PathError) as err:
        decode_result("/dev/sdz", completed(status=0, host=host))
    assert not isinstance(err.value, PathTimeout)
    assert name in str(err.value) and err.value.path == "/dev/sdz"


def test_did_time_out_is_a_path_timeout():
    with pytest.raises(PathTimeout, match="DID_TIME_OUT"):
        decode_result("/dev/sdz", completed(host=sgio.DID_TIME_OUT))


def test_driver_timeout_is_a_path_timeout_and_other_driver_errors_path_errors():
    with pytest.raises(PathTimeout):
        decode_result("/dev/sdz", completed(driver=sgio.DRIVER_TIMEOUT))
    with pytest.raises(PathError):
        decode_result("/dev/sdz", completed(driver=0x04))  # DRIVER_ERROR


# ------------------------------------------------------------------ error paths

def test_missing_device_names_device_and_fix(tmp_path):
    dev = str(tmp_path / "sdq")
    with pytest.raises(PathError) as err:
        SgioTransport(path=dev).execute(TUR)
    assert err.value.path == dev and "no such device" in str(err.value)
    assert "/dev/sdX" in str(err.value)


def test_regular_file_is_refused(tmp_path):
    f = tmp_path / "disk.img"
    f.write_bytes(bytes(4096))
    with pytest.raises(PathError, match="regular file"):
        SgioTransport(path=str(f)).execute(TUR)
    assert f.read_bytes() == bytes(4096)


def test_directory_is_refused(tmp_path):
    with pytest.raises(PathError, match="directory"):
        SgioTransport(path=str(tmp_path)).execute(TUR)


def test_non_scsi_character_device_gives_enotty_path_error():
    """The real ioctl on /dev/null: the kernel answers ENOTTY."""
    t = SgioTransport(path="/dev/null")
    with pytest.raises(PathError) as err:
        t.execute(TUR)
    assert "ENOTTY" in str(err.value) and "not a SCSI device" in str(err.value)
    assert err.value.path == "/dev/null"
    assert t._fd is None  # not kept open after a failure
    t.close()


def test_closed_transport():
    t = SgioTransport(path="/dev/null")
    t.close()
    with pytest.raises(PathError, match="closed"):
        t.execute(TUR)


def test_eio_hints_at_gone_paths():
    assert "no usable path" in str(sgio.ioctl_error("/dev/dm-3", 5))


# --------------------------------------------------- execute with a fake kernel

@pytest.fixture
def fake_kernel(monkeypatch):
    """Replace the ioctl; the handler fills the header like the kernel would."""
    calls: list[int] = []

    def install(handler):
        def fake(fd, hdr):
            calls.append(fd)
            handler(hdr)
        monkeypatch.setattr(sgio, "_sg_io", fake)
        return calls
    return install


def test_execute_round_trip_through_fake_kernel(fake_kernel):
    def kernel(hdr: SgIoHdr) -> None:
        cdb = ctypes.string_at(hdr.cmdp, hdr.cmd_len)
        if cdb == TUR:
            ctypes.memmove(hdr.sbp, FIXED_UA, len(FIXED_UA))
            hdr.sb_len_wr, hdr.status, hdr.driver_status = len(FIXED_UA), 2, 8
        else:
            ctypes.memmove(hdr.dxferp, b"IET", 3)
            hdr.resid = hdr.dxfer_len - 3
    calls = fake_kernel(kernel)
    with SgioTransport(path="/dev/null", timeout=1) as t:
        assert t.execute(TUR) == CommandResult(2, FIXED_UA)
        assert t.execute(INQUIRY, data_in_len=96) == CommandResult(0, b"", b"IET")
    assert len(calls) == 2 and calls[0] == calls[1]  # one descriptor, reused


def test_hung_ioctl_is_abandoned_within_the_hard_bound(fake_kernel, monkeypatch):
    monkeypatch.setattr(sgio, "HARD_GRACE", 0.1)
    release = threading.Event()
    finished = threading.Event()

    def kernel(hdr: SgIoHdr) -> None:
        if not release.is_set():
            release.wait(10)
            finished.set()
    calls = fake_kernel(kernel)
    t = SgioTransport(path="/dev/null", timeout=0.2)
    start = time.monotonic()
    with pytest.raises(PathTimeout, match="did not return"):
        t.execute(TUR)
    assert 0.3 <= time.monotonic() - start < 0.8
    hung_fd = calls[0]
    release.set()
    assert finished.wait(5)
    deadline = time.monotonic() + 2
    while time.monotonic() < deadline:  # the abandoned worker closes its descriptor
        try:
            os.fstat(hung_fd)
        except OSError:
            break
        time.sleep(0.01)
    else:
        pytest.fail("the abandoned descriptor was not closed")
    assert t.execute(TUR) == CommandResult(0)  # a fresh descriptor
    t.close()
