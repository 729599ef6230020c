"""The OS termination is never blocked or skipped by the journal (issue 11, item 3).

A stop on the active node whose shared disk lost every path must terminate the OS
(here: the dry-run file) whatever the journal is: a file on a full file system, on a
read-only file system, a FIFO, a symlink. Each stop runs in a thread with a bound, so a
stop that blocks fails the test instead of hanging the run. The file systems are real
(tmpfs mounted for the test: root, which ./run-tests is).
"""
from __future__ import annotations

import contextlib
import errno
import os
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from hamon.agents.disk.stop import stop
from hamon.lib import messages
from hamon.lib.journal import Journal, JournalError
from hamon.lib.termination import OsAction, OsTerminator, TerminationKind
from tests.unit.test_disk_agent import Storage, two_nodes

BOUND = 20.0  # seconds a stop may take here; the sim answers in milliseconds


@contextlib.contextmanager
def tmpfs(where: Path, size: str = "4k", ro: bool = False) -> Iterator[Path]:
    """A tmpfs of ``size`` mounted at ``where`` (read-only after ``prepare`` if ro)."""
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    where.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size},mode=0755", "tmpfs",
                    str(where)], check=True, timeout=30)
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], check=False, timeout=30)


def remount_ro(where: Path) -> None:
    subprocess.run(["mount", "-o", "remount,ro", str(where)], check=True, timeout=30)


def fill(where: Path) -> None:
    """Write until the file system says ENOSPC: it is full, really."""
    fd = os.open(where / "filler", os.O_WRONLY | os.O_CREAT, 0o644)
    try:
        with pytest.raises(OSError) as err:
            for _ in range(10_000):
                os.write(fd, b"x" * 4096)
    finally:
        os.close(fd)
    assert err.value.errno == errno.ENOSPC


def stop_with(tmp_path: Path, journal: Journal, capsys) -> tuple[int | None, list[str], str]:
    """Start node1, fail every path, stop with ``journal``: (exit, message ids, stderr)."""
    st = Storage()
    n1, _ = two_nodes(tmp_path, st)
    n1.kind = TerminationKind.NORMAL
    assert n1.start() == 0
    st.fail(1)
    st.fail(2)
    got: list[messages.Message] = []
    unsubscribe = messages.subscribe(got.append)
    box: dict[str, int] = {}
    agent = n1.agent(journal=journal,
                     terminator=OsTerminator(OsAction.REBOOT, dry_run_file=str(n1.dry_run)))
    worker = threading.Thread(target=lambda: box.update(rc=stop(agent)), daemon=True)
    worker.start()
    worker.join(BOUND)
    unsubscribe()
    assert not worker.is_alive(), f"stop blocked for more than {BOUND} s on {journal.path}"
    # the protection happened: KAMN726-E, HAMN954-E and the termination request
    assert n1.dry_run.read_text().startswith("reboot all paths failed"), \
        "the OS termination was not requested"
    ids = [m.full_id for m in got]
    assert "KAMN726-E" in ids and "HAMN954-E" in ids, ids
    err = capsys.readouterr().err
    return box.get("rc"), ids, err


def assert_logged(err: str, journal: Journal) -> None:
    assert f"journal {journal.path}: the failure entry could not be recorded" in err, err


def test_full_file_system_journal(tmp_path, capsys):
    with tmpfs(tmp_path / "fs") as fs:
        j = Journal(str(fs / "journal"))
        (fs / "journal").write_bytes(b"")  # empty: its first byte needs a new page
        fill(fs)
        rc, _ids, err = stop_with(tmp_path, j, capsys)
        assert rc == 1  # the stop fails (dry run): Pacemaker must not think it released
        assert_logged(err, j)
        assert "No space left on device" in err
        assert j.entries() == []


def test_read_only_journal(tmp_path, capsys):
    with tmpfs(tmp_path / "fs", size="64k") as fs:
        j = Journal(str(fs / "journal"))
        j.append("start", disks=[])
        remount_ro(fs)
        rc, _ids, err = stop_with(tmp_path, j, capsys)
        assert rc == 1
        assert_logged(err, j)
        assert "Read-only file system" in err
        assert [e["kind"] for e in j.entries()] == ["start"]


def test_fifo_journal_neither_blocks_nor_is_written(tmp_path, capsys):
    fifo = tmp_path / "journal"
    os.mkfifo(fifo)
    j = Journal(str(fifo))
    rc, _ids, err = stop_with(tmp_path, j, capsys)
    assert rc == 1
    assert_logged(err, j)
    assert "not a regular file" in err


def test_symlinked_journal_is_not_followed(tmp_path, capsys):
    target = tmp_path / "elsewhere"
    target.write_bytes(b"")
    link = tmp_path / "journal"
    link.symlink_to(target)
    j = Journal(str(link))
    rc, _ids, err = stop_with(tmp_path, j, capsys)
    assert rc == 1
    assert_logged(err, j)
    assert target.read_bytes() == b""  # nothing was appended through the link


def test_a_hung_journal_write_is_bounded(tmp_path, monkeypatch, capsys):
    """fsync on a hung disk: the termination waits JOURNAL_TIMEOUT, not forever."""
    from hamon.lib import termination

    release = threading.Event()
    monkeypatch.setattr(termination, "JOURNAL_TIMEOUT", 0.5)
    monkeypatch.setattr(Journal, "append", lambda self, kind, **d: release.wait(60))
    try:
        rc, _ids, err = stop_with(tmp_path, Journal(str(tmp_path / "j")), capsys)
    finally:
        release.set()
    assert rc == 1
    assert "not written within 0.5 s" in err


def test_journal_refuses_special_files_and_reads_bounded(tmp_path, monkeypatch):
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    for path in (str(fifo), "/dev/null", "/dev/zero", str(tmp_path)):
        with pytest.raises(OSError):
            Journal(path).append("x")
    with pytest.raises(JournalError, match="not a regular file"):
        Journal(str(fifo)).records()
    with pytest.raises(JournalError, match="not a regular file"):
        Journal("/dev/zero").records()
    from hamon.lib import journal as jmod

    big = tmp_path / "big"
    big.write_bytes(b"x" * 2048)
    monkeypatch.setattr(jmod, "MAX_READ", 1024)
    with pytest.raises(JournalError, match="not a hamon journal"):
        Journal(str(big)).records()
