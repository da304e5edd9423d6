"""SO506: ALTER TABLE ... DISABLE TRIGGER switches off audit, integrity and guard triggers."""

from __future__ import annotations

from collections.abc import Iterator

from runner.plan.commands import words
from runner.plan.model import Category, Severity
from runner.plan.rules.base import Context, StatementView, rule


@rule(
    "SO506",
    "disable-trigger",
    Category.ACCESS_CONTROL,
    Severity.ERROR,
    summary="ALTER TABLE ... DISABLE TRIGGER (ALL / USER / name), or ENABLE REPLICA TRIGGER.",
    rationale="""
        Triggers are where many databases keep their audit trail (who changed
        which patient row), their history tables and derived integrity checks;
        DISABLE TRIGGER ALL also switches off the system triggers that enforce
        foreign keys, and the server-side guard's TRUNCATE triggers. While
        disabled, changes to the table leave no record and break references
        silently, for every session, not only the migration's. ENABLE REPLICA
        TRIGGER has the same effect in a normal session (the trigger then fires
        only under replication).
    """,
    safer="""
        Leave triggers on; make a bulk load fast by batching it, and if a
        trigger really must not fire, change its function to skip the case in
        a reviewed statement.
    """,
    triggers=[
        "ALTER TABLE patients DISABLE TRIGGER ALL",
        "ALTER TABLE patients DISABLE TRIGGER USER",
        "ALTER TABLE ONLY patients DISABLE TRIGGER patients_audit",
        "ALTER TABLE patients ENABLE REPLICA TRIGGER patients_audit",
        "ALTER TABLE patients ADD COLUMN note text, DISABLE TRIGGER ALL",
    ],
    passes=[
        "ALTER TABLE patients ENABLE TRIGGER patients_audit",
        "ALTER TABLE patients ENABLE ALWAYS TRIGGER patients_audit",
        "ALTER TABLE patients ENABLE TRIGGER ALL",
    ],
    kinds=("alter_table_disable_trigger", "alter_table_enable_trigger", None),
)
def disable_trigger(view: StatementView, context: Context) -> Iterator[str]:
    if view.kind is None:
        # Several actions in one ALTER TABLE are not classified: read the words.
        ws = [w.text for w in words(view.raw.tokens) if not w.is_string]
        if ws[:2] == ["ALTER", "TABLE"] and any(
            ws[i : i + 2] in (["DISABLE", "TRIGGER"], ["ENABLE", "REPLICA"])
            for i in range(len(ws))
        ):
            yield "disables a trigger (among other actions): what it records or enforces stops"
        return
    if view.shape is None:
        return
    table = view.shape.relation or "?"
    which = view.shape.args[0] if view.shape.args and view.shape.args[0] else "?"
    if view.kind == "alter_table_disable_trigger":
        yield f"disables trigger {which} on {table}: what it records or enforces stops"
    elif view.kind == "alter_table_enable_trigger":
        ws = [w.text for w in words(view.raw.tokens)]
        if any(ws[i : i + 2] == ["ENABLE", "REPLICA"] for i in range(len(ws))):
            yield f"makes trigger {which} on {table} fire only under replication (ENABLE REPLICA)"
