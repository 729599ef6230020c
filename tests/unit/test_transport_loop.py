"""The action's poll loop (hamon.lib.transport.loop): jobs as greenlets on one thread."""
from __future__ import annotations

import threading
import time

import pytest

from hamon.lib.disk import run_parallel
from hamon.lib.transport import loop


def test_jobs_run_concurrently_on_the_calling_thread():
    threads: set[int] = set()

    def job(i: int) -> int:
        threads.add(threading.get_ident())
        loop.current().sleep(0.2)  # type: ignore[union-attr]
        threads.add(threading.get_ident())
        return i * 2

    t0 = time.monotonic()
    out = run_parallel([lambda i=i: job(i) for i in range(50)])
    took = time.monotonic() - t0
    assert out == [i * 2 for i in range(50)]
    assert threads == {threading.get_ident()}
    assert took < 1.0, took  # 50 x 0.2 s one after the other would be 10 s


def test_exceptions_come_back_in_order_and_others_finish():
    def bad() -> None:
        raise ValueError("no")

    out = run_parallel([lambda: 1, bad, lambda: 3])
    assert out[0] == 1 and out[2] == 3 and isinstance(out[1], ValueError)


def test_a_job_that_runs_jobs_joins_the_same_loop():
    seen: list[loop.Loop | None] = []

    def inner(i: int) -> int:
        seen.append(loop.current())
        loop.current().sleep(0.05)  # type: ignore[union-attr]
        return i

    def outer(n: int) -> list[object]:
        seen.append(loop.current())
        return run_parallel([lambda i=i: inner(i) for i in range(n)])

    out = run_parallel([lambda: outer(3), lambda: outer(2)])
    assert out == [[0, 1, 2], [0, 1]]
    assert len({id(x) for x in seen}) == 1 and seen[0] is not None
    assert loop.current() is None  # outside any job


def test_helper_thread_waits_end_at_completion_or_deadline():
    fast, slow = threading.Event(), threading.Event()

    def job(ev: threading.Event, delay: float, bound: float) -> str:
        hub = loop.current()
        assert hub is not None

        def work() -> None:
            time.sleep(delay)
            ev.set()
            hub.wake()

        threading.Thread(target=work, daemon=True).start()
        return hub.wait_thread(ev, time.monotonic() + bound)

    t0 = time.monotonic()
    out = run_parallel([lambda: job(fast, 0.05, 2.0), lambda: job(slow, 5.0, 0.3)])
    assert out == [loop.DONE, loop.TIMEOUT]
    assert time.monotonic() - t0 < 1.5


def test_a_lock_held_across_a_switch_is_waited_for_cooperatively():
    lock = threading.Lock()
    order: list[str] = []

    def holder() -> None:
        loop.acquire(lock)
        try:
            order.append("a in")
            loop.current().sleep(0.05)  # type: ignore[union-attr]
            order.append("a out")
        finally:
            lock.release()

    def waiter() -> None:
        loop.acquire(lock)
        try:
            order.append("b")
        finally:
            lock.release()

    run_parallel([holder, waiter])
    assert order == ["a in", "a out", "b"]


def test_without_greenlet_or_when_disabled_jobs_run_in_threads(monkeypatch):
    monkeypatch.setenv(loop.DISABLE_ENV, "1")
    idents = run_parallel([threading.get_ident, lambda: (time.sleep(0.05),
                                                         threading.get_ident())[1]])
    assert loop.current() is None
    assert threading.get_ident() not in idents


@pytest.mark.parametrize("n", [0, 1])
def test_zero_and_one_job(n):
    assert run_parallel([lambda: 7] * n) == [7] * n


def test_at_most_max_workers_jobs_run_at_a_time():
    running, peak = [0], [0]

    def job() -> None:
        running[0] += 1
        peak[0] = max(peak[0], running[0])
        loop.current().sleep(0.01)  # type: ignore[union-attr]
        running[0] -= 1

    out = run_parallel([job] * 40, max_workers=8)
    assert out == [None] * 40 and peak[0] == 8


