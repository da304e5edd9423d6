"""``[masking]`` in gateway.toml: which roles see masked results, which may unmask
with a grant, and the rules (by column, by column name, by value), one line per mistake.

    [masking]
    roles = ["migrator", "deployer"]   # roles whose results are masked ("*": every role)
    unmask_roles = ["deployer"]        # may run a statement unmasked, with a grant for it
    secret_env = "SIGNOFF_MASKING_KEY" # or secret_file: the pseudonyms' HMAC key
    non_text = "null"                  # non-text values: "null" or "constant"
    copy = "refuse"                    # COPY ... TO STDOUT touching masked data: refuse | mask

    [[masking.rules]]
    name = "ssn"
    columns = ["*.ssn"]                # [schema.][table.]column globs
    names = ["ssn", "social_security*"]  # column-name globs, whatever the table
    action = "keep_last"               # redact | keep_last | keep_domain | pseudonym | null
    keep_last = 4

    [[masking.rules]]
    name = "email-values"
    detect = ["email"]                 # ssn, email, phone, mrn, dob, credit_card
    action = "keep_domain"

Without ``rules`` the built-in set applies (``DEFAULT_RULES``): the column names of
PHI a schema usually has, and every value detector, each fully redacted.
"""

from __future__ import annotations

import fnmatch
import hashlib
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from runner import tomlfields as fields
from runner.errors import ConfigError
from runner.plan.model import canonical_json

from .detectors import DETECTORS

ACTIONS = ("redact", "keep_last", "keep_domain", "pseudonym", "null")
_KEYS = {"roles", "unmask_roles", "secret_env", "secret_file", "non_text", "copy", "rules", "mrn"}
_RULE_KEYS = {"name", "columns", "names", "detect", "action", "keep_last", "replacement"}
REDACTED = "[REDACTED]"


@dataclass(frozen=True)
class MaskRule:
    """One rule: what it matches (column globs, column-name globs, value detectors)
    and how a matched value is replaced."""

    name: str
    columns: tuple[str, ...] = ()
    names: tuple[str, ...] = ()
    detect: tuple[str, ...] = ()
    action: str = "redact"
    keep_last: int = 4
    replacement: str = REDACTED
    _patterns: tuple[re.Pattern[str], ...] = field(default=(), compare=False, repr=False)
    _name_patterns: tuple[re.Pattern[str], ...] = field(default=(), compare=False, repr=False)

    def __post_init__(self) -> None:
        object.__setattr__(
            self, "_patterns", tuple(re.compile(fnmatch.translate(g.lower())) for g in self.columns)
        )
        object.__setattr__(
            self,
            "_name_patterns",
            tuple(re.compile(fnmatch.translate(g.lower())) for g in self.names),
        )

    def matches_column(self, qualified: str, name: str) -> bool:
        """``qualified`` is schema.table.column, ``name`` the column's own name."""
        q, n = qualified.lower(), name.lower()
        return any(p.match(q) for p in self._patterns) or any(
            p.match(n) for p in self._name_patterns
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "columns": list(self.columns),
            "names": list(self.names),
            "detect": list(self.detect),
            "action": self.action,
            "keep_last": self.keep_last,
            "replacement": self.replacement,
        }


DEFAULT_RULES: tuple[MaskRule, ...] = (
    MaskRule("ssn", names=("ssn", "*_ssn", "social_security*", "ss_number"), action="keep_last"),
    MaskRule("birth-date", names=("dob", "birth_date", "birthdate", "date_of_birth", "*_dob")),
    MaskRule("mrn", names=("mrn", "*_mrn", "medical_record*")),
    MaskRule("email", names=("email", "*_email", "email_address"), action="keep_domain"),
    MaskRule("phone", names=("phone", "*_phone", "phone_number", "mobile", "fax")),
    MaskRule(
        "address",
        names=("address", "*_address", "street", "address_line*", "zip", "postal_code"),
    ),
    MaskRule(
        "person-name",
        names=("first_name", "last_name", "given_name", "family_name", "full_name", "surname"),
    ),
    MaskRule("phi-values", detect=tuple(DETECTORS)),
)


@dataclass(frozen=True)
class MaskingConfig:
    """The masking policy. ``roles`` empty: nothing is masked (no [masking] section)."""

    roles: tuple[str, ...] = ()
    unmask_roles: tuple[str, ...] = ()
    rules: tuple[MaskRule, ...] = ()
    secret_env: str | None = None
    secret_file: str | None = None
    non_text: str = "null"
    copy: str = "refuse"
    mrn: str | None = None  # the MRN detector's pattern (a regex over values), if not the default

    @property
    def enabled(self) -> bool:
        return bool(self.roles) and bool(self.rules)

    def masks(self, role: str) -> bool:
        return self.enabled and ("*" in self.roles or role in self.roles)

    def may_unmask(self, role: str) -> bool:
        return "*" in self.unmask_roles or role in self.unmask_roles

    @property
    def uses_pseudonyms(self) -> bool:
        return any(r.action == "pseudonym" for r in self.rules)

    def secret(self) -> bytes:
        """The pseudonyms' key, read now (never written anywhere)."""
        value = fields.read_secret(self.secret_env, self.secret_file, "masking")
        if value is None:
            raise ConfigError(
                "masking: a rule uses pseudonym but no secret_env / secret_file names its key; "
                "add one (a long random string)"
            )
        return value.encode("utf-8")

    def to_json(self) -> dict[str, Any]:
        """The policy as the attestation's digest covers it (the key itself never)."""
        return {
            "roles": sorted(self.roles),
            "unmask_roles": sorted(self.unmask_roles),
            "rules": [r.to_json() for r in self.rules],
            "non_text": self.non_text,
            "copy": self.copy,
            "mrn": self.mrn,
            "pseudonym_key": (
                None if not self.uses_pseudonyms else (self.secret_env or self.secret_file)
            ),
        }

    def digest(self) -> str | None:
        """sha256 of the policy's canonical JSON; None when nothing is masked."""
        if not self.enabled:
            return None
        return hashlib.sha256(canonical_json(self.to_json()).encode("utf-8")).hexdigest()


