"""SO223: SET ACCESS METHOD rewrites the table under ACCESS EXCLUSIVE."""

from __future__ import annotations

from collections.abc import Iterator

from sqlglot import exp

from runner.plan.model import Category, Severity
from runner.plan.rules._locks import actions, busy_table
from runner.plan.rules.base import Context, StatementView, ident, rule

_KINDS = frozenset({"alter_table"})


@rule(
    "SO223",
    "set-access-method",
    Category.LOCKING,
    Severity.WARNING,
    summary="SET ACCESS METHOD rewrites the whole table while blocking it.",
    rationale="""
        ALTER TABLE ... SET ACCESS METHOD (PostgreSQL 15+) converts every row to
        the new table access method by rewriting the table and rebuilding its
        indexes, all under ACCESS EXCLUSIVE: no reads and no writes until it is
        done. Tables created earlier in the plan are not reported.
    """,
    safer="""
        Create a new table with the access method (CREATE TABLE t_new (...) USING
        am), copy the rows in batches, and swap the names in one short
        transaction.
    """,
    triggers=[
        "ALTER TABLE events SET ACCESS METHOD columnar",
        "alter table public.events set access method heap",
    ],
    passes=[
        "CREATE TABLE events_new (id int);\nALTER TABLE events_new SET ACCESS METHOD columnar",
        "ALTER TABLE events SET (autovacuum_enabled = false)",
    ],
    kinds=_KINDS,
)
def set_access_method(view: StatementView, context: Context) -> Iterator[str]:
    # Called only for the kinds above (the engine dispatches on kinds=).
    found = busy_table(view, context, lambda action: _method(action) is not None)
    if found is None:
        return
    node, table = found
    for action in actions(node):
        method = _method(action)
        if method is not None:
            yield (
                f"sets the access method of {table} to {ident(method)}: rewrites it under "
                "ACCESS EXCLUSIVE (blocks reads and writes)"
            )


def _method(action: exp.Expression) -> exp.Expression | None:
    method = action.args.get("access_method") if isinstance(action, exp.AlterSet) else None
    return method if isinstance(method, exp.Expression) else None
