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
    # http_header_timeout = "10s", http_body_timeout = "30s", http_max_connections = 256
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

    [databases.guard]                    # optional: the server-side guard's marker role
    user = "signoff_guard"               # (see `signoff gateway install-guard`)
    password_env = "EHR_GUARD_PASSWORD"  # or password_file

    [[access]]
    database = "ehr"
    role = "deployer"
    issuer = "github"
    claims = { repository = "acme/ehr-api", ref = "refs/heads/main" }

    [approvals]                          # who may approve a plan on the PR/MR
    github_permission = "write"          # read, triage, write, maintain, admin
    gitlab_access = "developer"          # reporter, developer, maintainer, owner
    min_approvals = 1                    # distinct approvers; per database: min_approvals

    [code_hosts.github]                  # the gateway's own credential: it writes the
    api_url = "https://api.github.com"   # plan comment and re-reads every approval itself
    token_env = "SIGNOFF_GITHUB_TOKEN"   # or token_file = "/run/secrets/github-token"

    [code_hosts.gitlab]                  # self-managed: the instance URL
    api_url = "https://gitlab.com"
    token_env = "SIGNOFF_GITLAB_TOKEN"

    [roles.deployer]
    destructive = "needs-approval"
    unanalysable = "needs-approval"
    locking = "allow"
    incompatible = "allow"
    hygiene = "allow"
    rules = { SO104 = "deny" }
"""

from __future__ import annotations

import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

from runner import tomlfields as fields
from runner.config import parse_duration_ms
from runner.errors import ConfigError
from runner.gateway.masking.config import MaskingConfig, parse_masking
from runner.gateway.model import Upstream, Verdict
from runner.gateway.oidc import IssuerConfig
from runner.plan.model import Category
from runner.plan.rules import catalogue

DEFAULT_SESSION_TTL = timedelta(minutes=15)
DEFAULT_MAX_SESSION_TTL = timedelta(hours=1)

_SECTIONS = {
    "gateway",
    "listen",
    "issuers",
    "databases",
    "access",
    "roles",
    "approvals",
    "code_hosts",
    "masking",
}
_APPROVALS_KEYS = {"github_permission", "gitlab_access", "min_approvals"}
_CODE_HOST_KEYS = {"api_url", "token_env", "token_file", "bot_login"}
# The permission levels in the order they include each other.
GITHUB_PERMISSIONS = ("read", "triage", "write", "maintain", "admin")
GITLAB_ACCESS_LEVELS = {"reporter": 20, "developer": 30, "maintainer": 40, "owner": 50}
_DEFAULT_API_URLS = {"github": "https://api.github.com", "gitlab": "https://gitlab.com"}
_GATEWAY_KEYS = {
    "audience",
    "state_url",
    "signing_key",
    "session_ttl",
    "max_session_ttl",
    "max_statement_bytes",
    "archive",
    "archive_s3_endpoint_url",
}
_LISTEN_KEYS = {
    "http",
    "pg",
    "tls_cert",
    "tls_key",
    "public_host",
    "allow_cleartext_on_loopback",
    "http_header_timeout",
    "http_body_timeout",
    "http_max_connections",
    "pg_startup_timeout",
    "pg_max_connections",
}
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
    "min_approvals",
    "guard",
}
_GUARD_KEYS = {"user", "password_env", "password_file"}
_ACCESS_KEYS = {"database", "role", "issuer", "claims"}


@dataclass(frozen=True)
class GuardCredential:
    """The role the gateway marks approved statements with, for the database's
    server-side guard (runner.gateway.dbguard): ``[databases.guard]``."""

    user: str
    password_env: str | None = None
    password_file: str | None = None


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
    min_approvals: int | None = None  # None: [approvals].min_approvals
    guard: GuardCredential | None = None  # None: no marks (the guard, if installed, refuses)

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
        return fields.read_secret(self.password_env, self.password_file, f"databases.{self.name}")

    def guard_upstream(self) -> Upstream | None:
        """Where and as whom the guard's marks are written (read now), or None."""
        guard = self.guard
        if guard is None:
            return None
        password = fields.read_secret(
            guard.password_env, guard.password_file, f"databases.{self.name}.guard"
        )
        return Upstream(self.host, self.port, self.dbname, guard.user, password, self.sslmode)


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
    # A planning role (the pull_request job, which runs the PR's code and must not
    # change the database) submits plans for review as the role that will apply them.
    review_as: str | None = None
    # Put in force on the role's upstream connections (milliseconds; None: the server's).
    lock_timeout_ms: int | None = None
    statement_timeout_ms: int | None = None

    def settings(self) -> tuple[tuple[str, str], ...]:
        """The role's settings as startup parameters."""
        pairs = (
            ("lock_timeout", self.lock_timeout_ms),
            ("statement_timeout", self.statement_timeout_ms),
        )
        return tuple((name, str(value)) for name, value in pairs if value is not None)

    def verdict(self, rule_id: str, category: Category) -> Verdict:
        if rule_id in self.rules:
            return self.rules[rule_id]
        if category in self.categories:
            return self.categories[category]
        return DEFAULT_ROLE_VERDICTS.get(category, Verdict.NEEDS_APPROVAL)


