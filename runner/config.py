"""Read and validate ``signoff.toml`` / ``[tool.signoff]`` into a Policy.

Validation is strict and happens before anything runs: an unknown key or a bad
value is one line naming the file, the key and what is allowed, because a typo
in a policy file that silently falls back to a default is a policy hole.
"""

from __future__ import annotations

import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from runner import tomlfields as fields
from runner.errors import ConfigError
from runner.plan.model import Category, Decision, Severity
from runner.plan.policy import DEFAULT_DECISIONS, DEFAULT_INLINE_ALLOW, Policy
from runner.plan.rules import catalogue

CONFIG_FILE = "signoff.toml"
DEFAULT_LOCK_TIMEOUT_MS = 5000

_KEYS = {
    "target": "the database name plans are made for (part of the plan hash)",
    "postgres_version": 'server version assumed when no database is given, e.g. "15" or "14.2"',
    "fail_on": "exit 1 on findings at or above: info, warning, error, none",
    "lock_timeout": 'lock_timeout apply and dry-run set, e.g. "5s", "500ms"; "off" to not set one',
    "decisions": "table: category -> decision",
    "rules": "table: rule id -> decision",
    "inline_allow": "categories an inline '-- signoff: allow' may downgrade",
}


@dataclass(frozen=True)
class Settings:
    """The validated configuration: the analysis policy plus runtime settings."""

    policy: Policy = field(default_factory=Policy)
    lock_timeout_ms: int | None = DEFAULT_LOCK_TIMEOUT_MS
    path: Path | None = None  # where it was read from, None for defaults


def find_config(start: Path) -> Path | None:
    """The nearest signoff.toml, or pyproject.toml with [tool.signoff], at or above start."""
    directory = start.resolve()
    if directory.is_file():
        directory = directory.parent
    for candidate_dir in (directory, *directory.parents):
        candidate = candidate_dir / CONFIG_FILE
        if candidate.is_file():
            return candidate
        pyproject = candidate_dir / "pyproject.toml"
        if pyproject.is_file() and "signoff" in _read_toml(pyproject).get("tool", {}):
            return pyproject
    return None


def load_settings(path: Path | None, *, search_from: Path | None = None) -> Settings:
    """Settings from ``path`` (explicit), else the nearest config file, else defaults."""
    if path is not None and not path.is_file():
        raise ConfigError(f"config file {path} not found; pass an existing file to --config")
    if path is None and search_from is not None:
        path = find_config(search_from)
    if path is None:
        return Settings()
    data = _read_toml(path)
    section: Mapping[str, Any] = data
    where = str(path)
    if path.name == "pyproject.toml":
        section = data.get("tool", {}).get("signoff", {})
        where = f"{path} [tool.signoff]"
    return parse_settings(section, where=where, path=path)


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as handle:
            return tomllib.load(handle)
    except tomllib.TOMLDecodeError as error:
        raise ConfigError(f"{path}: invalid TOML ({error}); fix the syntax") from None
    except OSError as error:
        raise ConfigError(f"{path}: cannot read ({error.strerror})") from None


def parse_settings(section: Mapping[str, Any], *, where: str, path: Path | None = None) -> Settings:
    for key in section:
        if key not in _KEYS:
            known = ", ".join(sorted(_KEYS))
            raise ConfigError(f"{where}: unknown key {key!r}; known keys: {known}")
    policy = Policy(
        decisions=_decisions(section.get("decisions", {}), where),
        rule_decisions=_rule_decisions(section.get("rules", {}), where),
        inline_allow=_inline_allow(section.get("inline_allow"), where),
        fail_on=_fail_on(section.get("fail_on", "none"), f"{where}: fail_on"),
        server_version=_version(section.get("postgres_version"), where),
        target=_string(section.get("target", "default"), f"{where}: target"),
    )
    lock_timeout = parse_duration_ms(section.get("lock_timeout", "5s"), f"{where}: lock_timeout")
    return Settings(
        policy=_with_lock_timeout(policy, lock_timeout is not None),
        lock_timeout_ms=lock_timeout,
        path=path,
    )


