"""SG_IO transport: one CDB to /dev/sdX, /dev/sgN or /dev/dm-N through the kernel.

Pure Python: the ``sg_io_hdr`` (sg v3 interface, <scsi/sg.h>) is a ctypes structure and
``fcntl.ioctl(fd, SG_IO, hdr, True)`` sends it. CPython copies a mutable argument of up to
1024 bytes (ours: 88) into a local buffer and releases the GIL around that ioctl, so
ioctls in several helper threads wait in parallel. Inside an action's loop
(:mod:`hamon.lib.transport.loop`) the job waits for its helper thread through the loop,
so the jobs of every path run on one thread and only the ioctls themselves in helpers.
The pointers inside the header refer to ctypes buffers owned by this module: the kernel
reads the CDB and data-out from them and writes sense and data-in into them.

No dataclass here (docs/architecture.md, "What a fence loads").

Why not cython-sgio: a fixed 30-minute timeout and no status byte.

Outcome mapping (see :meth:`SgioTransport.execute`):

* ``host_status`` != 0 means the command never got a SCSI answer through this path
  (DID_NO_CONNECT, DID_TRANSPORT_FAILFAST from an iSCSI/FC session that is down, ...):
  :class:`PathError`, or :class:`PathTimeout` for DID_TIME_OUT. ``driver_status`` other
  than DRIVER_SENSE (which only says "sense is attached") is treated the same way.
* Otherwise ``status`` is the SCSI status byte, ``sense`` the ``sb_len_wr`` bytes the
  kernel wrote, ``data`` the first ``dxfer_len - resid`` bytes.
* An errno from the ioctl itself (ENOTTY: not a SCSI device; EIO/ENXIO: the device or
  every path of a multipath map is gone) is a :class:`PathError` that names the device.

Time bound: ``timeout`` goes into ``sg_io_hdr.timeout`` (ms), which makes the kernel abort
the command. The SCSI error handler can still keep the ioctl from returning for longer
(abort, reset, a dm map queueing I/O with no path), and no signal interrupts it. So the
ioctl runs in a helper thread and :meth:`execute` gives up after ``timeout +
HARD_GRACE`` with PathTimeout; the abandoned thread keeps the buffers and the file
descriptor alive until the kernel lets go, then closes it. The transport itself opens a
new descriptor for its next command.
"""
from __future__ import annotations

import ctypes
import errno
import fcntl
import os
import stat
import threading
import time
from collections.abc import Callable
from typing import NamedTuple

from hamon.lib.transport import loop as _loop
from hamon.lib.transport.base import (
    DEFAULT_TIMEOUT,
    CommandResult,
    OpenError,
    PathError,
    PathTimeout,
    Transport,
)

SG_IO = 0x2285
SG_INTERFACE_ID = ord("S")
SG_DXFER_NONE = -1
SG_DXFER_TO_DEV = -2
SG_DXFER_FROM_DEV = -3
#: SPC allows up to 252 bytes of sense data; the header field is one byte.
MAX_SENSE = 252
#: How long past the kernel's own timeout we wait for the ioctl to come back.
HARD_GRACE = 1.0
CDB_MAX = 260  # the kernel accepts up to 260 bytes (variable-length CDBs)

#: Host status codes (include/scsi/scsi_status.h, "DID_*"), for messages.
HOST_STATUS = {
    0x00: "DID_OK", 0x01: "DID_NO_CONNECT", 0x02: "DID_BUS_BUSY", 0x03: "DID_TIME_OUT",
    0x04: "DID_BAD_TARGET", 0x05: "DID_ABORT", 0x06: "DID_PARITY", 0x07: "DID_ERROR",
    0x08: "DID_RESET", 0x09: "DID_BAD_INTR", 0x0A: "DID_PASSTHROUGH",
    0x0B: "DID_SOFT_ERROR", 0x0C: "DID_IMM_RETRY", 0x0D: "DID_REQUEUE",
    0x0E: "DID_TRANSPORT_DISRUPTED", 0x0F: "DID_TRANSPORT_FAILFAST",
    0x10: "DID_TARGET_FAILURE", 0x11: "DID_NEXUS_FAILURE", 0x12: "DID_ALLOC_FAILURE",
    0x13: "DID_MEDIUM_ERROR", 0x14: "DID_TRANSPORT_MARGINAL",
}
DID_TIME_OUT = 0x03
#: Driver status (low nibble): DRIVER_SENSE only flags attached sense; DRIVER_TIMEOUT.
DRIVER_SENSE = 0x08
DRIVER_TIMEOUT = 0x06

