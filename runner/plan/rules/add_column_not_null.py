"""SO312: a NOT NULL column without a default cannot be added under a running release."""

from __future__ import annotations

from collections.abc import Iterator

from sqlglot import exp

from runner.plan.model import Category, Severity
from runner.plan.rules.base import Context, StatementView, ident, rule

_SERIAL_TYPES = frozenset(
    {exp.DataType.Type.SERIAL, exp.DataType.Type.SMALLSERIAL, exp.DataType.Type.BIGSERIAL}
)
_GENERATED = (exp.GeneratedAsIdentityColumnConstraint, exp.ComputedColumnConstraint)


def _needs_value(column: exp.ColumnDef) -> bool:
    """NOT NULL (or PRIMARY KEY) and nothing that fills existing and omitted rows."""
    kind = column.args.get("kind")
    if isinstance(kind, exp.DataType) and kind.this in _SERIAL_TYPES:
        return False
    not_null = False
    for constraint in column.args.get("constraints") or []:
        ckind = (
            constraint.args.get("kind") if isinstance(constraint, exp.ColumnConstraint) else None
        )
        if isinstance(ckind, _GENERATED):
            return False
        if isinstance(ckind, exp.DefaultColumnConstraint) and not isinstance(ckind.this, exp.Null):
            return False
        if (
            isinstance(ckind, exp.NotNullColumnConstraint) and not ckind.args.get("allow_null")
        ) or isinstance(ckind, exp.PrimaryKeyColumnConstraint):
            not_null = True
    return not_null


@rule(
    "SO312",
    "add-column-not-null-without-default",
    Category.INCOMPATIBLE,
    Severity.WARNING,
    summary=(
        "Adding a NOT NULL column without a default fails on a populated table "
        "and breaks old inserts."
    ),
    rationale="""
        ALTER TABLE ... ADD COLUMN c <type> NOT NULL with no DEFAULT must give
        existing rows a value and has none: on a table with rows it fails
        ("column contains null values"), after taking an ACCESS EXCLUSIVE lock.
        Even on an empty table, the previous release, still running during a
        rolling deploy, inserts rows without the new column and every such
        insert fails with a not-null violation. Identity, serial and generated
        columns are filled by the database and are not reported, nor are tables
        created earlier in the plan.
    """,
    safer="""
        Add the column nullable or with a constant default (PostgreSQL 11+ adds a
        non-volatile default without rewriting): ALTER TABLE t ADD COLUMN c
        bigint DEFAULT 0 NOT NULL; or add it nullable, backfill in batches, then
        ALTER TABLE t ADD CONSTRAINT c_not_null CHECK (c IS NOT NULL) NOT VALID;
        VALIDATE CONSTRAINT; and SET NOT NULL (PostgreSQL 12+ uses the validated
        check instead of scanning) once every writer sets it.
    """,
    triggers=[
        "ALTER TABLE users ADD COLUMN tenant_id bigint NOT NULL",
        "alter table public.users add tenant_id bigint not null default null",
        "ALTER TABLE IF EXISTS patients ADD COLUMN IF NOT EXISTS mrn text "
        "CONSTRAINT mrn_nn NOT NULL",
        "ALTER TABLE visits ADD COLUMN visit_key uuid PRIMARY KEY",
    ],
    passes=[
        "ALTER TABLE users ADD COLUMN score integer NOT NULL DEFAULT 0",
        "ALTER TABLE users ADD COLUMN tenant_id bigint",
        "ALTER TABLE invoices ADD COLUMN seq_no bigserial NOT NULL",
        "ALTER TABLE t ADD COLUMN id bigint GENERATED ALWAYS AS IDENTITY NOT NULL",
        "ALTER TABLE orders ADD COLUMN total bigint NOT NULL "
        "GENERATED ALWAYS AS (qty * price) STORED",
        "CREATE TABLE accounts (id bigint PRIMARY KEY);\n"
        "ALTER TABLE accounts ADD COLUMN tenant_id bigint NOT NULL",
    ],
    kinds=("alter_table",),
)
def add_column_not_null(view: StatementView, context: Context) -> Iterator[str]:
    found = view.live_table_actions(context)
    if found is None:
        return
    table, actions = found
    for action in actions:
        if isinstance(action, exp.ColumnDef) and _needs_value(action):
            yield (
                f"adds NOT NULL column {table}.{ident(action.this)} without a default: it fails "
                f"if {table} has rows, and inserts of the previous release (which do not set "
                f"it) fail with a not-null violation"
            )
