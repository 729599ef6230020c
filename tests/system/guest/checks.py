"""A Python scenario's verdicts, one line each on stdout (the host's test reads them):
``ok(name)`` prints ``OK name``; ``check(name, cond, detail)`` prints it when ``cond``
holds, else ``FAILED name: detail`` and ends the scenario with exit 1. The shell
scenarios have the same two in guest/storage.sh.

    import os, sys; sys.path.insert(0, os.environ["HAMON_GUEST"])
    from checks import check, ok
"""

from __future__ import annotations

import sys


def ok(name: str) -> None:
    print(f"OK {name}", flush=True)


def check(name: str, cond: bool, detail: object = "") -> None:
    if not cond:
        print(f"FAILED {name}: {detail}", flush=True)
        sys.exit(1)
    ok(name)
