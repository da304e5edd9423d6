"""SO115: ALTER TABLE ... SET UNLOGGED makes the table's rows disposable."""

from __future__ import annotations

from collections.abc import Iterator

from sqlglot import exp

from runner.plan.model import Category, Severity
from runner.plan.rules.base import Context, StatementView, rule, table_name


@rule(
    "SO115",
    "set-unlogged",
    Category.DESTRUCTIVE,
    Severity.WARNING,
    summary="SET UNLOGGED makes PostgreSQL empty the table after a crash and on every standby.",
    rationale="""
        An unlogged table is not written to the WAL: after a crash or an
        unclean shutdown PostgreSQL truncates it, streaming replicas and
        point-in-time recovery see it empty, and a failover promotes a standby
        on which every row is gone. The statement itself also rewrites the
        table under an ACCESS EXCLUSIVE lock. For a table of records (rather
        than a cache) that turns the next incident into data loss. A table
        created earlier in the plan is not reported.
    """,
    safer="""
        Keep the table logged; if write volume is the problem, batch the writes
        or move disposable rows to a separate table created UNLOGGED from the
        start: 'CREATE UNLOGGED TABLE session_cache (LIKE sessions);'.
    """,
    triggers=[
        "ALTER TABLE sessions SET UNLOGGED",
        "alter table if exists public.audit_log set unlogged",
        "DO $$ BEGIN EXECUTE 'ALTER TABLE sessions SET UNLOGGED'; END $$",
    ],
    passes=[
        "ALTER TABLE sessions SET LOGGED",
        "CREATE UNLOGGED TABLE session_cache (id int)",
        "CREATE TABLE scratch (id int);\nALTER TABLE scratch SET UNLOGGED",
    ],
    kinds=("alter_table",),
)
def set_unlogged(view: StatementView, context: Context) -> Iterator[str]:
    if view.kind != "alter_table" or not isinstance(view.node, exp.Alter):
        return
    for action in view.alter_actions():
        option = action.args.get("option") if isinstance(action, exp.AlterSet) else None
        if not (isinstance(option, exp.Var) and str(option.this).upper() == "UNLOGGED"):
            continue
        table = table_name(view.node.this)
        if not context.schema.created_in_plan(table):
            yield (
                f"makes table {table} unlogged: its rows are lost after a crash"
                " and missing on every standby"
            )
