"""One iSCSI session (one I_T nexus) to one target through one portal, for any number of
its LUNs: connect, login, the commands in flight, logout; bounded in time throughout.

Why a session of its own, apart from the LUN a transport addresses: the kernel's
initiator (open-iscsi) logs in once per portal and target and sends every LUN's commands
through that session. A fence on 256 LUNs x 2 paths that logged in once per LUN and
path spent half its time on 512 logins and logouts (issue 14: about 0.3 ms of Python and
0.3 ms of tgtd each). An action's transports of one portal and target now share one
session (:class:`hamon.lib.transport.iscsi.SharedSessions`); a transport made on its own
still gets a private one.

Bounded time. Only libiscsi's *async* API is used (``iscsi_connect_async``,
``iscsi_login_async``, ``iscsi_scsi_command_async``, ``iscsi_logout_async``), driven by
``iscsi_which_events`` / ``poll`` / ``iscsi_service`` against one monotonic deadline per
command, which covers the TCP connect and the login too: a target that accepts TCP but
never answers (a SIGSTOPped tgtd) costs at most the command's bound, then
:class:`PathTimeout`. libiscsi's own reconnect would queue commands forever, so
``iscsi_set_noautoreconnect(1)``. Connect and login are separate calls rather than
``iscsi_full_connect_async``, because the latter sends TEST UNIT READY until the unit
attentions stop: the first command we send must see them (a UA after a reservation was
preempted is information the caller needs). A host name in the URL is resolved by
``getaddrinfo`` inside libiscsi, which is *not* bounded: give IP addresses.

Many commands, one session. Inside an action's loop (:mod:`hamon.lib.transport.loop`)
the commands of every LUN are in flight together; the loop polls the one socket for all
of them. A command that fails without a SCSI answer (a timeout, a lost connection) fails
the session: it is destroyed at once, and every other command in flight on it ends as a
path error too, naming why. That is the kernel initiator's rule as well (a command
timeout escalates to session recovery), and hamon's fault model's: a command that ends
abnormally on a path is a failed path. Outside a loop (plain threads), one command at a
time per session, under its lock. While one job logs in, the others wait for that
login (and share its failure: a silent portal costs one bound, not one per LUN).
"""
from __future__ import annotations

import ctypes
import os
import select
import socket
import threading
import time
import weakref
from collections.abc import Callable

from hamon.lib.transport import libiscsi as li
from hamon.lib.transport import loop as _loop
from hamon.lib.transport.base import CommandResult, PathError, PathTimeout

#: The most a logout waits for the target's answer.
LOGOUT_BOUND = 2.0
#: Set to a libiscsi log level (1-10) to have libiscsi log to stderr.
DEBUG_ENV = "HAMON_ISCSI_DEBUG"


class _Login:
    """One login in progress, which the session's other jobs wait for."""

    __slots__ = ("error", "event")

    def __init__(self) -> None:
        self.event = threading.Event()
        self.error = ""


