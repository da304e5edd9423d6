"""SO317: dropping a row-level security policy changes which rows clients see."""

from __future__ import annotations

from collections.abc import Iterator

from runner.plan.model import Category, Severity
from runner.plan.rules.base import Context, StatementView, rule
from runner.plan.rules.drop_trigger import table_after_on


@rule(
    "SO317",
    "drop-policy",
    # Access control: which rows each role may read is the policy's whole point.
    Category.ACCESS_CONTROL,
    Severity.WARNING,
    summary=(
        "Dropping a row-level security policy changes which rows running clients see or write."
    ),
    rationale="""
        On a table with row-level security, a permissive policy is what lets a
        role see or change rows: dropping it makes those rows silently vanish
        for the release still running (queries return fewer rows, updates touch
        none). Dropping a restrictive policy does the opposite and exposes rows,
        PHI included, that were hidden. Either way the behaviour clients were
        written against changes the moment it commits.
    """,
    safer="""
        Change a policy in place with ALTER POLICY, or create the replacement
        policy before dropping the old one (both in one transaction); drop a
        policy only after a release that no longer depends on it.
    """,
    triggers=[
        "DROP POLICY patients_by_clinic ON patients",
        'DROP POLICY IF EXISTS "tenant isolation" ON billing.invoices CASCADE',
    ],
    passes=[
        "ALTER POLICY patients_by_clinic ON patients USING (clinic_id = current_clinic())",
        "CREATE TABLE t (a int);\nDROP POLICY IF EXISTS t_read ON t",
    ],
    kinds=("drop_policy",),
)
def drop_policy(view: StatementView, context: Context) -> Iterator[str]:
    if view.kind != "drop_policy" or view.shape is None:
        return
    table = table_after_on(view) or "?"
    if context.schema.created_in_plan(table):
        return
    yield (
        f"drops row-level security policy {view.shape.relation} on {table}: rows it granted "
        f"disappear for running clients, or rows it restricted become visible"
    )
