"""The optional C hot path (runner/_native/_speedups), or None.

None where it was not built (no compiler at install time) or when
``SIGNOFF_PURE_PYTHON=1`` asks for the pure-Python twins (to compare them, or
to rule the C code out while debugging). Both give the same results
(tests/test_speedups.py, tests/test_native_properties.py).

The extension refuses to make a Lane before it has Python's values
(``contract``); ``native`` hands them over at its first AuditQueue or Lane, when
the modules that own them have been imported (they import this one).
"""

from __future__ import annotations

import os
from types import ModuleType
from typing import Any, Protocol

from runner._native.contract import contract


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

    # runner/_native/_lane.c: the proxy's fast lane (the extension's types, made
    # once Python's values are handed over)
    def Lane(self, *args: Any) -> Any: ...

    def AuditQueue(self, *args: Any) -> Any: ...

    def outcome_data(self, tag: str, duration_us: int, /) -> str: ...


class _Configured:
    """The extension's functions as they are (the per-statement calls stay direct C
    calls), and its lane types behind configure()."""

    def __init__(self, module: ModuleType) -> None:
        self.module = module
        self.configured = False
        self.literal_shape = module.literal_shape
        self.chain_lines = module.chain_lines
        self.journal_append = module.journal_append

    def configure(self) -> ModuleType:
        if not self.configured:
            self.module.configure(*contract())
            self.configured = True
        return self.module

    def AuditQueue(self, *args: Any) -> Any:
        return self.configure().AuditQueue(*args)

    def Lane(self, *args: Any) -> Any:
        return self.configure().Lane(*args)

    def outcome_data(self, tag: str, duration_us: int, /) -> str:
        text: str = self.configure().outcome_data(tag, duration_us)
        return text


def extension() -> ModuleType | None:
    """The extension module, configured (for the tests of its readers), or None."""
    return None if _native is None else _native.configure()


def _load() -> _Configured | None:
    if os.environ.get("SIGNOFF_PURE_PYTHON", "") not in ("", "0"):
        return None
    try:
        from runner._native import _speedups
    except ImportError:
        return None
    return _Configured(_speedups)


_native = _load()
native: Native | None = _native
