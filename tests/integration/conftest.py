"""Fixtures of the integration tier: a real tgtd on loopback per test.

``tgt`` is a started :class:`tests.integration.tgt.Tgt` with two data LUNs (1 and 2) and
two portals; ``tgt_factory(luns=..)`` makes more, each stopped at the end of the test.
Every test here is skipped (not failed) where tgt cannot run: no tgtd, not root.
"""
from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.integration.tgt import Tgt, available


@pytest.fixture
def tgt_factory(tmp_path: Path) -> Iterator[Callable[..., Tgt]]:
    """Start tgtds with the given options; all are killed when the test ends."""
    why = available()
    if why:
        pytest.skip(why)
    started: list[Tgt] = []

    def make(**options: object) -> Tgt:
        t = Tgt(tmp_path / f"tgt{len(started)}", **options)  # type: ignore[arg-type]
        started.append(t)
        return t.start()

    try:
        yield make
    finally:
        for t in started:
            t.terminate()


@pytest.fixture
def tgt(tgt_factory: Callable[..., Tgt]) -> Tgt:
    """One tgtd: target DEFAULT_IQN, data LUNs 1 and 2, portals 127.0.0.1 and 127.0.0.2."""
    return tgt_factory(luns=2)
