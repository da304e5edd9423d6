"""SO222: SET TABLESPACE copies the relation under ACCESS EXCLUSIVE."""

from __future__ import annotations

from collections.abc import Iterator

from sqlglot import exp

from runner.plan.model import Category, Severity
from runner.plan.rules._locks import actions, is_new
from runner.plan.rules.base import Context, StatementView, ident, rule, table_name

_SHAPES = {
    "alter_table_set_tablespace": "table",
    "alter_index_set_tablespace": "index",
    "alter_materialized_view_set_tablespace": "materialized view",
}
_NODE_KINDS = {"TABLE": "table", "INDEX": "index", "MATERIALIZED VIEW": "materialized view"}
_KINDS = frozenset({"alter_table", "alter_index", "alter_materialized_view", *_SHAPES})


def _moves(view: StatementView) -> Iterator[tuple[str, str, str]]:
    """(object kind, name, tablespace) for each SET TABLESPACE of the statement."""
    node = view.node
    if isinstance(node, exp.Alter):
        for action in actions(node):
            if isinstance(action, exp.AlterSet) and action.args.get("tablespace") is not None:
                kind = _NODE_KINDS.get((node.args.get("kind") or "").upper())
                if kind is not None:
                    yield kind, table_name(node.this), ident(action.args["tablespace"])
    elif view.kind in _SHAPES and view.shape is not None:
        shape = view.shape
        yield _SHAPES[view.kind], shape.relation or "?", shape.args[0] if shape.args else "?"


@rule(
    "SO222",
    "set-tablespace",
    Category.LOCKING,
    Severity.WARNING,
    summary="SET TABLESPACE copies the whole table or index while blocking it.",
    rationale="""
        ALTER TABLE / INDEX / MATERIALIZED VIEW ... SET TABLESPACE copies every
        block of the relation to the new tablespace under ACCESS EXCLUSIVE: for
        a table no reads and no writes until the copy ends, for an index no
        query that uses it. The copy takes as long as writing the whole relation
        again. Relations created earlier in the plan are not reported.
    """,
    safer="""
        Create new objects in the right tablespace from the start (CREATE INDEX
        CONCURRENTLY ... TABLESPACE fast, then drop the old index concurrently);
        move large tables online with pg_repack --tablespace.
    """,
    triggers=[
        "ALTER TABLE orders SET TABLESPACE fast_ssd",
        "alter index public.orders_pkey set tablespace fast_ssd",
        "ALTER MATERIALIZED VIEW totals SET TABLESPACE fast_ssd",
    ],
    passes=[
        "CREATE TABLE staging (id int);\nALTER TABLE staging SET TABLESPACE fast_ssd",
        "CREATE INDEX CONCURRENTLY orders_ref ON orders (ref) TABLESPACE fast_ssd",
    ],
    kinds=_KINDS,
)
def set_tablespace(view: StatementView, context: Context) -> Iterator[str]:
    # Called only for the kinds above (the engine dispatches on kinds=).
    if not isinstance(view.node, exp.Alter) and view.kind not in _SHAPES:
        return
    for kind, name, tablespace in _moves(view):
        if kind != "index" and is_new(context, name):
            continue
        blocked = "every query that uses it" if kind == "index" else "its reads and writes"
        yield (
            f"moves {kind} {name} to tablespace {tablespace}: copies it under ACCESS "
            f"EXCLUSIVE, blocking {blocked} until the copy ends"
        )
