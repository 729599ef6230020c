import os

from hamon.lib.journal import Journal


def test_append_and_read(tmp_path):
    j = Journal(str(tmp_path / "sub" / "journal"))
    j.append("failure", disks=[{"disk": "/dev/mapper/mpatha"}], termination="normal")
    j.append("cancel", disk="/dev/mapper/mpatha")
    assert [e["kind"] for e in j.entries()] == ["failure", "cancel"]
    assert j.last("failure", device="/dev/mapper/mpatha")["termination"] == "normal"
    assert j.last("failure", device="/dev/mapper/other") is None


def test_torn_write_is_detected_not_trusted(tmp_path):
    p = tmp_path / "journal"
    j = Journal(str(p))
    j.append("failure", termination="planned")
    good = p.read_bytes()
    j.append("failure", termination="normal")
    whole = p.read_bytes()
    # the machine stopped half way through the second entry
    p.write_bytes(whole[: len(good) + (len(whole) - len(good)) // 2])
    recs = j.records()
    assert [r.valid for r in recs] == [True, False]
    assert "torn" in recs[1].problem
    assert j.last("failure")["termination"] == "planned"
    # appending after a torn tail keeps the torn line apart, and the new entry readable
    j.append("failure", termination="abnormal")
    assert [r.valid for r in j.records()] == [True, False, True]
    assert j.last("failure")["termination"] == "abnormal"


def test_bit_flip_is_detected(tmp_path):
    p = tmp_path / "journal"
    j = Journal(str(p))
    j.append("failure", termination="normal")
    data = bytearray(p.read_bytes())
    data[data.index(b"normal")] = ord("N")
    p.write_bytes(bytes(data))
    (r,) = j.records()
    assert not r.valid and "checksum" in r.problem
    assert j.entries() == []


def test_missing_journal_is_empty(tmp_path):
    assert Journal(str(tmp_path / "none")).records() == []


def test_env_overrides_default(tmp_path, monkeypatch):
    monkeypatch.setenv("HAMON_JOURNAL", str(tmp_path / "j"))
    Journal().append("x")
    assert os.path.exists(tmp_path / "j")
