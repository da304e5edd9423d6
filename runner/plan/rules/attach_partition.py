"""SO225: ATTACH PARTITION scans the partition to check its bounds."""

from __future__ import annotations

from collections.abc import Iterator

from runner.plan.model import Category, Severity
from runner.plan.rules._locks import is_new
from runner.plan.rules.base import Context, Example, StatementView, rule

_KINDS = frozenset({"alter_table_attach_partition"})


@rule(
    "SO225",
    "attach-partition-scan",
    Category.LOCKING,
    Severity.WARNING,
    summary="ATTACH PARTITION scans the partition under lock unless a matching CHECK proves it.",
    rationale="""
        ALTER TABLE parent ATTACH PARTITION part checks that every row of part
        fits the partition bounds: unless a validated CHECK constraint on part
        already implies the bounds, that is a full scan of part under ACCESS
        EXCLUSIVE, and a default partition of the parent is scanned as well.
        Since PostgreSQL 12 the parent itself only takes SHARE UPDATE EXCLUSIVE
        (reads and writes go on); before 12 the parent is locked ACCESS
        EXCLUSIVE for the whole scan. Whether a matching CHECK exists is not
        visible to the plan, so an attach of an existing table is reported; a
        partition created earlier in the plan (on 12+) or a parent created in
        the plan are not.
    """,
    safer="""
        ALTER TABLE part ADD CONSTRAINT part_bounds CHECK (ts >= '2025-01-01' AND
        ts < '2026-01-01') NOT VALID; ALTER TABLE part VALIDATE CONSTRAINT
        part_bounds; then ATTACH PARTITION (no scan), then drop the CHECK.
    """,
    triggers=[
        "ALTER TABLE measurements ATTACH PARTITION measurements_2025 "
        "FOR VALUES FROM ('2025-01-01') TO ('2026-01-01')",
        "alter table public.orders attach partition public.orders_old default",
        Example(
            "CREATE TABLE m_2025 (ts date);\n"
            "ALTER TABLE measurements ATTACH PARTITION m_2025 "
            "FOR VALUES FROM ('2025-01-01') TO ('2026-01-01')",
            server_version=110000,
        ),
    ],
    passes=[
        "CREATE TABLE m_2025 (ts date);\n"
        "ALTER TABLE measurements ATTACH PARTITION m_2025 "
        "FOR VALUES FROM ('2025-01-01') TO ('2026-01-01')",
        "CREATE TABLE m (ts date) PARTITION BY RANGE (ts);\n"
        "ALTER TABLE m ATTACH PARTITION m_old FOR VALUES FROM (MINVALUE) TO ('2020-01-01')",
    ],
    kinds=_KINDS,
)
def attach_partition_scan(view: StatementView, context: Context) -> Iterator[str]:
    # Called only for the kinds above (the engine dispatches on kinds=).
    shape = view.shape
    if view.kind != "alter_table_attach_partition" or shape is None:
        return
    parent = shape.relation or "?"
    part = shape.args[0] if shape.args else "?"
    if is_new(context, parent):
        return
    old_server = context.version_below(120000)
    if is_new(context, part) and not old_server:
        return
    message = (
        f"attaches {part} to {parent}: unless a validated CHECK on {part} implies the bounds, "
        f"scans all of {part} under ACCESS EXCLUSIVE"
    )
    if old_server:
        message += f", holding ACCESS EXCLUSIVE on {parent} too (before PostgreSQL 12)"
    yield message
