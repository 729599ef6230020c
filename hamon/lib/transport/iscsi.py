"""Userspace iSCSI transport: libiscsi (Debian ``libiscsi7``, 1.19) through ctypes.

The library binding is :mod:`hamon.lib.transport.libiscsi`, URLs and ISIDs are
:mod:`hamon.lib.transport.iscsi_url`.

One thread, one loop. Inside an action's jobs (:mod:`hamon.lib.transport.loop`) a
transport does not poll its own socket: it hands the wait to the action's loop, which
polls every session of the action at once, so any number of sessions make progress from
one thread, each command with its own deadline. Outside a loop (a single command, a
test) :meth:`IscsiTransport.execute` drives its own poll, as below.

Bounded time. Only the *async* API is used: ``iscsi_connect_async``, ``iscsi_login_async``
and ``iscsi_scsi_command_async``, driven by our own loop of ``iscsi_which_events`` /
``poll`` / ``iscsi_service`` against one monotonic deadline per :meth:`execute` call. That
deadline covers the TCP connect, the login and the command together, so a target that
accepts TCP but never answers (a SIGSTOPped tgtd) costs at most ``timeout`` seconds, then
:class:`PathTimeout`, and the context is destroyed (libiscsi's own reconnect would queue
commands forever, so ``iscsi_set_noautoreconnect(1)``). Connect and login are separate
calls rather than ``iscsi_full_connect_async``, because the latter sends TEST UNIT READY
until the unit attentions stop: the first command we send must see them (a UA after a
reservation was preempted is information the caller needs). A host name in the URL is
resolved by ``getaddrinfo`` inside libiscsi, which is *not* bounded: give IP addresses.

Stable initiator port: every session logs in with the ISID
:func:`~hamon.lib.transport.iscsi_url.derive_isid` gives its initiator name and path, the
same in every process. Rule for callers: one live transport per (initiator, path) at a
time (a second login with the same ISID may reinstate, i.e. close, the first).

Two tgt 1.0.85 facts (verified, see tests/integration): tgt does not reinstate here,
because libiscsi without CHAP starts the login in the operational stage and tgt only
looks for a live session with the same ISID in the security stage; and tgt binds a PR
registration to the session instance (TSIH + creation time), not to name + ISID, so on
tgt a new session is never the old registrant, whatever its ISID.
"""
from __future__ import annotations

import contextlib
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
from hamon.lib.transport.base import (
    DEFAULT_TIMEOUT,
    CommandResult,
    PathError,
    PathTimeout,
    Transport,
)
from hamon.lib.transport.iscsi_url import WHITE_SPACE, IscsiUrl, derive_isid, parse_iscsi_url

#: The most a close() waits for the target to acknowledge a logout.
LOGOUT_BOUND = 2.0
#: Set to a libiscsi log level (1-10) to have libiscsi log to stderr.
DEBUG_ENV = "HAMON_ISCSI_DEBUG"


