"""SO113: MERGE ... THEN DELETE with no condition of its own."""

from __future__ import annotations

from collections.abc import Iterator

from sqlglot import exp

from runner.plan.model import Category, Severity
from runner.plan.rules.base import Context, StatementView, rule, table_name
from runner.plan.rules.unbounded_dml import MERGE_KINDS, always_true, merges


@rule(
    "SO113",
    "merge-delete-unconditional",
    Category.DESTRUCTIVE,
    Severity.WARNING,
    summary="MERGE ... WHEN [NOT] MATCHED THEN DELETE deletes rows with no condition of its own.",
    rationale="""
        A MERGE clause 'WHEN MATCHED THEN DELETE' with no AND condition deletes
        every target row the join matches, and 'WHEN NOT MATCHED BY SOURCE THEN
        DELETE' (PostgreSQL 17+) every target row the source does not list: an
        empty or partial source (a failed staging load, a filter too narrow)
        deletes the whole table. MERGE reads like an upsert, so the delete is
        easy to miss in review; the join condition is its only guard, and an
        always-true ON (ON true) makes it a delete of every row. A target table
        created earlier in the plan is not reported.
    """,
    safer="""
        Give the delete its own condition ('WHEN MATCHED AND s.deleted THEN
        DELETE'), or delete in a separate, reviewable statement:
        'DELETE FROM prices p USING staged_prices s WHERE s.id = p.id AND s.deleted;'.
    """,
    triggers=[
        "MERGE INTO prices p USING staged_prices s ON p.id = s.id WHEN MATCHED THEN DELETE",
        "MERGE INTO prices p USING staged_prices s ON p.id = s.id"
        " WHEN MATCHED AND true THEN DELETE",
        "MERGE INTO prices p USING staged_prices s ON p.id = s.id"
        " WHEN MATCHED THEN UPDATE SET amount = s.amount"
        " WHEN NOT MATCHED BY SOURCE THEN DELETE",
        "DO $$ BEGIN MERGE INTO prices p USING staged s ON true WHEN MATCHED THEN DELETE; END $$",
    ],
    passes=[
        "MERGE INTO prices p USING staged_prices s ON p.id = s.id"
        " WHEN MATCHED AND s.deleted THEN DELETE",
        "MERGE INTO prices p USING staged_prices s ON p.id = s.id"
        " WHEN MATCHED THEN UPDATE SET amount = s.amount"
        " WHEN NOT MATCHED THEN INSERT (id, amount) VALUES (s.id, s.amount)",
        "CREATE TABLE scratch (id int);\n"
        "MERGE INTO scratch t USING staged s ON t.id = s.id WHEN MATCHED THEN DELETE",
    ],
    kinds=MERGE_KINDS,
)
def merge_delete(view: StatementView, context: Context) -> Iterator[str]:
    for merge in merges(view):
        yield from _merge(merge, context)


def _merge(merge: exp.Expression, context: Context) -> Iterator[str]:
    target = merge.this
    if not isinstance(target, exp.Table):
        return
    table = table_name(target)
    if context.schema.created_in_plan(table):
        return
    source = merge.args.get("using")
    source_name = table_name(source) if isinstance(source, exp.Table) else "the source query"
    on = merge.args.get("on")
    whens = merge.args.get("whens")
    for when in whens.expressions if isinstance(whens, exp.Whens) else []:
        then = when.args.get("then")
        if not (isinstance(then, exp.Var) and str(then.this).upper() == "DELETE"):
            continue
        condition = when.args.get("condition")
        if condition is not None and not always_true(condition):
            continue
        if when.args.get("source"):
            yield (
                f"deletes every row of {table} that has no match in {source_name}"
                " (WHEN NOT MATCHED BY SOURCE THEN DELETE, no condition)"
            )
        elif when.args.get("matched"):
            if always_true(on):
                yield f"deletes every row of {table} (the ON condition is always true)"
            else:
                yield (
                    f"deletes every row of {table} that matches a row of {source_name}"
                    " (WHEN MATCHED THEN DELETE, no condition)"
                )
