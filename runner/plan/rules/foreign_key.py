"""SO204: adding a foreign key validates every row while blocking writes to both tables."""

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
    is_not_valid,
    qualified,
)
from runner.plan.rules.base import Context, StatementView, ident, rule, table_name


def _referenced(reference: exp.Expression | None) -> str:
    if isinstance(reference, exp.Reference):
        return table_name(reference.this) or "?"
    return "?"


_KINDS = frozenset({"alter_table"})


@rule(
    "SO204",
    "foreign-key-without-not-valid",
    Category.LOCKING,
    Severity.WARNING,
    summary="A foreign key added without NOT VALID scans the table while blocking writes.",
    rationale="""
        ALTER TABLE ... ADD CONSTRAINT ... FOREIGN KEY takes SHARE ROW EXCLUSIVE
        locks on both the table and the referenced table, then checks every
        existing row against the referenced table before it commits: writes to
        both tables wait for the whole scan. ADD COLUMN ... REFERENCES holds the
        ACCESS EXCLUSIVE lock of ADD COLUMN and the referenced table's lock
        together, and checks every row too when the new column has a default
        (it cannot be marked NOT VALID). Adding the constraint NOT VALID takes
        the locks only briefly and checks new rows from then on; VALIDATE
        CONSTRAINT, later and in its own transaction, checks the old rows under
        SHARE UPDATE EXCLUSIVE, which lets reads and writes go on. Tables
        created earlier in the plan are not reported.
    """,
    safer="""
        ALTER TABLE orders ADD CONSTRAINT orders_user_fk FOREIGN KEY (user_id)
        REFERENCES users (id) NOT VALID; then, in a later transaction: ALTER TABLE
        orders VALIDATE CONSTRAINT orders_user_fk; (for a new column: ADD COLUMN
        first, then the NOT VALID constraint).
    """,
    triggers=[
        "ALTER TABLE orders ADD CONSTRAINT orders_user_fk FOREIGN KEY (user_id) "
        "REFERENCES users (id)",
        "ALTER TABLE orders ADD COLUMN customer_id bigint REFERENCES customers (id)",
        "alter table public.orders add constraint fk_a foreign key (a) references a (id), "
        "add constraint fk_b foreign key (b) references b (id) not valid",
        "ALTER TABLE orders ADD FOREIGN KEY (user_id) REFERENCES users ON DELETE CASCADE",
    ],
    passes=[
        "ALTER TABLE orders ADD CONSTRAINT orders_user_fk FOREIGN KEY (user_id) "
        "REFERENCES users (id) NOT VALID",
        "CREATE TABLE notes (id int, user_id int);\n"
        "ALTER TABLE notes ADD CONSTRAINT notes_user_fk FOREIGN KEY (user_id) "
        "REFERENCES users (id)",
        "CREATE TABLE notes (id int, user_id int REFERENCES users (id))",
        "ALTER TABLE orders ADD COLUMN customer_id bigint",
    ],
    kinds=_KINDS,
)
def foreign_key_without_not_valid(view: StatementView, context: Context) -> Iterator[str]:
    # Called only for the kinds above (the engine dispatches on kinds=).
    found = busy_table(view, context, _adds_foreign_key)
    if found is None:
        return
    node, table = found
    for action in actions(node):
        if isinstance(action, exp.AddConstraint):
            if is_not_valid(node, action):
                continue
            for name, body in added_constraints(action):
                if isinstance(body, exp.ForeignKey):
                    target = _referenced(body.args.get("reference"))
                    yield (
                        f"adds {constraint_label('FOREIGN KEY', name)} on {table} referencing "
                        f"{target} without NOT VALID: checks every row of {table} while "
                        f"SHARE ROW EXCLUSIVE blocks writes to {table} and {target}"
                    )
        elif isinstance(action, exp.ColumnDef):
            kinds = column_constraints(action)
            for kind in kinds:
                if isinstance(kind, exp.Reference):
                    column = qualified(table, ident(action.this))
                    target = table_name(kind.this) or "?"
                    if _has_default(kinds):
                        scan = f"checks every row of {table} against {target} while holding"
                    else:
                        scan = "holds"
                    yield (
                        f"adds column {column} with REFERENCES {target}: {scan} ACCESS EXCLUSIVE "
                        f"on {table} and SHARE ROW EXCLUSIVE on {target} at once (reads and "
                        f"writes of {table}, writes of {target} wait); add the column, then the "
                        "foreign key NOT VALID"
                    )


def _adds_foreign_key(action: exp.Expression) -> bool:
    return isinstance(action, exp.AddConstraint) or has_constraint(action, exp.Reference)


def _has_default(kinds: list[exp.Expression]) -> bool:
    """A non-null DEFAULT: PostgreSQL then validates the new column's foreign key row by row."""
    return any(
        isinstance(kind, exp.DefaultColumnConstraint) and not isinstance(kind.this, exp.Null)
        for kind in kinds
    )
