"""The optional C hot path (runner/_native/_speedups), or None.

None where it was not built (no compiler at install time) or when
``SIGNOFF_PURE_PYTHON=1`` asks for the pure-Python twins (to compare them, or
to rule the C code out while debugging). Both give the same results
(tests/native/test_speedups.py, tests/native/test_native_properties.py).

The extension refuses to make a Lane or chain a journal line before it has
Python's values (``contract``); ``native`` hands them over at the first call
that needs them, when the modules that own them have been imported (some of
them import this one, so it cannot be done at this module's import).
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from types import ModuleType
from typing import Any, TypeVar, cast

from runner._native.contract import contract

_F = TypeVar("_F", bound=Callable[..., Any])


class Native:
    """The extension's functions and types (typed by its stub, _speedups.pyi), with
    Python's values handed over at the first call that needs them; from then on
    its own, called directly (the per-statement calls never pass through here)."""

    def __init__(self) -> None:
        from runner._native import _speedups as extension  # ImportError: not built

        self.module: ModuleType = extension
        self.configured = False
        self._configuring = threading.Lock()
        self.literal_shape = extension.literal_shape  # needs none of Python's values
        self.chain_lines = self._first(extension.chain_lines)
        self.journal_append = self._first(extension.journal_append)
        self.outcome_data = self._first(extension.outcome_data)
        self.Lane = self._first(extension.Lane)
        self.AuditQueue = self._first(extension.AuditQueue)

    def _first(self, function: _F) -> _F:
        name = function.__name__

        def configure_then_call(*args: Any) -> Any:
            return getattr(self.configure(), name)(*args)

        return cast(_F, configure_then_call)

    def configure(self) -> ModuleType:
        # The audit writer's thread may append while the loop makes a lane: the
        # extension takes its values once, so only one of them may hand them over.
        with self._configuring:
            if not self.configured:
                self.module.configure(*contract())
                self.configured = True
                for name in ("chain_lines", "journal_append", "outcome_data", "Lane", "AuditQueue"):
                    setattr(self, name, getattr(self.module, name))
        return self.module


def extension() -> ModuleType | None:
    """The extension module, configured (for the tests of its readers), or None."""
    return None if native is None else native.configure()


def _load() -> Native | None:
    if os.environ.get("SIGNOFF_PURE_PYTHON", "") not in ("", "0"):
        return None
    try:
        return Native()
    except ImportError:
        return None


native = _load()
