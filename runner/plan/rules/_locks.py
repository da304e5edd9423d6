"""Helpers shared by the locking rules (SO2xx); this module registers no rule.

The locking rules ask the same few questions: which table an ``ALTER TABLE``
acts on and whether the plan created it (a table nobody else uses yet cannot
block anyone), which constraint an action adds and whether it is ``NOT VALID``,
and what the server version is, in words, for a message.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

from sqlglot import exp

from runner.plan.rules.base import Context, StatementView, ident, table_name, version_text


def is_new(context: Context, relation: str | None) -> bool:
    """True when the plan itself created ``relation`` (so nothing else uses it yet)."""
    return relation is not None and context.schema.created_in_plan(relation)


def busy_table(
    view: StatementView, context: Context, interesting: Callable[[exp.Expression], bool]
) -> tuple[exp.Alter, str] | None:
    """The ALTER TABLE node and its table, when an action is ``interesting`` and the plan
    did not create the table. The table name is only worked out for such statements."""
    node = view.node
    if not isinstance(node, exp.Alter):
        return None
    for action in node.args.get("actions") or ():
        if interesting(action):
            table = table_name(node.this)
            return None if is_new(context, table) else (node, table)
    return None


def has_constraint(column: exp.Expression, *kinds: type[exp.Expression]) -> bool:
    """Whether a column definition carries a constraint of one of ``kinds``."""
    if not isinstance(column, exp.ColumnDef):
        return False
    for constraint in column.args.get("constraints") or ():
        if isinstance(constraint, exp.ColumnConstraint) and isinstance(
            constraint.args.get("kind"), kinds
        ):
            return True
    return False


def actions(node: exp.Alter) -> list[exp.Expression]:
    return list(node.args.get("actions") or [])


def is_not_valid(node: exp.Alter, action: exp.Expression) -> bool:
    """Whether ``action`` is marked NOT VALID.

    sqlglot keeps ``NOT VALID`` on the statement; PostgreSQL only accepts it right
    after the constraint it qualifies, so it belongs to the last action.
    """
    listed = actions(node)
    return bool(node.args.get("not_valid")) and bool(listed) and listed[-1] is action


def added_constraints(action: exp.Expression) -> Iterator[tuple[str, exp.Expression]]:
    """(constraint name or "", constraint body) for each constraint an ADD CONSTRAINT adds."""
    if not isinstance(action, exp.AddConstraint):
        return
    for item in action.expressions:
        if isinstance(item, exp.Constraint):
            for body in item.expressions:
                yield ident(item.this), body
        else:
            yield "", item


def column_constraints(column: exp.ColumnDef) -> list[exp.Expression]:
    """The constraint kinds of a column definition (DEFAULT, CHECK, REFERENCES...)."""
    found = []
    for constraint in column.args.get("constraints") or []:
        kind = constraint.args.get("kind") if isinstance(constraint, exp.ColumnConstraint) else None
        if isinstance(kind, exp.Expression):
            found.append(kind)
    return found


def added_columns(node: exp.Alter) -> Iterator[exp.ColumnDef]:
    for action in actions(node):
        if isinstance(action, exp.ColumnDef):
            yield action


def qualified(table: str, column: str) -> str:
    return f"{table}.{column}" if table else column


def constraint_label(kind: str, name: str) -> str:
    """``FOREIGN KEY orders_user_fk`` or ``a FOREIGN KEY`` for an unnamed one."""
    return f"{kind} {name}" if name else f"a {kind}"


def server_version_text(context: Context) -> str:
    """``PostgreSQL 15.4``, or a note that the version is unknown."""
    return version_text(context.server_version)


def in_transaction_block(view: StatementView, context: Context) -> str | None:
    """Why the statement runs inside a transaction block (or a function), if it does."""
    if view.origin is not None:
        return "inside a DO block (a function)"
    if context.in_transaction:
        return "inside BEGIN ... COMMIT"
    return None


def type_text(dtype: exp.DataType | None) -> str:
    """A type for a message (only called once a rule has something to say)."""
    if dtype is None:
        return "?"
    return dtype.sql(dialect="postgres").lower()
