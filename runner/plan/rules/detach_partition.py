"""SO216: DETACH PARTITION without CONCURRENTLY locks the whole partitioned table."""

from __future__ import annotations

from collections.abc import Iterator

from runner.plan.model import Category, Severity
from runner.plan.rules._locks import is_new, server_version_text
from runner.plan.rules.base import Context, Example, StatementView, rule

_KINDS = frozenset({"alter_table_detach_partition"})


@rule(
    "SO216",
    "detach-partition-without-concurrently",
    Category.LOCKING,
    Severity.WARNING,
    summary="DETACH PARTITION without CONCURRENTLY blocks every query on the partitioned table.",
    rationale="""
        ALTER TABLE parent DETACH PARTITION part takes ACCESS EXCLUSIVE on the
        parent as well as the partition: every read and write of the whole
        partitioned table waits, and acquiring the lock waits for every running
        query on it. Since PostgreSQL 14, DETACH PARTITION ... CONCURRENTLY
        takes only SHARE UPDATE EXCLUSIVE on the parent (it runs outside a
        transaction block, and FINALIZE completes one that was interrupted).
        Before 14 there is no online way, so the lock has to be planned for.
        A parent created earlier in the plan is not reported.
    """,
    safer="""
        ALTER TABLE measurements DETACH PARTITION measurements_2020 CONCURRENTLY;
        (PostgreSQL 14+, outside a transaction block; not possible while the
        parent has a default partition).
    """,
    triggers=[
        "ALTER TABLE measurements DETACH PARTITION measurements_2020",
        "alter table if exists public.measurements detach partition public.m_2020",
        Example("ALTER TABLE measurements DETACH PARTITION m_2019", server_version=130000),
    ],
    passes=[
        "ALTER TABLE measurements DETACH PARTITION measurements_2019 CONCURRENTLY",
        "ALTER TABLE measurements DETACH PARTITION measurements_2019 FINALIZE",
        "CREATE TABLE m (ts date) PARTITION BY RANGE (ts);\n"
        "CREATE TABLE m_2020 PARTITION OF m FOR VALUES FROM ('2020-01-01') TO ('2021-01-01');\n"
        "ALTER TABLE m DETACH PARTITION m_2020",
    ],
    kinds=_KINDS,
)
def detach_partition(view: StatementView, context: Context) -> Iterator[str]:
    # Called only for the kinds above (the engine dispatches on kinds=).
    shape = view.shape
    if view.kind != "alter_table_detach_partition" or shape is None:
        return
    if shape.flags & {"concurrently", "finalize"} or is_new(context, shape.relation):
        return
    parent = shape.relation or "?"
    part = shape.args[0] if shape.args else "?"
    note = ""
    if context.version_below(140000):
        note = f"; CONCURRENTLY needs PostgreSQL 14+ ({server_version_text(context)})"
    yield (
        f"detaches {part} from {parent} without CONCURRENTLY: ACCESS EXCLUSIVE on {parent} "
        f"blocks reads and writes of every partition{note}"
    )
