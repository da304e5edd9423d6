"""SO123: MERGE that updates or deletes target rows on a match that does not narrow them."""

from __future__ import annotations

from collections.abc import Iterator

from sqlglot import exp

from runner.plan.model import Category, Severity
from runner.plan.rules._narrowing import target_of, why_not_narrowed
from runner.plan.rules.base import Context, StatementView, rule
from runner.plan.rules.unbounded_dml import MERGE_KINDS, always_true, merges


def _then(when: exp.Expression) -> str:
    then = when.args.get("then")
    if isinstance(then, exp.Var):
        return str(then.this).upper()
    if isinstance(then, exp.Update):
        return "UPDATE"
    if isinstance(then, exp.Insert):
        return "INSERT"
    return ""


@rule(
    "SO123",
    "merge-match-does-not-narrow",
    Category.DESTRUCTIVE,
    Severity.ERROR,
    summary="MERGE ... WHEN MATCHED THEN UPDATE / DELETE on a match that does not narrow.",
    rationale="""
        MERGE changes the target rows its ON condition matches. An ON that does
        not depend on the target row (ON true, ON s.active, ON $1) or compares a
        target column with itself (ON t.id = t.id) matches every target row with
        every source row, so WHEN MATCHED THEN UPDATE overwrites the whole table
        and WHEN MATCHED AND <a source-only condition> THEN DELETE deletes it.
        The match is judged with the clause's own AND condition; SO113 already
        reports a DELETE clause with no condition of its own.
    """,
    safer="""
        Match on the target's key ('MERGE INTO prices p USING staged s ON p.id =
        s.id ...'), and give destructive clauses a condition on the row
        ('WHEN MATCHED AND s.deleted THEN DELETE').
    """,
    triggers=[
        "MERGE INTO prices p USING staged s ON true WHEN MATCHED THEN UPDATE SET amount = s.amount",
        "MERGE INTO prices p USING staged s ON p.id = p.id WHEN MATCHED THEN UPDATE SET amount = 0",
        "MERGE INTO prices p USING staged s ON s.active WHEN MATCHED AND s.purge THEN DELETE",
        "MERGE INTO prices p USING (SELECT 1 AS x) s ON $1 WHEN MATCHED THEN UPDATE SET amount = 0",
    ],
    passes=[
        "MERGE INTO prices p USING staged s ON p.id = s.id"
        " WHEN MATCHED THEN UPDATE SET amount = s.amount",
        "MERGE INTO prices p USING staged s ON true"
        " WHEN MATCHED AND p.id = s.id THEN UPDATE SET amount = s.amount",
        "MERGE INTO prices p USING staged s ON s.active"
        " WHEN NOT MATCHED THEN INSERT (id, amount) VALUES (s.id, s.amount)",
        "CREATE TABLE scratch (id int, amount int);\n"
        "MERGE INTO scratch t USING staged s ON true WHEN MATCHED THEN UPDATE SET amount = 0",
    ],
    kinds=MERGE_KINDS,
)
def merge_not_narrowing(view: StatementView, context: Context) -> Iterator[str]:
    for merge in merges(view):
        yield from _merge(merge, context)


def _merge(merge: exp.Merge, context: Context) -> Iterator[str]:
    target = target_of(merge, joined=True)
    if target is None or context.schema.created_in_plan(target.table):
        return
    on = merge.args.get("on")
    whens = merge.args.get("whens")
    for when in whens.expressions if isinstance(whens, exp.Whens) else []:
        then = _then(when)
        if then not in ("UPDATE", "DELETE") or not when.args.get("matched"):
            continue
        if when.args.get("source"):
            continue  # NOT MATCHED BY SOURCE: SO113's (DELETE), or by the target's rows
        condition = when.args.get("condition")
        if then == "DELETE" and (condition is None or always_true(condition)):
            continue  # SO113 reports a DELETE with no condition of its own
        on_reason = why_not_narrowed(on, target) if isinstance(on, exp.Expression) else "no ON"
        if on_reason is None:
            continue
        if condition is not None and why_not_narrowed(condition, target) is None:
            continue
        verb = "overwrites" if then == "UPDATE" else "deletes"
        yield (
            f"{verb} every row of {target.table} the source meets: the match does not "
            f"narrow ({on_reason})"
        )
