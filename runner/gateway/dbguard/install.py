"""Install, remove and read the guard: ``signoff gateway install-guard`` /
``uninstall-guard``, and what ``check-config`` and ``serve`` say of each database.

Installing needs a role that may create event triggers (a superuser on a server of
your own; ``rds_superuser`` / ``cloudsqlsuperuser`` / ``azure_pg_admin`` on managed
services, see README); reading the status needs nothing but the catalog.
"""

from __future__ import annotations

from dataclasses import dataclass

import psycopg
from psycopg import sql as pgsql

from runner.errors import SignoffError
from runner.gateway.dbguard import sql
from runner.gateway.model import Upstream

CONNECT_TIMEOUT_S = 5


class GuardError(SignoffError):
    """The guard could not be installed, removed or read: one line."""


@dataclass(frozen=True)
class GuardStatus:
    """What the catalog says of the guard, and of the role that asked."""

    installed: bool
    version: int | None  # the schema's stamp; None when absent or unreadable
    triggers_enabled: int  # of the guard's event triggers
    role: str
    superuser: bool
    bypassrls: bool

    @property
    def current(self) -> bool:
        return (
            self.installed
            and self.version == sql.GUARD_VERSION
            and self.triggers_enabled == len(sql.EVENT_TRIGGERS)
        )

    def describe(self) -> str:
        if not self.installed:
            return (
                "guard not installed: the gateway's analysis is the only check, so a "
                "destructive effect it cannot see (a function or trigger body written "
                "before the gateway, a C function) is not stopped; run "
                "`signoff gateway install-guard`"
            )
        if self.version != sql.GUARD_VERSION:
            return (
                f"guard installed but version {self.version} (this gateway's is "
                f"{sql.GUARD_VERSION}); run `signoff gateway install-guard` again"
            )
        if self.triggers_enabled != len(sql.EVENT_TRIGGERS):
            return (
                f"guard installed (version {self.version}) but only {self.triggers_enabled} of "
                f"its {len(sql.EVENT_TRIGGERS)} event triggers are enabled; run "
                "`signoff gateway install-guard` again"
            )
        return f"guard installed and current (version {self.version})"

    def role_warnings(self, database: str) -> list[str]:
        """Least privilege: what the upstream role should not have."""
        warnings = []
        if self.superuser:
            warnings.append(
                f"databases.{database}: the upstream role {self.role} is a superuser: it "
                "passes every privilege check, can turn the guard's triggers off "
                "(session_replication_role) and drop it; use an owner role without "
                "SUPERUSER (README: upstream roles)"
            )
        if self.bypassrls:
            warnings.append(
                f"databases.{database}: the upstream role {self.role} has BYPASSRLS: row "
                "level security policies do not apply to any session; ALTER ROLE "
                f"{self.role} NOBYPASSRLS"
            )
        return warnings


def _conninfo(upstream: Upstream) -> str:
    return psycopg.conninfo.make_conninfo(
        host=upstream.host,
        port=upstream.port,
        dbname=upstream.dbname,
        user=upstream.user,
        password=upstream.password,
        sslmode=upstream.sslmode,
        connect_timeout=CONNECT_TIMEOUT_S,
        application_name="signoff-gateway-guard",
    )


def _connect(target: Upstream | str) -> psycopg.Connection[tuple[object, ...]]:
    conninfo = target if isinstance(target, str) else _conninfo(target)
    try:
        return psycopg.connect(conninfo, autocommit=True)
    except psycopg.Error as error:
        where = "the admin URL" if isinstance(target, str) else f"{target.user}@{target.host}"
        raise GuardError(f"cannot connect as {where}: {_first_line(error)}") from None


def _first_line(error: BaseException) -> str:
    return (str(error).strip().splitlines() or [type(error).__name__])[0]


def read_status(upstream: Upstream) -> GuardStatus:
    """The guard's status as ``upstream``'s role sees it (it needs no privilege)."""
    with _connect(upstream) as conn:
        try:
            row = conn.execute(sql.STATUS, (list(sql.EVENT_TRIGGERS),)).fetchone()
        except psycopg.Error as error:
            raise GuardError(f"cannot read the guard's status: {_first_line(error)}") from None
    assert row is not None
    comment, enabled, superuser, bypassrls, role = row
    version: int | None = None
    if isinstance(comment, str) and comment.startswith("signoff guard "):
        tail = comment.removeprefix("signoff guard ")
        version = int(tail) if tail.isdigit() else None
    return GuardStatus(
        installed=comment is not None,
        version=version,
        triggers_enabled=int(str(enabled)),
        role=str(role),
        superuser=bool(superuser),
        bypassrls=bool(bypassrls),
    )


def install(target: Upstream | str, *, marker_role: str | None = None) -> str:
    """Install (or bring up to date) the guard in one transaction, as ``target``;
    ``marker_role``, when another role than the installer's, may set marks."""
    with _connect(target) as conn:
        try:
            with conn.transaction():
                conn.execute(sql.INSTALL)
                installer = conn.execute("SELECT current_user").fetchone()
                if marker_role and installer is not None and marker_role != installer[0]:
                    conn.execute(
                        pgsql.SQL(sql.GRANT_TO_MARKER).format(role=pgsql.Identifier(marker_role))
                    )
                row = conn.execute(
                    "SELECT count(*) FROM pg_trigger WHERE tgfoid = "
                    "'signoff_guard.on_truncate()'::regprocedure"
                ).fetchone()
        except psycopg.Error as error:
            raise GuardError(
                f"install-guard failed, nothing changed: {_first_line(error)}"
            ) from None
    tables = 0 if row is None else int(str(row[0]))
    return f"guard version {sql.GUARD_VERSION} installed; TRUNCATE trigger on {tables} table(s)"


def uninstall(target: Upstream | str) -> str:
    """Remove the guard (its event triggers, TRUNCATE triggers and schema)."""
    with _connect(target) as conn:
        try:
            with conn.transaction():
                present = conn.execute(
                    "SELECT 1 FROM pg_namespace WHERE nspname = 'signoff_guard'"
                ).fetchone()
                conn.execute(sql.UNINSTALL)
        except psycopg.Error as error:
            raise GuardError(
                f"uninstall-guard failed, nothing changed: {_first_line(error)}"
            ) from None
    return "guard removed" if present else "guard was not installed; nothing to remove"
