"""SO307: dropping a view breaks the queries of the release that still reads it."""

from __future__ import annotations

from collections.abc import Iterator

from sqlglot import exp

from runner.plan.model import Category, Severity
from runner.plan.rules.base import Context, StatementView, drop_kind, rule, table_name


@rule(
    "SO307",
    "drop-view",
    Category.INCOMPATIBLE,
    Severity.WARNING,
    summary="Dropping a view or materialized view breaks every query that still reads it.",
    rationale="""
        A view holds no data of its own (a materialized view holds derived data
        that REFRESH rebuilds), so dropping one loses nothing that cannot be
        recreated; but the previous release, still running during a rolling
        deploy, and any report or BI query reading the view fail with "relation
        does not exist" from the moment it commits. With CASCADE, dependent views
        go too. Dropping a view to recreate it (to change its columns) leaves a
        gap in which it does not exist, unless both happen in one transaction.
    """,
    safer="""
        Drop a view only after a release that no longer reads it. To change a
        view's definition keep it in place: CREATE OR REPLACE VIEW v AS ... (new
        columns may be appended), or DROP VIEW v; CREATE VIEW v AS ...; inside one
        BEGIN ... COMMIT so readers never see it missing.
    """,
    triggers=[
        "DROP VIEW IF EXISTS active_users",
        "DROP MATERIALIZED VIEW reporting.daily_totals CASCADE",
        'drop view "Active Patients", billing.open_invoices',
    ],
    passes=[
        "CREATE OR REPLACE VIEW active_users AS SELECT id FROM users WHERE active",
        "REFRESH MATERIALIZED VIEW CONCURRENTLY reporting.daily_totals",
        "DROP INDEX CONCURRENTLY active_users_idx",
    ],
    kinds=(None, "drop*"),
)
def drop_view(view: StatementView, context: Context) -> Iterator[str]:
    kind = drop_kind(view)
    if kind not in ("VIEW", "MATERIALIZED VIEW") or not isinstance(view.node, exp.Drop):
        return
    label = kind.lower()
    for target in view.node.args.get("tables") or []:
        yield (
            f"drops {label} {table_name(target)}: queries of the previous release and reports "
            f"that read it fail until they stop using it"
        )
