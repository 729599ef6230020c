"""Userspace iSCSI transport: libiscsi (Debian ``libiscsi7``, 1.19) through ctypes.

Why ctypes and not cython-iscsi: cython-iscsi 1.0 builds against libiscsi 1.19 but hands
back neither the raw sense bytes nor a way to bound the connect and login, and a fence
agent needs both. Here every libiscsi call is made through ctypes.

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

Stable initiator port. SPC-4 identifies a registrant by its I_T nexus; for iSCSI the
initiator port is the initiator name plus the ISID. libiscsi gives every context a
pseudo-random ISID, so a registration made by one process is invisible to the next (this
is ClusterLabs/fence-agents#517 and #576 for fence_scsi). We set the ISID ourselves,
deterministically, see :func:`derive_isid`: the same initiator name and the same path
(host, port, target, LUN) give the same ISID in every process. The LUN is part of it so
that transports to two LUNs of one target through one portal are two sessions: RFC 7143
lets a login with the ISID of a live session reinstate it (close the older one), as LIO
does. Rule for callers: one live transport per (initiator, path) at a time.

Two tgt 1.0.85 facts (verified, see tests/integration): tgt does not reinstate here,
because libiscsi without CHAP starts the login in the operational stage and tgt only
looks for a live session with the same ISID in the security stage; and tgt binds a PR
registration to the session instance (TSIH + creation time), not to name + ISID, so on
tgt a new session is never the old registrant, whatever its ISID.

Raw sense. On CHECK CONDITION libiscsi 1.19 copies the SCSI Response PDU's data segment
into ``task->datain``: a 2-byte big-endian SenseLength, then the sense bytes (RFC 7143
11.4.7.2). :meth:`IscsiTransport.execute` returns exactly those ``SenseLength`` bytes,
fixed or descriptor format, unparsed. For other statuses libiscsi keeps no sense, so
``sense`` is empty. On GOOD, ``datain`` holds the Data-In bytes actually received.
"""
from __future__ import annotations

import contextlib
import ctypes
import ipaddress
import itertools
import os
import re
import select
import socket
import threading
import time
import weakref
from collections.abc import Callable
from dataclasses import dataclass, field

from hamon.lib.transport import loop as _loop
from hamon.lib.transport.base import CommandResult, PathError, PathTimeout, Transport

try:  # the builtin SHA-256: hashlib would load OpenSSL (milliseconds at every start)
    from _sha256 import sha256 as _sha256  # type: ignore[import-not-found]
except ImportError:  # pragma: no cover - other Python builds
    try:
        from _sha2 import sha256 as _sha256  # type: ignore[import-not-found,no-redef]
    except ImportError:
        from hashlib import sha256 as _sha256  # type: ignore[assignment]

ISCSI_PORT = 3260
#: The most a close() waits for the target to acknowledge a logout.
LOGOUT_BOUND = 2.0
#: Set to a libiscsi log level (1-10) to have libiscsi log to stderr.
DEBUG_ENV = "HAMON_ISCSI_DEBUG"

# --------------------------------------------------------------------------- URLs

_URL_RE = re.compile(r"^iscsi://(?P<authority>[^/]*)/(?P<target>[^/]*)/(?P<lun>[^/]*)$",
                     re.IGNORECASE)
_HOST_RE = re.compile(r"^(?=.{1,253}$)[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?"
                      r"(\.[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?)*$")
#: Only the type prefix is checked (RFC 7143 names start with iqn., eui. or naa.): targets
#: accept looser names than the RFC's, and the prefix alone catches a forgotten target.
_NAME_RE = re.compile(r"^(iqn|eui|naa)\.\S+$", re.IGNORECASE)
#: SAM-5 flat space addressing reaches LUN 16383; libiscsi sends a 2-byte LUN field.
MAX_LUN = 16383
_EXAMPLE = "iscsi://192.0.2.10:3260/iqn.2003-01.org.example:disk1/1"


