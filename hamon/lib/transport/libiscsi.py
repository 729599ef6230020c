"""libiscsi 1.19 (Debian ``libiscsi7``) through ctypes: the structures, prototypes and
the completion callback hamon uses, loaded once and only when a transport first needs it.

Why ctypes and not cython-iscsi: cython-iscsi 1.0 builds against libiscsi 1.19 but hands
back neither the raw sense bytes nor a way to bound the connect and login, and a fence
agent needs both. Only the *async* API is bound (connect, login, logout, SCSI command,
service/which_events/get_fd), so that every wait is ours to bound.

Raw sense. On CHECK CONDITION libiscsi 1.19 copies the SCSI Response PDU's data segment
into ``task->datain``: a 2-byte big-endian SenseLength, then the sense bytes (RFC 7143
11.4.7.2); :func:`sense_from_segment` returns exactly those ``SenseLength`` bytes, fixed
or descriptor format, unparsed. For other statuses libiscsi keeps no sense. On GOOD,
``datain`` holds the Data-In bytes actually received.
"""
from __future__ import annotations

import ctypes
import itertools
import threading

SCSI_STATUS_GOOD = 0
SCSI_STATUS_CHECK_CONDITION = 2
SCSI_STATUS_CANCELLED = 0x0F000000
SCSI_STATUS_ERROR = 0x0F000001
SCSI_STATUS_TIMEOUT = 0x0F000002
XFER_NONE, XFER_READ, XFER_WRITE = 0, 1, 2
SESSION_NORMAL = 2
POLLIN, POLLOUT, POLLERR, POLLHUP, POLLNVAL = 0x1, 0x4, 0x8, 0x10, 0x20
CDB_MAX = 16


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
        ("cdb", ctypes.c_ubyte * CDB_MAX),
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


class IscsiData(ctypes.Structure):
    """``struct iscsi_data``: the data-out buffer handed to iscsi_scsi_command_async."""

    _fields_ = [("size", ctypes.c_size_t), ("data", ctypes.c_void_p)]


_Callback = ctypes.CFUNCTYPE(None, ctypes.c_void_p, ctypes.c_int, ctypes.c_void_p,
                             ctypes.c_void_p)


class Waiter:
    """Completion of one async libiscsi operation, filled in by the C callback.

    A plain class, not a dataclass (no methods compiled at import: issue 14).
    ``error``: libiscsi's error text when the callback ran; later calls overwrite it (a
    refused connect becomes "Can not reconnect right now"), so it is taken here.
    """

    __slots__ = ("done", "error", "status", "token")

    def __init__(self, token: int = 0) -> None:
        self.token = token
        self.done = False
        self.status = 0
        self.error = ""

    def __repr__(self) -> str:
        return (f"Waiter(token={self.token}, done={self.done}, status={self.status:#x}, "
                f"error={self.error!r})")


#: Callbacks find their waiter by the token passed as private_data. One module-level C
#: callback (never garbage-collected) avoids a reference cycle through each transport
#: and stays valid when libiscsi calls it late (cancellations inside destroy_context).
WAITERS: dict[int, Waiter] = {}
TOKENS = itertools.count(1)


def _on_done(ctx: int | None, status: int, _data: int | None, private: int | None) -> None:
    waiter = WAITERS.get(private or 0)
    if waiter is not None and not waiter.done:
        waiter.status = status
        if status != SCSI_STATUS_GOOD and ctx and _lib_handle is not None:
            msg = _lib_handle.iscsi_get_error(ctx)
            waiter.error = msg.decode(errors="replace").strip() if msg else ""
        waiter.done = True


ON_DONE = _Callback(_on_done)

_lib_lock = threading.Lock()
_lib_handle: ctypes.CDLL | None = None


def library() -> ctypes.CDLL:
    """Load libiscsi once, with prototypes; only when a transport first needs it."""
    global _lib_handle
    if _lib_handle is not None:  # every command asks: no lock once loaded
        return _lib_handle
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
                                          ctypes.POINTER(IscsiData), vp]),
    }
    for fname, (restype, argtypes) in protos.items():
        fn = getattr(lib, fname)
        fn.restype = restype
        fn.argtypes = argtypes


def loaded() -> ctypes.CDLL | None:
    """The library if a transport loaded it already, else None (never loads it)."""
    return _lib_handle


def destroy(ctx: int) -> None:
    """Free a context (closes the socket, cancels its PDUs); used by close and finalizers."""
    if _lib_handle is not None and ctx:
        _lib_handle.iscsi_destroy_context(ctx)


def wire_lun(lun: int) -> int:
    """The 2-byte LUN field: peripheral addressing up to 255, flat space above (SAM-5)."""
    return lun if lun < 256 else 0x4000 | lun


def datain(task: ScsiTask) -> bytes:
    size = task.datain.size
    if size <= 0 or not task.datain.data:
        return b""
    return ctypes.string_at(task.datain.data, size)


def sense_from_segment(segment: bytes) -> bytes:
    """Sense bytes from an iSCSI SCSI Response data segment: SenseLength(2) + sense.

    libiscsi keeps the whole segment (which may carry padding or response data after
    the sense); SenseLength says where the sense ends.
    """
    if len(segment) < 2:
        return b""
    length = int.from_bytes(segment[:2], "big")
    return segment[2:2 + length]