def _with_lock_timeout(policy: Policy, enabled: bool) -> Policy:
    return replace(policy, apply_lock_timeout=enabled)


def _string(value: Any, where: str) -> str:
    if not isinstance(value, str) or not value:
        raise ConfigError(f"{where} must be a non-empty string")
    return value


def _decision(value: Any, where: str, *, category: Category | None = None) -> Decision:
    choices = [d.value for d in Decision]
    if not isinstance(value, str) or value not in choices:
        raise ConfigError(f"{where}: {value!r} is not a decision; use one of {', '.join(choices)}")
    decision = Decision(value)
    if category is Category.HYGIENE and decision is not Decision.ADVISORY:
        raise ConfigError(f"{where}: hygiene findings are advisory only; remove the key")
    return decision


def _decisions(value: Any, where: str) -> dict[Category, Decision]:
    if not isinstance(value, Mapping):
        raise ConfigError(f"{where}: decisions must be a table of category = decision")
    decisions = dict(DEFAULT_DECISIONS)
    for key, decision in value.items():
        category = fields.category(key, where, f"decisions.{key}")
        decisions[category] = _decision(decision, f"{where}: decisions.{key}", category=category)
    return decisions


def _rule_decisions(value: Any, where: str) -> dict[str, Decision]:
    if not isinstance(value, Mapping):
        raise ConfigError(f"{where}: rules must be a table of rule id = decision")
    rules = catalogue()
    result = {}
    for key, decision in value.items():
        if key not in rules:
            raise ConfigError(f"{where}: rules.{key} is not a rule id; see `signoff rules`")
        result[key] = _decision(decision, f"{where}: rules.{key}", category=rules[key].category)
    return result


def _inline_allow(value: Any, where: str) -> frozenset[Category]:
    if value is None:
        return DEFAULT_INLINE_ALLOW
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ConfigError(f"{where}: inline_allow must be a list of category names")
    try:
        return frozenset(Category(v) for v in value)
    except ValueError:
        names = ", ".join(c.value for c in Category)
        raise ConfigError(f"{where}: inline_allow holds an unknown category; use {names}") from None


def _fail_on(value: Any, where: str) -> Severity | None:
    return parse_fail_on(value, where)


def parse_fail_on(value: Any, where: str) -> Severity | None:
    if value == "none":
        return None
    try:
        return Severity(value)
    except ValueError:
        raise ConfigError(f"{where}: {value!r} is not one of info, warning, error, none") from None


def _version(value: Any, where: str) -> int | None:
    if value is None:
        return None
    return parse_version(value, f"{where}: postgres_version")


def parse_version(value: Any, where: str) -> int:
    """``"15"`` -> 150000, ``"14.2"`` -> 140002, ``150004`` -> 150004, ``15`` -> 150000."""
    if isinstance(value, int) and not isinstance(value, bool):
        return value * 10000 if value < 100 else value
    if isinstance(value, str):
        parts = value.strip().split(".")
        if 1 <= len(parts) <= 2 and all(p.isdigit() for p in parts):
            major = int(parts[0])
            minor = int(parts[1]) if len(parts) == 2 else 0
            if major >= 10:
                return major * 10000 + minor
    raise ConfigError(f'{where}: {value!r} is not a PostgreSQL version; write e.g. "15" or "14.2"')


_UNITS_MS = {"ms": 1, "s": 1000, "min": 60_000}


def parse_duration_ms(value: Any, where: str) -> int | None:
    """``"5s"`` -> 5000; ``"off"`` / ``0`` -> None (apply sets no lock_timeout)."""
    if value in ("off", 0, "0"):
        return None
    if isinstance(value, int) and not isinstance(value, bool) and value > 0:
        return value
    if isinstance(value, str):
        for unit in sorted(_UNITS_MS, key=len, reverse=True):
            number = value.strip()[: -len(unit)] if value.strip().endswith(unit) else None
            if number is not None and number.strip().isdigit() and int(number) > 0:
                return int(number) * _UNITS_MS[unit]
    raise ConfigError(f'{where}: {value!r} is not a duration; write e.g. "5s", "500ms" or "off"')
