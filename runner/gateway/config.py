"""``gateway.toml``: read, validated at start, one line per mistake.

The database credential is never in this file: each database names the
environment variable or file that holds it, and the gateway reads it at start.

    [gateway]
    audience = "signoff-gateway"
    state_url = "sqlite:////var/lib/signoff/gateway.db"    # or postgresql://...
    signing_key = "/etc/signoff/gateway-ed25519.pem"       # from `signoff gateway keygen`
    session_ttl = "15m"
    max_session_ttl = "1h"

    [listen]
    http = "127.0.0.1:8080"
    pg = "127.0.0.1:6432"
    # tls_cert = "...", tls_key = "..."   (offered on the PostgreSQL port)
    # public_host = "gateway.internal"    (what sessions tell clients to connect to)

    [[issuers]]
    name = "github"
    issuer = "https://token.actions.githubusercontent.com"

    [[databases]]
    name = "ehr"
    host = "db.internal"
    port = 5432
    dbname = "ehr"
    user = "signoff_gateway"
    password_env = "EHR_DB_PASSWORD"     # or password_file = "/run/secrets/ehr"

    [[access]]
    database = "ehr"
    role = "deployer"
    issuer = "github"
    claims = { repository = "acme/ehr-api", ref = "refs/heads/main" }

    [roles.deployer]
    destructive = "needs-approval"
    unanalysable = "needs-approval"
    locking = "allow"
    incompatible = "allow"
    hygiene = "allow"
    rules = { SO104 = "deny" }
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

from runner.errors import ConfigError
from runner.gateway.model import Upstream, Verdict
from runner.gateway.oidc import IssuerConfig
from runner.plan.model import Category
from runner.plan.rules import catalogue

DEFAULT_SESSION_TTL = timedelta(minutes=15)
DEFAULT_MAX_SESSION_TTL = timedelta(hours=1)

_SECTIONS = {"gateway", "listen", "issuers", "databases", "access", "roles"}
_GATEWAY_KEYS = {"audience", "state_url", "signing_key", "session_ttl", "max_session_ttl"}
_LISTEN_KEYS = {"http", "pg", "tls_cert", "tls_key", "public_host", "allow_cleartext_on_loopback"}
_ISSUER_KEYS = {"name", "issuer", "jwks_uri", "algorithms", "require_jti"}
_DATABASE_KEYS = {
    "name",
    "host",
    "port",
    "dbname",
    "user",
    "password_env",
    "password_file",
    "sslmode",
}
_ACCESS_KEYS = {"database", "role", "issuer", "claims"}


@dataclass(frozen=True)
class DatabaseConfig:
    name: str
    host: str
    port: int
    dbname: str
    user: str
    password_env: str | None = None
    password_file: str | None = None
    sslmode: str = "prefer"

    def upstream(self) -> Upstream:
        """The held credential, read now (from the environment or a file)."""
        return Upstream(
            host=self.host,
            port=self.port,
            dbname=self.dbname,
            user=self.user,
            password=self.password(),
            sslmode=self.sslmode,
        )

    def password(self) -> str | None:
        if self.password_env is not None:
            value = os.environ.get(self.password_env)
            if value is None:
                raise ConfigError(
                    f"databases.{self.name}: environment variable {self.password_env} is not "
                    "set; export it with the database password"
                )
            return value
        if self.password_file is not None:
            try:
                return Path(self.password_file).read_text(encoding="utf-8").rstrip("\n")
            except OSError as error:
                raise ConfigError(
                    f"databases.{self.name}: cannot read password_file {self.password_file} "
                    f"({error.strerror})"
                ) from None
        return None


@dataclass(frozen=True)
class AccessRule:
    """Who (an issuer and claim matchers) may open a session on a database, as a role."""

    database: str
    role: str
    issuer: str
    claims: Mapping[str, str | list[str]]


@dataclass(frozen=True)
class RoleConfig:
    name: str
    categories: Mapping[Category, Verdict]
    rules: Mapping[str, Verdict] = field(default_factory=dict)

    def verdict(self, rule_id: str, category: Category) -> Verdict:
        if rule_id in self.rules:
            return self.rules[rule_id]
        return self.categories.get(category, Verdict.NEEDS_APPROVAL)


# Fail closed: a role that does not mention a category needs approval for it,
# except hygiene, which is advice and never blocks.
DEFAULT_ROLE_VERDICTS: Mapping[Category, Verdict] = {
    Category.DESTRUCTIVE: Verdict.NEEDS_APPROVAL,
    Category.UNANALYSABLE: Verdict.NEEDS_APPROVAL,
    Category.LOCKING: Verdict.NEEDS_APPROVAL,
    Category.INCOMPATIBLE: Verdict.NEEDS_APPROVAL,
    Category.HYGIENE: Verdict.ALLOW,
}


@dataclass(frozen=True)
class GatewayConfig:
    audience: str
    state_url: str
    signing_key: Path | None
    session_ttl: timedelta
    max_session_ttl: timedelta
    http_host: str
    http_port: int
    pg_host: str
    pg_port: int
    public_host: str
    tls_cert: Path | None
    tls_key: Path | None
    allow_cleartext_on_loopback: bool
    issuers: tuple[IssuerConfig, ...]
    databases: Mapping[str, DatabaseConfig]
    access: tuple[AccessRule, ...]
    roles: Mapping[str, RoleConfig]
    path: Path | None = None


def load_gateway_config(path: Path) -> GatewayConfig:
    try:
        with path.open("rb") as handle:
            data = tomllib.load(handle)
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such file; pass --config with the gateway.toml") from None
    except tomllib.TOMLDecodeError as error:
        raise ConfigError(f"{path}: invalid TOML ({error})") from None
    return parse_gateway_config(data, where=str(path), path=path)


def parse_gateway_config(
    data: Mapping[str, Any], *, where: str = "gateway.toml", path: Path | None = None
) -> GatewayConfig:
    _known(data, _SECTIONS, where, "")
    gateway = _table(data.get("gateway", {}), where, "gateway")
    _known(gateway, _GATEWAY_KEYS, where, "gateway.")
    listen = _table(data.get("listen", {}), where, "listen")
    _known(listen, _LISTEN_KEYS, where, "listen.")

    session_ttl = _duration(gateway.get("session_ttl", "15m"), where, "gateway.session_ttl")
    max_ttl = _duration(gateway.get("max_session_ttl", "1h"), where, "gateway.max_session_ttl")
    if session_ttl > max_ttl:
        raise ConfigError(
            f"{where}: gateway.session_ttl ({session_ttl}) exceeds gateway.max_session_ttl "
            f"({max_ttl}); lower it"
        )
    http_host, http_port = _address(listen.get("http", "127.0.0.1:8080"), where, "listen.http")
    pg_host, pg_port = _address(listen.get("pg", "127.0.0.1:6432"), where, "listen.pg")
    tls_cert = _optional_path(listen.get("tls_cert"), where, "listen.tls_cert")
    tls_key = _optional_path(listen.get("tls_key"), where, "listen.tls_key")
    if (tls_cert is None) != (tls_key is None):
        raise ConfigError(f"{where}: listen.tls_cert and listen.tls_key go together; set both")

    issuers = tuple(_issuer(i, where, n) for n, i in enumerate(_list(data, "issuers", where)))
    if not issuers:
        raise ConfigError(f"{where}: no [[issuers]]; add at least one trusted OIDC issuer")
    issuer_names = [i.name for i in issuers]
    if len(set(issuer_names)) != len(issuer_names):
        raise ConfigError(f"{where}: issuers have duplicate names; give each a unique name")

    databases: dict[str, DatabaseConfig] = {}
    for n, raw in enumerate(_list(data, "databases", where)):
        database = _database(raw, where, n)
        if database.name in databases:
            raise ConfigError(f"{where}: databases[{n}]: duplicate name {database.name!r}")
        databases[database.name] = database
    if not databases:
        raise ConfigError(f"{where}: no [[databases]]; add the database the gateway fronts")

    roles = {
        name: _role(name, raw, where)
        for name, raw in _table(data.get("roles", {}), where, "roles").items()
    }
    access = tuple(
        _access(raw, where, n, databases, roles, issuer_names)
        for n, raw in enumerate(_list(data, "access", where))
    )
    return GatewayConfig(
        audience=_string(gateway.get("audience", "signoff-gateway"), where, "gateway.audience"),
        state_url=_string(
            gateway.get("state_url", "sqlite:///signoff-gateway.db"), where, "gateway.state_url"
        ),
        signing_key=_optional_path(gateway.get("signing_key"), where, "gateway.signing_key"),
        session_ttl=session_ttl,
        max_session_ttl=max_ttl,
        http_host=http_host,
        http_port=http_port,
        pg_host=pg_host,
        pg_port=pg_port,
        public_host=_string(listen.get("public_host", pg_host), where, "listen.public_host"),
        tls_cert=tls_cert,
        tls_key=tls_key,
        allow_cleartext_on_loopback=bool(listen.get("allow_cleartext_on_loopback", True)),
        issuers=issuers,
        databases=databases,
        access=access,
        roles=roles,
        path=path,
    )


# -- pieces -------------------------------------------------------------------------------


def _known(table: Mapping[str, Any], keys: set[str], where: str, prefix: str) -> None:
    for key in table:
        if key not in keys:
            known = ", ".join(sorted(keys))
            raise ConfigError(f"{where}: unknown key {prefix}{key}; known: {known}")


def _table(value: Any, where: str, name: str) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise ConfigError(f"{where}: {name} must be a table")
    return value


def _list(data: Mapping[str, Any], name: str, where: str) -> list[Mapping[str, Any]]:
    value = data.get(name, [])
    if not isinstance(value, list) or not all(isinstance(v, Mapping) for v in value):
        raise ConfigError(f"{where}: {name} must be an array of tables ([[{name}]])")
    return value


def _string(value: Any, where: str, name: str) -> str:
    if not isinstance(value, str) or not value:
        raise ConfigError(f"{where}: {name} must be a non-empty string")
    return value


def _optional_path(value: Any, where: str, name: str) -> Path | None:
    return None if value is None else Path(_string(value, where, name))


def _address(value: Any, where: str, name: str) -> tuple[str, int]:
    text = _string(value, where, name)
    host, _, port = text.rpartition(":")
    if not host or not port.isdigit() or not 0 <= int(port) < 65536:
        raise ConfigError(f"{where}: {name} = {text!r}; write host:port, e.g. 127.0.0.1:6432")
    return host.strip("[]"), int(port)


_UNITS = {"s": 1, "m": 60, "min": 60, "h": 3600}


def _duration(value: Any, where: str, name: str) -> timedelta:
    if isinstance(value, str):
        for unit in sorted(_UNITS, key=len, reverse=True):
            number = value.strip().removesuffix(unit)
            if value.strip().endswith(unit) and number.strip().isdigit() and int(number) > 0:
                return timedelta(seconds=int(number) * _UNITS[unit])
    raise ConfigError(f'{where}: {name} = {value!r}; write a duration like "15m" or "1h"')


def _issuer(raw: Mapping[str, Any], where: str, n: int) -> IssuerConfig:
    _known(raw, _ISSUER_KEYS, where, f"issuers[{n}].")
    issuer = _string(raw.get("issuer"), where, f"issuers[{n}].issuer")
    algorithms = raw.get("algorithms", ["RS256", "ES256"])
    if not isinstance(algorithms, list) or not all(isinstance(a, str) for a in algorithms):
        raise ConfigError(f"{where}: issuers[{n}].algorithms must be a list of names")
    try:
        return IssuerConfig(
            name=_string(raw.get("name", issuer), where, f"issuers[{n}].name"),
            issuer=issuer,
            jwks_uri=raw.get("jwks_uri"),
            algorithms=tuple(algorithms),
            require_jti=bool(raw.get("require_jti", True)),
        )
    except ValueError as error:
        raise ConfigError(f"{where}: issuers[{n}]: {error}") from None


def _database(raw: Mapping[str, Any], where: str, n: int) -> DatabaseConfig:
    _known(raw, _DATABASE_KEYS, where, f"databases[{n}].")
    if "password" in raw:  # pragma: no cover - _known already refuses it; kept for the message
        raise ConfigError(f"{where}: databases[{n}].password: never in the file")
    name = _string(raw.get("name"), where, f"databases[{n}].name")
    if raw.get("password_env") and raw.get("password_file"):
        raise ConfigError(
            f"{where}: databases.{name}: password_env and password_file both set; keep one"
        )
    port = raw.get("port", 5432)
    if not isinstance(port, int) or not 0 < port < 65536:
        raise ConfigError(f"{where}: databases.{name}.port must be a port number")
    sslmode = raw.get("sslmode", "prefer")
    if sslmode not in ("disable", "prefer", "require"):
        raise ConfigError(
            f"{where}: databases.{name}.sslmode = {sslmode!r}; use disable, prefer or require"
        )
    return DatabaseConfig(
        name=name,
        host=_string(raw.get("host", "127.0.0.1"), where, f"databases.{name}.host"),
        port=port,
        dbname=_string(raw.get("dbname", name), where, f"databases.{name}.dbname"),
        user=_string(raw.get("user"), where, f"databases.{name}.user"),
        password_env=raw.get("password_env"),
        password_file=raw.get("password_file"),
        sslmode=sslmode,
    )


def _verdict(value: Any, where: str, name: str) -> Verdict:
    try:
        return Verdict(value)
    except ValueError:
        choices = ", ".join(v.value for v in Verdict)
        raise ConfigError(f"{where}: {name} = {value!r}; use one of {choices}") from None


def _role(name: str, raw: Any, where: str) -> RoleConfig:
    table = _table(raw, where, f"roles.{name}")
    categories = dict(DEFAULT_ROLE_VERDICTS)
    rules: dict[str, Verdict] = {}
    known_rules = catalogue()
    for key, value in table.items():
        if key == "rules":
            for rule_id, verdict in _table(value, where, f"roles.{name}.rules").items():
                if rule_id not in known_rules:
                    raise ConfigError(
                        f"{where}: roles.{name}.rules.{rule_id} is not a rule id; "
                        "see `signoff rules`"
                    )
                rules[rule_id] = _verdict(verdict, where, f"roles.{name}.rules.{rule_id}")
            continue
        try:
            category = Category(key)
        except ValueError:
            names = ", ".join(c.value for c in Category)
            raise ConfigError(
                f"{where}: roles.{name}.{key} is not a category; use {names} or rules"
            ) from None
        categories[category] = _verdict(value, where, f"roles.{name}.{key}")
    return RoleConfig(name=name, categories=categories, rules=rules)


def _access(
    raw: Mapping[str, Any],
    where: str,
    n: int,
    databases: Mapping[str, DatabaseConfig],
    roles: Mapping[str, RoleConfig],
    issuers: list[str],
) -> AccessRule:
    _known(raw, _ACCESS_KEYS, where, f"access[{n}].")
    database = _string(raw.get("database"), where, f"access[{n}].database")
    if database not in databases:
        raise ConfigError(f"{where}: access[{n}].database {database!r} is not in [[databases]]")
    role = _string(raw.get("role"), where, f"access[{n}].role")
    if role not in roles:
        raise ConfigError(f"{where}: access[{n}].role {role!r} is not defined under [roles]")
    issuer = _string(raw.get("issuer"), where, f"access[{n}].issuer")
    if issuer not in issuers:
        raise ConfigError(f"{where}: access[{n}].issuer {issuer!r} is not a configured issuer")
    claims = _table(raw.get("claims", {}), where, f"access[{n}].claims")
    if not claims:
        raise ConfigError(
            f"{where}: access[{n}].claims is empty; pin at least repository/project_path "
            "(an empty matcher would admit every token of the issuer)"
        )
    for key, value in claims.items():
        if not isinstance(value, str | list):
            raise ConfigError(f"{where}: access[{n}].claims.{key} must be a string or a list")
    return AccessRule(database=database, role=role, issuer=issuer, claims=dict(claims))
