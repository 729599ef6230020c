"""``iscsi://`` URLs grouped into disks by LUN identity, as multipathd groups by WWID.

Each URL is one path. Its LUN is identified by INQUIRY VPD 0x83 through that path. A URL
that cannot be reached cannot say which LUN it leads to; it joins the disk of the URLs
that name the same target IQN and LUN number (another portal of the same target), as
multipathd keeps a map whose paths all failed. When none of them answers (every path
failed: the very case the seed is about) they still make one disk, so "every path of
one disk failed" is reported once, not once per path. A failed URL is reported, never
dropped.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

from hamon.lib.disk import DeviceError, Disk, DiskKind, Path, run_parallel
from hamon.lib.scsi import command
from hamon.lib.scsi.errors import ScsiError
from hamon.lib.transport.base import PathError

if TYPE_CHECKING:
    from hamon.lib.disk import Resolver


def resolve(urls: list[str], resolver: Resolver) -> list[Disk]:
    from hamon.lib.transport.iscsi import parse_iscsi_url

    parsed = {}
    for url in urls:
        if url in parsed:
            raise DeviceError(f"{url}: listed twice; list each path once")
        try:
            parsed[url] = parse_iscsi_url(url)
        except ValueError as err:
            raise DeviceError(str(err)) from None
    paths = {url: Path(url, lambda u=url: resolver.open_iscsi(u)) for url in urls}

    def identify(url: str) -> str | None:
        try:
            return paths[url].attempt(lambda p: command.lun_identity(p.transport()))
        except (PathError, ScsiError):  # a fault marked the path failed, with the reason
            return None

    wwids = dict(zip(urls, run_parallel([lambda u=u: identify(u) for u in urls]),
                     strict=True))
    for url, w in wwids.items():
        if isinstance(w, DeviceError):
            raise w
        if isinstance(w, Exception):
            wwids[url] = None
    by_target: dict[tuple[str, int], str] = {}
    for url in urls:
        if wwids[url]:
            by_target.setdefault((parsed[url].target, parsed[url].lun), wwids[url])
    disks: dict[str, Disk] = {}
    for url in urls:
        key = wwids[url] or by_target.get((parsed[url].target, parsed[url].lun))
        group = key or f"unreachable:{parsed[url].target}/{parsed[url].lun}"
        if group not in disks:
            disks[group] = Disk(url, DiskKind.ISCSI, [], key)
        disks[group].paths.append(paths[url])
    return list(disks.values())