def _strings(value: Any, where: str, name: str) -> tuple[str, ...]:
    items = [value] if isinstance(value, str) else value
    if not isinstance(items, list) or not all(isinstance(v, str) and v for v in items):
        raise ConfigError(f"{where}: {name} must be a list of non-empty strings")
    return tuple(items)


def parse_masking(raw: Any, where: str, roles: Sequence[str] | Mapping[str, Any]) -> MaskingConfig:
    """The ``[masking]`` table (``raw`` None: no masking). ``roles``: the role names
    under [roles], which ``roles`` / ``unmask_roles`` must name."""
    if raw is None:
        return MaskingConfig()
    table = fields.table(raw, where, "masking")
    fields.known_keys(table, _KEYS, where, "masking.")
    known = set(roles)
    masked = _strings(table.get("roles", []), where, "masking.roles")
    unmask = _strings(table.get("unmask_roles", []), where, "masking.unmask_roles")
    for key, names in (("roles", masked), ("unmask_roles", unmask)):
        for role in names:
            if role != "*" and role not in known:
                raise ConfigError(
                    f"{where}: masking.{key}: {role!r} is not a role under [roles]; "
                    "add it there or remove it here"
                )
    secret_env, secret_file = fields.secret_source(table, where, "masking", what="secret")
    non_text = table.get("non_text", "null")
    if non_text not in ("null", "constant"):
        raise ConfigError(f"{where}: masking.non_text = {non_text!r}; use null or constant")
    copy = table.get("copy", "refuse")
    if copy not in ("refuse", "mask"):
        raise ConfigError(f"{where}: masking.copy = {copy!r}; use refuse or mask")
    mrn = table.get("mrn")
    if mrn is not None:
        mrn = fields.string(mrn, where, "masking.mrn")
        try:
            re.compile(mrn)
        except re.error as error:
            raise ConfigError(f"{where}: masking.mrn is not a valid pattern ({error})") from None
    if "rules" in table:
        value = table["rules"]
        if not isinstance(value, list) or not value:
            raise ConfigError(f"{where}: masking.rules must be a non-empty array of tables")
        rules = tuple(_rule(r, where, n) for n, r in enumerate(value))
    else:
        rules = DEFAULT_RULES
    rule_names = [r.name for r in rules]
    if len(set(rule_names)) != len(rule_names):
        raise ConfigError(f"{where}: masking.rules have duplicate names; give each a unique name")
    config = MaskingConfig(
        roles=masked,
        unmask_roles=unmask,
        rules=rules,
        secret_env=secret_env,
        secret_file=secret_file,
        non_text=non_text,
        copy=copy,
        mrn=mrn,
    )
    if config.uses_pseudonyms and secret_env is None and secret_file is None:
        user = next(r.name for r in rules if r.action == "pseudonym")
        raise ConfigError(
            f"{where}: masking: rule {user!r} makes pseudonyms but no masking.secret_env or "
            "masking.secret_file names their key; add one"
        )
    return config


def _rule(raw: Any, where: str, n: int) -> MaskRule:
    table = fields.table(raw, where, f"masking.rules[{n}]")
    fields.known_keys(table, _RULE_KEYS, where, f"masking.rules[{n}].")
    name = fields.string(table.get("name"), where, f"masking.rules[{n}].name")
    at = f"masking.rules.{name}"
    columns = _strings(table.get("columns", []), where, f"{at}.columns")
    for glob in columns:
        if glob.count(".") > 2:
            raise ConfigError(
                f"{where}: {at}.columns: {glob!r} is not [schema.][table.]column (* for any part)"
            )
    # "*.ssn" is table.column: any schema.
    columns = tuple("*." * (2 - g.count(".")) + g for g in columns)
    names = _strings(table.get("names", []), where, f"{at}.names")
    detect = _strings(table.get("detect", []), where, f"{at}.detect")
    for detector in detect:
        if detector not in DETECTORS:
            raise ConfigError(
                f"{where}: {at}.detect: {detector!r} is not a detector; use " + ", ".join(DETECTORS)
            )
    if not (columns or names or detect):
        raise ConfigError(f"{where}: {at} matches nothing; give columns, names or detect")
    action = table.get("action", "redact")
    if action not in ACTIONS:
        raise ConfigError(f"{where}: {at}.action = {action!r}; use one of {', '.join(ACTIONS)}")
    keep = table.get("keep_last", 4)
    if not isinstance(keep, int) or isinstance(keep, bool) or not 1 <= keep <= 8:
        raise ConfigError(f"{where}: {at}.keep_last must be a whole number from 1 to 8")
    replacement = fields.string(table.get("replacement", REDACTED), where, f"{at}.replacement")
    return MaskRule(
        name=name,
        columns=columns,
        names=names,
        detect=detect,
        action=action,
        keep_last=keep,
        replacement=replacement,
    )
