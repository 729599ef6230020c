"""How an operand becomes a :class:`~hamon.lib.disk.Disk`: the one entry to path discovery.

Operands are what an administrator writes in ``scsi_device``/``dmmp_device``/``devices``:
``/dev/sdX`` or ``/dev/sgN`` (one path), ``/dev/mapper/NAME`` or ``/dev/dm-N`` (DMMP: its
slave paths), ``/dev/sddlm*`` (HDLM: its paths from ``dlnkmgr view -path``), or
``iscsi://host[:port]/iqn/lun`` URLs, which are grouped into disks by LUN identity
(INQUIRY VPD 0x83) the way multipathd groups sd devices by WWID. The flavours see the
resolver only as a :class:`~hamon.lib.multipath.opener.PathOpener`.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from hamon.lib.disk import DeviceError, Disk, split_operands
from hamon.lib.multipath import dmmp, hdlm, iscsi_group, single
from hamon.lib.transport.base import DEFAULT_TIMEOUT, Transport


@dataclass
class Resolver:
    """Turns operands into disks. ``initiator`` is this node's name for ``iscsi://``."""

    initiator: str | None = None
    timeout: float = DEFAULT_TIMEOUT
    #: Factories, replaceable in unit tests (the sim target).
    iscsi_opener: Callable[[str, str, float], Transport] | None = None
    sgio_opener: Callable[[str, float], Transport] | None = None
    #: iscsi:// URLs of one target and LUN number are identified through one of them;
    #: the others log in only when used (the fence agent: ``off`` needs one path per
    #: LUN). See hamon.lib.multipath.iscsi_group.
    one_path_per_lun: bool = False
    #: Set when RLIMIT_NOFILE could not be raised far enough (see transport.fds).
    fd_warning: str | None = None
    #: multipathd's path view, asked once per resolve() call (see multipathd_view).
    _multipathd: dict[str, tuple[str, str]] | None = field(default=None, init=False,
                                                           repr=False)

    def multipathd_view(self) -> dict[str, tuple[str, str]]:
        """``multipathd show paths`` for every DMMP operand of one resolve() call: one
        process per call, not per map (at 32 maps under QEMU TCG the per-map processes
        were 60% of a fence action). Fresh in the next resolve(): path states change."""
        if self._multipathd is None:
            self._multipathd = dmmp.multipathd_paths()
        return self._multipathd

    def open_iscsi(self, url: str) -> Transport:
        if self.iscsi_opener is not None:
            return self.iscsi_opener(url, self.initiator or "", self.timeout)
        from hamon.lib.transport.iscsi import IscsiTransport
        if not self.initiator:
            raise DeviceError(f"{url}: an iSCSI initiator name is needed for iscsi:// "
                              "devices (set iscsi_initiator)")
        return IscsiTransport(path=url, initiator=self.initiator, timeout=self.timeout)

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
        self._fd_check(len(operands))  # at least one path each, before any is opened
        try:
            disks = self._resolve(operands)
        finally:
            self._multipathd = None
        self._fd_check(sum(len(d.paths) for d in disks))
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
                disks.append(hdlm.resolve(op, self))
            elif op.startswith(("/dev/mapper/", "/dev/dm-")):
                disks.append(dmmp.resolve(op, self))
            elif op.startswith("/dev/"):
                disks.append(single.resolve(op, self))
            else:
                raise DeviceError(f"{op!r}: not a device path; give /dev/sdX, "
                                  "/dev/mapper/NAME, /dev/dm-N, /dev/sddlmXX or iscsi://...")
        if urls:
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