_DEVICE_HINT = "give /dev/sdX, /dev/sgN or a multipath map (/dev/dm-N, /dev/mapper/NAME)"


class SgIoHdr(ctypes.Structure):
    """``struct sg_io_hdr`` from <scsi/sg.h> (88 bytes on 64-bit Linux)."""

    _fields_ = [
        ("interface_id", ctypes.c_int),
        ("dxfer_direction", ctypes.c_int),
        ("cmd_len", ctypes.c_ubyte),
        ("mx_sb_len", ctypes.c_ubyte),
        ("iovec_count", ctypes.c_ushort),
        ("dxfer_len", ctypes.c_uint),
        ("dxferp", ctypes.c_void_p),
        ("cmdp", ctypes.c_void_p),
        ("sbp", ctypes.c_void_p),
        ("timeout", ctypes.c_uint),
        ("flags", ctypes.c_uint),
        ("pack_id", ctypes.c_int),
        ("usr_ptr", ctypes.c_void_p),
        ("status", ctypes.c_ubyte),
        ("masked_status", ctypes.c_ubyte),
        ("msg_status", ctypes.c_ubyte),
        ("sb_len_wr", ctypes.c_ubyte),
        ("host_status", ctypes.c_ushort),
        ("driver_status", ctypes.c_ushort),
        ("resid", ctypes.c_int),
        ("duration", ctypes.c_uint),
        ("info", ctypes.c_uint),
    ]


class SgRequest(NamedTuple):
    """One prepared SG_IO call: the header and the buffers its pointers refer to.

    Keeping them together matters: the buffers must live as long as the kernel may
    touch them, which for an abandoned ioctl is longer than :meth:`execute`.
    """

    hdr: SgIoHdr
    cdb: ctypes.Array
    sense: ctypes.Array
    data: ctypes.Array | None


def build_request(cdb: bytes, data_out: bytes | None, data_in_len: int,
                  timeout: float) -> SgRequest:
    """Fill an ``sg_io_hdr`` for one command (pure: unit-tested on any host)."""
    if not 1 <= len(cdb) <= CDB_MAX:
        raise ValueError(f"CDB of {len(cdb)} bytes: SG_IO takes 1..{CDB_MAX}")
    if data_out is not None and data_in_len:
        raise ValueError("bidirectional commands are not supported")
    if data_in_len < 0:
        raise ValueError("data_in_len must not be negative")
    cdb_buf = ctypes.create_string_buffer(bytes(cdb), len(cdb))
    sense_buf = ctypes.create_string_buffer(MAX_SENSE)
    hdr = SgIoHdr()
    hdr.interface_id = SG_INTERFACE_ID
    hdr.cmd_len = len(cdb)
    hdr.cmdp = ctypes.addressof(cdb_buf)
    hdr.mx_sb_len = MAX_SENSE
    hdr.sbp = ctypes.addressof(sense_buf)
    # The kernel treats 0 as its default (60 s); never ask for that by accident.
    hdr.timeout = max(1, min(int(timeout * 1000), 0xFFFFFFFE))
    data_buf = None
    if data_out is not None:
        data_buf = ctypes.create_string_buffer(bytes(data_out), max(1, len(data_out)))
        hdr.dxfer_direction = SG_DXFER_TO_DEV
        hdr.dxfer_len = len(data_out)
        hdr.dxferp = ctypes.addressof(data_buf)
    elif data_in_len:
        data_buf = ctypes.create_string_buffer(data_in_len)
        hdr.dxfer_direction = SG_DXFER_FROM_DEV
        hdr.dxfer_len = data_in_len
        hdr.dxferp = ctypes.addressof(data_buf)
    else:
        hdr.dxfer_direction = SG_DXFER_NONE
    return SgRequest(hdr, cdb_buf, sense_buf, data_buf)


