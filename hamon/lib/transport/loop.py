"""One thread, one poll() loop for every path of an action: jobs as greenlets.

Why: one thread per path made a 64-LUN ``off`` on 2 CPUs a storm of context switches
(every libiscsi call through ctypes releases the GIL; 27,664 switches for one action,
half the time when pinned to one CPU). Here the jobs of an action (one per disk, one per
path for REGISTER, ...) are greenlets (Debian ``python3-greenlet``) on the calling
thread. The engine's code stays plain sequential code (the fault classification and
every step of :mod:`hamon.lib.reservation` unchanged): where a transport would block,
it hands its wait to the loop and switches to the hub, which polls every waiting
session's socket at once, runs ``iscsi_service`` on the ready ones and switches back to
each job whose command completed, failed, or reached its deadline. So:

* iSCSI (:mod:`hamon.lib.transport.iscsi`): every session of the action in one
  ``poll()``; ``iscsi_which_events``/``iscsi_get_fd``/``iscsi_service`` per context;
  each command keeps its own deadline: a path that swallows a command is a PathTimeout
  at its deadline while the others go on.
* SG_IO (:mod:`hamon.lib.transport.sgio`): the same loop shape. The ioctl blocks in the
  kernel and no signal interrupts it, so each command runs in a helper thread (as it
  did before: that is how the hard bound is kept); the thread only makes the call and
  writes one byte into the loop's wake-up pipe. The number of helper threads is the
  number of commands in flight, never one per path per job, and no Python job code
  runs in them.
* Anything else (the in-memory target) runs inline: it does not block.

Without greenlet (not installed) :func:`parallel` falls back to a thread pool, the old
behaviour. Nested calls (a job that runs its own jobs, e.g. REGISTER on each path of a
disk) join the same loop. Locks: greenlets share one thread, so a transport's
``threading.Lock`` must never be held across a switch by one job while another job
asks for it; :func:`acquire` takes it cooperatively.
"""
from __future__ import annotations

import contextlib
import os
import select
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Any

try:  # Debian python3-greenlet; optional: without it the jobs run in threads
    import greenlet as _greenlet_mod
    _greenlet: Any = _greenlet_mod.greenlet
    _getcurrent: Any = _greenlet_mod.getcurrent
except ImportError:  # pragma: no cover - exercised where greenlet is missing
    _greenlet = None
    _getcurrent = None

#: HAMON_NO_LOOP=1 runs jobs in threads (for comparisons in bench/).
DISABLE_ENV = "HAMON_NO_LOOP"
_POLLNVAL = select.POLLNVAL

# Wake reasons handed back to a waiting job.
DONE, TIMEOUT, LOST = "done", "timeout", "lost"


class _Wait:
    """One job waiting on one libiscsi context (or on a helper thread's flag)."""

    __slots__ = ("check", "ctx", "deadline", "fd", "glet", "lib", "reason")

    def __init__(self, glet: Any, deadline: float) -> None:
        self.glet = glet
        self.deadline = deadline
        self.ctx: int | None = None
        self.lib: Any = None
        self.fd = -1
        self.check: Callable[[], bool] = lambda: False
        self.reason = ""


