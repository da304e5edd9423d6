"""How each statement changes what the analysis knows (schema, lock_timeout, NOT VALID)."""

from __future__ import annotations

from sqlglot import exp
from sqlglot.tokenizer_core import Token, TokenType

from runner.plan.commands import CommandShape, words
from runner.plan.functions import calls_in, object_names, parse_search_path
from runner.plan.rules.base import Context, StatementView, ident, table_name
from runner.plan.schema import parse_type


def observe(view: StatementView, context: Context) -> None:
    """Update ``context`` for the statement having run."""
    if view.defines is not None:
        context.functions.define(view.defines)
        context.definitions_changed = True
        return
    if view.kind in _FORGET_FUNCTIONS:
        for parts in object_names(view.raw.text):
            context.functions.forget(parts, context.resolution_path)
        context.definitions_changed = True
        return
    if view.kind in ("create_type", "alter_type_add_value"):
        _enum(view, context)
        return
    node = view.node
    if isinstance(node, exp.Create):
        _create(node, context)
    elif isinstance(node, exp.Drop) and (node.args.get("kind") or "").upper() == "TABLE":
        for table in node.args.get("tables") or node.expressions:
            context.schema.drop_table(table_name(table))
    elif isinstance(node, exp.Alter) and (node.args.get("kind") or "").upper() == "TABLE":
        _alter(node, context)
    elif view.shape is not None and view.kind in _SHAPES_THAT_CHANGE_STATE:
        _alter_shape(view.shape, context)
    elif view.kind in ("set", "reset") or isinstance(node, exp.Set):
        _setting(view, context)
        _search_path(view, context)
    elif view.kind in ("commit", "rollback") and context.session_search_path is not None:
        # A SET LOCAL search_path ends with its transaction.
        context.search_path, context.session_search_path = context.session_search_path, None
        context.definitions_changed = True
    if any(t.text.lower() == "set_config" for t in view.raw.tokens):
        _set_config(view, context)


# A function dropped, renamed or moved: calls by its old name no longer reach it.
_FORGET_FUNCTIONS = frozenset(
    {
        "drop_function",
        "drop_procedure",
        "drop_routine",
        "alter_function",
        "alter_procedure",
        "alter_routine",
    }
)


def _create(node: exp.Create, context: Context) -> None:
    object_kind = (node.args.get("kind") or "").upper()
    if object_kind == "VIEW" and _materialized(node):
        # A materialized view made by the plan is as new as a table it made.
        context.schema.create_table(table_name(node.this), {})
        return
    if object_kind != "TABLE":
        return
    schema = node.this
    columns: dict[str, exp.DataType | None] = {}
    if isinstance(schema, exp.Schema):
        for column in schema.expressions:
            if isinstance(column, exp.ColumnDef):
                kind = column.args.get("kind")
                columns[ident(column.this)] = kind if isinstance(kind, exp.DataType) else None
    name = table_name(schema)
    if node.args.get("exists") and not (
        context.schema.seeded_from_catalog and context.schema.table(name) is None
    ):
        # CREATE TABLE IF NOT EXISTS may find the table already there, with its rows:
        # unless the catalog says it is absent, the plan did not necessarily create it.
        return
    context.schema.create_table(name, columns)