@dataclass(frozen=True)
class IscsiUrl:
    """One path to one LUN: ``iscsi://host[:port]/target-iqn/lun``.

    ``host`` is kept without brackets (``::1``, not ``[::1]``); :attr:`portal` adds them
    back where libiscsi wants them.
    """

    host: str
    port: int
    target: str
    lun: int

    @property
    def portal(self) -> str:
        """``host:port`` as libiscsi's connect expects it (IPv6 in brackets)."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"

    def __str__(self) -> str:
        return f"iscsi://{self.portal}/{self.target}/{self.lun}"


def parse_iscsi_url(url: str) -> IscsiUrl:
    """Parse ``iscsi://host[:port]/target-iqn/lun``; ValueError says what is wrong.

    Credentials (``user%pass@``) are refused rather than ignored: CHAP is not supported
    here, and a silently dropped password would make a login fail with a vaguer error.
    """
    def bad(why: str) -> ValueError:
        return ValueError(f"malformed iSCSI URL {url!r}: {why} (expected e.g. {_EXAMPLE})")

    if not isinstance(url, str):
        raise ValueError(f"malformed iSCSI URL {url!r}: not a string")
    if not url.lower().startswith("iscsi://"):
        raise bad("it must start with iscsi://")
    if any(c.isspace() for c in url):
        raise bad("it contains white space")
    if "?" in url or "#" in url:
        raise bad("query strings and fragments are not allowed")
    m = _URL_RE.match(url)
    if m is None:
        raise bad("it must have exactly three parts after iscsi://: host[:port], "
                  "target name and LUN, separated by '/'")
    authority, target, lun_text = m["authority"], m["target"], m["lun"]
    if "@" in authority:
        raise bad("credentials in the URL are not supported (no CHAP)")
    host, port = _split_authority(authority, bad)
    if not target:
        raise bad("the target name is missing")
    if not _NAME_RE.match(target):
        raise bad(f"target name {target!r} is not an iSCSI name (it must start with "
                  "iqn., eui. or naa.)")
    if not lun_text.isdigit() or not lun_text.isascii():
        raise bad(f"LUN {lun_text!r} is not a decimal number")
    lun = int(lun_text)
    if lun > MAX_LUN:
        raise bad(f"LUN {lun} is out of range 0..{MAX_LUN}")
    return IscsiUrl(host=host, port=port, target=target, lun=lun)


def _split_authority(authority: str, bad: Callable[[str], ValueError]) -> tuple[str, int]:
    """``host``, ``host:port``, ``[v6]`` or ``[v6]:port`` -> (host, port)."""
    port_text = ""
    if authority.startswith("["):
        end = authority.find("]")
        if end < 0:
            raise bad("an IPv6 address must be closed with ']'")
        host, rest = authority[1:end], authority[end + 1:]
        if rest:
            if not rest.startswith(":"):
                raise bad(f"unexpected {rest!r} after the IPv6 address")
            port_text = rest[1:]
            if not port_text:
                raise bad("the port after ':' is empty")
        try:
            host = ipaddress.IPv6Address(host).compressed
        except ValueError:
            raise bad(f"{host!r} is not an IPv6 address") from None
    else:
        if authority.count(":") > 1:
            raise bad("an IPv6 address must be written in brackets, e.g. [::1]:3260")
        host, sep, port_text = authority.partition(":")
        if sep and not port_text:
            raise bad("the port after ':' is empty")
        if not host:
            raise bad("the host is missing")
        if not _HOST_RE.match(host):
            raise bad(f"{host!r} is not a host name or IPv4 address")
        host = host.lower()
    if not port_text:
        return host, ISCSI_PORT
    if not port_text.isdigit() or not port_text.isascii():
        raise bad(f"port {port_text!r} is not a number")
    port = int(port_text)
    if not 1 <= port <= 65535:
        raise bad(f"port {port} is out of range 1..65535")
    return host, port


def derive_isid(initiator: str, url: IscsiUrl, role: str = "") -> bytes:
    """The 6-byte ISID this initiator uses on this path, the same in every process.

    ``role`` names a second, independent I_T nexus of the same initiator on the same path
    (e.g. a watchdog that only reads keys while the agent may be running): a login with
    the agent's ISID would reinstate, i.e. close, the agent's live session on targets
    that implement reinstatement. The empty role is the node's own nexus, unchanged.

    Format "random" (RFC 7143 11.12.5: T=10b in the top bits of byte 0, then 24 bits,
    then a 16-bit qualifier); all 40 bits come from SHA-256 over the lower-cased initiator
    name (iSCSI names compare case-insensitively) and the normalized path. 40 bits make
    a collision between two paths of one node to one target negligible, and a collision
    would only cost a session reinstatement, never a wrong registration.
    """
    parts = ["hamon-isid-v1", initiator.lower(), url.host.lower(), str(url.port),
             url.target.lower(), str(url.lun)]
    if role:
        parts.append(role)
    text = "\0".join(parts)
    digest = _sha256(text.encode()).digest()
    return bytes([0x80]) + digest[:5]


# ---------------------------------------------------------------------- libiscsi ABI

SCSI_STATUS_GOOD = 0
SCSI_STATUS_CHECK_CONDITION = 2
SCSI_STATUS_CANCELLED = 0x0F000000
SCSI_STATUS_ERROR = 0x0F000001
SCSI_STATUS_TIMEOUT = 0x0F000002
_XFER_NONE, _XFER_READ, _XFER_WRITE = 0, 1, 2
_SESSION_NORMAL = 2
_POLLIN, _POLLOUT, _POLLERR, _POLLHUP, _POLLNVAL = 0x1, 0x4, 0x8, 0x10, 0x20
_CDB_MAX = 16


class _ScsiData(ctypes.Structure):
    _fields_ = [("size", ctypes.c_int), ("data", ctypes.POINTER(ctypes.c_ubyte))]


class _ScsiIovector(ctypes.Structure):
    _fields_ = [("iov", ctypes.c_void_p), ("niov", ctypes.c_int), ("nalloc", ctypes.c_int),
                ("offset", ctypes.c_size_t), ("consumed", ctypes.c_int)]


class ScsiTask(ctypes.Structure):
    """``struct scsi_task`` of libiscsi 1.19 (scsi-lowlevel.h), as far as we read it.

    ``struct scsi_sense`` (16 bytes, 4-aligned, with bit fields) is opaque here: we read
    the raw sense instead. tests/unit checks these offsets against the C header.
    """

    _fields_ = [
        ("status", ctypes.c_int),
        ("cdb_size", ctypes.c_int),
        ("xfer_dir", ctypes.c_int),
        ("expxferlen", ctypes.c_int),
        ("cdb", ctypes.c_ubyte * _CDB_MAX),
        ("residual_status", ctypes.c_int),
        ("residual", ctypes.c_size_t),
        ("sense", ctypes.c_uint32 * 4),
        ("datain", _ScsiData),
        ("mem", ctypes.c_void_p),
        ("ptr", ctypes.c_void_p),
        ("itt", ctypes.c_uint32),
        ("cmdsn", ctypes.c_uint32),
        ("lun", ctypes.c_uint32),
        ("iovector_in", _ScsiIovector),
        ("iovector_out", _ScsiIovector),
    ]


class _IscsiData(ctypes.Structure):
    """``struct iscsi_data``: the data-out buffer handed to iscsi_scsi_command_async."""

    _fields_ = [("size", ctypes.c_size_t), ("data", ctypes.c_void_p)]


_Callback = ctypes.CFUNCTYPE(None, ctypes.c_void_p, ctypes.c_int, ctypes.c_void_p,
                             ctypes.c_void_p)


@dataclass
class _Waiter:
    """Completion of one async libiscsi operation, filled in by the C callback."""

    token: int = 0
    done: bool = False
    status: int = 0
    #: libiscsi's error text when the callback ran; later calls overwrite it (a refused
    #: connect becomes "Can not reconnect right now"), so it is taken here.
    error: str = ""


#: Callbacks find their waiter by the token passed as private_data. One module-level C
#: callback (never garbage-collected) avoids a reference cycle through each transport
#: and stays valid when libiscsi calls it late (cancellations inside destroy_context).
_waiters: dict[int, _Waiter] = {}
_tokens = itertools.count(1)


def _on_done(ctx: int | None, status: int, _data: int | None, private: int | None) -> None:
    waiter = _waiters.get(private or 0)
    if waiter is not None and not waiter.done:
        waiter.status = status
        if status != SCSI_STATUS_GOOD and ctx and _lib_handle is not None:
            msg = _lib_handle.iscsi_get_error(ctx)
            waiter.error = msg.decode(errors="replace").strip() if msg else ""
        waiter.done = True


_ON_DONE = _Callback(_on_done)

_lib_lock = threading.Lock()
_lib_handle: ctypes.CDLL | None = None


def _lib() -> ctypes.CDLL:
    """Load libiscsi once, with prototypes; only when a transport first needs it."""
    global _lib_handle
    with _lib_lock:
        if _lib_handle is None:
            lib = _load()
            _prototypes(lib)
            _lib_handle = lib
        return _lib_handle


#: Sonames tried in order before asking ctypes.util (which forks ldconfig/gcc: ~10 ms).
SONAMES = ("libiscsi.so.7", "libiscsi.so.9", "libiscsi.so")


def _load() -> ctypes.CDLL:
    """The library by its soname (no fork); ctypes.util.find_library only as a fallback."""
    for name in SONAMES:
        try:
            return ctypes.CDLL(name, use_errno=True)
        except OSError:
            continue
    from ctypes import util
    name = util.find_library("iscsi")
    if name is None:
        raise OSError("libiscsi not found (tried " + ", ".join(SONAMES) + ")")
    return ctypes.CDLL(name, use_errno=True)


def _prototypes(lib: ctypes.CDLL) -> None:
    vp, ci, cs, u32 = ctypes.c_void_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint32
    protos: dict[str, tuple[object, list[object]]] = {
        "iscsi_create_context": (vp, [cs]),
        "iscsi_destroy_context": (ci, [vp]),
        "iscsi_set_targetname": (ci, [vp, cs]),
        "iscsi_set_session_type": (ci, [vp, ci]),
        "iscsi_set_noautoreconnect": (None, [vp, ci]),
        "iscsi_set_isid_random": (ci, [vp, u32, u32]),
        "iscsi_connect_async": (ci, [vp, cs, _Callback, vp]),
        "iscsi_login_async": (ci, [vp, _Callback, vp]),
        "iscsi_logout_async": (ci, [vp, _Callback, vp]),
        "iscsi_get_fd": (ci, [vp]),
        "iscsi_which_events": (ci, [vp]),
        "iscsi_service": (ci, [vp, ci]),
        "iscsi_get_error": (cs, [vp]),
        "iscsi_is_logged_in": (ci, [vp]),
        "iscsi_set_log_level": (None, [vp, ci]),
        "iscsi_set_log_fn": (None, [vp, vp]),
        "scsi_create_task": (ctypes.POINTER(ScsiTask), [ci, ctypes.c_char_p, ci, ci]),
        "scsi_free_scsi_task": (None, [ctypes.POINTER(ScsiTask)]),
        "iscsi_scsi_command_async": (ci, [vp, ci, ctypes.POINTER(ScsiTask), _Callback,
                                          ctypes.POINTER(_IscsiData), vp]),
    }
    for fname, (restype, argtypes) in protos.items():
        fn = getattr(lib, fname)
        fn.restype = restype
        fn.argtypes = argtypes


def _destroy(ctx: int) -> None:
    """Free a context (closes the socket, cancels its PDUs); used by close and finalizers."""
    if _lib_handle is not None and ctx:
        _lib_handle.iscsi_destroy_context(ctx)


# ------------------------------------------------------------------------- transport

@dataclass
class IscsiTransport(Transport):
    """One iSCSI session (one I_T nexus) to one LUN, opened on the first command.

    ``path`` is the URL, ``initiator`` this node's iSCSI name (required; deriving it from
    a node name is the caller's business). One thread at a time per transport (a lock
    enforces it); any number of transports in parallel threads.
    """

    initiator: str = ""
    #: A second nexus of this initiator on this path (see :func:`derive_isid`); "" = the
    #: node's own, registered one.
    role: str = ""
    url: IscsiUrl = field(init=False)
    isid: bytes = field(init=False)
    _ctx: int | None = field(default=None, init=False, repr=False)
    _finalizer: weakref.finalize | None = field(default=None, init=False, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, init=False, repr=False)
    _alive_poll: tuple[int, select.poll] | None = field(default=None, init=False,
                                                        repr=False)

    def __post_init__(self) -> None:
        self.url = parse_iscsi_url(self.path)
        if not self.initiator or any(c.isspace() for c in self.initiator):
            raise ValueError(f"{self.path}: an iSCSI initiator name without spaces is "
                             f"required, got {self.initiator!r}")
        self.isid = derive_isid(self.initiator, self.url, self.role)

    # -- public ------------------------------------------------------------------

    def execute(self, cdb: bytes, data_out: bytes | None = None, data_in_len: int = 0,
                timeout: float | None = None) -> CommandResult:
        """Send one CDB through the session (logging in first if needed), within ``timeout``.

        The bound covers connect + login + command: whatever happens, this returns or
        raises within ``timeout`` seconds (plus scheduling noise).
        """
        if not 1 <= len(cdb) <= _CDB_MAX:
            raise ValueError(f"CDB of {len(cdb)} bytes: libiscsi sends 1..{_CDB_MAX}")
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
            lib = _lib()
        except OSError as err:
            raise PathError(self.path, f"cannot load libiscsi ({err}): install the "
                            "libiscsi7 package") from None
        ctx = lib.iscsi_create_context(self.initiator.encode())
        if not ctx:
            raise PathError(self.path, "libiscsi could not create a context")
        self._ctx = ctx
        self._finalizer = weakref.finalize(self, _destroy, ctx)
        level = os.environ.get(DEBUG_ENV, "")
        if level.isdigit():
            lib.iscsi_set_log_level(ctx, int(level))
            lib.iscsi_set_log_fn(ctx, ctypes.cast(lib.iscsi_log_to_stderr, ctypes.c_void_p))
        lib.iscsi_set_targetname(ctx, self.url.target.encode())
        lib.iscsi_set_session_type(ctx, _SESSION_NORMAL)
        lib.iscsi_set_noautoreconnect(ctx, 1)
        rnd = int.from_bytes(self.isid[1:4], "big")
        qualifier = int.from_bytes(self.isid[4:6], "big")
        lib.iscsi_set_isid_random(ctx, rnd, qualifier)

        portal = self.url.portal
        w = self._start(lambda t: lib.iscsi_connect_async(ctx, portal.encode(), _ON_DONE, t),
                        f"cannot connect to {portal}")
        self._wait(w, deadline, bound, f"TCP connect to {portal}")
        if w.status != SCSI_STATUS_GOOD:
            raise PathError(self.path, f"cannot connect to {portal}: {w.error or self._error()}")
        w = self._start(lambda t: lib.iscsi_login_async(ctx, _ON_DONE, t), "cannot log in")
        self._wait(w, deadline, bound, f"login to {self.url.target}")
        if w.status != SCSI_STATUS_GOOD:
            raise PathError(self.path, f"login as {self.initiator} failed: "
                            f"{w.error or self._error()}")

    def _logout(self, bound: float) -> None:
        lib = _lib()
        if self._ctx is None or not lib.iscsi_is_logged_in(self._ctx):
            return
        ctx = self._ctx
        w = self._start(lambda t: lib.iscsi_logout_async(ctx, _ON_DONE, t), "logout")
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
        lib = _lib()
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
        if revents & (_POLLERR | _POLLHUP | _POLLNVAL):
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
        if lib.iscsi_service(self._ctx, _POLLIN) != 0:
            return False
        return bool(lib.iscsi_is_logged_in(self._ctx))

    # -- command -----------------------------------------------------------------

    def _command(self, cdb: bytes, data_out: bytes | None, data_in_len: int, deadline: float,
                 bound: float) -> CommandResult:
        lib = _lib()
        ctx = self._ctx
        if data_out:
            xfer, length = _XFER_WRITE, len(data_out)
        elif data_in_len:
            xfer, length = _XFER_READ, data_in_len
        else:
            xfer, length = _XFER_NONE, 0
        task = lib.scsi_create_task(len(cdb), cdb, xfer, length)
        if not task:
            raise PathError(self.path, "libiscsi could not allocate a task")
        out_buf = ctypes.create_string_buffer(bytes(data_out or b""), max(1, length))
        out = _IscsiData(length, ctypes.cast(out_buf, ctypes.c_void_p)) if data_out else None
        w: _Waiter | None = None
        try:
            w = self._start(lambda t: lib.iscsi_scsi_command_async(
                ctx, _wire_lun(self.url.lun), task, _ON_DONE,
                ctypes.byref(out) if out is not None else None, t),
                "cannot queue the command")
            self._wait(w, deadline, bound, f"command {cdb[0]:02x}h")
            status = w.status
            if status in (SCSI_STATUS_CANCELLED, SCSI_STATUS_ERROR, SCSI_STATUS_TIMEOUT) \
                    or not 0 <= status <= 0xFF:
                raise PathError(self.path, f"command {cdb[0]:02x}h failed without a SCSI "
                                f"status: {w.error or self._error()}")
            raw = _datain(task.contents)
            if status == SCSI_STATUS_CHECK_CONDITION:
                return CommandResult(status, sense=_sense_from_segment(raw))
            return CommandResult(status, data=raw[:data_in_len] if data_in_len else b"")
        finally:
            if w is None or not w.done:
                self._drop()  # the context still points at the task: free that first
            lib.scsi_free_scsi_task(task)

    # -- event loop --------------------------------------------------------------

    def _start(self, call: Callable[[ctypes.c_void_p], int], what: str) -> _Waiter:
        """Register a waiter, call the async function with its token, check the return."""
        w = _Waiter(token=next(_tokens))
        _waiters[w.token] = w
        try:
            rc = call(ctypes.c_void_p(w.token))
        except BaseException:
            _waiters.pop(w.token, None)
            raise
        if rc != 0:
            _waiters.pop(w.token, None)
            raise PathError(self.path, f"{what}: {self._error()}")
        return w

    def _wait(self, w: _Waiter, deadline: float, bound: float, what: str) -> None:
        """Drive libiscsi until ``w`` completes or ``deadline`` passes."""
        lib = _lib()
        ctx = self._ctx
        hub = _loop.current()
        if hub is not None:
            try:
                why = hub.wait_iscsi(lib, ctx, lambda: w.done, deadline)
            finally:
                _waiters.pop(w.token, None)
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
                if revents & _POLLNVAL:
                    raise PathError(self.path, f"socket closed under us ({what})")
                if lib.iscsi_service(ctx, revents) < 0 and not w.done:
                    raise PathError(self.path, f"{what}: {self._error()}")
        finally:
            _waiters.pop(w.token, None)

    def _error(self) -> str:
        if self._ctx is None or _lib_handle is None:
            return "no session"
        msg = _lib_handle.iscsi_get_error(self._ctx)
        return msg.decode(errors="replace").strip() if msg else "unknown libiscsi error"


def _wire_lun(lun: int) -> int:
    """The 2-byte LUN field: peripheral addressing up to 255, flat space above (SAM-5)."""
    return lun if lun < 256 else 0x4000 | lun


def _datain(task: ScsiTask) -> bytes:
    size = task.datain.size
    if size <= 0 or not task.datain.data:
        return b""
    return ctypes.string_at(task.datain.data, size)


def _sense_from_segment(segment: bytes) -> bytes:
    """Sense bytes from an iSCSI SCSI Response data segment: SenseLength(2) + sense.

    libiscsi keeps the whole segment (which may carry padding or response data after
    the sense); SenseLength says where the sense ends.
    """
    if len(segment) < 2:
        return b""
    length = int.from_bytes(segment[:2], "big")
    return segment[2:2 + length]
