"""SO211: ADD UNIQUE / PRIMARY KEY builds its index under ACCESS EXCLUSIVE."""

from __future__ import annotations

from collections.abc import Iterator

from sqlglot import exp

from runner.plan.model import Category, Severity
from runner.plan.rules._locks import (
    actions,
    added_constraints,
    busy_table,
    column_constraints,
    constraint_label,
    has_constraint,
    qualified,
)
from runner.plan.rules.base import Context, StatementView, ident, rule


def _columns(body: exp.Expression) -> str:
    found = body.this if isinstance(body, exp.UniqueColumnConstraint) else body
    names = [ident(e) for e in getattr(found, "expressions", None) or []]
    return f" ({', '.join(names)})" if names else ""


_KINDS = frozenset({"alter_table"})


@rule(
    "SO211",
    "add-unique-or-primary-key-without-index",
    Category.LOCKING,
    Severity.WARNING,
    summary="ADD UNIQUE / PRIMARY KEY builds an index while the table is locked.",
    rationale="""
        ALTER TABLE ... ADD CONSTRAINT ... UNIQUE or PRIMARY KEY (columns) builds
        the constraint's index inside the ALTER TABLE, holding ACCESS EXCLUSIVE
        on the table for the whole build: no reads and no writes. A primary key
        also sets its columns NOT NULL, which scans the table. ADD COLUMN ...
        UNIQUE or PRIMARY KEY on an existing table does the same. Building a
        unique index CONCURRENTLY first and then attaching it with ... USING
        INDEX takes the lock only for a catalog update. Tables created earlier
        in the plan are not reported.
    """,
    safer="""
        CREATE UNIQUE INDEX CONCURRENTLY users_email_idx ON users (email); then
        ALTER TABLE users ADD CONSTRAINT users_email_key UNIQUE USING INDEX
        users_email_idx; (for a primary key, make the columns NOT NULL first
        through a validated CHECK (col IS NOT NULL), then ADD CONSTRAINT ...
        PRIMARY KEY USING INDEX ...).
    """,
    triggers=[
        "ALTER TABLE users ADD CONSTRAINT users_email_key UNIQUE (email)",
        "alter table public.users add primary key (id)",
        "ALTER TABLE users ADD COLUMN handle text UNIQUE",
        "ALTER TABLE users ADD COLUMN uid bigint PRIMARY KEY",
    ],
    passes=[
        "ALTER TABLE users ADD CONSTRAINT users_email_key UNIQUE USING INDEX users_email_idx",
        "ALTER TABLE users ADD CONSTRAINT users_pkey PRIMARY KEY USING INDEX users_id_idx",
        "CREATE TABLE handles (h text);\nALTER TABLE handles ADD CONSTRAINT h_key UNIQUE (h)",
        "CREATE TABLE handles (h text UNIQUE, id bigint PRIMARY KEY)",
    ],
    kinds=_KINDS,
)
def add_unique_or_primary_key(view: StatementView, context: Context) -> Iterator[str]:
    # Called only for the kinds above (the engine dispatches on kinds=).
    found = busy_table(view, context, _adds_key)
    if found is None:
        return
    node, table = found
    lock = f"builds its index while ACCESS EXCLUSIVE blocks reads and writes of {table}"
    for action in actions(node):
        if isinstance(action, exp.AddConstraint):
            for name, body in added_constraints(action):
                if isinstance(body, exp.UniqueColumnConstraint):
                    label = constraint_label("UNIQUE", name)
                elif isinstance(body, exp.PrimaryKey | exp.PrimaryKeyColumnConstraint):
                    label = constraint_label("PRIMARY KEY", name)
                else:
                    continue
                yield f"adds {label} on {table}{_columns(body)}: {lock}"
        elif isinstance(action, exp.ColumnDef):
            for kind in column_constraints(action):
                if isinstance(kind, exp.UniqueColumnConstraint | exp.PrimaryKeyColumnConstraint):
                    what = (
                        "UNIQUE" if isinstance(kind, exp.UniqueColumnConstraint) else "PRIMARY KEY"
                    )
                    column = qualified(table, ident(action.this))
                    yield f"adds column {column} as {what}: {lock}"


def _adds_key(action: exp.Expression) -> bool:
    return isinstance(action, exp.AddConstraint) or has_constraint(
        action, exp.UniqueColumnConstraint, exp.PrimaryKeyColumnConstraint
    )
