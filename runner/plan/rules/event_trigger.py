"""SO511: disabling or dropping an event trigger switches off a server-side guard."""

from __future__ import annotations

from collections.abc import Iterator

from runner.plan.commands import words
from runner.plan.model import Category, Severity
from runner.plan.rules.base import Context, StatementView, rule


@rule(
    "SO511",
    "event-trigger-disabled",
    Category.ACCESS_CONTROL,
    Severity.ERROR,
    summary="ALTER EVENT TRIGGER ... DISABLE / ENABLE REPLICA, DROP EVENT TRIGGER.",
    rationale="""
        Event triggers are how a database guards its own DDL: Signoff's
        server-side guard (schema signoff_guard) refuses destructive statements
        the gateway did not grant through them, and audit extensions record
        DDL the same way. Disabling one, making it fire only under replication
        (ENABLE REPLICA), or dropping it removes that layer for every session
        at once, and later statements run unchecked by the database itself.
    """,
    safer="""
        Leave event triggers to the operators who installed them
        (signoff gateway install-guard installs and upgrades the guard).
    """,
    triggers=[
        "ALTER EVENT TRIGGER signoff_guard_ddl DISABLE",
        "ALTER EVENT TRIGGER audit_ddl ENABLE REPLICA",
        "DROP EVENT TRIGGER IF EXISTS signoff_guard_ddl",
    ],
    passes=[
        "ALTER EVENT TRIGGER audit_ddl ENABLE",
        "ALTER EVENT TRIGGER audit_ddl ENABLE ALWAYS",
        "DROP TRIGGER audit ON patients",
    ],
    kinds=(None,),
)
def event_trigger(view: StatementView, context: Context) -> Iterator[str]:
    ws = [w.text for w in words(view.raw.tokens) if not w.is_string]
    if ws[:3] == ["DROP", "EVENT", "TRIGGER"]:
        names = [w.lower() for w in ws[3:] if w not in ("IF", "EXISTS", "CASCADE", "RESTRICT")]
        yield f"drops event trigger {', '.join(names) or '?'}: the DDL it guarded goes unchecked"
    elif ws[:3] == ["ALTER", "EVENT", "TRIGGER"] and len(ws) > 4:
        name = ws[3].lower()
        if ws[4] == "DISABLE":
            yield f"disables event trigger {name}: the DDL it guarded goes unchecked"
        elif ws[4:6] == ["ENABLE", "REPLICA"]:
            yield f"makes event trigger {name} fire only under replication (ENABLE REPLICA)"
