"""Typed readers for TOML values, shared by ``signoff.toml`` and ``gateway.toml``.

Both files are validated before anything runs, and a mistake is one line naming
the file, the key and what is allowed: a typo that silently falls back to a
default is a policy hole. Each reader takes the value, ``where`` (the file, and
the section when it matters) and ``name`` (the dotted key), and raises
:class:`ConfigError` with that line.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from datetime import timedelta
from enum import Enum
from pathlib import Path
from typing import Any, TypeVar

from runner.errors import ConfigError
from runner.plan.model import Category

E = TypeVar("E", bound=Enum)


def known_keys(table: Mapping[str, Any], keys: Iterable[str], where: str, prefix: str) -> None:
    """Refuse any key of ``table`` not in ``keys`` (``prefix``: the table's dotted path)."""
    allowed = set(keys)
    for key in table:
        if key not in allowed:
            known = ", ".join(sorted(allowed))
            raise ConfigError(f"{where}: unknown key {prefix}{key}; known: {known}")


def table(value: Any, where: str, name: str) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise ConfigError(f"{where}: {name} must be a table")
    return value


def string(value: Any, where: str, name: str) -> str:
    if not isinstance(value, str) or not value:
        raise ConfigError(f"{where}: {name} must be a non-empty string")
    return value


def positive_int(value: Any, where: str, name: str) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ConfigError(f"{where}: {name} = {value!r}; write a whole number of at least 1")
    return value


def choice(enum_type: type[E], value: Any, where: str, name: str) -> E:
    """``value`` as a member of ``enum_type``, by value."""
    try:
        return enum_type(value)
    except ValueError:
        choices = ", ".join(str(member.value) for member in enum_type)
        raise ConfigError(f"{where}: {name} = {value!r}; use one of {choices}") from None


def category(key: str, where: str, name: str, *, also: str = "") -> Category:
    """A finding category named by a table key (``also``: what else the key may be)."""
    try:
        return Category(key)
    except ValueError:
        names = ", ".join(c.value for c in Category)
        extra = f" or {also}" if also else ""
        raise ConfigError(f"{where}: {name} is not a category; use one of {names}{extra}") from None


def secret_source(
    raw: Mapping[str, Any], where: str, name: str, *, what: str
) -> tuple[str | None, str | None]:
    """``(env, file)`` of a secret held outside the file: at most one of
    ``<what>_env`` / ``<what>_file``, each a non-empty string."""
    env_key, file_key = f"{what}_env", f"{what}_file"
    env = raw.get(env_key)
    path = raw.get(file_key)
    if env is not None and path is not None:
        raise ConfigError(f"{where}: {name}: {env_key} and {file_key} both set; keep one")
    if env is not None:
        string(env, where, f"{name}.{env_key}")
    if path is not None:
        string(path, where, f"{name}.{file_key}")
    return env, path


def read_secret(env: str | None, path: str | None, name: str) -> str | None:
    """The secret now, from the environment variable or the file named in the config
    (None when neither is named). Its value never appears in an error."""
    if env is not None:
        value = os.environ.get(env)
        if value is None:
            raise ConfigError(f"{name}: environment variable {env} is not set; export it")
        return value
    if path is not None:
        try:
            return Path(path).read_text(encoding="utf-8").rstrip("\n")
        except OSError as error:
            raise ConfigError(f"{name}: cannot read {path} ({error.strerror})") from None
    return None


_UNITS = {"s": 1, "m": 60, "min": 60, "h": 3600}


def duration(value: Any, where: str, name: str, *, bare_seconds: bool = False) -> timedelta:
    """``"90s"``, ``"15m"``, ``"15min"``, ``"1h"`` (and, with ``bare_seconds``, ``"90"``)."""
    if isinstance(value, str):
        text = value.strip()
        if bare_seconds and text.isdigit() and int(text) > 0:
            return timedelta(seconds=int(text))
        for unit in sorted(_UNITS, key=len, reverse=True):
            number = text.removesuffix(unit).strip()
            if text.endswith(unit) and number.isdigit() and int(number) > 0:
                return timedelta(seconds=int(number) * _UNITS[unit])
    raise ConfigError(f'{where}: {name} = {value!r}; write a duration like "15m" or "1h"')

