"""SO213: CLUSTER rewrites the table in index order under ACCESS EXCLUSIVE."""

from __future__ import annotations

from collections.abc import Iterator

from runner.plan.model import Category, Severity
from runner.plan.rules._locks import is_new
from runner.plan.rules.base import Context, StatementView, rule

_KINDS = frozenset({"cluster"})


@rule(
    "SO213",
    "cluster",
    Category.LOCKING,
    Severity.WARNING,
    summary="CLUSTER rewrites the table while blocking reads and writes.",
    rationale="""
        CLUSTER sorts the table into a new file along an index and rebuilds all
        of its indexes, holding ACCESS EXCLUSIVE throughout: no reads and no
        writes of the table until the rewrite is done, which takes as long as a
        full copy and sort. CLUSTER without a table name re-clusters every table
        that was clustered before, one after another. The order is not kept for
        later writes either. Tables created earlier in the plan are not
        reported.
    """,
    safer="""
        pg_repack --table t --order-by col reorders a table online; otherwise run
        CLUSTER in a maintenance window, not in a deploy.
    """,
    triggers=[
        "CLUSTER orders USING orders_pkey",
        "cluster verbose public.orders",
        "CLUSTER",
    ],
    passes=[
        "ALTER TABLE orders CLUSTER ON orders_pkey",
        "CREATE TABLE staging (id int PRIMARY KEY);\nCLUSTER staging USING staging_pkey",
    ],
    kinds=_KINDS,
)
def cluster(view: StatementView, context: Context) -> Iterator[str]:
    # Called only for the kinds above (the engine dispatches on kinds=).
    if view.kind != "cluster" or view.shape is None:
        return
    table = view.shape.relation
    if table is None:
        yield (
            "CLUSTER without a table rewrites every previously clustered table, each under "
            "ACCESS EXCLUSIVE (blocks its reads and writes)"
        )
    elif not is_new(context, table):
        yield f"CLUSTER rewrites {table} under ACCESS EXCLUSIVE (blocks reads and writes)"