def decode_result(path: str, req: SgRequest) -> CommandResult:
    """Turn a completed header into a CommandResult, or PathError if no SCSI answer came."""
    hdr = req.hdr
    if hdr.host_status:
        name = HOST_STATUS.get(hdr.host_status, f"host status {hdr.host_status:#x}")
        cls = PathTimeout if hdr.host_status == DID_TIME_OUT else PathError
        raise cls(path, f"no SCSI answer: {name} (host_status={hdr.host_status:#x})")
    driver = hdr.driver_status & 0x0F
    if driver not in (0, DRIVER_SENSE):
        cls = PathTimeout if driver == DRIVER_TIMEOUT else PathError
        raise cls(path, f"no SCSI answer: driver_status={hdr.driver_status:#x}")
    sense = ctypes.string_at(req.sense, min(hdr.sb_len_wr, MAX_SENSE))
    data = b""
    if hdr.dxfer_direction == SG_DXFER_FROM_DEV and req.data is not None:
        got = max(0, min(hdr.dxfer_len, hdr.dxfer_len - hdr.resid))
        data = ctypes.string_at(req.data, got)
    return CommandResult(hdr.status, sense=sense, data=data)


def open_device(path: str) -> int:
    """Open a SCSI device node for SG_IO; PathError saying what is wrong and what to do.

    O_RDWR: for an opener without write access the kernel's SG_IO command filter lets
    only "safe" read-type commands through, and PERSISTENT RESERVE OUT and WRITE are not
    among them (CAP_SYS_RAWIO bypasses the filter, O_RDWR does not depend on it).
    O_NONBLOCK: open must not wait, neither for an sg device held with O_EXCL by someone
    else nor for a removable medium; sg3_utils (sg_persist) opens the same way.
    No O_EXCL: a disk under a multipath map or a file system is legitimately in use.
    """
    try:
        fd = os.open(path, os.O_RDWR | os.O_NONBLOCK | os.O_CLOEXEC)
    except FileNotFoundError:
        raise OpenError(path, "no such device: check the name; a path that was removed "
                        f"(e.g. a failed iSCSI session) disappears from /dev; {_DEVICE_HINT}"
                        ) from None
    except PermissionError:
        raise OpenError(path, "permission denied: SG_IO needs root (or CAP_SYS_RAWIO and "
                        "write access to the device node)") from None
    except IsADirectoryError:
        raise OpenError(path, f"is a directory, not a device: {_DEVICE_HINT}") from None
    except OSError as err:
        raise OpenError(path, f"cannot open: {_errno_text(err.errno)}{_gone_hint(err.errno)}"
                        ) from None
    mode = os.fstat(fd).st_mode
    if not (stat.S_ISBLK(mode) or stat.S_ISCHR(mode)):
        os.close(fd)
        kind = "a regular file" if stat.S_ISREG(mode) else "not a device"
        raise OpenError(path, f"is {kind}, not a block or SCSI generic device: "
                        f"{_DEVICE_HINT}")
    return fd


def _errno_text(code: int | None) -> str:
    if code is None:
        return "unknown error"
    return f"{os.strerror(code)} ({errno.errorcode.get(code, code)})"


def _gone_hint(code: int | None) -> str:
    if code in (errno.ENXIO, errno.ENODEV, errno.EIO):
        return ": the device is gone or has no usable path (check multipath -ll / lsscsi)"
    return ""


def ioctl_error(path: str, code: int | None) -> PathError:
    """PathError for an errno from the SG_IO ioctl itself."""
    if code == errno.ENOTTY:
        return PathError(path, f"does not accept SG_IO ({_errno_text(code)}): not a SCSI "
                         f"device; {_DEVICE_HINT}")
    if code in (errno.EPERM, errno.EACCES):
        return PathError(path, f"SG_IO refused ({_errno_text(code)}): the command needs "
                         "root/CAP_SYS_RAWIO or a device opened for writing")
    return PathError(path, f"SG_IO failed: {_errno_text(code)}{_gone_hint(code)}")


def _sg_io(fd: int, hdr: SgIoHdr) -> None:
    """The one system call; a module-level function so tests can replace it."""
    fcntl.ioctl(fd, SG_IO, hdr, True)