# Fail closed: a role that does not mention a category needs approval for it,
# escape hatches are denied outright (no grant allows one; only the role's own
# `escape-hatch = ...` or `rules = { SO6xx = ... }` does), and hygiene, which is
# advice, never blocks.
DEFAULT_ROLE_VERDICTS: Mapping[Category, Verdict] = {
    Category.DESTRUCTIVE: Verdict.NEEDS_APPROVAL,
    Category.ACCESS_CONTROL: Verdict.NEEDS_APPROVAL,
    Category.ESCAPE_HATCH: Verdict.DENY,
    Category.UNANALYSABLE: Verdict.NEEDS_APPROVAL,
    Category.LOCKING: Verdict.NEEDS_APPROVAL,
    Category.INCOMPATIBLE: Verdict.NEEDS_APPROVAL,
    Category.HYGIENE: Verdict.ALLOW,
}


@dataclass(frozen=True)
class CodeHostConfig:
    """The gateway's own credential on a code host (github or gitlab): it writes the
    plan comment and re-reads approvals with it, so the runner never speaks for it."""

    platform: str
    api_url: str
    token_env: str | None = None
    token_file: str | None = None
    bot_login: str | None = None  # the login the token acts as (a GitHub App's "<slug>[bot]")

    def token(self) -> str:
        token = fields.read_secret(self.token_env, self.token_file, f"code_hosts.{self.platform}")
        if not token:
            raise ConfigError(f"code_hosts.{self.platform}: no token; set token_env or token_file")
        return token