def test_sg_io_paths_wait_through_the_loop_and_a_hung_one_times_out(monkeypatch):
    """SG_IO in an action's loop: each ioctl in its helper thread, the jobs on the
    calling thread; a hung path is a PathTimeout at its bound while the others answer."""
    from hamon.lib.transport import sgio
    from hamon.lib.transport.base import PathTimeout

    monkeypatch.setattr(sgio, "HARD_GRACE", 0.1)
    release = threading.Event()
    hung: set[int] = set()

    def fake(fd: int, hdr: object) -> None:
        if fd in hung:
            release.wait(5)
        else:
            time.sleep(0.05)

    monkeypatch.setattr(sgio, "_sg_io", fake)
    ts = [sgio.SgioTransport(path="/dev/null", timeout=0.3) for _ in range(4)]
    idents: set[int] = set()

    def job(i: int) -> object:
        idents.add(threading.get_ident())
        t = ts[i]
        if i == 0:
            t.execute(b"\0" * 6)  # opens the descriptor
            hung.add(t._fd)  # type: ignore[arg-type]
            return t.execute(b"\0" * 6)
        return [t.execute(b"\0" * 6).status for _ in range(3)]

    t0 = time.monotonic()
    try:
        out = run_parallel([lambda i=i: job(i) for i in range(4)])
    finally:
        release.set()
        for t in ts:
            t.close()
    took = time.monotonic() - t0
    assert isinstance(out[0], PathTimeout)
    assert out[1:] == [[0, 0, 0]] * 3
    assert idents == {threading.get_ident()}
    assert took < 1.0, took  # 0.05 + the hung one's 0.4 s bound, not one after another


def test_a_job_that_leaves_to_the_hub_waiting_for_nothing_is_an_error_not_a_spin():
    def rogue() -> None:
        loop.current().hub.switch()  # type: ignore[union-attr]

    with pytest.raises(RuntimeError, match="wait for nothing"):
        loop.Loop().run([rogue, lambda: None])


class _FakeLib:
    """The four libiscsi calls the loop makes, over a socketpair: a byte ``n`` written
    to the peer completes waiter ``n`` when the loop services the socket; 0xFF makes the
    service fail (a lost connection)."""

    def __init__(self) -> None:
        import socket

        self.sock, self.peer = socket.socketpair()
        self.sock.setblocking(False)
        self.done: dict[int, bool] = {}
        self.services = 0

    def iscsi_get_fd(self, ctx: int) -> int:
        return self.sock.fileno()

    def iscsi_which_events(self, ctx: int) -> int:
        return 1  # POLLIN

    def iscsi_service(self, ctx: int, revents: int) -> int:
        self.services += 1
        for b in self.sock.recv(64):
            if b == 0xFF:
                return -1
            self.done[b] = True
        return 0


def test_many_waiters_on_one_socket_each_with_its_own_end():
    """One session, several commands in flight (issue 14): one poll and one service for
    all of them; each ends as its own command does (done, its own deadline), and a
    service error ends the rest as LOST."""
    lib = _FakeLib()
    got: dict[int, str] = {}

    def job(n: int, bound: float) -> None:
        hub = loop.current()
        got[n] = hub.wait_iscsi(lib, 7, lambda: lib.done.get(n, False),  # type: ignore[union-attr]
                                time.monotonic() + bound)

    def driver() -> None:
        loop.current().sleep(0.05)  # type: ignore[union-attr]
        lib.peer.send(bytes([1, 2]))  # two completions in one read
        loop.current().sleep(0.3)  # type: ignore[union-attr]  # waiter 3 times out meanwhile
        lib.peer.send(bytes([0xFF]))  # then the connection breaks

    try:
        t0 = time.monotonic()
        out = run_parallel([lambda: job(1, 5), lambda: job(2, 5), lambda: job(3, 0.2),
                            lambda: job(4, 5), driver])
        took = time.monotonic() - t0
    finally:
        lib.sock.close()
        lib.peer.close()
    assert out == [None] * 5, out
    assert got == {1: loop.DONE, 2: loop.DONE, 3: loop.TIMEOUT, 4: loop.LOST}
    assert took < 1.0, took


def test_abandon_wakes_every_waiter_of_a_session_before_its_socket_closes():
    lib = _FakeLib()
    got: dict[int, str] = {}

    def job(n: int) -> None:
        got[n] = loop.current().wait_iscsi(  # type: ignore[union-attr]
            lib, 7, lambda: False, time.monotonic() + 5)

    def dropper() -> None:
        hub = loop.current()
        hub.sleep(0.02)  # type: ignore[union-attr]
        hub.abandon(8, lib.sock.fileno())  # type: ignore[union-attr]  # another context: no
        hub.sleep(0.02)  # type: ignore[union-attr]
        assert len(got) == 0
        hub.abandon(7, lib.sock.fileno())  # type: ignore[union-attr]

    try:
        t0 = time.monotonic()
        out = run_parallel([lambda n=n: job(n) for n in range(3)] + [dropper])
        took = time.monotonic() - t0
    finally:
        lib.sock.close()
        lib.peer.close()
    assert out == [None] * 4, out  # the dropper's own check passed
    assert got == {0: loop.LOST, 1: loop.LOST, 2: loop.LOST}
    assert took < 1.0, took