class _Call:
    """State shared between execute() and the thread running one ioctl. ``notify`` is
    called after ``done`` is set: it wakes the action's poll loop
    (hamon.lib.transport.loop)."""

    __slots__ = ("abandoned", "done", "error", "fd", "lock", "notify", "req")

    def __init__(self, fd: int, req: SgRequest,
                 notify: Callable[[], None] | None = None) -> None:
        self.fd = fd
        self.req = req
        self.done = threading.Event()
        self.error: OSError | None = None
        self.abandoned = False
        self.lock = threading.Lock()
        self.notify = notify

    def run(self) -> None:
        try:
            _sg_io(self.fd, self.req.hdr)
        except OSError as err:
            self.error = err
        with self.lock:
            self.done.set()
            if self.abandoned:  # execute() gave up on us: the descriptor is ours
                os.close(self.fd)
        if self.notify is not None:
            self.notify()


class SgioTransport(Transport):
    """SG_IO on one device node (one path, or a multipath map as one path)."""

    def __init__(self, path: str, timeout: float = DEFAULT_TIMEOUT) -> None:
        super().__init__(path, timeout)
        self._fd: int | None = None
        self._lock = threading.Lock()

    def execute(self, cdb: bytes, data_out: bytes | None = None, data_in_len: int = 0,
                timeout: float | None = None) -> CommandResult:
        """Send one CDB; returns within ``timeout + HARD_GRACE`` whatever the kernel does."""
        bound = self.timeout if timeout is None else timeout
        req = build_request(cdb, data_out, data_in_len, bound)
        hub = _loop.current()
        _loop.acquire(self._lock)
        try:
            if self._closed:
                raise PathError(self.path, "transport is closed")
            if self._fd is None:
                self._fd = open_device(self.path)
            call = _Call(self._fd, req, notify=hub.wake if hub is not None else None)
            worker = threading.Thread(target=call.run, name=f"sgio {self.path}", daemon=True)
            worker.start()
            if hub is not None:  # the action's loop waits for this and every other path
                hub.wait_thread(call.done, time.monotonic() + bound + HARD_GRACE)
            if not call.done.wait(0 if hub is not None else bound + HARD_GRACE):
                with call.lock:
                    if not call.done.is_set():
                        call.abandoned = True
                        self._fd = None  # the worker closes it when the kernel returns
                        raise PathTimeout(self.path, f"SG_IO did not return within "
                                          f"{bound + HARD_GRACE:g} s (kernel error handling "
                                          "or a multipath map queueing I/O?)")
            if call.error is not None:
                err = ioctl_error(self.path, call.error.errno)
                self._close_fd()
                raise err
            return decode_result(self.path, req)
        finally:
            self._lock.release()

    @property
    def target_id(self) -> str | None:
        """The SCSI vendor and product (the kernel's copy of the standard INQUIRY in
        sysfs, no command sent) of the device or of a multipath map's first path: what
        one LUN of a storage product taught about its PR behaviour holds for the rest of
        that action's LUNs of the same product. None when sysfs does not say."""
        return _vendor_product(self.path)

    def close(self) -> None:
        _loop.acquire(self._lock)
        try:
            self._close_fd()
            super().close()
        finally:
            self._lock.release()

    def _close_fd(self) -> None:
        if self._fd is not None:
            fd, self._fd = self._fd, None
            os.close(fd)


def _vendor_product(dev: str) -> str | None:
    """``scsi:<vendor>/<product>`` from sysfs for /dev/sdX, /dev/sgN or a dm map."""
    name = os.path.basename(os.path.realpath(dev))
    for base in (f"/sys/class/scsi_generic/{name}/device", f"/sys/block/{name}/device"):
        if os.path.isdir(base):
            break
    else:
        slaves = f"/sys/block/{name}/slaves"
        try:
            first = sorted(os.listdir(slaves))[0]
        except (OSError, IndexError):
            return None
        base = f"/sys/block/{first}/device"
    try:
        with open(f"{base}/vendor") as v, open(f"{base}/model") as m:
            return f"scsi:{v.read().strip()}/{m.read().strip()}"
    except OSError:
        return None