@dataclass(frozen=True)
class ApprovalSettings:
    github_permission: str = "write"
    gitlab_access: str = "developer"
    min_approvals: int = 1

    @property
    def gitlab_access_level(self) -> int:
        return GITLAB_ACCESS_LEVELS[self.gitlab_access]


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
    approvals: ApprovalSettings = field(default_factory=ApprovalSettings)
    # What one HTTP client can hold: its request head, its body, and connections.
    # A text longer than this is not analysed (its tokens and tree are where a
    # gateway's memory and time would go): it is one unanalysable statement.
    max_statement_bytes: int = 262_144
    # Where the gateway keeps each closed session's bundle itself (file://dir or
    # s3://bucket/prefix), so a runner that never uploads still leaves evidence.
    archive: str | None = None
    archive_s3_endpoint_url: str | None = None
    http_header_timeout: timedelta = timedelta(seconds=10)
    http_body_timeout: timedelta = timedelta(seconds=30)
    http_max_connections: int = 256
    pg_startup_timeout: timedelta = timedelta(seconds=60)
    pg_max_connections: int = 1024
    code_hosts: Mapping[str, CodeHostConfig] = field(default_factory=dict)
    path: Path | None = None
    # PHI masking of result rows ([masking], runner.gateway.masking.config).
    masking: MaskingConfig = field(default_factory=MaskingConfig)

    def min_approvals(self, database: str) -> int:
        own = self.databases[database].min_approvals
        return own if own is not None else self.approvals.min_approvals


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
    fields.known_keys(data, _SECTIONS, where, "")
    gateway = fields.table(data.get("gateway", {}), where, "gateway")
    fields.known_keys(gateway, _GATEWAY_KEYS, where, "gateway.")
    listen = fields.table(data.get("listen", {}), where, "listen")
    fields.known_keys(listen, _LISTEN_KEYS, where, "listen.")

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
        for name, raw in fields.table(data.get("roles", {}), where, "roles").items()
    }
    for role in roles.values():
        if role.review_as is not None and role.review_as not in roles:
            raise ConfigError(
                f"{where}: roles.{role.name}.review_as = {role.review_as!r} is not a role "
                "under [roles]"
            )
    access = tuple(
        _access(raw, where, n, databases, roles, issuer_names)
        for n, raw in enumerate(_list(data, "access", where))
    )
    return GatewayConfig(
        audience=fields.string(
            gateway.get("audience", "signoff-gateway"), where, "gateway.audience"
        ),
        state_url=fields.string(
            gateway.get("state_url", "sqlite:///signoff-gateway.db"), where, "gateway.state_url"
        ),
        signing_key=_optional_path(gateway.get("signing_key"), where, "gateway.signing_key"),
        session_ttl=session_ttl,
        max_session_ttl=max_ttl,
        http_host=http_host,
        http_port=http_port,
        pg_host=pg_host,
        pg_port=pg_port,
        public_host=fields.string(listen.get("public_host", pg_host), where, "listen.public_host"),
        tls_cert=tls_cert,
        tls_key=tls_key,
        allow_cleartext_on_loopback=bool(listen.get("allow_cleartext_on_loopback", True)),
        issuers=issuers,
        databases=databases,
        access=access,
        roles=roles,
        approvals=_approvals(data.get("approvals", {}), where),
        archive=(
            None
            if gateway.get("archive") is None
            else fields.string(gateway["archive"], where, "gateway.archive")
        ),
        archive_s3_endpoint_url=(
            None
            if gateway.get("archive_s3_endpoint_url") is None
            else fields.string(
                gateway["archive_s3_endpoint_url"], where, "gateway.archive_s3_endpoint_url"
            )
        ),
        max_statement_bytes=fields.positive_int(
            gateway.get("max_statement_bytes", 262_144), where, "gateway.max_statement_bytes"
        ),
        http_header_timeout=_duration(
            listen.get("http_header_timeout", "10s"), where, "listen.http_header_timeout"
        ),
        http_body_timeout=_duration(
            listen.get("http_body_timeout", "30s"), where, "listen.http_body_timeout"
        ),
        http_max_connections=fields.positive_int(
            listen.get("http_max_connections", 256), where, "listen.http_max_connections"
        ),
        pg_startup_timeout=_duration(
            listen.get("pg_startup_timeout", "60s"), where, "listen.pg_startup_timeout"
        ),
        pg_max_connections=fields.positive_int(
            listen.get("pg_max_connections", 1024), where, "listen.pg_max_connections"
        ),
        code_hosts=_code_hosts(data.get("code_hosts", {}), where),
        path=path,
        masking=parse_masking(data.get("masking"), where, roles),
    )


# -- pieces -------------------------------------------------------------------------------


def _list(data: Mapping[str, Any], name: str, where: str) -> list[Mapping[str, Any]]:
    value = data.get(name, [])
    if not isinstance(value, list) or not all(isinstance(v, Mapping) for v in value):
        raise ConfigError(f"{where}: {name} must be an array of tables ([[{name}]])")
    return value


def _optional_path(value: Any, where: str, name: str) -> Path | None:
    return None if value is None else Path(fields.string(value, where, name))


def _address(value: Any, where: str, name: str) -> tuple[str, int]:
    text = fields.string(value, where, name)
    host, _, port = text.rpartition(":")
    if not host or not port.isdigit() or not 0 <= int(port) < 65536:
        raise ConfigError(f"{where}: {name} = {text!r}; write host:port, e.g. 127.0.0.1:6432")
    return host.strip("[]"), int(port)


