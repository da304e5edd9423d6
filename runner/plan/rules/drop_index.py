"""SO202: DROP INDEX without CONCURRENTLY takes ACCESS EXCLUSIVE on the table."""

from __future__ import annotations

from collections.abc import Iterator

from sqlglot import exp

from runner.plan.model import Category, Severity
from runner.plan.rules.base import Context, StatementView, rule, table_name


def index_drop(view: StatementView) -> tuple[list[str], bool] | None:
    """(index names, concurrently) for a DROP INDEX, else None."""
    node = view.node
    if isinstance(node, exp.Drop):
        if (node.args.get("kind") or "").upper() != "INDEX":
            return None
        names = [table_name(index) for index in node.args.get("tables") or node.expressions]
        return names, bool(node.args.get("concurrently"))
    if view.kind == "drop_index" and view.shape is not None:
        return [view.shape.relation or "?"], "concurrently" in view.shape.flags
    return None


_KINDS = frozenset({"drop_index"})


@rule(
    "SO202",
    "drop-index-non-concurrently",
    Category.LOCKING,
    Severity.WARNING,
    summary="DROP INDEX without CONCURRENTLY locks the index's table against reads and writes.",
    rationale="""
        A plain DROP INDEX takes an ACCESS EXCLUSIVE lock on the table the index
        belongs to: every query on that table, reads included, waits for it, and
        so does everything queued behind it. The drop itself is quick, but
        acquiring the lock waits for every running transaction on the table,
        and the whole application stalls meanwhile. DROP INDEX CONCURRENTLY
        waits for conflicting transactions without blocking new queries (it
        drops one index at a time, without CASCADE, outside a transaction block).
    """,
    safer="""
        DROP INDEX CONCURRENTLY IF EXISTS idx; as its own statement, outside any
        transaction.
    """,
    triggers=[
        "DROP INDEX idx_orders_user_id",
        'DROP INDEX IF EXISTS public."Orders_Ref" CASCADE',
        "drop index idx_a, idx_b",
    ],
    passes=[
        "DROP INDEX CONCURRENTLY IF EXISTS idx_orders_user_id",
        "drop index concurrently public.idx_orders_user_id",
        "DROP TABLE orders_archive",
    ],
    kinds=_KINDS,
)
def drop_index_non_concurrently(view: StatementView, context: Context) -> Iterator[str]:
    # Called only for the kinds above (the engine dispatches on kinds=).
    if view.kind != "drop_index" and not isinstance(view.node, exp.Drop):
        return
    found = index_drop(view)
    if found is None or found[1]:
        return
    names = ", ".join(found[0])
    label = "indexes" if len(found[0]) > 1 or "," in names else "index"
    yield (
        f"drops {label} {names} without CONCURRENTLY: ACCESS EXCLUSIVE on the indexed table "
        "blocks its reads and writes until every running transaction on it ends"
    )
