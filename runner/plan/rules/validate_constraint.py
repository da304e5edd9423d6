"""SO218: VALIDATE CONSTRAINT in the transaction that added the constraint NOT VALID."""

from __future__ import annotations

from collections.abc import Iterator

from runner.plan.model import Category, Severity
from runner.plan.rules.base import Context, StatementView, rule
from runner.plan.schema import relation_key

_KINDS = frozenset({"alter_table_validate_constraint"})


@rule(
    "SO218",
    "validate-in-same-transaction",
    Category.LOCKING,
    Severity.WARNING,
    summary="VALIDATE in the transaction that added the constraint NOT VALID undoes its point.",
    rationale="""
        NOT VALID exists so that the slow part, checking the existing rows,
        happens under VALIDATE CONSTRAINT's SHARE UPDATE EXCLUSIVE lock, which
        lets reads and writes go on. ADD CONSTRAINT took a stronger lock (ACCESS
        EXCLUSIVE for a CHECK, SHARE ROW EXCLUSIVE on both tables for a foreign
        key) that is held until the transaction commits; validating before that
        commit scans the table while the strong lock is still held, exactly as if
        the constraint had been added without NOT VALID.
    """,
    safer="""
        COMMIT after ADD CONSTRAINT ... NOT VALID and run ALTER TABLE t VALIDATE
        CONSTRAINT c; in a later transaction (in Alembic, a separate migration or
        an autocommit_block()).
    """,
    triggers=[
        "BEGIN;\nALTER TABLE orders ADD CONSTRAINT orders_user_fk FOREIGN KEY (user_id) "
        "REFERENCES users (id) NOT VALID;\nALTER TABLE orders VALIDATE CONSTRAINT orders_user_fk;"
        "\nCOMMIT",
        "BEGIN;\nalter table public.products add constraint price_positive check (price > 0) "
        "not valid;\nALTER TABLE products VALIDATE CONSTRAINT price_positive;\nCOMMIT",
    ],
    passes=[
        "BEGIN;\nALTER TABLE orders ADD CONSTRAINT orders_user_fk FOREIGN KEY (user_id) "
        "REFERENCES users (id) NOT VALID;\nCOMMIT;\nBEGIN;\n"
        "ALTER TABLE orders VALIDATE CONSTRAINT orders_user_fk;\nCOMMIT",
        "ALTER TABLE orders ADD CONSTRAINT orders_user_fk FOREIGN KEY (user_id) "
        "REFERENCES users (id) NOT VALID;\nALTER TABLE orders VALIDATE CONSTRAINT orders_user_fk",
        "BEGIN;\nALTER TABLE products ADD CONSTRAINT a_pos CHECK (a > 0) NOT VALID;\n"
        "ALTER TABLE products VALIDATE CONSTRAINT b_pos;\nCOMMIT",
    ],
    kinds=_KINDS,
)
def validate_in_same_transaction(view: StatementView, context: Context) -> Iterator[str]:
    # Called only for the kinds above (the engine dispatches on kinds=).
    shape = view.shape
    if view.kind != "alter_table_validate_constraint" or shape is None or not shape.args:
        return
    table, name = relation_key(shape.relation or ""), shape.args[0]
    added = {(relation_key(t), c) for t, c in context.not_valid_in_transaction}
    if (table, name) in added:
        yield (
            f"validates {name} on {shape.relation} in the transaction that added it NOT VALID: "
            "the scan runs while ADD CONSTRAINT's stronger lock is still held"
        )
