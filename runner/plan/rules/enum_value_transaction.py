"""SO405: an enum label used in the transaction that added it."""

from __future__ import annotations

from collections.abc import Iterator

from sqlglot import exp

from runner.plan.model import Category, Severity
from runner.plan.rules.base import Context, StatementView, rule


@rule(
    "SO405",
    "enum-value-used-in-same-transaction",
    Category.HYGIENE,
    Severity.WARNING,
    summary="An enum label is used in the transaction that added it, which PostgreSQL refuses.",
    rationale="""
        ALTER TYPE ... ADD VALUE inside a transaction block is allowed from
        PostgreSQL 12 (before 12 the ALTER TYPE itself fails there), but the new
        label cannot be used until the transaction commits: a later statement of
        the same transaction that stores, compares or casts it fails with "unsafe
        use of new value", and the whole migration rolls back. Alembic runs each
        migration in one transaction, so "add the value, then backfill it" in
        one revision hits this. Labels of a type created in the same transaction
        are exempt. The rule matches string literals equal to the new label.
    """,
    safer="""
        Commit the ALTER TYPE ... ADD VALUE on its own (a separate revision, or
        COMMIT before the statements that use it; in Alembic, op.execute it inside
        with op.get_context().autocommit_block():), then use the label.
    """,
    triggers=[
        "BEGIN;\nALTER TYPE order_status ADD VALUE 'refunded';\n"
        "UPDATE orders SET status = 'refunded' WHERE refunded_at IS NOT NULL;\nCOMMIT;",
        "BEGIN;\nALTER TYPE mood ADD VALUE IF NOT EXISTS 'meh' AFTER 'ok';\n"
        "ALTER TABLE people ALTER COLUMN current_mood SET DEFAULT 'meh';\nCOMMIT;",
        "BEGIN;\nALTER TYPE public.mood ADD VALUE 'meh';\n"
        "DO $$ BEGIN UPDATE people SET current_mood = 'meh'::mood WHERE id = 1; END $$;\n"
        "COMMIT;",
    ],
    passes=[
        "ALTER TYPE order_status ADD VALUE 'refunded';\n"
        "UPDATE orders SET status = 'refunded' WHERE refunded_at IS NOT NULL;",
        "BEGIN;\nALTER TYPE order_status ADD VALUE 'refunded';\nCOMMIT;\n"
        "BEGIN;\nUPDATE orders SET status = 'refunded' WHERE refunded_at IS NOT NULL;\nCOMMIT;",
        "BEGIN;\nCREATE TYPE mood AS ENUM ('sad', 'ok');\nALTER TYPE mood ADD VALUE 'happy';\n"
        "CREATE TABLE people (current_mood mood DEFAULT 'happy');\nCOMMIT;",
        "BEGIN;\nALTER TYPE mood ADD VALUE 'meh';\nUPDATE people SET note = 'fine' "
        "WHERE id = 1;\nCOMMIT;",
    ],
)
def enum_value_used(view: StatementView, context: Context) -> Iterator[str]:
    transaction = context.transaction
    if transaction is None or not context.enum_labels_added:
        return
    node = view.node
    if node is None or isinstance(node, exp.Command):
        return
    pending = {
        label: type_
        for (type_, label), added_in in context.enum_labels_added.items()
        if added_in == transaction
    }
    if not pending:
        return
    reported: set[str] = set()
    for literal in view.nodes(exp.Literal):
        if not isinstance(literal, exp.Literal) or not literal.is_string:
            continue
        label = literal.this
        if label in pending and label not in reported:
            reported.add(label)
            yield (
                f"uses '{label}', added to enum {pending[label]} earlier in this transaction: "
                f'fails with "unsafe use of new value" until that transaction commits'
            )
