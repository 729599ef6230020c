"""Sense decoding: fixed and descriptor formats into typed errors."""
import pytest

from hamon.lib.scsi import errors
from hamon.lib.scsi.sense import (
    SenseFormatError,
    build_descriptor_sense,
    build_fixed_sense,
    parse_sense,
)


@pytest.mark.parametrize("build", [build_fixed_sense, build_descriptor_sense])
@pytest.mark.parametrize("asc,ascq,name", [
    (0x2A, 0x03, "RESERVATIONS PREEMPTED"), (0x2A, 0x04, "RESERVATIONS RELEASED"),
    (0x2A, 0x05, "REGISTRATIONS PREEMPTED"),
    (0x29, 0x00, "POWER ON, RESET, OR BUS DEVICE RESET OCCURRED"),
    (0x29, 0x07, "POWER ON, RESET, OR BUS DEVICE RESET OCCURRED")])
def test_unit_attentions(build, asc, ascq, name):
    raw = build(0x6, asc, ascq)
    err = errors.error_for(0x02, raw, "/dev/sdc")
    assert isinstance(err, errors.UnitAttention)
    assert (err.asc, err.ascq) == (asc, ascq)
    assert err.sense.raw == raw
    assert name in str(err) and "/dev/sdc" in str(err)


def test_fixed_format_fields():
    raw = bytes.fromhex("70000500000000 0a 00000000 2400 000000 00".replace(" ", ""))
    s = parse_sense(raw)
    assert (s.key, s.asc, s.ascq, s.deferred, s.descriptor_format) == (5, 0x24, 0, False,
                                                                        False)
    assert isinstance(errors.error_for(2, raw), errors.IllegalRequest)


def test_deferred_and_descriptor():
    d = parse_sense(bytes([0x73, 0x02, 0x04, 0x01, 0, 0, 0, 0]))
    assert d.deferred and d.descriptor_format and d.key == 2
    assert isinstance(errors.error_for(2, d.raw), errors.NotReady)
    assert parse_sense(bytes([0xF0, 0, 0x06])).key == 6  # VALID bit set, short buffer


def test_status_mapping():
    assert errors.error_for(0x00, b"") is None
    assert errors.error_for(0x04, b"") is None  # CONDITION MET
    assert isinstance(errors.error_for(0x18, b""), errors.ReservationConflict)
    assert isinstance(errors.error_for(0x08, b""), errors.Busy)
    assert isinstance(errors.error_for(0x28, b""), errors.Busy)
    assert isinstance(errors.error_for(0x40, b""), errors.TaskAborted)
    odd = errors.error_for(0x22, b"")
    assert type(odd) is errors.ScsiError and "0x22" in str(odd)


def test_check_condition_without_decodable_sense_is_still_an_error():
    err = errors.error_for(0x02, b"")
    assert type(err) is errors.CheckCondition and err.sense is None
    err = errors.error_for(0x02, b"\x12\x00")
    assert type(err) is errors.CheckCondition
    assert type(errors.error_for(2, build_fixed_sense(0x3, 0x11, 0))) is errors.CheckCondition


def test_bad_sense():
    for raw in (b"", b"\x70\x00", b"\x72\x00", b"\x05" * 18):
        with pytest.raises(SenseFormatError):
            parse_sense(raw)


def test_path_error_is_not_a_scsi_error():
    from hamon.lib.transport.base import PathError, PathTimeout
    assert not issubclass(PathError, errors.ScsiError)
    assert issubclass(PathTimeout, PathError)
    assert str(PathError("/dev/sdc", "gone")) == "/dev/sdc: gone"
