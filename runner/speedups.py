"""The optional C hot path (runner/_speedups.c), or None.

None where it was not built (no compiler at install time) or when
``SIGNOFF_PURE_PYTHON=1`` asks for the pure-Python twins (to compare them, or
to rule the C code out while debugging). Both give the same results
(tests/test_speedups.py).
"""

from __future__ import annotations

import os
from typing import Any, Protocol


class Native(Protocol):
    def literal_shape(self, sql: str, /) -> tuple[str, int, int] | None: ...

    def chain_lines(
        self, prepared: list[tuple[Any, ...]], last_seq: int, last_hash: str, ts: str, /
    ) -> tuple[bytes, str]: ...

    def journal_append(
        self,
        fd: int,
        prepared: list[tuple[Any, ...]],
        last_seq: int,
        last_hash: str,
        known_end: int,
        sync: bool,
        /,
    ) -> tuple[int, str] | None: ...

    # runner/_lane.c: the proxy's fast lane
    Lane: Any
    AuditQueue: Any

    def outcome_data(self, tag: str, duration_us: int, /) -> str: ...


def _load() -> Native | None:
    if os.environ.get("SIGNOFF_PURE_PYTHON", "") not in ("", "0"):
        return None
    try:
        from runner import _speedups
    except ImportError:
        return None
    return _speedups


native = _load()
