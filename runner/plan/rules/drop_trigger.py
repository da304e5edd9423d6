"""SO315: dropping a trigger removes behaviour the running release relies on."""

from __future__ import annotations

from collections.abc import Iterator

from sqlglot import exp

from runner.plan.commands import normalise_name, words
from runner.plan.model import Category, Severity
from runner.plan.rules.base import Context, StatementView, ident, rule, table_name


def table_after_on(view: StatementView) -> str | None:
    """The table named after ``ON`` in ``DROP TRIGGER/POLICY name ON table``."""
    ws = words(view.raw.tokens)
    for index, word in enumerate(ws):
        if word.text == "ON":
            parts = []
            for w in ws[index + 1 :]:
                if w.is_name and w.text not in ("CASCADE", "RESTRICT"):
                    parts.append(w)
                elif w.text != ".":
                    break
            return normalise_name(parts) if parts else None
    return None


@rule(
    "SO315",
    "drop-trigger",
    Category.INCOMPATIBLE,
    Severity.WARNING,
    summary="Dropping a trigger removes behaviour (auditing, derived columns) clients rely on.",
    rationale="""
        Triggers do work the application does not: audit logging of access to
        PHI, keeping denormalised or search columns up to date, enforcing
        invariants, stamping updated_at. Once the trigger is dropped, writes of
        the release still running silently stop getting that behaviour, and the
        gap is usually found much later (missing audit rows cannot be
        recreated). Dropping a trigger to recreate it leaves a window without it
        unless both happen in one transaction.
    """,
    safer="""
        Replace a trigger in place (CREATE OR REPLACE TRIGGER on PostgreSQL 14+),
        or DROP TRIGGER and CREATE TRIGGER inside one BEGIN ... COMMIT; remove
        it only in a release after the code that takes over its job.
    """,
    triggers=[
        "DROP TRIGGER IF EXISTS patients_audit ON patients",
        'drop trigger set_updated_at on public."Encounters" cascade',
    ],
    passes=[
        "CREATE TABLE t (a int);\nDROP TRIGGER IF EXISTS t_audit ON t",
        "ALTER TABLE patients ENABLE TRIGGER patients_audit",
        "DROP FUNCTION IF EXISTS audit_patients()",
    ],
    kinds=(None, "drop*"),
)
def drop_trigger(view: StatementView, context: Context) -> Iterator[str]:
    node = view.node
    if isinstance(node, exp.Drop) and (node.args.get("kind") or "").upper() == "TRIGGER":
        on = node.args.get("cluster")
        table = table_name(on.this) if isinstance(on, exp.OnProperty) else "?"
        names = [
            ident(t.this) if isinstance(t, exp.Table) else ident(t)
            for t in node.args.get("tables") or []
        ]
    elif view.kind == "drop_trigger" and view.shape is not None:
        table = table_after_on(view) or "?"
        names = [view.shape.relation or "?"]
    else:
        return
    if context.schema.created_in_plan(table):
        return
    for name in names:
        yield (
            f"drops trigger {name} on {table}: writes from now on (the previous release's "
            f"included) no longer get what it did, such as audit rows or derived columns"
        )
