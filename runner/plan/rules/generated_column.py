"""SO210: adding a stored generated column computes it for every row: a rewrite."""

from __future__ import annotations

from collections.abc import Iterator

from sqlglot import exp

from runner.plan.model import Category, Severity
from runner.plan.rules._locks import (
    added_columns,
    busy_table,
    has_constraint,
    qualified,
)
from runner.plan.rules.base import Context, StatementView, ident, rule

_KINDS = frozenset({"alter_table"})


@rule(
    "SO210",
    "add-column-generated-stored",
    Category.LOCKING,
    Severity.WARNING,
    summary="Adding a GENERATED ... STORED column rewrites the table.",
    rationale="""
        A stored generated column keeps its computed value in every row, so
        adding one to an existing table evaluates the expression for each row
        and rewrites the whole table under ACCESS EXCLUSIVE: no reads and no
        writes until it is done. (PostgreSQL 18's VIRTUAL generated columns are
        computed on read and add instantly.) Tables created earlier in the plan
        are not reported.
    """,
    safer="""
        Add a plain column (ALTER TABLE t ADD COLUMN total_cents bigint), fill it
        from a trigger for new rows and backfill old rows in batches; or on
        PostgreSQL 18, GENERATED ALWAYS AS (...) VIRTUAL.
    """,
    triggers=[
        "ALTER TABLE orders ADD COLUMN total_cents bigint "
        "GENERATED ALWAYS AS (quantity * unit_cents) STORED",
        "alter table public.orders add column search tsvector "
        "generated always as (to_tsvector('simple', title)) stored",
    ],
    passes=[
        "ALTER TABLE orders ADD COLUMN total_cents bigint",
        "CREATE TABLE lines (q int, c int, total bigint GENERATED ALWAYS AS (q * c) STORED)",
        "CREATE TABLE lines (q int, c int);\n"
        "ALTER TABLE lines ADD COLUMN total bigint GENERATED ALWAYS AS (q * c) STORED",
    ],
    kinds=_KINDS,
)
def add_column_generated_stored(view: StatementView, context: Context) -> Iterator[str]:
    # Called only for the kinds above (the engine dispatches on kinds=).
    found = busy_table(view, context, _stored_generated)
    if found is None:
        return
    node, table = found
    for column in added_columns(node):
        if _stored_generated(column):
            yield (
                f"adds stored generated column {qualified(table, ident(column.this))}: computes "
                f"it for every row, rewriting {table} under ACCESS EXCLUSIVE (blocks reads "
                "and writes)"
            )


def _stored_generated(action: exp.Expression) -> bool:
    return has_constraint(action, exp.ComputedColumnConstraint)
