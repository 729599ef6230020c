"""How an operand becomes a :class:`~hamon.lib.disk.Disk`: the one entry to path discovery.

Operands are what an administrator writes in ``scsi_device``/``dmmp_device``/``devices``:
``/dev/sdX`` or ``/dev/sgN`` (one path), ``/dev/mapper/NAME`` or ``/dev/dm-N`` (DMMP: its
slave paths), ``/dev/sddlm*`` (HDLM: its paths from ``dlnkmgr view -path``), or
``iscsi://host[:port]/iqn/lun`` URLs, which are grouped into disks by LUN identity
(INQUIRY VPD 0x83) the way multipathd groups sd devices by WWID. The flavours see the
resolver only as a :class:`~hamon.lib.multipath.opener.PathOpener`.

Each flavour is imported when an operand needs it (a fence on iscsi:// URLs loads no
sysfs, DMMP or HDLM code), and the resolver is a plain class (docs/architecture.md,
"What a fence loads").
"""
from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from hamon.lib.disk import DeviceError, Disk, DiskKind, split_operands
from hamon.lib.transport.base import DEFAULT_TIMEOUT, Transport

if TYPE_CHECKING:
    from hamon.lib.transport.iscsi import SharedSessions
    from hamon.lib.transport.iscsi_session import IscsiSession


