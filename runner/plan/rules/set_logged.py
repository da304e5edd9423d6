"""SO215: SET LOGGED / SET UNLOGGED rewrites the table under ACCESS EXCLUSIVE."""

from __future__ import annotations

from collections.abc import Iterator

from sqlglot import exp

from runner.plan.model import Category, Severity
from runner.plan.rules._locks import actions, busy_table
from runner.plan.rules.base import Context, StatementView, rule


def logged_change(action: exp.Expression) -> str | None:
    """``LOGGED`` / ``UNLOGGED`` for ALTER TABLE ... SET [UN]LOGGED, else None."""
    if not isinstance(action, exp.AlterSet):
        return None
    option = action.args.get("option")
    name = option.name.upper() if isinstance(option, exp.Var) else ""
    return name if name in ("LOGGED", "UNLOGGED") else None


_KINDS = frozenset({"alter_table"})


@rule(
    "SO215",
    "set-logged-unlogged",
    Category.LOCKING,
    Severity.WARNING,
    summary="SET LOGGED / SET UNLOGGED rewrites the whole table while blocking it.",
    rationale="""
        Switching a table between logged and unlogged copies it into a new file
        (and, for SET LOGGED, writes all of it to the WAL, which replicas must
        then replay) under ACCESS EXCLUSIVE: no reads and no writes until the copy
        ends. An unlogged table is also emptied after a crash and is not
        replicated. Tables created earlier in the plan are not reported.
    """,
    safer="""
        Create the table with the persistence it needs (CREATE [UNLOGGED] TABLE),
        or copy the data into a new table of the right kind in batches and swap
        the names in one short transaction.
    """,
    triggers=[
        "ALTER TABLE sessions SET LOGGED",
        "alter table if exists public.sessions set unlogged",
    ],
    passes=[
        "CREATE UNLOGGED TABLE scratch (id int);\nALTER TABLE scratch SET LOGGED",
        "ALTER TABLE sessions SET (fillfactor = 70)",
    ],
    kinds=_KINDS,
)
def set_logged_unlogged(view: StatementView, context: Context) -> Iterator[str]:
    # Called only for the kinds above (the engine dispatches on kinds=).
    found = busy_table(view, context, lambda action: logged_change(action) is not None)
    if found is None:
        return
    node, table = found
    for action in actions(node):
        change = logged_change(action)
        if change is not None:
            yield (
                f"sets {table} {change}: rewrites it under ACCESS EXCLUSIVE (blocks reads and "
                "writes until the copy ends)"
            )