class Loop:
    """The hub of one action: runnable jobs, waiting jobs, one poll object."""

    def __init__(self) -> None:
        self.hub: Any = None
        self.runnable: deque[Any] = deque()  # FIFO; popleft is O(1) with 1000s queued
        self.waits: dict[int, list[_Wait]] = {}  # fd -> its waits (iSCSI)
        self.threads: list[_Wait] = []          # SG_IO helper-thread waits
        self.sleepers: list[_Wait] = []         # cooperative yields / sleeps
        self.poller = select.poll()
        self._wake_r, self._wake_w = -1, -1

    # -- used by transports, from inside a job ----------------------------------------
    def wait_iscsi(self, lib: Any, ctx: int, done: Callable[[], bool],
                   deadline: float) -> str:
        """Switch to the hub until ``done()``, the deadline, or the connection is lost.

        Any number of jobs may wait on one context (one session carries the commands of
        many LUNs): the socket is polled once for all of them, and after each
        ``iscsi_service`` every waiter of that socket is asked whether its command
        completed.
        """
        w = _Wait(_getcurrent(), deadline)
        w.ctx, w.lib, w.check = ctx, lib, done
        fd = lib.iscsi_get_fd(ctx)
        events = lib.iscsi_which_events(ctx)
        if fd < 0 or events == 0:
            return LOST
        w.fd = fd
        group = self.waits.get(fd)
        if group is None:
            self.waits[fd] = [w]
            self.poller.register(fd, events)
        else:
            if group[0].ctx != ctx:  # cannot happen: a socket belongs to one context
                raise RuntimeError(f"two iSCSI contexts wait on one socket (fd {fd})")
            group.append(w)
            self.poller.modify(fd, events)  # a new command may need POLLOUT
        try:
            return self.hub.switch()
        finally:
            self._forget(w)

    def abandon(self, ctx: int, fd: int) -> None:
        """The session on ``fd`` is about to be destroyed: every job still waiting on
        it wakes with LOST (before the descriptor closes and its number is reused)."""
        group = self.waits.get(fd)
        if group is not None and group[0].ctx == ctx:
            self._drop_all(fd, LOST)

    def wait_thread(self, done: threading.Event, deadline: float) -> str:
        """Switch to the hub until a helper thread sets ``done`` (it also calls
        :meth:`wake`) or the deadline passes."""
        w = _Wait(_getcurrent(), deadline)
        w.check = done.is_set
        if done.is_set():
            return DONE
        self.threads.append(w)
        try:
            return self.hub.switch()
        finally:
            if w in self.threads:
                self.threads.remove(w)

    def sleep(self, seconds: float) -> None:
        """Yield to the other jobs for ``seconds`` (0: one turn of the loop)."""
        w = _Wait(_getcurrent(), time.monotonic() + seconds)
        self.sleepers.append(w)
        try:
            self.hub.switch()
        finally:
            if w in self.sleepers:
                self.sleepers.remove(w)

    def wake(self) -> None:
        """Called from a helper thread: make the hub's poll() return."""
        if self._wake_w >= 0:
            with contextlib.suppress(OSError):  # a full pipe wakes the hub anyway
                os.write(self._wake_w, b"x")

    # -- the hub ------------------------------------------------------------------------
    def run(self, jobs: list[Callable[[], object]], cap: int = 64) -> list[object]:
        """Run ``jobs`` to completion on this thread, at most ``cap`` at a time; results
        (or exceptions) in order."""
        self.hub = _getcurrent()
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_r, False)
        os.set_blocking(self._wake_w, False)
        self.poller.register(self._wake_r, select.POLLIN)
        _local.stack.append(self)
        try:
            # the greenlets stay referenced here: one that switched away waiting for
            # nothing must not be collected (and its job silently ended) meanwhile
            results, left, _glets = self._spawn(jobs, cap)
            while left[0]:  # a count, not a scan of every job at every turn
                self._turn()
                if left[0] and not (self.runnable or self.waits or self.threads
                                    or self.sleepers):
                    # a job left to the hub without waiting for anything: a bug, and
                    # never a silent spin of a fence agent
                    raise RuntimeError(f"{left[0]} jobs wait for nothing")
            return results
        finally:
            _local.stack.remove(self)
            os.close(self._wake_r)
            os.close(self._wake_w)
            self._wake_r = self._wake_w = -1

    def join(self, jobs: list[Callable[[], object]], cap: int = 64) -> list[object]:
        """From inside a job: run ``jobs`` as further jobs of this loop and wait for all
        (the last one to finish resumes the caller)."""
        results, left, _glets = self._spawn(jobs, cap, waiter=_getcurrent())
        if left[0]:
            self.hub.switch()
        return results

    def _spawn(self, jobs: list[Callable[[], object]], cap: int,
               waiter: Any = None) -> tuple[list[object], list[int], list[Any]]:
        """Run ``jobs`` on at most ``cap`` worker greenlets (results, the count of jobs not
        yet finished, the workers). At most ``cap`` at a time: each command's deadline
        runs from its submission, so a thousand logins submitted at once to one target
        would spend their deadlines queueing at the target. Workers, not a greenlet per
        job: under Python 3.11 each new greenlet maps (and unmaps) a frame stack of its
        own, about 25 us, twice per LUN of a fence."""
        results: list[object] = [None] * len(jobs)
        left = [len(jobs)]
        pending: deque[tuple[int, Callable[[], object]]] = deque(enumerate(jobs))

        def worker() -> None:
            while pending:
                i, job = pending.popleft()
                try:
                    results[i] = job()
                except Exception as err:
                    results[i] = err
                finally:
                    left[0] -= 1
                    if left[0] == 0 and waiter is not None:
                        self.runnable.append((waiter, DONE))

        workers = [_greenlet(worker, parent=self.hub)
                   for _ in range(min(max(1, cap), len(jobs)))]
        self.runnable.extend(workers)
        return results, left, workers

    def _resume(self, w: _Wait, reason: str) -> None:
        w.reason = reason
        self.runnable.append((w.glet, reason))

    def _turn(self) -> None:
        """Run what is runnable, then poll once and wake whoever is due."""
        while self.runnable:
            item = self.runnable.popleft()
            if isinstance(item, tuple):
                glet, reason = item
                glet.switch(reason)
            else:
                item.switch()
        if not (self.waits or self.threads or self.sleepers):
            return
        now = time.monotonic()
        due = [w.deadline for group in self.waits.values() for w in group]
        due += [w.deadline for w in self.threads] + [w.deadline for w in self.sleepers]
        timeout_ms = max(0, int((min(due) - now) * 1000) + 1) if due else -1
        for fd, revents in self.poller.poll(timeout_ms):
            if fd == self._wake_r:
                with contextlib.suppress(BlockingIOError):
                    while os.read(self._wake_r, 4096):
                        pass
                continue
            group = self.waits.get(fd)
            if not group:
                continue
            if revents & _POLLNVAL:
                self._drop_all(fd, LOST)
                continue
            lib, ctx = group[0].lib, group[0].ctx
            rc = lib.iscsi_service(ctx, revents)
            for w in [w for w in group if w.check()]:
                self._drop(w, DONE)
            if fd not in self.waits:
                continue
            fd2 = lib.iscsi_get_fd(ctx) if rc >= 0 else -1
            events = lib.iscsi_which_events(ctx) if fd2 == fd else 0
            if events == 0:
                self._drop_all(fd, LOST)
            else:
                self.poller.modify(fd, events)
        now = time.monotonic()
        for group in list(self.waits.values()):
            for w in [w for w in group if now >= w.deadline]:
                self._drop(w, TIMEOUT)
        for w in list(self.threads):
            if w.check():
                self.threads.remove(w)
                self._resume(w, DONE)
            elif now >= w.deadline:
                self.threads.remove(w)
                self._resume(w, TIMEOUT)
        for w in list(self.sleepers):
            if now >= w.deadline:
                self.sleepers.remove(w)
                self._resume(w, DONE)

    def _drop(self, w: _Wait, reason: str) -> None:
        """Stop waiting ``w`` on its socket (the last one unregisters it) and resume it."""
        self._forget(w)
        self._resume(w, reason)

    def _drop_all(self, fd: int, reason: str) -> None:
        """Every waiter of socket ``fd`` resumes with ``reason``."""
        for w in list(self.waits.get(fd, ())):
            self._drop(w, reason)

    def _forget(self, w: _Wait) -> None:
        group = self.waits.get(w.fd)
        if group is None or w not in group:
            return
        group.remove(w)
        if not group:
            del self.waits[w.fd]
            self.poller.unregister(w.fd)


