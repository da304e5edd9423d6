"""SO311: dropping NOT NULL lets NULLs reach readers that assume there are none."""

from __future__ import annotations

from collections.abc import Iterator

from sqlglot import exp

from runner.plan.model import Category, Severity
from runner.plan.rules.base import Context, StatementView, ident, rule


@rule(
    "SO311",
    "drop-not-null",
    Category.INCOMPATIBLE,
    Severity.WARNING,
    summary="Dropping NOT NULL lets NULLs reach readers that assume there are none.",
    rationale="""
        Code written against a NOT NULL column does not handle NULL: typed
        models declare the field non-optional, and arithmetic, string handling
        and serialisers fail on NULL. Once the constraint is gone the new release
        (or anything else) may write NULLs, and the previous release, still
        running during a rolling deploy, crashes or mis-renders when it reads
        them. Dropping NOT NULL is a sound first step before removing a column,
        but only once no running reader depends on the values.
    """,
    safer="""
        First ship readers that tolerate NULL in the column; drop NOT NULL in the
        following release (ALTER TABLE t ALTER COLUMN c DROP NOT NULL) and only
        then start writing NULLs.
    """,
    triggers=[
        "ALTER TABLE patients ALTER COLUMN date_of_birth DROP NOT NULL",
        'alter table public."Encounters" alter "ClinicianId" drop not null',
    ],
    passes=[
        "ALTER TABLE patients ALTER COLUMN date_of_birth SET NOT NULL",
        "ALTER TABLE patients ALTER COLUMN date_of_birth DROP DEFAULT",
        "CREATE TABLE t (a int NOT NULL);\nALTER TABLE t ALTER COLUMN a DROP NOT NULL",
    ],
    kinds=("alter_table",),
)
def drop_not_null(view: StatementView, context: Context) -> Iterator[str]:
    found = view.live_table_actions(context)
    if found is None:
        return
    table, actions = found
    for action in actions:
        if (
            isinstance(action, exp.AlterColumn)
            and action.args.get("drop")
            and action.args.get("allow_null")
        ):
            yield (
                f"drops NOT NULL from {table}.{ident(action.this)}: readers of the previous "
                f"release assume a value and may fail on NULLs written from now on"
            )
