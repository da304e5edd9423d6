"""Untrusted text on its way into a log, an audit entry or an error answer.

What a client sends (a database name, a claim, a path) may hold a lone
surrogate or a NUL, which neither SQLite, PostgreSQL nor a UTF-8 journal can
store, and may be a megabyte long. Refusals are recorded too, so the record of
a refusal must never fail on what was refused: :func:`storable` escapes what
cannot be stored and bounds what is repeated.
"""

from __future__ import annotations

from typing import Any

MAX_REPEATED = 200  # characters of an untrusted value an error or a record repeats


def bounded(text: str, limit: int = MAX_REPEATED) -> str:
    """``text`` cut to ``limit`` characters, saying how much was left out."""
    if len(text) <= limit:
        return text
    return f"{text[:limit]}... ({len(text) - limit} more characters)"


def storable_text(text: str) -> str:
    """``text`` with lone surrogates and NULs escaped (``\\udc80``, ``\\x00``)."""
    if "\x00" not in text and not any("\ud800" <= c <= "\udfff" for c in text):
        return text
    escaped = text.encode("utf-8", "backslashreplace").decode("utf-8")
    return escaped.replace("\x00", "\\x00")


def storable(value: Any) -> Any:
    """``value`` (JSON-like) with every string made storable; keys too."""
    if isinstance(value, str):
        return storable_text(value)
    if isinstance(value, dict):
        return {storable_text(str(k)): storable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [storable(v) for v in value]
    return value
