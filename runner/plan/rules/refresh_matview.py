"""SO220: REFRESH MATERIALIZED VIEW without CONCURRENTLY blocks its readers."""

from __future__ import annotations

from collections.abc import Iterator

from runner.plan.model import Category, Severity
from runner.plan.rules._locks import is_new
from runner.plan.rules.base import Context, StatementView, rule

_KINDS = frozenset({"refresh_materialized_view"})


@rule(
    "SO220",
    "refresh-materialized-view-non-concurrently",
    Category.LOCKING,
    Severity.WARNING,
    summary="REFRESH MATERIALIZED VIEW without CONCURRENTLY blocks reads of the view.",
    rationale="""
        A plain REFRESH MATERIALIZED VIEW holds ACCESS EXCLUSIVE on the view for
        the whole time it re-runs the query and rewrites the result: every
        SELECT on the view waits, for as long as the query takes. REFRESH ...
        CONCURRENTLY builds the new result beside the old one and merges it in
        while readers go on (it needs a unique index on the view covering all
        rows, and the view must already be populated). A view created earlier
        in the plan is not reported: it has no readers yet and its first
        refresh cannot be concurrent.
    """,
    safer="""
        CREATE UNIQUE INDEX CONCURRENTLY ON mv (id); once, then REFRESH
        MATERIALIZED VIEW CONCURRENTLY mv;
    """,
    triggers=[
        "REFRESH MATERIALIZED VIEW daily_totals",
        "refresh materialized view public.daily_totals with data",
    ],
    passes=[
        "REFRESH MATERIALIZED VIEW CONCURRENTLY daily_totals",
        "CREATE MATERIALIZED VIEW totals AS SELECT 1 AS n;\nREFRESH MATERIALIZED VIEW totals",
    ],
    kinds=_KINDS,
)
def refresh_materialized_view(view: StatementView, context: Context) -> Iterator[str]:
    # Called only for the kinds above (the engine dispatches on kinds=).
    shape = view.shape
    if view.kind != "refresh_materialized_view" or shape is None:
        return
    if "concurrently" in shape.flags or is_new(context, shape.relation):
        return
    name = shape.relation or "?"
    yield (
        f"refreshes materialized view {name} without CONCURRENTLY: ACCESS EXCLUSIVE blocks "
        f"every read of {name} until the refresh ends"
    )