def _alter(node: exp.Alter, context: Context) -> None:
    table = table_name(node.this)
    schema = context.schema
    actions = list(node.args.get("actions") or [])
    for action in actions:
        if isinstance(action, exp.ColumnDef):
            kind = action.args.get("kind")
            schema.set_column(
                table, ident(action.this), kind if isinstance(kind, exp.DataType) else None
            )
        elif isinstance(action, exp.AlterColumn) and isinstance(
            action.args.get("dtype"), exp.DataType
        ):
            schema.set_column(table, ident(action.this), action.args["dtype"])
        elif isinstance(action, exp.Drop) and (action.args.get("kind") or "").upper() == "COLUMN":
            for column in action.args.get("tables") or action.expressions:
                schema.drop_column(
                    table, ident(column.this if isinstance(column, exp.Column) else column)
                )
        elif isinstance(action, exp.RenameColumn):
            schema.rename_column(table, ident(action.this.this), ident(action.args["to"].this))
        elif isinstance(action, exp.AlterRename):
            schema.rename_table(table, table_name(action.this))
        elif isinstance(action, exp.AddConstraint):
            # sqlglot keeps NOT VALID on the statement; PostgreSQL only accepts it
            # after the last action, so it belongs to that one.
            not_valid = bool(node.args.get("not_valid")) and action is actions[-1]
            for constraint in action.expressions:
                name = ident(constraint.this) if isinstance(constraint, exp.Constraint) else ""
                if not_valid and context.in_transaction:
                    context.not_valid_in_transaction.add((table, name))
                column = _not_null_check_column(constraint)
                if name and column:
                    schema.add_not_null_check(table, name, column, validated=not not_valid)
        elif (
            isinstance(action, exp.Drop) and (action.args.get("kind") or "").upper() == "CONSTRAINT"
        ):
            for constraint in action.args.get("tables") or action.expressions:
                schema.drop_check(table, table_name(constraint))


_SHAPES_THAT_CHANGE_STATE = frozenset(
    {"alter_table_validate_constraint", "alter_table_column_type"}
)


def _alter_shape(shape: CommandShape, context: Context) -> None:
    """The token-classified ALTER TABLE actions that change what the analysis knows."""
    table = shape.relation or ""
    if shape.kind == "alter_table_validate_constraint" and shape.args:
        context.schema.validate_check(table, shape.args[0])
    elif shape.kind == "alter_table_column_type" and len(shape.args) > 1:
        context.schema.set_column(table, shape.args[0], parse_type(shape.args[1]))


def _materialized(node: exp.Create) -> bool:
    properties = node.args.get("properties")
    return properties is not None and any(
        isinstance(p, exp.MaterializedProperty) for p in properties.expressions
    )


def _not_null_check_column(constraint: exp.Expression) -> str | None:
    """``c`` for ``CONSTRAINT x CHECK (c IS NOT NULL)``, else None."""
    for check in constraint.expressions if isinstance(constraint, exp.Constraint) else []:
        if not isinstance(check, exp.CheckColumnConstraint):
            continue
        condition = check.this
        while isinstance(condition, exp.Paren):
            condition = condition.this
        if (
            isinstance(condition, exp.Is)
            and condition.args.get("negate")
            and isinstance(condition.expression, exp.Null)
            and isinstance(condition.this, exp.Column)
        ):
            return ident(condition.this.this)
    return None


def _setting(view: StatementView, context: Context) -> None:
    """SET [LOCAL|SESSION] lock_timeout = v / TO v; RESET lock_timeout / ALL."""
    ws = [w.text for w in words(view.raw.tokens)]
    if not ws:
        return
    if ws[0] == "RESET":
        if len(ws) > 1 and ws[1] in ("LOCK_TIMEOUT", "ALL"):
            # Back to the default, which may be none (apply's own SET is undone too).
            context.session_lock_timeout = False
            context.local_lock_timeout = None
        return
    local = len(ws) > 1 and ws[1] == "LOCAL"
    rest = ws[2:] if len(ws) > 1 and ws[1] in ("LOCAL", "SESSION") else ws[1:]
    if len(rest) < 3 or rest[0] != "LOCK_TIMEOUT" or rest[1] not in ("=", "TO"):
        return
    value = rest[2].strip("'").lower()
    enabled = value not in ("0", "default")
    if local:
        # Outside a transaction block PostgreSQL ignores SET LOCAL (with a warning).
        if context.in_transaction:
            context.local_lock_timeout = enabled
    else:
        context.session_lock_timeout = enabled
        context.local_lock_timeout = None