def _duration(value: Any, where: str, name: str) -> timedelta:
    return fields.duration(value, where, name)


def _issuer(raw: Mapping[str, Any], where: str, n: int) -> IssuerConfig:
    fields.known_keys(raw, _ISSUER_KEYS, where, f"issuers[{n}].")
    issuer = fields.string(raw.get("issuer"), where, f"issuers[{n}].issuer")
    algorithms = raw.get("algorithms", ["RS256", "ES256"])
    if not isinstance(algorithms, list) or not all(isinstance(a, str) for a in algorithms):
        raise ConfigError(f"{where}: issuers[{n}].algorithms must be a list of names")
    try:
        return IssuerConfig(
            name=fields.string(raw.get("name", issuer), where, f"issuers[{n}].name"),
            issuer=issuer,
            jwks_uri=raw.get("jwks_uri"),
            algorithms=tuple(algorithms),
            require_jti=bool(raw.get("require_jti", True)),
        )
    except ValueError as error:
        raise ConfigError(f"{where}: issuers[{n}]: {error}") from None


def _database(raw: Mapping[str, Any], where: str, n: int) -> DatabaseConfig:
    fields.known_keys(raw, _DATABASE_KEYS, where, f"databases[{n}].")
    if "password" in raw:  # pragma: no cover - _known already refuses it; kept for the message
        raise ConfigError(f"{where}: databases[{n}].password: never in the file")
    name = fields.string(raw.get("name"), where, f"databases[{n}].name")
    password_env, password_file = fields.secret_source(
        raw, where, f"databases.{name}", what="password"
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
        host=fields.string(raw.get("host", "127.0.0.1"), where, f"databases.{name}.host"),
        port=port,
        dbname=fields.string(raw.get("dbname", name), where, f"databases.{name}.dbname"),
        user=fields.string(raw.get("user"), where, f"databases.{name}.user"),
        password_env=password_env,
        password_file=password_file,
        sslmode=sslmode,
        min_approvals=(
            None
            if raw.get("min_approvals") is None
            else fields.positive_int(raw["min_approvals"], where, f"databases.{name}.min_approvals")
        ),
        guard=None if raw.get("guard") is None else _guard(raw["guard"], where, name),
    )


def _guard(raw: Any, where: str, database: str) -> GuardCredential:
    name = f"databases.{database}.guard"
    table = fields.table(raw, where, name)
    fields.known_keys(table, _GUARD_KEYS, where, f"{name}.")
    password_env, password_file = fields.secret_source(table, where, name, what="password")
    return GuardCredential(
        user=fields.string(table.get("user"), where, f"{name}.user"),
        password_env=password_env,
        password_file=password_file,
    )


def _verdict(value: Any, where: str, name: str) -> Verdict:
    return fields.choice(Verdict, value, where, name)


def _role(name: str, raw: Any, where: str) -> RoleConfig:
    table = fields.table(raw, where, f"roles.{name}")
    categories = dict(DEFAULT_ROLE_VERDICTS)
    rules: dict[str, Verdict] = {}
    known_rules = catalogue()
    review_as: str | None = None
    timeouts: dict[str, int | None] = {}
    for key, value in table.items():
        if key == "review_as":
            review_as = fields.string(value, where, f"roles.{name}.review_as")
            continue
        if key in ("lock_timeout", "statement_timeout"):
            timeouts[key] = parse_duration_ms(value, f"{where}: roles.{name}.{key}")
            continue
        if key == "rules":
            for rule_id, verdict in fields.table(value, where, f"roles.{name}.rules").items():
                if rule_id not in known_rules:
                    raise ConfigError(
                        f"{where}: roles.{name}.rules.{rule_id} is not a rule id; "
                        "see `signoff rules`"
                    )
                rules[rule_id] = _verdict(verdict, where, f"roles.{name}.rules.{rule_id}")
            continue
        category = fields.category(
            key,
            where,
            f"roles.{name}.{key}",
            also="rules, review_as, lock_timeout or statement_timeout",
        )
        categories[category] = _verdict(value, where, f"roles.{name}.{key}")
    return RoleConfig(
        name=name,
        categories=categories,
        rules=rules,
        review_as=review_as,
        lock_timeout_ms=timeouts.get("lock_timeout"),
        statement_timeout_ms=timeouts.get("statement_timeout"),
    )


