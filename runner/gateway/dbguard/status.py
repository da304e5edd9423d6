"""What ``check-config`` and ``serve``'s start-up say of each database's guard and
upstream role, and the markers ``serve`` hands its connections."""

from __future__ import annotations

import asyncio
import logging

from runner.errors import SignoffError
from runner.gateway.config import DatabaseConfig, GatewayConfig
from runner.gateway.dbguard.install import GuardStatus, read_status
from runner.gateway.dbguard.marker import GuardMarker

_log = logging.getLogger("signoff.gateway")


def database_report(database: DatabaseConfig) -> tuple[str, list[str]]:
    """(one line on the guard, warnings) for a database, read as its upstream role."""
    try:
        status = read_status(database.upstream())
    except SignoffError as error:
        return (
            f"guard: unknown ({error})",
            [f"databases.{database.name}: cannot check the guard or the upstream role: {error}"],
        )
    return _line(database, status), status.role_warnings(database.name) + _guard_warnings(
        database, status
    )


def _line(database: DatabaseConfig, status: GuardStatus) -> str:
    marks = (
        f"marks as {database.guard.user}"
        if database.guard is not None
        else "no [databases.guard] credential: approved destructive statements are refused"
    )
    return f"{status.describe()}; {marks}" if status.installed else status.describe()


def _guard_warnings(database: DatabaseConfig, status: GuardStatus) -> list[str]:
    if not status.installed:
        return [f"databases.{database.name}: {status.describe()}"]
    warnings = []
    if not status.current:
        warnings.append(f"databases.{database.name}: {status.describe()}")
    if database.guard is None:
        warnings.append(
            f"databases.{database.name}: the guard is installed but the gateway has no "
            "[databases.guard] credential to mark approved statements with: the database "
            "refuses their destructive effects; add user and password_env"
        )
    return warnings


def guard_markers(config: GatewayConfig) -> dict[str, GuardMarker]:
    """The markers of the databases with a guard credential (nothing connects yet)."""
    markers: dict[str, GuardMarker] = {}
    for database in config.databases.values():
        guard = database.guard_upstream()
        if guard is not None:
            markers[database.name] = GuardMarker(database.name, guard)
    return markers


async def log_guards(config: GatewayConfig) -> None:
    """Each database's guard status in the log (the gateway runs without a guard, and
    says what it cannot stop)."""
    for database in config.databases.values():
        line, warnings = await asyncio.to_thread(database_report, database)
        _log.info("database %s: %s", database.name, line)
        for warning in warnings:
            _log.warning("%s", warning)
