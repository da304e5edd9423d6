"""SO203: REINDEX without CONCURRENTLY blocks writes, and reads that use the index."""

from __future__ import annotations

from collections.abc import Iterator

from runner.plan.model import Category, Severity
from runner.plan.rules._locks import is_new, server_version_text
from runner.plan.rules.base import Context, Example, StatementView, rule

_KINDS = frozenset({"reindex"})


@rule(
    "SO203",
    "reindex-non-concurrently",
    Category.LOCKING,
    Severity.WARNING,
    summary="REINDEX without CONCURRENTLY blocks writes to the table and reads through the index.",
    rationale="""
        REINDEX rebuilds each index from scratch while holding a SHARE lock on
        its table (every write waits) and an ACCESS EXCLUSIVE lock on the index
        (every query whose plan would use it waits, reads included). REINDEX
        TABLE, SCHEMA or DATABASE does this for index after index. Since
        PostgreSQL 12, REINDEX CONCURRENTLY builds a replacement index beside
        the old one and swaps them with only brief locks; before 12 the same
        result takes CREATE INDEX CONCURRENTLY, DROP INDEX CONCURRENTLY and a
        rename. A table created earlier in the plan is not reported.
    """,
    safer="""
        REINDEX INDEX CONCURRENTLY idx; (PostgreSQL 12+, outside a transaction).
        Before 12: CREATE INDEX CONCURRENTLY idx_new ON t (...); DROP INDEX
        CONCURRENTLY idx; ALTER INDEX idx_new RENAME TO idx;
    """,
    triggers=[
        "REINDEX INDEX idx_orders_user_id",
        "REINDEX TABLE public.orders",
        "reindex (verbose) table orders",
        Example("REINDEX SCHEMA billing", server_version=110000),
    ],
    passes=[
        "REINDEX INDEX CONCURRENTLY idx_orders_user_id",
        "REINDEX (CONCURRENTLY) TABLE orders",
        "CREATE TABLE staging (id int PRIMARY KEY);\nREINDEX TABLE staging",
    ],
    kinds=_KINDS,
)
def reindex_non_concurrently(view: StatementView, context: Context) -> Iterator[str]:
    # Called only for the kinds above (the engine dispatches on kinds=).
    if view.kind != "reindex" or view.shape is None:
        return
    shape = view.shape
    if "concurrently" in shape.flags:
        return
    target = shape.args[0] if shape.args else ""
    if target == "table" and is_new(context, shape.relation):
        return
    what = f"{target} {shape.relation}" if shape.relation else target or "indexes"
    if target == "index":
        effect = (
            "SHARE lock blocks writes to its table and ACCESS EXCLUSIVE on the index "
            "blocks reads that use it"
        )
    else:
        effect = (
            "each index rebuilt holds SHARE on its table (blocks writes) and ACCESS EXCLUSIVE "
            "on itself (blocks reads using it)"
        )
    if context.version_below(120000):
        note = f"; REINDEX CONCURRENTLY needs PostgreSQL 12+ ({server_version_text(context)})"
    else:
        note = ""
    yield f"reindexes {what} without CONCURRENTLY: {effect}{note}"
