"""SO108: DROP OWNED BY drops every object a role owns."""

from __future__ import annotations

from collections.abc import Iterator

from runner.plan.model import Category, Severity
from runner.plan.rules.base import Context, StatementView, rule
from runner.plan.rules.drop_reader import read_drop


@rule(
    "SO108",
    "drop-owned",
    Category.DESTRUCTIVE,
    Severity.ERROR,
    summary="DROP OWNED BY drops every table (with its rows) and object a role owns.",
    rationale="""
        DROP OWNED BY is usually written to clear a role's grants before DROP
        ROLE, but it also drops every object the role owns in the current
        database: tables with all their rows, sequences, types, functions,
        views. Which objects those are depends on the database, not on the
        migration, so the statement's effect cannot be reviewed from its text;
        with CASCADE, objects of other roles that depend on them go too.
    """,
    safer="""
        Hand the objects over first, then drop what is left (only privileges):
        'REASSIGN OWNED BY app_old TO app_owner; DROP OWNED BY app_old; DROP ROLE app_old;'.
    """,
    triggers=[
        "DROP OWNED BY app_old",
        'drop owned by app_old, "Reporting" cascade',
        "DO $$ BEGIN EXECUTE 'DROP OWNED BY app_old'; END $$",
    ],
    passes=[
        "REASSIGN OWNED BY app_old TO app_owner",
        "DROP ROLE IF EXISTS app_old",
        "REVOKE ALL ON ALL TABLES IN SCHEMA public FROM app_old",
    ],
    kinds=(None, "drop*"),
)
def drop_owned(view: StatementView, context: Context) -> Iterator[str]:
    dropped = read_drop(view)
    if dropped is None or dropped.kind != "OWNED":
        return
    for role in dropped.names:
        yield f"drops every object role {role} owns in this database, tables with their rows"