class Resolver:
    """Turns operands into disks. ``initiator`` is this node's name for ``iscsi://``.

    ``iscsi_opener``/``sgio_opener``: factories, replaceable in unit tests (the sim
    target). ``one_path_per_lun``: iscsi:// URLs of one target and LUN number are
    identified through one of them; the others log in only when used (the fence agent:
    ``off`` needs one path per LUN; see hamon.lib.multipath.iscsi_group).
    ``fd_warning`` is set when RLIMIT_NOFILE could not be raised far enough (see
    transport.fds).
    """

    def __init__(self, initiator: str | None = None, timeout: float = DEFAULT_TIMEOUT,
                 iscsi_opener: Callable[[str, str, float], Transport] | None = None,
                 sgio_opener: Callable[[str, float], Transport] | None = None,
                 one_path_per_lun: bool = False, fd_warning: str | None = None) -> None:
        self.initiator = initiator
        self.timeout = timeout
        self.iscsi_opener = iscsi_opener
        self.sgio_opener = sgio_opener
        self.one_path_per_lun = one_path_per_lun
        self.fd_warning = fd_warning
        #: multipathd's path view, asked once per resolve() call (see multipathd_view).
        self._multipathd: dict[str, tuple[str, str]] | None = None
        #: Each iscsi:// URL's sessions: those of the resolve() call that named it (one
        #: per portal and target, see transport.iscsi.SharedSessions), all from one pool.
        self._sessions_of: dict[str, SharedSessions] = {}
        self._session_pool: dict[tuple[str, str, bytes], IscsiSession] = {}

    def __repr__(self) -> str:
        return (f"Resolver(initiator={self.initiator!r}, timeout={self.timeout!r}, "
                f"one_path_per_lun={self.one_path_per_lun!r})")

    def multipathd_view(self) -> dict[str, tuple[str, str]]:
        """``multipathd show paths`` for every DMMP operand of one resolve() call: one
        process per call, not per map (at 32 maps under QEMU TCG the per-map processes
        were 60% of a fence action). Fresh in the next resolve(): path states change."""
        if self._multipathd is None:
            from hamon.lib.multipath import dmmp

            self._multipathd = dmmp.multipathd_paths()
        return self._multipathd

    def open_iscsi(self, url: str) -> Transport:
        if self.iscsi_opener is not None:
            return self.iscsi_opener(url, self.initiator or "", self.timeout)
        if not self.initiator:
            raise DeviceError(f"{url}: an iSCSI initiator name is needed for iscsi:// "
                              "devices (set iscsi_initiator)")
        sessions = self._sessions_of.get(url)
        if sessions is None:  # opened without a resolve(): its LUN alone
            sessions = self._sessions_of[url] = self._shared_sessions([url])
        return sessions.transport(url, self.timeout)

    def _shared_sessions(self, urls: list[str]) -> SharedSessions:
        """One session per portal and target for ``urls`` (the action's device list)."""
        from hamon.lib.transport.iscsi import SharedSessions
        from hamon.lib.transport.iscsi_url import parse_iscsi_url

        parsed = []
        for url in urls:
            try:
                parsed.append(parse_iscsi_url(url))
            except ValueError as err:
                raise DeviceError(str(err)) from None
        return SharedSessions(self.initiator or "", parsed, pool=self._session_pool)

    def open_sgio(self, dev: str) -> Transport:
        if self.sgio_opener is not None:
            return self.sgio_opener(dev, self.timeout)
        from hamon.lib.transport.sgio import SgioTransport
        return SgioTransport(path=dev, timeout=self.timeout)

    def resolve(self, operands: list[str] | str) -> list[Disk]:
        """All operands, as disks, in the order given (URLs grouped by LUN)."""
        if isinstance(operands, str):
            operands = split_operands(operands)
        if not operands:
            raise DeviceError("no device given: name at least one shared disk")
        self._multipathd = None
        urls = [op for op in operands if op.startswith("iscsi://")]
        sessions = len(urls)
        if urls and self.iscsi_opener is None and self.initiator:
            shared = self._shared_sessions(urls)
            self._sessions_of.update(dict.fromkeys(urls, shared))
            sessions = len(shared)
        # a descriptor per device node, per iSCSI session: before any is opened
        self._fd_check(len(operands) - len(urls) + sessions)
        try:
            disks = self._resolve(operands)
        finally:
            self._multipathd = None
        self._fd_check(sum(len(d.paths) for d in disks if d.kind is not DiskKind.ISCSI)
                       + sessions)
        return disks

    def _fd_check(self, paths: int) -> None:
        """RLIMIT_NOFILE raised for ``paths`` paths; a warning (logged, and kept in
        ``fd_warning``) when even the hard limit is not enough."""
        from hamon.lib.transport import fds

        why = fds.ensure(paths)
        if why and why != self.fd_warning:
            import logging

            self.fd_warning = why
            logging.getLogger("hamon").warning("%s", why)

    def _resolve(self, operands: list[str]) -> list[Disk]:
        disks: list[Disk] = []
        urls: list[str] = []
        for op in operands:
            if op.startswith("iscsi://"):
                urls.append(op)
            elif "://" in op:
                raise DeviceError(f"{op}: unknown URL scheme; only iscsi:// URLs or "
                                  "/dev paths are devices")
            elif op.startswith("/dev/sddlm"):
                from hamon.lib.multipath import hdlm

                disks.append(hdlm.resolve(op, self))
            elif op.startswith(("/dev/mapper/", "/dev/dm-")):
                from hamon.lib.multipath import dmmp

                disks.append(dmmp.resolve(op, self))
            elif op.startswith("/dev/"):
                from hamon.lib.multipath import single

                disks.append(single.resolve(op, self))
            else:
                raise DeviceError(f"{op!r}: not a device path; give /dev/sdX, "
                                  "/dev/mapper/NAME, /dev/dm-N, /dev/sddlmXX or iscsi://...")
        if urls:
            from hamon.lib.multipath import iscsi_group

            disks.extend(iscsi_group.resolve(urls, self))
        refuse_same_lun_twice(disks)
        return disks


def refuse_same_lun_twice(disks: list[Disk]) -> None:
    """DeviceError when two operands name one LUN (by WWID): reserving or fencing it twice
    would let the second operation undo the first. Disks without a known identity pass."""
    seen: dict[str, str] = {}
    for d in disks:
        if d.wwid and d.wwid in seen:
            raise DeviceError(f"{d.name} and {seen[d.wwid]} are the same LUN "
                              f"({d.wwid}); list each shared disk once")
        if d.wwid:
            seen[d.wwid] = d.name