def _enum(view: StatementView, context: Context) -> None:
    """Enum types created and labels added inside an explicit transaction."""
    transaction = context.transaction
    if transaction is None:
        return
    node = view.node
    if isinstance(node, exp.Create):
        created = node.args.get("expression")
        if isinstance(created, exp.DataType) and created.this is exp.DataType.Type.ENUM:
            name = table_name(node.this).removeprefix("public.")
            context.enum_types_created[name] = transaction
    elif view.shape is not None and view.shape.args:
        name = (view.shape.relation or "").removeprefix("public.")
        if context.enum_types_created.get(name) != transaction:
            context.enum_labels_added[(name, view.shape.args[0])] = transaction


DEFAULT_SEARCH_PATH = ("public",)


def _search_path(view: StatementView, context: Context) -> None:
    """SET [LOCAL|SESSION] search_path = a, "B", 'c' / TO DEFAULT; RESET search_path / ALL."""
    tokens = list(view.raw.tokens)
    ws = [w.text for w in words(tokens)]
    if not ws:
        return
    if ws[0] == "RESET":
        if len(ws) > 1 and ws[1] in ("SEARCH_PATH", "ALL"):
            if context.search_path != DEFAULT_SEARCH_PATH:
                context.definitions_changed = True
            context.search_path, context.session_search_path = DEFAULT_SEARCH_PATH, None
        return
    local = len(ws) > 1 and ws[1] == "LOCAL"
    start = 2 if len(ws) > 1 and ws[1] in ("LOCAL", "SESSION") else 1
    if len(ws) < start + 3 or ws[start] != "SEARCH_PATH" or ws[start + 1] not in ("=", "TO"):
        return
    values = tokens[start + 2 :]
    if len(values) == 1 and values[0].text.upper() == "DEFAULT":
        path: tuple[str, ...] = DEFAULT_SEARCH_PATH
    else:
        path = tuple(
            schema
            for schema in (_schema_name(t) for t in values if t.token_type is not TokenType.COMMA)
            if schema and schema != "$user"
        )
    if local:
        if not context.in_transaction:
            return  # PostgreSQL ignores SET LOCAL outside a transaction block
        if context.session_search_path is None:
            context.session_search_path = context.search_path
    else:
        context.session_search_path = None
    if path != context.search_path:
        context.definitions_changed = True
    context.search_path = path


def _schema_name(token: Token) -> str:
    """A schema as search_path lists it: quoted kept, bare folded, a string's content."""
    if token.token_type is TokenType.IDENTIFIER:
        return token.text
    if token.token_type in (TokenType.STRING, TokenType.NATIONAL_STRING):
        return token.text
    return token.text.lower()


def _set_config(view: StatementView, context: Context) -> None:
    """``set_config('search_path', 'a, b', is_local)`` changes search_path as SET
    does; one whose setting, value or scope is computed leaves it unknown (empty:
    a function call is then resolved in every schema)."""
    calls = calls_in(view.raw.text)
    if isinstance(calls, str):
        return
    for call in calls:
        if call.parts[-1] != "set_config" or call.parts[:-1] not in ((), ("pg_catalog",)):
            continue
        name, value, local = (*call.literals, None, None, None)[:3]
        if isinstance(name, str) and name.lower() != "search_path":
            continue
        path = _path_value(value) if isinstance(name, str) else None
        if path is None or not isinstance(local, bool):
            context.search_path, context.session_search_path = (), None
            context.definitions_changed = True
            continue
        if local:
            if not context.in_transaction:
                continue
            if context.session_search_path is None:
                context.session_search_path = context.search_path
        else:
            context.session_search_path = None
        if path != context.search_path:
            context.definitions_changed = True
        context.search_path = path


def _path_value(value: object) -> tuple[str, ...] | None:
    """``'a, "B"'`` (search_path's text form) as schemas; None: not a literal one."""
    if not isinstance(value, str):
        return None
    return parse_search_path(value) or None
