"""SO206: SET NOT NULL scans the whole table under ACCESS EXCLUSIVE."""

from __future__ import annotations

from collections.abc import Iterator

from sqlglot import exp

from runner.plan.model import Category, Severity
from runner.plan.rules._locks import (
    actions,
    busy_table,
    qualified,
    server_version_text,
)
from runner.plan.rules.base import Context, Example, StatementView, ident, rule

_SAFE_PATTERN = (
    "ALTER TABLE users ADD CONSTRAINT users_email_nn CHECK (email IS NOT NULL) NOT VALID;\n"
)


_KINDS = frozenset({"alter_table"})


@rule(
    "SO206",
    "set-not-null",
    Category.LOCKING,
    Severity.WARNING,
    summary="SET NOT NULL scans every row while holding ACCESS EXCLUSIVE on the table.",
    rationale="""
        ALTER COLUMN ... SET NOT NULL takes an ACCESS EXCLUSIVE lock and reads
        the whole table to prove there is no NULL before it commits: every read
        and write of the table waits for the scan. Since PostgreSQL 12 the scan
        is skipped when a validated CHECK (column IS NOT NULL) constraint already
        proves it, and that constraint can be added NOT VALID and validated
        under a lock that lets reads and writes go on. Signoff recognises such a
        constraint when the plan adds and validates it before the SET NOT NULL;
        one that already exists in the database is not visible to it. Tables
        created earlier in the plan are not reported.
    """,
    safer="""
        ALTER TABLE users ADD CONSTRAINT users_email_nn CHECK (email IS NOT NULL)
        NOT VALID; then, in a later transaction: ALTER TABLE users VALIDATE
        CONSTRAINT users_email_nn; then (PostgreSQL 12+): ALTER TABLE users ALTER
        COLUMN email SET NOT NULL; ALTER TABLE users DROP CONSTRAINT users_email_nn;
    """,
    triggers=[
        "ALTER TABLE users ALTER COLUMN email SET NOT NULL",
        'alter table if exists only public."Users" alter "Email" set not null',
        Example(
            _SAFE_PATTERN + "ALTER TABLE users VALIDATE CONSTRAINT users_email_nn;\n"
            "ALTER TABLE users ALTER COLUMN email SET NOT NULL",
            server_version=110000,
        ),
        _SAFE_PATTERN + "ALTER TABLE users ALTER COLUMN email SET NOT NULL",
    ],
    passes=[
        "ALTER TABLE users ALTER COLUMN email DROP NOT NULL",
        "CREATE TABLE contacts (email text);\nALTER TABLE contacts ALTER COLUMN email SET NOT NULL",
        _SAFE_PATTERN + "ALTER TABLE users VALIDATE CONSTRAINT users_email_nn;\n"
        "ALTER TABLE users ALTER COLUMN email SET NOT NULL;\n"
        "ALTER TABLE users DROP CONSTRAINT users_email_nn",
    ],
    kinds=_KINDS,
)
def set_not_null(view: StatementView, context: Context) -> Iterator[str]:
    # Called only for the kinds above (the engine dispatches on kinds=).
    found = busy_table(view, context, _sets_not_null)
    if found is None:
        return
    node, table = found
    for action in actions(node):
        if not _sets_not_null(action):
            continue
        column = ident(action.this)
        proven = context.schema.has_validated_not_null_check(table, column)
        if proven and not context.version_below(120000):
            continue
        if proven:
            note = (
                f"; the validated CHECK ({column} IS NOT NULL) only spares the scan on "
                f"PostgreSQL 12+ ({server_version_text(context)})"
            )
        else:
            note = f"; no validated CHECK ({column} IS NOT NULL) precedes it in the plan"
        yield (
            f"sets {qualified(table, column)} NOT NULL: scans all of {table} while ACCESS "
            f"EXCLUSIVE blocks its reads and writes{note}"
        )


def _sets_not_null(action: exp.Expression) -> bool:
    return isinstance(action, exp.AlterColumn) and action.args.get("allow_null") is False
