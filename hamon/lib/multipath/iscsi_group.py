"""``iscsi://`` URLs grouped into disks by LUN identity, as multipathd groups by WWID.

Each URL is one path. Its LUN is identified by INQUIRY VPD 0x83 through that path.

With ``PathOpener.one_path_per_lun`` (the fence agent: ``off`` needs one working path per
LUN): URLs that name the same target and LUN number are paths of one LUN (RFC 7143: a
target name is worldwide unique, the LUN number is the target's), so the LUN is
identified through the first of them only, and through the others only when that one
faults; one login per LUN. A URL not asked yet proves it leads to that LUN (INQUIRY VPD
0x83 as its first command) before it is first used; one that leads elsewhere is a
failed path. (Worst case: every path of a disk silent costs two command timeouts, the
first path's, then the others' in parallel.)

A URL that cannot be reached cannot say which LUN it leads to; it joins the disk of the
URLs that name the same target IQN and LUN number (another portal of the same target), as
multipathd keeps a map whose paths all failed. When none of them answers (every path
failed: the very case the seed is about) they still make one disk, so "every path of
one disk failed" is reported once, not once per path. A failed
URL is reported, never dropped.
"""
from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from hamon.lib import command
from hamon.lib.disk import DeviceError, Disk, DiskKind, Path, PathState, run_parallel
from hamon.lib.scsi.errors import ScsiError
from hamon.lib.transport.base import PathError

if TYPE_CHECKING:
    from hamon.lib.multipath.opener import PathOpener
    from hamon.lib.transport.base import Transport
    from hamon.lib.transport.iscsi_url import IscsiUrl


def resolve(urls: list[str], resolver: PathOpener) -> list[Disk]:
    from hamon.lib.transport.iscsi_url import parse_iscsi_url

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

    if getattr(resolver, "one_path_per_lun", False):
        return _one_path_per_lun(urls, parsed, paths, identify, resolver)
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


def _one_path_per_lun(urls: list[str], parsed: dict[str, IscsiUrl], paths: dict[str, Path],
                      identify: Callable[[str], str | None],
                      resolver: PathOpener) -> list[Disk]:
    """The lean resolve (``PathOpener.one_path_per_lun``): one login per LUN, see above."""
    groups: dict[tuple[str, int], list[str]] = {}
    for url in urls:  # RFC 7143: a target name is worldwide unique, a LUN is per target
        groups.setdefault((parsed[url].target.lower(), parsed[url].lun), []).append(url)

    def group_identity(members: list[str]) -> str | None:
        """Identify the group through its first URL; only if that path faults, through
        the others (in parallel). The URLs not asked are checked when first used."""
        first = identify(members[0])
        if first is not None or len(members) == 1:
            return first
        rest = [w for w in run_parallel([lambda u=u: identify(u) for u in members[1:]])
                if isinstance(w, str)]
        return rest[0] if rest else None

    found = run_parallel([lambda m=m: group_identity(m) for m in groups.values()])
    for w in found:
        if isinstance(w, DeviceError):
            raise w
    disks: list[Disk] = []
    for (target, lun), members, w in zip(groups, groups.values(), found, strict=True):
        wwid = w if isinstance(w, str) else None
        for url in members:
            if wwid is not None and paths[url].state is not PathState.UP:
                # not asked yet: it must prove it leads to this LUN before its first use
                paths[url].opener = _verified(resolver, url, wwid, f"{target}/{lun}")
        disks.append(Disk(members[0], DiskKind.ISCSI, [paths[u] for u in members], wwid))
    return disks

def _verified(resolver: PathOpener, url: str, wwid: str, what: str) -> Callable[[], Transport]:
    """An opener whose first command is INQUIRY VPD 0x83: a URL that does not lead to
    the LUN its target name and LUN number promise is a failed path, never used."""

    def open_() -> Transport:
        t = resolver.open_iscsi(url)
        try:
            got = command.lun_identity(t)
        except BaseException:
            t.close()
            raise
        if got != wwid:
            t.close()
            raise PathError(url, f"leads to LUN {got}, not to {wwid} like the other "
                            f"paths of {what}")
        return t

    return open_

