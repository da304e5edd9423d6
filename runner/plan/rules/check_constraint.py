"""SO205: adding a CHECK constraint scans the table under ACCESS EXCLUSIVE."""

from __future__ import annotations

from collections.abc import Iterator

from sqlglot import exp

from runner.plan.model import Category, Severity
from runner.plan.rules._locks import (
    actions,
    added_constraints,
    busy_table,
    constraint_label,
    has_constraint,
    is_not_valid,
    qualified,
)
from runner.plan.rules.base import Context, StatementView, ident, rule

_KINDS = frozenset({"alter_table"})


@rule(
    "SO205",
    "check-without-not-valid",
    Category.LOCKING,
    Severity.WARNING,
    summary="A CHECK constraint added without NOT VALID scans the table while blocking it.",
    rationale="""
        ALTER TABLE ... ADD CONSTRAINT ... CHECK takes an ACCESS EXCLUSIVE lock
        and evaluates the condition on every existing row before it commits:
        reads and writes of the table wait for the whole scan. ADD COLUMN with a
        CHECK constraint does the same (PostgreSQL evaluates the check on every
        row even when the new column has no default and is NULL everywhere; a
        column-level CHECK cannot be marked NOT VALID). Adding the constraint
        NOT VALID is instant and enforces it for new rows; VALIDATE CONSTRAINT,
        later and in its own transaction, checks the old rows under SHARE UPDATE
        EXCLUSIVE, which lets reads and writes go on. Tables created earlier in
        the plan are not reported.
    """,
    safer="""
        ALTER TABLE products ADD CONSTRAINT price_positive CHECK (price > 0) NOT
        VALID; then, in a later transaction: ALTER TABLE products VALIDATE
        CONSTRAINT price_positive; (for a new column: ADD COLUMN without the CHECK
        first).
    """,
    triggers=[
        "ALTER TABLE products ADD CONSTRAINT price_positive CHECK (price > 0)",
        "alter table public.products add constraint a_pos check (a > 0), "
        "add constraint b_pos check (b > 0) not valid",
        "ALTER TABLE products ADD COLUMN discount int CHECK (discount BETWEEN 0 AND 100)",
    ],
    passes=[
        "alter table public.products add constraint price_positive check (price > 0) not valid",
        "CREATE TABLE coupons (pct int);\nALTER TABLE coupons ADD CONSTRAINT pct_range "
        "CHECK (pct BETWEEN 0 AND 100)",
        "ALTER TABLE products ADD COLUMN discount int",
        "CREATE TABLE coupons (pct int CHECK (pct > 0))",
    ],
    kinds=_KINDS,
)
def check_without_not_valid(view: StatementView, context: Context) -> Iterator[str]:
    # Called only for the kinds above (the engine dispatches on kinds=).
    found = busy_table(view, context, _adds_check)
    if found is None:
        return
    node, table = found
    for action in actions(node):
        if isinstance(action, exp.AddConstraint):
            if is_not_valid(node, action):
                continue
            for name, body in added_constraints(action):
                if isinstance(body, exp.CheckColumnConstraint):
                    yield (
                        f"adds {constraint_label('CHECK', name)} on {table} without NOT VALID: "
                        f"checks every row while ACCESS EXCLUSIVE blocks reads and writes "
                        f"of {table}"
                    )
        elif isinstance(action, exp.ColumnDef) and has_constraint(
            action, exp.CheckColumnConstraint
        ):
            column = qualified(table, ident(action.this))
            yield (
                f"adds column {column} with a CHECK constraint: PostgreSQL checks every row "
                f"of {table} while ACCESS EXCLUSIVE blocks its reads and writes; add the "
                "column, then the CHECK NOT VALID"
            )


def _adds_check(action: exp.Expression) -> bool:
    return isinstance(action, exp.AddConstraint) or has_constraint(
        action, exp.CheckColumnConstraint
    )
