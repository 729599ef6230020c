"""SHA-256 from the interpreter's builtin module, not through :mod:`hashlib`.

Why: importing hashlib loads OpenSSL (``_hashlib``), ~3 ms at the start of every agent
process, and a fence starts in a fresh process each time. The builtin module is
``_sha256`` up to Python 3.11 and ``_sha2`` from 3.12; hashlib stays the fallback for a
build with neither. The digests are the same bytes whichever module computes them.
Used by the ISID derivation (:mod:`.iscsi_url`) and the reservation keys
(:mod:`hamon.lib.keys`), which sit above this floor.
"""
from __future__ import annotations

try:
    from _sha256 import sha256  # type: ignore[import-not-found]
except ImportError:  # pragma: no cover - Python 3.12 and later
    try:
        from _sha2 import sha256  # type: ignore[import-not-found,no-redef]
    except ImportError:
        from hashlib import sha256  # type: ignore[assignment]

__all__ = ["sha256"]