class IscsiTransport(Transport):
    """One iSCSI session (one I_T nexus) to one LUN, opened on the first command.

    ``path`` is the URL, ``initiator`` this node's iSCSI name (required; deriving it from
    a node name is the caller's business). One thread at a time per transport (a lock
    enforces it); any number of transports in parallel threads.
    """

    url: IscsiUrl
    isid: bytes

    def __init__(self, path: str, timeout: float = DEFAULT_TIMEOUT, initiator: str = "",
                 role: str = "") -> None:
        """``role``: a second nexus of this initiator on this path (see
        :func:`derive_isid`); "" = the node's own, registered one."""
        super().__init__(path, timeout)
        self.initiator = initiator
        self.role = role
        self._ctx: int | None = None
        self._finalizer: weakref.finalize | None = None
        self._lock = threading.Lock()
        self._alive_poll: tuple[int, select.poll] | None = None
        self.url = parse_iscsi_url(self.path)
        if not self.initiator or WHITE_SPACE.search(self.initiator):
            raise ValueError(f"{self.path}: an iSCSI initiator name without spaces is "
                             f"required, got {self.initiator!r}")
        self.isid = derive_isid(self.initiator, self.url, self.role)

    def __repr__(self) -> str:
        return (f"IscsiTransport(path={self.path!r}, timeout={self.timeout!r}, "
                f"initiator={self.initiator!r}, role={self.role!r})")

    # -- public ------------------------------------------------------------------

    def execute(self, cdb: bytes, data_out: bytes | None = None, data_in_len: int = 0,
                timeout: float | None = None) -> CommandResult:
        """Send one CDB through the session (logging in first if needed), within ``timeout``.

        The bound covers connect + login + command: whatever happens, this returns or
        raises within ``timeout`` seconds (plus scheduling noise).
        """
        if not 1 <= len(cdb) <= li.CDB_MAX:
            raise ValueError(f"CDB of {len(cdb)} bytes: libiscsi sends 1..{li.CDB_MAX}")
        if data_out is not None and data_in_len:
            raise ValueError("bidirectional commands are not supported")
        bound = self.timeout if timeout is None else timeout
        deadline = time.monotonic() + bound
        _loop.acquire(self._lock)
        try:
            if self._closed:
                raise PathError(self.path, "transport is closed")
            try:
                if self._ctx is not None and not self._session_alive():
                    self._drop()
                if self._ctx is None:
                    self._open(deadline, bound)
                return self._command(bytes(cdb), data_out, data_in_len, deadline, bound)
            except PathError:
                self._drop()
                raise
        finally:
            self._lock.release()

    def close(self) -> None:
        """Log out (best effort, at most LOGOUT_BOUND s) and free the session."""
        _loop.acquire(self._lock)
        try:
            if self._ctx is not None:
                with contextlib.suppress(PathError):  # best effort: the target may be gone
                    self._logout(min(self.timeout, LOGOUT_BOUND))
                self._drop()
            super().close()
        finally:
            self._lock.release()

    @property
    def target_id(self) -> str:
        """The iSCSI target (its name, which RFC 7143 makes worldwide unique): what one
        LUN of it taught about the target's PR behaviour holds for its other LUNs."""
        return f"iscsi:{self.url.target.lower()}"

    @property
    def connected(self) -> bool:
        """Whether a session is open (for tests and diagnostics)."""
        return self._ctx is not None

    # -- session -----------------------------------------------------------------

    def _open(self, deadline: float, bound: float) -> None:
        """TCP connect, then login; both within ``deadline``."""
        try:
            lib = li.library()
        except OSError as err:
            raise PathError(self.path, f"cannot load libiscsi ({err}): install the "
                            "libiscsi7 package") from None
        ctx = lib.iscsi_create_context(self.initiator.encode())
        if not ctx:
            raise PathError(self.path, "libiscsi could not create a context")
        self._ctx = ctx
        self._finalizer = weakref.finalize(self, li.destroy, ctx)
        level = os.environ.get(DEBUG_ENV, "")
        if level.isdigit():
            lib.iscsi_set_log_level(ctx, int(level))
            lib.iscsi_set_log_fn(ctx, ctypes.cast(lib.iscsi_log_to_stderr, ctypes.c_void_p))
        lib.iscsi_set_targetname(ctx, self.url.target.encode())
        lib.iscsi_set_session_type(ctx, li.SESSION_NORMAL)
        lib.iscsi_set_noautoreconnect(ctx, 1)
        rnd = int.from_bytes(self.isid[1:4], "big")
        qualifier = int.from_bytes(self.isid[4:6], "big")
        lib.iscsi_set_isid_random(ctx, rnd, qualifier)

        portal = self.url.portal
        w = self._start(lambda t: lib.iscsi_connect_async(ctx, portal.encode(), li.ON_DONE, t),
                        f"cannot connect to {portal}")
        self._wait(w, deadline, bound, f"TCP connect to {portal}")
        if w.status != li.SCSI_STATUS_GOOD:
            raise PathError(self.path, f"cannot connect to {portal}: {w.error or self._error()}")
        w = self._start(lambda t: lib.iscsi_login_async(ctx, li.ON_DONE, t), "cannot log in")
        self._wait(w, deadline, bound, f"login to {self.url.target}")
        if w.status != li.SCSI_STATUS_GOOD:
            raise PathError(self.path, f"login as {self.initiator} failed: "
                            f"{w.error or self._error()}")

    def _logout(self, bound: float) -> None:
        lib = li.library()
        if self._ctx is None or not lib.iscsi_is_logged_in(self._ctx):
            return
        ctx = self._ctx
        w = self._start(lambda t: lib.iscsi_logout_async(ctx, li.ON_DONE, t), "logout")
        self._wait(w, time.monotonic() + bound, bound, "logout")

    def _drop(self) -> None:
        """Destroy the context now: closes the socket and cancels whatever was queued."""
        if self._finalizer is not None:
            self._finalizer()  # calls _destroy(ctx) once, then is dead
            self._finalizer = None
        self._ctx = None
        self._alive_poll = None

    def _session_alive(self) -> bool:
        """Check an idle session before reusing it: did the target hang up meanwhile?

        A command sent into a connection the target already closed would be reported as
        a path error although the path may be fine; finding out *before* sending lets us
        log in again instead, with no risk of running the command twice.
        """
        lib = li.library()
        fd = lib.iscsi_get_fd(self._ctx)
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
        if lib.iscsi_service(self._ctx, li.POLLIN) != 0:
            return False
        return bool(lib.iscsi_is_logged_in(self._ctx))

    # -- command -----------------------------------------------------------------

    def _command(self, cdb: bytes, data_out: bytes | None, data_in_len: int, deadline: float,
                 bound: float) -> CommandResult:
        lib = li.library()
        ctx = self._ctx
        if data_out:
            xfer, length = li.XFER_WRITE, len(data_out)
        elif data_in_len:
            xfer, length = li.XFER_READ, data_in_len
        else:
            xfer, length = li.XFER_NONE, 0
        task = lib.scsi_create_task(len(cdb), cdb, xfer, length)
        if not task:
            raise PathError(self.path, "libiscsi could not allocate a task")
        out = None
        if data_out:  # the buffer lives (a local) until the command has completed
            out_buf = ctypes.create_string_buffer(bytes(data_out), length)
            out = li.IscsiData(length, ctypes.cast(out_buf, ctypes.c_void_p))
        w: li.Waiter | None = None
        try:
            w = self._start(lambda t: lib.iscsi_scsi_command_async(
                ctx, li.wire_lun(self.url.lun), task, li.ON_DONE,
                ctypes.byref(out) if out is not None else None, t),
                "cannot queue the command")
            self._wait(w, deadline, bound, f"command {cdb[0]:02x}h")
            status = w.status
            if status in (li.SCSI_STATUS_CANCELLED, li.SCSI_STATUS_ERROR, li.SCSI_STATUS_TIMEOUT) \
                    or not 0 <= status <= 0xFF:
                raise PathError(self.path, f"command {cdb[0]:02x}h failed without a SCSI "
                                f"status: {w.error or self._error()}")
            raw = li.datain(task.contents)
            if status == li.SCSI_STATUS_CHECK_CONDITION:
                return CommandResult(status, sense=li.sense_from_segment(raw))
            return CommandResult(status, data=raw[:data_in_len] if data_in_len else b"")
        finally:
            if w is None or not w.done:
                self._drop()  # the context still points at the task: free that first
            lib.scsi_free_scsi_task(task)

    # -- event loop --------------------------------------------------------------

    def _start(self, call: Callable[[ctypes.c_void_p], int], what: str) -> li.Waiter:
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
            raise PathError(self.path, f"{what}: {self._error()}")
        return w

    def _wait(self, w: li.Waiter, deadline: float, bound: float, what: str) -> None:
        """Drive libiscsi until ``w`` completes or ``deadline`` passes."""
        lib = li.library()
        ctx = self._ctx
        hub = _loop.current()
        if hub is not None:
            try:
                why = hub.wait_iscsi(lib, ctx, lambda: w.done, deadline)
            finally:
                li.WAITERS.pop(w.token, None)
            if why == _loop.TIMEOUT and not w.done:
                raise PathTimeout(self.path, f"no answer within {bound:g} s ({what})")
            if why == _loop.LOST and not w.done:
                raise PathError(self.path, f"connection lost ({what}): {self._error()}")
            return
        try:
            poller = select.poll()
            registered = -1
            while not w.done:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise PathTimeout(self.path, f"no answer within {bound:g} s ({what})")
                fd = lib.iscsi_get_fd(ctx)
                events = lib.iscsi_which_events(ctx)
                if fd < 0 or events == 0:
                    # libiscsi asks to be left alone (e.g. a deferred reconnect): the
                    # connection is gone as far as we are concerned.
                    if w.done:
                        break
                    raise PathError(self.path, f"connection lost ({what}): {self._error()}")
                if registered != fd:
                    if registered >= 0:
                        poller.unregister(registered)
                    registered = fd
                poller.register(fd, events)  # re-register = modify
                ready = poller.poll(max(1, int(remaining * 1000) + 1))
                revents = ready[0][1] if ready else 0
                if revents & li.POLLNVAL:
                    raise PathError(self.path, f"socket closed under us ({what})")
                if lib.iscsi_service(ctx, revents) < 0 and not w.done:
                    raise PathError(self.path, f"{what}: {self._error()}")
        finally:
            li.WAITERS.pop(w.token, None)

    def _error(self) -> str:
        lib = li.loaded()
        if self._ctx is None or lib is None:
            return "no session"
        msg = lib.iscsi_get_error(self._ctx)
        return msg.decode(errors="replace").strip() if msg else "unknown libiscsi error"