class _Local(threading.local):
    def __init__(self) -> None:
        self.stack: list[Loop] = []


_local = _Local()


def current() -> Loop | None:
    """The loop the calling code runs in as a job, or None (plain thread, no loop)."""
    stack = _local.stack
    if not stack or _getcurrent is None:
        return None
    loop = stack[-1]
    return loop if _getcurrent() is not loop.hub else None


def enabled() -> bool:
    return _greenlet is not None and os.environ.get(DISABLE_ENV, "") != "1"


def parallel(jobs: list[Callable[[], object]], max_workers: int = 64) -> list[object]:
    """Run ``jobs`` concurrently; results (or the exception raised) in order.

    In a loop's job: further jobs of that loop. Otherwise a new loop on this thread
    (one job alone simply runs). At most ``max_workers`` of them run at a time (in the
    loop as in the thread pool without greenlet).
    """
    loop = current()
    if loop is not None:
        if len(jobs) == 1:
            return _call(jobs[0])
        return loop.join(jobs, max_workers)
    if len(jobs) == 1:
        return _call(jobs[0])
    if enabled():
        return Loop().run(jobs, max_workers)
    return threads(jobs, max_workers)


def pause(seconds: float) -> None:
    """Wait ``seconds``: inside a loop job by yielding to the other jobs (the loop's
    timer), elsewhere with time.sleep. A job must never time.sleep: the one thread every
    job of the action runs on would stop, and every other path with it."""
    loop = current()
    if loop is None:
        time.sleep(seconds)
    else:
        loop.sleep(seconds)


def acquire(lock: threading.Lock) -> None:
    """Take ``lock``; inside a loop job, by yielding to the other jobs until it is free
    (blocking would stop the one thread every job runs on)."""
    loop = current()
    if loop is None:
        lock.acquire()
        return
    while not lock.acquire(blocking=False):
        loop.sleep(0.001)


def _call(job: Callable[[], object]) -> list[object]:
    try:
        return [job()]
    except Exception as err:
        return [err]


def threads(jobs: list[Callable[[], object]], max_workers: int = 16) -> list[object]:
    """Run ``jobs`` in a thread pool (one job: inline); results or exceptions in order.
    For jobs that block outside any loop (processes), and the fallback without greenlet."""
    if len(jobs) <= 1:
        return [_call(j)[0] for j in jobs]
    from concurrent.futures import ThreadPoolExecutor

    def call(job: Callable[[], object]) -> object:
        try:
            return job()
        except Exception as err:
            return err

    with ThreadPoolExecutor(max_workers=min(max_workers, len(jobs) or 1)) as pool:
        return list(pool.map(call, jobs))
