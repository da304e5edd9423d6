"""SO227: CREATE TRIGGER takes SHARE ROW EXCLUSIVE on its table, blocking writes."""

from __future__ import annotations

from collections.abc import Iterator

from sqlglot import exp

from runner.plan.model import Category, Severity
from runner.plan.rules._locks import is_new
from runner.plan.rules.base import Context, Example, StatementView, ident, rule, table_name

_KINDS = frozenset({"create_trigger"})


def trigger_target(node: exp.Create) -> exp.Table | None:
    """The table (or view) after ``ON`` in ``CREATE [OR REPLACE] [CONSTRAINT] TRIGGER``."""
    properties = node.args.get("properties")
    for prop in properties.expressions if properties is not None else ():
        if isinstance(prop, exp.TriggerProperties):
            table = prop.args.get("table")
            return table if isinstance(table, exp.Table) else None
    return None


@rule(
    "SO227",
    "create-trigger-lock",
    Category.LOCKING,
    Severity.WARNING,
    summary="CREATE TRIGGER locks its table SHARE ROW EXCLUSIVE: writes wait behind it.",
    rationale="""
        CREATE TRIGGER (and CREATE OR REPLACE TRIGGER, CREATE CONSTRAINT
        TRIGGER) takes a SHARE ROW EXCLUSIVE lock on the table: reads go on,
        but every INSERT, UPDATE and DELETE waits. The change itself is only a
        catalog row, so the lock is short on its own; the harm comes from the
        wait. The statement first queues behind any transaction that holds a
        lock on the table (a long report, an idle-in-transaction session), and
        every write that arrives after it queues behind the trigger: without a
        lock_timeout the table's writes stop for as long as that transaction
        lasts. Inside BEGIN ... COMMIT the lock is held until the commit, so
        slow statements after it in the same transaction extend the stall. A
        table created earlier in the plan is not reported: nothing uses it yet.
    """,
    safer="""
        Bound the wait and keep the transaction short: SET lock_timeout = '2s';
        CREATE TRIGGER ... ; in a transaction of its own (or as the last
        statement before COMMIT), retried on a lock timeout. Create the
        trigger's function first, in an earlier statement (CREATE FUNCTION takes
        no table lock). CREATE OR REPLACE TRIGGER takes the same lock.
    """,
    triggers=[
        "CREATE TRIGGER patients_audit AFTER INSERT OR UPDATE ON patients "
        "FOR EACH ROW EXECUTE FUNCTION audit_row()",
        'create or replace trigger set_updated_at before update on public."Encounters" '
        "for each row execute procedure stamp_updated_at()",
        "BEGIN;\nCREATE CONSTRAINT TRIGGER orders_check AFTER INSERT ON orders "
        "DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION check_order();\nCOMMIT",
        Example(
            "CREATE TRIGGER t_audit AFTER DELETE ON visits FOR EACH ROW EXECUTE FUNCTION f()",
            apply_lock_timeout=False,
        ),
    ],
    passes=[
        "CREATE TABLE visits (id bigint);\n"
        "CREATE TRIGGER visits_audit AFTER INSERT ON visits FOR EACH ROW EXECUTE FUNCTION f()",
        "CREATE FUNCTION audit_row() RETURNS trigger LANGUAGE plpgsql AS "
        "$$ BEGIN RETURN NEW; END $$",
        "DROP TRIGGER IF EXISTS patients_audit ON patients",
        "ALTER TABLE patients ENABLE TRIGGER patients_audit",
    ],
    kinds=_KINDS,
)
def create_trigger_lock(view: StatementView, context: Context) -> Iterator[str]:
    # Called only for the kinds above (the engine dispatches on kinds=).
    node = view.node
    if not isinstance(node, exp.Create) or (node.args.get("kind") or "").upper() != "TRIGGER":
        return
    target = trigger_target(node)
    table = table_name(target) if target is not None else "?"
    if is_new(context, table):
        return
    verb = "replaces" if node.args.get("replace") else "creates"
    message = (
        f"{verb} trigger {ident(node.this) or '?'} on {table}: takes SHARE ROW EXCLUSIVE on "
        f"{table}, so its writes wait while the statement waits for running transactions"
    )
    if context.in_transaction:
        message += " and until COMMIT"
    if not context.has_lock_timeout:
        message += "; no lock_timeout is in force, so that wait is unbounded"
    yield message