def _access(
    raw: Mapping[str, Any],
    where: str,
    n: int,
    databases: Mapping[str, DatabaseConfig],
    roles: Mapping[str, RoleConfig],
    issuers: list[str],
) -> AccessRule:
    fields.known_keys(raw, _ACCESS_KEYS, where, f"access[{n}].")
    database = fields.string(raw.get("database"), where, f"access[{n}].database")
    if database not in databases:
        raise ConfigError(f"{where}: access[{n}].database {database!r} is not in [[databases]]")
    role = fields.string(raw.get("role"), where, f"access[{n}].role")
    if role not in roles:
        raise ConfigError(f"{where}: access[{n}].role {role!r} is not defined under [roles]")
    issuer = fields.string(raw.get("issuer"), where, f"access[{n}].issuer")
    if issuer not in issuers:
        raise ConfigError(f"{where}: access[{n}].issuer {issuer!r} is not a configured issuer")
    claims = fields.table(raw.get("claims", {}), where, f"access[{n}].claims")
    if not claims:
        raise ConfigError(
            f"{where}: access[{n}].claims is empty; pin at least repository/project_path "
            "(an empty matcher would admit every token of the issuer)"
        )
    for key, value in claims.items():
        if not isinstance(value, str | list):
            raise ConfigError(f"{where}: access[{n}].claims.{key} must be a string or a list")
    return AccessRule(database=database, role=role, issuer=issuer, claims=dict(claims))


def _approvals(raw: Any, where: str) -> ApprovalSettings:
    approvals = fields.table(raw, where, "approvals")
    fields.known_keys(approvals, _APPROVALS_KEYS, where, "approvals.")
    github = approvals.get("github_permission", "write")
    if github not in GITHUB_PERMISSIONS:
        raise ConfigError(
            f"{where}: approvals.github_permission = {github!r}; "
            f"use one of {', '.join(GITHUB_PERMISSIONS)}"
        )
    gitlab = approvals.get("gitlab_access", "developer")
    if gitlab not in GITLAB_ACCESS_LEVELS:
        raise ConfigError(
            f"{where}: approvals.gitlab_access = {gitlab!r}; "
            f"use one of {', '.join(GITLAB_ACCESS_LEVELS)}"
        )
    minimum = fields.positive_int(
        approvals.get("min_approvals", 1), where, "approvals.min_approvals"
    )
    return ApprovalSettings(github_permission=github, gitlab_access=gitlab, min_approvals=minimum)


def _code_hosts(raw: Any, where: str) -> dict[str, CodeHostConfig]:
    hosts: dict[str, CodeHostConfig] = {}
    for platform, value in fields.table(raw, where, "code_hosts").items():
        if platform not in _DEFAULT_API_URLS:
            raise ConfigError(
                f"{where}: code_hosts.{platform} is not a code host; use github or gitlab"
            )
        host = fields.table(value, where, f"code_hosts.{platform}")
        fields.known_keys(host, _CODE_HOST_KEYS, where, f"code_hosts.{platform}.")
        env, path = fields.secret_source(host, where, f"code_hosts.{platform}", what="token")
        if env is None and path is None:
            raise ConfigError(
                f"{where}: code_hosts.{platform}: set token_env or token_file "
                "(the gateway's own token; never in the file)"
            )
        api_url = fields.string(
            host.get("api_url", _DEFAULT_API_URLS[platform]),
            where,
            f"code_hosts.{platform}.api_url",
        )
        if not api_url.startswith(("https://", "http://")):
            raise ConfigError(
                f"{where}: code_hosts.{platform}.api_url = {api_url!r}; write an http(s) URL"
            )
        bot_login = host.get("bot_login")
        if bot_login is not None:
            fields.string(bot_login, where, f"code_hosts.{platform}.bot_login")
        hosts[platform] = CodeHostConfig(platform, api_url.rstrip("/"), env, path, bot_login)
    return hosts
