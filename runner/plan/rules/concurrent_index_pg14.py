"""SO219: concurrent index builds on PostgreSQL 14.0-14.3 can corrupt indexes."""

from __future__ import annotations

from collections.abc import Iterator

from runner.plan.model import Category, Severity
from runner.plan.rules._locks import server_version_text
from runner.plan.rules.base import Context, Example, StatementView, rule
from runner.plan.rules.concurrently import concurrent_operation

_AFFECTED = frozenset({"CREATE INDEX CONCURRENTLY", "REINDEX CONCURRENTLY"})


_KINDS = frozenset({"create_index", "reindex"})


@rule(
    "SO219",
    "concurrently-index-pg14-bug",
    Category.LOCKING,
    Severity.WARNING,
    summary="Concurrent index builds on PostgreSQL 14.0-14.3 can silently corrupt the index.",
    rationale="""
        PostgreSQL 14.0 to 14.3 had a bug (fixed in 14.4, June 2022) by which an
        index built or rebuilt CONCURRENTLY while rows were being updated could
        miss entries: queries using it return wrong results, with no error. On
        those versions concurrent index builds should wait for the upgrade, or
        the index must be checked with amcheck (and rebuilt) afterwards. When the
        server version is unknown the affected range is assumed possible.
    """,
    safer="""
        Upgrade to PostgreSQL 14.4 or later first (a minor upgrade), or verify the
        new index afterwards: SELECT bt_index_check('idx', true); from the amcheck
        extension, and REINDEX it after the upgrade.
    """,
    triggers=[
        Example("CREATE INDEX CONCURRENTLY idx ON orders (user_id)", server_version=140002),
        Example("REINDEX TABLE CONCURRENTLY orders", server_version=140000),
        Example("CREATE INDEX CONCURRENTLY idx ON orders (user_id)", server_version=140003),
        Example("CREATE UNIQUE INDEX CONCURRENTLY idx ON orders (ref)", server_version=None),
    ],
    passes=[
        Example("CREATE INDEX CONCURRENTLY idx ON orders (user_id)", server_version=140004),
        Example("REINDEX INDEX CONCURRENTLY idx", server_version=140011),
        Example("CREATE INDEX CONCURRENTLY idx ON orders (user_id)", server_version=130010),
        Example("DROP INDEX CONCURRENTLY idx", server_version=140002),
    ],
    kinds=_KINDS,
)
def concurrently_index_pg14_bug(view: StatementView, context: Context) -> Iterator[str]:
    # Called only for the kinds above (the engine dispatches on kinds=).
    if view.kind not in ("create_index", "reindex"):
        return
    # server_version_num is major * 10000 + minor since PostgreSQL 10: 14.3 is 140003.
    if not context.version_between(140000, 140003):
        return
    found = concurrent_operation(view)
    if found is None or found[0] not in _AFFECTED:
        return
    operation, target = found
    yield (
        f"{operation} ({target}) on {server_version_text(context)}: builds on 14.0-14.3 can "
        "silently miss index entries (fixed in 14.4)"
    )
