"""SO201: CREATE INDEX without CONCURRENTLY blocks writes for the whole build."""

from __future__ import annotations

from collections.abc import Iterator

from sqlglot import exp

from runner.plan.model import Category, Severity
from runner.plan.rules._locks import is_new
from runner.plan.rules.base import Context, Example, StatementView, ident, rule, table_name


def index_creation(view: StatementView) -> tuple[str, str, bool, bool] | None:
    """(index name or "", table, concurrently, on ONLY) for a CREATE INDEX, else None."""
    node = view.node
    if isinstance(node, exp.Create):
        if (node.args.get("kind") or "").upper() != "INDEX":
            return None
        index = node.this
        if not isinstance(index, exp.Index):
            return None
        return (
            ident(index.this) if index.this is not None else "",
            table_name(index.args.get("table")),
            bool(node.args.get("concurrently")),
            False,
        )
    shape = view.shape
    if shape is not None and view.kind == "create_index":
        name = shape.args[0] if shape.args else ""
        return name, shape.relation or "?", "concurrently" in shape.flags, "only" in shape.flags
    return None


_KINDS = frozenset({"create_index"})


@rule(
    "SO201",
    "create-index-non-concurrently",
    Category.LOCKING,
    Severity.WARNING,
    summary="CREATE INDEX without CONCURRENTLY blocks writes to the table while it builds.",
    rationale="""
        A plain CREATE INDEX takes a SHARE lock on the table for the whole build:
        reads go on, but every INSERT, UPDATE and DELETE waits until the index is
        built, which on a large table means minutes of failed or queued writes.
        CREATE INDEX CONCURRENTLY takes SHARE UPDATE EXCLUSIVE instead and lets
        writes through (it scans the table twice and cannot run inside a
        transaction block). A table created earlier in the same plan has no
        other users and is not reported, nor is CREATE INDEX ... ON ONLY on a
        partitioned parent, which builds nothing.
    """,
    safer="""
        CREATE INDEX CONCURRENTLY IF NOT EXISTS idx ON t (col); outside any
        transaction (check pg_index.indisvalid afterwards; drop and retry an
        invalid one). For a partitioned table: CREATE INDEX idx ON ONLY parent (col);
        CREATE INDEX CONCURRENTLY on each partition; ALTER INDEX idx ATTACH
        PARTITION part_idx.
    """,
    triggers=[
        "CREATE INDEX idx_orders_user_id ON orders (user_id)",
        'create unique index "Orders_Ref" on public."Orders" (ref)',
        "CREATE INDEX IF NOT EXISTS orders_tags ON orders USING gin (tags) WHERE tags IS NOT NULL",
        "CREATE UNIQUE INDEX orders_ref ON orders (ref) NULLS NOT DISTINCT",
        Example("CREATE INDEX lookup_idx ON lookup (code)", columns={"lookup": {"code": "text"}}),
    ],
    passes=[
        "CREATE INDEX CONCURRENTLY IF NOT EXISTS idx_orders_user_id ON orders (user_id)",
        "CREATE TABLE items (id bigint, sku text);\nCREATE INDEX items_sku ON items (sku)",
        "CREATE INDEX measurements_ts ON ONLY measurements (ts)",
        "CREATE TABLE public.Tags (name text);\nCREATE UNIQUE INDEX tags_name ON tags (name)",
    ],
    kinds=_KINDS,
)
def create_index_non_concurrently(view: StatementView, context: Context) -> Iterator[str]:
    # Called only for the kinds above (the engine dispatches on kinds=).
    if view.kind != "create_index" and not isinstance(view.node, exp.Create):
        return
    found = index_creation(view)
    if found is None:
        return
    name, table, concurrently, only = found
    if concurrently or only or is_new(context, table):
        return
    label = f"index {name}" if name else "an index"
    yield (
        f"builds {label} on {table} without CONCURRENTLY: SHARE lock blocks every write "
        f"to {table} until the build ends"
    )
