"""What a multipath flavour needs from the resolver: a way to open one path.

A Protocol, not the :class:`~hamon.lib.multipath.resolve.Resolver` itself: the resolver
dispatches to the flavours, so the flavours naming it would close a loop. Tests hand the
same resolver (with the in-memory target's openers) to every flavour.
"""
from __future__ import annotations

from typing import Protocol

from hamon.lib.transport.base import Transport


class PathOpener(Protocol):
    """Opens paths for one resolve() call with the caller's initiator and timeout."""

    timeout: float
    #: Identify each iscsi:// LUN through one URL; log in to the others only when used.
    one_path_per_lun: bool

    def open_iscsi(self, url: str) -> Transport: ...

    def open_sgio(self, dev: str) -> Transport: ...

    def multipathd_view(self) -> dict[str, tuple[str, str]]:
        """``multipathd show paths``, asked once per resolve() call."""
        ...
