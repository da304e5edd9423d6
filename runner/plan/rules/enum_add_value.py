"""SO221: ALTER TYPE ... ADD VALUE inside a transaction block fails before PostgreSQL 12."""

from __future__ import annotations

from collections.abc import Iterator

from runner.plan.model import Category, Decision, Severity
from runner.plan.rules._locks import in_transaction_block, server_version_text
from runner.plan.rules.base import Context, Example, StatementView, rule

_KINDS = frozenset({"alter_type_add_value"})


@rule(
    "SO221",
    "enum-add-value-in-transaction",
    Category.LOCKING,
    Severity.ERROR,
    summary="ALTER TYPE ... ADD VALUE cannot run inside a transaction block before PostgreSQL 12.",
    rationale="""
        Before PostgreSQL 12, ALTER TYPE ... ADD VALUE is refused inside a
        transaction block or a function ("cannot run inside a transaction
        block", unless the type was created in the same transaction), and
        Alembic wraps each migration in one: the plan cannot succeed as written.
        When the server version is unknown it is assumed to be older than 12;
        say the version (configuration or --database-url) to lift that. From 12
        on the statement works in a transaction, though the new value cannot be
        used until the transaction commits.
    """,
    safer="""
        Run ALTER TYPE mood ADD VALUE IF NOT EXISTS 'meh'; outside any transaction:
        in Alembic inside "with op.get_context().autocommit_block():", in plain
        SQL after COMMIT and before the next BEGIN.
    """,
    triggers=[
        Example("BEGIN;\nALTER TYPE mood ADD VALUE 'meh';\nCOMMIT", server_version=110000),
        Example(
            "BEGIN;\nALTER TYPE public.mood ADD VALUE IF NOT EXISTS 'meh' AFTER 'ok';\nCOMMIT",
            server_version=None,
        ),
        Example(
            "DO $$ BEGIN EXECUTE 'ALTER TYPE mood ADD VALUE ''meh'''; END $$",
            server_version=100000,
        ),
    ],
    passes=[
        "ALTER TYPE mood ADD VALUE IF NOT EXISTS 'meh' AFTER 'ok'",
        Example("BEGIN;\nALTER TYPE mood ADD VALUE 'meh';\nCOMMIT", server_version=150000),
        Example("ALTER TYPE mood ADD VALUE 'meh'", server_version=110000),
    ],
    decision=Decision.DENY,
    kinds=_KINDS,
)
def enum_add_value_in_transaction(view: StatementView, context: Context) -> Iterator[str]:
    # Called only for the kinds above (the engine dispatches on kinds=).
    if view.kind != "alter_type_add_value" or not context.version_below(120000):
        return
    where = in_transaction_block(view, context)
    if where is None:
        return
    name = view.shape.relation if view.shape is not None else None
    yield (
        f"ALTER TYPE {name or '?'} ADD VALUE cannot run {where} before PostgreSQL 12 "
        f"({server_version_text(context)}): the statement fails"
    )
