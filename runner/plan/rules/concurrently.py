"""SO217, SO226: CONCURRENTLY operations the server will refuse as written.

``CREATE INDEX CONCURRENTLY``, ``DROP INDEX CONCURRENTLY``, ``REINDEX
CONCURRENTLY`` and ``DETACH PARTITION ... CONCURRENTLY`` commit several times
internally, so PostgreSQL refuses them inside a transaction block or a function
(a DO block). And older servers do not have some of them at all.
"""

from __future__ import annotations

from collections.abc import Iterator

from runner.plan.model import Category, Decision, Severity
from runner.plan.rules._locks import in_transaction_block, server_version_text
from runner.plan.rules.base import Context, Example, StatementView, rule
from runner.plan.rules.create_index import index_creation
from runner.plan.rules.drop_index import index_drop

_CONCURRENT_KINDS = frozenset(
    {"create_index", "drop_index", "reindex", "alter_table_detach_partition"}
)


def concurrent_operation(view: StatementView) -> tuple[str, str] | None:
    """(operation, object) for a statement that uses CONCURRENTLY, else None."""
    if view.kind not in _CONCURRENT_KINDS:
        return None
    shape = view.shape
    if view.kind == "create_index":
        created = index_creation(view)
        if created is not None and created[2]:
            return "CREATE INDEX CONCURRENTLY", created[0] or f"an index on {created[1]}"
    elif view.kind == "drop_index":
        dropped = index_drop(view)
        if dropped is not None and dropped[1]:
            return "DROP INDEX CONCURRENTLY", ", ".join(dropped[0])
    elif shape is not None and "concurrently" in shape.flags:
        if view.kind == "reindex":
            target = shape.args[0] if shape.args else ""
            return "REINDEX CONCURRENTLY", f"{target} {shape.relation or ''}".strip()
        part = shape.args[0] if shape.args else "?"
        return "DETACH PARTITION ... CONCURRENTLY", f"{part} of {shape.relation or '?'}"
    return None


@rule(
    "SO217",
    "concurrently-in-transaction",
    Category.LOCKING,
    Severity.ERROR,
    summary="A CONCURRENTLY operation inside a transaction block fails.",
    rationale="""
        CREATE INDEX CONCURRENTLY, DROP INDEX CONCURRENTLY, REINDEX CONCURRENTLY
        and DETACH PARTITION ... CONCURRENTLY commit internally between their
        phases, so PostgreSQL rejects them inside BEGIN ... COMMIT ("cannot run
        inside a transaction block") and inside functions and DO blocks. The plan
        cannot succeed as written; the migration stops there, and the
        statements before it in the transaction are rolled back. Alembic wraps
        each migration in a transaction unless told otherwise.
    """,
    safer="""
        Run the statement on its own, outside any transaction: in Alembic, inside
        "with op.get_context().autocommit_block():"; in plain SQL, after COMMIT
        and before the next BEGIN.
    """,
    triggers=[
        "BEGIN;\nCREATE INDEX CONCURRENTLY idx_orders_user_id ON orders (user_id);\nCOMMIT",
        "BEGIN;\nDROP INDEX CONCURRENTLY IF EXISTS idx_orders_user_id;\nCOMMIT",
        "START TRANSACTION;\nREINDEX INDEX CONCURRENTLY idx_orders_user_id;\nCOMMIT",
        "BEGIN;\nALTER TABLE m DETACH PARTITION m_2019 CONCURRENTLY;\nCOMMIT",
        "DO $$ BEGIN EXECUTE 'CREATE INDEX CONCURRENTLY i ON orders (a)'; END $$",
    ],
    passes=[
        "CREATE INDEX CONCURRENTLY IF NOT EXISTS idx_orders_user_id ON orders (user_id)",
        "BEGIN;\nCREATE INDEX idx_a ON orders (a);\nCOMMIT;\n"
        "CREATE INDEX CONCURRENTLY idx_b ON orders (b)",
        "BEGIN;\nALTER TABLE m DETACH PARTITION m_2019 FINALIZE;\nCOMMIT",
    ],
    decision=Decision.DENY,
    kinds=_CONCURRENT_KINDS,
)
def concurrently_in_transaction(view: StatementView, context: Context) -> Iterator[str]:
    # Called only for the kinds above (the engine dispatches on kinds=).
    if view.kind not in _CONCURRENT_KINDS:
        return
    where = in_transaction_block(view, context)
    if where is None:
        return
    found = concurrent_operation(view)
    if found is not None:
        operation, target = found
        yield f"{operation} ({target}) cannot run {where}: the statement fails"


# Operation -> the server_version_num that first has it.
_INTRODUCED = {"REINDEX CONCURRENTLY": 120000, "DETACH PARTITION ... CONCURRENTLY": 140000}


_VERSIONED_KINDS = frozenset({"reindex", "alter_table_detach_partition"})


@rule(
    "SO226",
    "concurrently-unsupported-by-server",
    Category.LOCKING,
    Severity.ERROR,
    summary="The server is too old for this CONCURRENTLY operation.",
    rationale="""
        REINDEX CONCURRENTLY exists since PostgreSQL 12 and DETACH PARTITION ...
        CONCURRENTLY since PostgreSQL 14; older servers reject the statement as
        a syntax error, so the plan cannot succeed as written. This rule speaks
        only when the server version is known (from the database or the
        configuration) to be older; an unknown version is not denied.
    """,
    safer="""
        Before PostgreSQL 12, rebuild an index with CREATE INDEX CONCURRENTLY
        idx_new ...; DROP INDEX CONCURRENTLY idx; ALTER INDEX idx_new RENAME TO
        idx;. Before 14, a partition can only be detached with the ACCESS
        EXCLUSIVE lock: plan it for a quiet moment with a short lock_timeout.
    """,
    triggers=[
        Example("REINDEX INDEX CONCURRENTLY idx_orders_user_id", server_version=110000),
        Example("ALTER TABLE m DETACH PARTITION m_2019 CONCURRENTLY", server_version=130000),
    ],
    passes=[
        Example("REINDEX INDEX CONCURRENTLY idx_orders_user_id", server_version=120000),
        Example("ALTER TABLE m DETACH PARTITION m_2019 CONCURRENTLY", server_version=None),
        Example("CREATE INDEX CONCURRENTLY i ON orders (a)", server_version=100000),
    ],
    decision=Decision.DENY,
    kinds=_VERSIONED_KINDS,
)
def concurrently_unsupported(view: StatementView, context: Context) -> Iterator[str]:
    # Called only for the kinds above (the engine dispatches on kinds=).
    if view.kind not in ("reindex", "alter_table_detach_partition"):
        return
    found = concurrent_operation(view)
    if found is None or context.server_version is None:
        return
    operation, target = found
    introduced = _INTRODUCED[operation]
    if context.server_version < introduced:
        yield (
            f"{operation} ({target}) needs PostgreSQL {introduced // 10000}+, and the server is "
            f"{server_version_text(context)}: the statement fails"
        )
