"""SO513: settings that switch statement logging or pgaudit off."""

from __future__ import annotations

from collections.abc import Iterator

from runner.plan.model import Category, Severity
from runner.plan.rules._settings import SettingChange, setting_changes
from runner.plan.rules.base import Context, StatementView, rule

_OFF = frozenset({"off", "false", "no", "0", "'off'", "'false'", "'no'", "'0'"})


def _reduces(change: SettingChange) -> bool:
    name, value = change.name or "", (change.value or "").strip("'")
    if name == "log_statement":
        return value != "all"
    if name.startswith("pgaudit."):
        return True  # what pgaudit records is the operators' to decide
    if name in ("log_connections", "log_disconnections", "track_activities"):
        return value in _OFF or change.value is None
    if name in ("log_min_error_statement", "log_min_messages"):
        return value in ("panic", "fatal", "log") or change.value is None
    return False


@rule(
    "SO513",
    "audit-logging-reduced",
    Category.ACCESS_CONTROL,
    Severity.ERROR,
    summary="log_statement, pgaudit.* lowered (SET, ALTER ROLE / SYSTEM ...): audit switched off.",
    rationale="""
        HIPAA's audit controls rely on the server's own record of who ran
        what: log_statement, pgaudit's settings, connection logging. A session
        that sets log_statement = 'none' or pgaudit.log = 'none' (or excludes
        classes with '-...') runs its next statements unrecorded, and ALTER
        ROLE / ALTER DATABASE / ALTER SYSTEM ... SET does it for every later
        session. Any pgaudit.* change is reported, and log_statement set to
        anything but 'all'; the spelling (SET, SET LOCAL, set_config) does not
        matter. Going back to the default (RESET, TO DEFAULT) is not reported.
    """,
    safer="""
        Leave logging configuration to the operators; if a bulk load logs too
        much, raise it with them rather than switching logging off in the load.
    """,
    triggers=[
        "SET log_statement = 'none'",
        "SET LOCAL pgaudit.log = 'none'",
        "ALTER SYSTEM SET log_statement = 'ddl'",
        "ALTER ROLE app SET pgaudit.log TO '-read'",
        "SELECT set_config('log_statement', 'none', false)",
        "ALTER DATABASE ehr SET log_connections = off",
    ],
    passes=[
        "SET log_statement = 'all'",
        "RESET log_statement",
        "SET lock_timeout = '2s'",
        "SHOW pgaudit.log",
    ],
)
def audit_logging(view: StatementView, context: Context) -> Iterator[str]:
    for change in setting_changes(view):
        if change.default or change.name is None or not _reduces(change):
            continue
        value = change.value if change.value is not None else "a value not known"
        yield f"{change.how} {change.name} to {value}: statements go unrecorded by the server"
