"""SO507: CREATE / ALTER ROLE with SUPERUSER, BYPASSRLS, CREATEROLE or REPLICATION."""

from __future__ import annotations

from collections.abc import Iterator

from runner.plan.commands import words
from runner.plan.model import Category, Severity
from runner.plan.rules.base import Context, StatementView, rule

_ATTRIBUTES = {
    "SUPERUSER": "bypasses every permission check",
    "BYPASSRLS": "bypasses every row-level security policy",
    "CREATEROLE": "creates roles and grants membership",
    "REPLICATION": "streams every change of the server",
}


@rule(
    "SO507",
    "privileged-role-attribute",
    Category.ACCESS_CONTROL,
    Severity.ERROR,
    summary="CREATE ROLE / ALTER ROLE ... SUPERUSER, BYPASSRLS, CREATEROLE or REPLICATION.",
    rationale="""
        These attributes put a role above the database's access controls:
        SUPERUSER skips every permission check (and reaches the server's files
        and shell), BYPASSRLS ignores every row-level security policy,
        CREATEROLE can create roles and grant itself most others' memberships,
        REPLICATION can stream every row change of every database. Given to an
        application or CI role they turn any bug in it into access to all PHI.
        The NO- forms (NOSUPERUSER...) take rights away and are not reported.
    """,
    safer="""
        Give the role the specific grants it needs; keep superuser and
        BYPASSRLS with the operators' break-glass accounts.
    """,
    triggers=[
        "ALTER ROLE app SUPERUSER",
        "ALTER USER app WITH BYPASSRLS",
        "CREATE ROLE ops WITH LOGIN CREATEROLE PASSWORD 'x'",
        "CREATE USER replicator REPLICATION",
    ],
    passes=[
        "ALTER ROLE app NOSUPERUSER NOBYPASSRLS",
        "CREATE ROLE reporting NOLOGIN",
        "ALTER ROLE app SET statement_timeout = '5s'",
        "ALTER ROLE app RENAME TO app_v2",
    ],
    kinds=("create_role", "alter_role"),
)
def privileged_role(view: StatementView, context: Context) -> Iterator[str]:
    if view.kind not in ("create_role", "alter_role") or view.shape is None:
        return
    ws = words(view.raw.tokens)
    # Attributes come before any SET / RENAME / IN DATABASE of ALTER ROLE.
    name = view.shape.relation or "?"
    for word in ws[3:]:
        if word.text in ("SET", "RESET", "RENAME", "IN"):
            break
        what = _ATTRIBUTES.get(word.text) if not word.is_string else None
        if what is not None:
            yield f"gives role {name} {word.text}: it {what}"