class IscsiSession:
    """One I_T nexus: ``initiator`` with ``isid`` to ``target`` through ``portal``.

    Opened by the first command, shared by the transports (LUNs) that
    :meth:`attach`; logged out when the last of them :meth:`detach` es (at most
    LOGOUT_BOUND). Every command brings its own deadline.
    """

    def __init__(self, initiator: str, portal: str, target: str, isid: bytes) -> None:
        self.initiator = initiator
        self.portal = portal
        self.target = target
        self.isid = isid
        self._ctx: int | None = None
        self._finalizer: weakref.finalize | None = None
        self._lock = threading.Lock()   # without a loop: one command at a time
        self._login: _Login | None = None
        self._inflight = 0
        self._users = 0
        self._lost_why = ""             # why the last session was destroyed under us
        self._alive_poll: tuple[int, select.poll] | None = None
        self._opening: int | None = None  # the context of the login under way

    def __repr__(self) -> str:
        return (f"IscsiSession(portal={self.portal!r}, target={self.target!r}, "
                f"isid={self.isid.hex()}, users={self._users}, "
                f"open={self._ctx is not None})")

    @property
    def connected(self) -> bool:
        return self._ctx is not None

    # -- users ---------------------------------------------------------------------

    def attach(self) -> None:
        self._users += 1

    def detach(self) -> None:
        """One user less; the last one logs out (best effort, at most LOGOUT_BOUND s)."""
        if self._users > 0:
            self._users -= 1
        if self._users == 0 and self._ctx is not None and not self._inflight:
            ctx = self._ctx
            self._ctx = None  # a command from here on logs in anew
            finalizer, self._finalizer = self._finalizer, None
            try:
                self._logout(ctx)
            except PathError:
                pass  # best effort: the target may be gone; the context goes anyway
            finally:
                if finalizer is not None:
                    finalizer()

    # -- commands ------------------------------------------------------------------

    def execute(self, path: str, lun: int, cdb: bytes, data_out: bytes | None,
                data_in_len: int, deadline: float, bound: float) -> CommandResult:
        """Send ``cdb`` to ``lun`` (logging in first if needed) before ``deadline``.
        ``path`` names the LUN's path in every error."""
        if _loop.current() is not None:  # the action's loop: any number in flight
            return self._execute(path, lun, cdb, data_out, data_in_len, deadline, bound)
        with self._lock:  # threads: libiscsi's context is not thread-safe
            return self._execute(path, lun, cdb, data_out, data_in_len, deadline, bound)

    def _execute(self, path: str, lun: int, cdb: bytes, data_out: bytes | None,
                 data_in_len: int, deadline: float, bound: float) -> CommandResult:
        ctx = self._ensure_open(path, deadline, bound)
        self._inflight += 1
        try:
            return self._command(path, ctx, lun, cdb, data_out, data_in_len, deadline,
                                 bound)
        finally:
            self._inflight -= 1

    def _command(self, path: str, ctx: int, lun: int, cdb: bytes, data_out: bytes | None,
                 data_in_len: int, deadline: float, bound: float) -> CommandResult:
        lib = li.library()
        if data_out:
            xfer, length = li.XFER_WRITE, len(data_out)
        elif data_in_len:
            xfer, length = li.XFER_READ, data_in_len
        else:
            xfer, length = li.XFER_NONE, 0
        task = lib.scsi_create_task(len(cdb), cdb, xfer, length)
        if not task:
            raise PathError(path, "libiscsi could not allocate a task")
        out = None
        if data_out:  # the buffer lives (a local) until the command has completed
            out_buf = ctypes.create_string_buffer(bytes(data_out), length)
            out = li.IscsiData(length, ctypes.cast(out_buf, ctypes.c_void_p))
        w: li.Waiter | None = None
        try:
            w = self._start(path, ctx, lambda t: lib.iscsi_scsi_command_async(
                ctx, li.wire_lun(lun), task, li.ON_DONE,
                ctypes.byref(out) if out is not None else None, t),
                "cannot queue the command")
            self._wait(path, ctx, w, deadline, bound, f"command {cdb[0]:02x}h")
            status = w.status
            if status in (li.SCSI_STATUS_CANCELLED, li.SCSI_STATUS_ERROR, li.SCSI_STATUS_TIMEOUT) \
                    or not 0 <= status <= 0xFF:
                why = w.error or self._error(ctx)
                if status == li.SCSI_STATUS_CANCELLED and self._lost_why:
                    why = f"the session was closed ({self._lost_why})"
                raise PathError(path, f"command {cdb[0]:02x}h failed without a SCSI "
                                f"status: {why}")
            raw = li.datain(task.contents)
            if status == li.SCSI_STATUS_CHECK_CONDITION:
                return CommandResult(status, sense=li.sense_from_segment(raw))
            return CommandResult(status, data=raw[:data_in_len] if data_in_len else b"")
        except PathError as err:  # no SCSI answer: the session has failed
            self._drop(ctx, f"a command to {path} failed: {err.reason}")
            raise
        finally:
            if w is None or not w.done:
                # the context still points at the task: destroy it before the task
                self._drop(ctx, f"a command to {path} did not complete")
            lib.scsi_free_scsi_task(task)

    # -- session -------------------------------------------------------------------

    def _ensure_open(self, path: str, deadline: float, bound: float) -> int:
        """The live context, logging in first when there is none (or the target hung
        up while it was idle); a login already under way is waited for."""
        while True:
            ctx = self._ctx
            if ctx is not None:
                if self._inflight or self._session_alive(ctx):
                    return ctx
                self._drop(ctx, "the target closed the idle session")
                continue
            login = self._login
            if login is None:
                break
            hub = _loop.current()
            if hub is None:  # cannot happen under the lock; never wait for nothing
                raise PathError(path, "a login of this session is already under way")
            if hub.wait_thread(login.event, deadline) != _loop.DONE:
                raise PathTimeout(path, f"no answer within {bound:g} s (login to "
                                  f"{self.target} through {self.portal})")
            if login.error:
                raise PathError(path, login.error)
        login = self._login = _Login()
        try:
            return self._open(path, deadline, bound)
        except PathError as err:
            login.error = err.reason
            raise
        finally:
            self._login = None
            login.event.set()
            hub = _loop.current()
            if hub is not None:
                hub.wake()

    def _open(self, path: str, deadline: float, bound: float) -> int:
        """TCP connect, then login; both within ``deadline``."""
        try:
            lib = li.library()
        except OSError as err:
            raise PathError(path, f"cannot load libiscsi ({err}): install the "
                            "libiscsi7 package") from None
        ctx = lib.iscsi_create_context(self.initiator.encode())
        if not ctx:
            raise PathError(path, "libiscsi could not create a context")
        finalizer = weakref.finalize(self, li.destroy, ctx)
        level = os.environ.get(DEBUG_ENV, "")
        if level.isdigit():
            lib.iscsi_set_log_level(ctx, int(level))
            lib.iscsi_set_log_fn(ctx, ctypes.cast(lib.iscsi_log_to_stderr, ctypes.c_void_p))
        lib.iscsi_set_targetname(ctx, self.target.encode())
        lib.iscsi_set_session_type(ctx, li.SESSION_NORMAL)
        lib.iscsi_set_noautoreconnect(ctx, 1)
        rnd = int.from_bytes(self.isid[1:4], "big")
        qualifier = int.from_bytes(self.isid[4:6], "big")
        lib.iscsi_set_isid_random(ctx, rnd, qualifier)
        self._opening = ctx
        try:
            portal = self.portal
            w = self._start(path, ctx, lambda t: lib.iscsi_connect_async(
                ctx, portal.encode(), li.ON_DONE, t), f"cannot connect to {portal}")
            self._wait(path, ctx, w, deadline, bound, f"TCP connect to {portal}")
            if w.status != li.SCSI_STATUS_GOOD:
                raise PathError(path, f"cannot connect to {portal}: "
                                f"{w.error or self._error(ctx)}")
            w = self._start(path, ctx, lambda t: lib.iscsi_login_async(ctx, li.ON_DONE, t),
                            "cannot log in")
            self._wait(path, ctx, w, deadline, bound, f"login to {self.target}")
            if w.status != li.SCSI_STATUS_GOOD:
                raise PathError(path, f"login as {self.initiator} failed: "
                                f"{w.error or self._error(ctx)}")
        except BaseException:
            self._opening = None
            finalizer()
            raise
        self._opening = None
        self._ctx, self._finalizer, self._lost_why = ctx, finalizer, ""
        self._alive_poll = None
        return ctx

    def _logout(self, ctx: int) -> None:
        lib = li.library()
        if not lib.iscsi_is_logged_in(ctx):
            return
        w = self._start(self.portal, ctx, lambda t: lib.iscsi_logout_async(
            ctx, li.ON_DONE, t), "logout")
        self._wait(self.portal, ctx, w, time.monotonic() + LOGOUT_BOUND, LOGOUT_BOUND,
                   "logout")

    def _drop(self, ctx: int, why: str) -> None:
        """Destroy ``ctx`` now if it is still this session's: closes the socket and
        cancels its commands; the jobs waiting on it wake first (loop.abandon)."""
        if ctx != self._ctx:
            return  # already dropped (and perhaps opened anew) by another command
        lib = li.loaded()
        hub = _loop.current()
        if hub is not None and lib is not None:
            fd = lib.iscsi_get_fd(ctx)
            if fd >= 0:
                hub.abandon(ctx, fd)
        self._ctx, self._lost_why, self._alive_poll = None, why, None
        finalizer, self._finalizer = self._finalizer, None
        if finalizer is not None:
            finalizer()  # li.destroy(ctx) once; libiscsi cancels what was in flight

    def _session_alive(self, ctx: int) -> bool:
        """Check an idle session before reusing it: did the target hang up meanwhile?

        A command sent into a connection the target already closed would be reported as
        a path error although the path may be fine; finding out *before* sending lets us
        log in again instead, with no risk of running the command twice. Only while no
        command is in flight: an answer to one of those is the loop's to read.
        """
        lib = li.library()
        fd = lib.iscsi_get_fd(ctx)
        if fd < 0:
            return False
        if self._alive_poll is None or self._alive_poll[0] != fd:  # one per session
            poller = select.poll()
            poller.register(fd, select.POLLIN | select.POLLERR | select.POLLHUP)
            self._alive_poll = (fd, poller)
        events = self._alive_poll[1].poll(0)
        if not events:
            return True
        revents = events[0][1]
        if revents & (li.POLLERR | li.POLLHUP | li.POLLNVAL):
            return False
        with socket.fromfd(fd, socket.AF_INET, socket.SOCK_STREAM) as sock:
            try:
                peek = sock.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT)
            except BlockingIOError:
                return True
            except OSError:
                return False
        if not peek:
            return False
        # Something unsolicited (a NOP-In, an async message): let libiscsi handle it.
        if lib.iscsi_service(ctx, li.POLLIN) != 0:
            return False
        return bool(lib.iscsi_is_logged_in(ctx))

    # -- waiting -------------------------------------------------------------------

    def _start(self, path: str, ctx: int, call: Callable[[ctypes.c_void_p], int],
               what: str) -> li.Waiter:
        """Register a waiter, call the async function with its token, check the return."""
        w = li.Waiter(token=next(li.TOKENS))
        li.WAITERS[w.token] = w
        try:
            rc = call(ctypes.c_void_p(w.token))
        except BaseException:
            li.WAITERS.pop(w.token, None)
            raise
        if rc != 0:
            li.WAITERS.pop(w.token, None)
            raise PathError(path, f"{what}: {self._error(ctx)}")
        return w

    def _wait(self, path: str, ctx: int, w: li.Waiter, deadline: float, bound: float,
              what: str) -> None:
        """Drive libiscsi until ``w`` completes or ``deadline`` passes."""
        lib = li.library()
        hub = _loop.current()
        if hub is not None:
            try:
                why = hub.wait_iscsi(lib, ctx, lambda: w.done, deadline)
            finally:
                li.WAITERS.pop(w.token, None)
            if why == _loop.TIMEOUT and not w.done:
                raise PathTimeout(path, f"no answer within {bound:g} s ({what})")
            if why == _loop.LOST and not w.done:
                lost = self._lost_why if ctx != self._ctx and self._lost_why else \
                    self._error(ctx)
                raise PathError(path, f"connection lost ({what}): {lost}")
            return
        try:
            poller = select.poll()
            registered = -1
            while not w.done:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise PathTimeout(path, f"no answer within {bound:g} s ({what})")
                fd = lib.iscsi_get_fd(ctx)
                events = lib.iscsi_which_events(ctx)
                if fd < 0 or events == 0:
                    # libiscsi asks to be left alone (e.g. a deferred reconnect): the
                    # connection is gone as far as we are concerned.
                    if w.done:
                        break
                    raise PathError(path, f"connection lost ({what}): {self._error(ctx)}")
                if registered != fd:
                    if registered >= 0:
                        poller.unregister(registered)
                    registered = fd
                poller.register(fd, events)  # re-register = modify
                ready = poller.poll(max(1, int(remaining * 1000) + 1))
                revents = ready[0][1] if ready else 0
                if revents & li.POLLNVAL:
                    raise PathError(path, f"socket closed under us ({what})")
                if lib.iscsi_service(ctx, revents) < 0 and not w.done:
                    raise PathError(path, f"{what}: {self._error(ctx)}")
        finally:
            li.WAITERS.pop(w.token, None)

    def _error(self, ctx: int | None) -> str:
        lib = li.loaded()
        if ctx is None or lib is None or ctx not in (self._ctx, self._opening):
            return "no session"  # never ask a destroyed context
        msg = lib.iscsi_get_error(ctx)
        return msg.decode(errors="replace").strip() if msg else "unknown libiscsi error"
