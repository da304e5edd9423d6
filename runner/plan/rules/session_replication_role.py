"""SO612: session_replication_role = replica switches off triggers, the guard's included."""

from __future__ import annotations

from collections.abc import Iterator

from runner.plan.model import Category, Severity
from runner.plan.rules._settings import setting_changes
from runner.plan.rules.base import Context, StatementView, rule

_SETTING = "session_replication_role"
_HARMLESS = frozenset({"origin", "'origin'"})


@rule(
    "SO612",
    "session-replication-role",
    Category.ESCAPE_HATCH,
    Severity.ERROR,
    summary="session_replication_role = replica (SET, set_config, ALTER ROLE / DATABASE ... SET).",
    rationale="""
        With session_replication_role = replica (or local) ordinary triggers
        and rules do not fire: foreign keys are not enforced (they are
        triggers), audit and history triggers record nothing, and event
        triggers, the server-side guard's included, are skipped. Every later
        statement of the session then runs unchecked by the database. The
        spelling does not matter: SET, SET LOCAL, set_config(...) and a default
        put in force by ALTER ROLE / ALTER DATABASE ... SET are all reported, as
        is a set_config whose setting name is not a literal. Setting it back to
        origin is not. Denied by default.
    """,
    safer="""
        Load data with triggers on and constraints checked; if a trigger must
        not fire for one bulk load, change that trigger in a reviewed statement
        (ALTER TABLE ... DISABLE TRIGGER name, reported as access-control) and
        enable it again in the same transaction.
    """,
    triggers=[
        "SET session_replication_role = replica",
        "SET LOCAL session_replication_role TO 'replica'",
        "SELECT set_config('session_replication_role', 'replica', false)",
        "SELECT pg_catalog.set_config('SESSION_REPLICATION_ROLE', 'local', true)",
        "SELECT set_config(n, 'replica', false) FROM (SELECT 'session_replication_role' AS n) s",
        "ALTER ROLE app SET session_replication_role = replica",
        "ALTER DATABASE ehr SET session_replication_role TO replica",
    ],
    passes=[
        "SET session_replication_role = origin",
        "SET session_replication_role = DEFAULT",
        "RESET session_replication_role",
        "SELECT set_config('application_name', 'migrate', false)",
        "SELECT set_config(name, 'view, foreign-table', false) FROM pg_settings"
        " WHERE name = 'restrict_nonsystem_relation_kind'",
        "SHOW session_replication_role",
    ],
)
def session_replication_role(view: StatementView, context: Context) -> Iterator[str]:
    for change in setting_changes(view):
        if change.default:
            continue
        if change.name is None:
            yield f"{change.how} of a setting whose name is not known: it may be {_SETTING}"
        elif change.name == _SETTING and (change.value or "?") not in _HARMLESS:
            value = change.value if change.value is not None else "a value not known"
            yield (
                f"{change.how} {_SETTING} to {value}: triggers, foreign keys and event "
                "triggers (the server-side guard's) stop firing"
            )
