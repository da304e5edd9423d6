"""SO316: changing a column's type to another kind of value breaks running clients.

The lock and the table rewrite of ALTER COLUMN ... TYPE are the locking rules'
business (SO207); this rule is about the values: clients decode a column by its
type, and the previous release still expects the old one.
"""

from __future__ import annotations

from collections.abc import Iterator

from sqlglot import exp
from sqlglot.expressions.datatypes import DType

from runner.plan.model import Category, Severity
from runner.plan.rules.base import Context, Example, StatementView, ident, rule
from runner.plan.schema import parse_type

T = DType

# What a client library hands the application for a type: within one class the
# driver returns the same kind of value (str, int, Decimal, naive datetime...).
_CLASSES: dict[DType, str] = {}
for _class, _types in (
    ("integer", (T.TINYINT, T.SMALLINT, T.INT, T.BIGINT, T.SERIAL, T.SMALLSERIAL, T.BIGSERIAL)),
    ("numeric", (T.DECIMAL, T.BIGDECIMAL)),
    ("floating point", (T.FLOAT, T.DOUBLE)),
    ("money", (T.MONEY,)),
    ("text", (T.TEXT, T.VARCHAR, T.CHAR, T.BPCHAR, T.NCHAR, T.NVARCHAR, T.NAME)),
    ("boolean", (T.BOOLEAN,)),
    ("date", (T.DATE,)),
    ("time", (T.TIME,)),
    ("time with time zone", (T.TIMETZ,)),
    ("timestamp without time zone", (T.TIMESTAMP,)),
    ("timestamp with time zone", (T.TIMESTAMPTZ, T.TIMESTAMPLTZ)),
    ("interval", (T.INTERVAL,)),
    ("uuid", (T.UUID,)),
    ("json", (T.JSON, T.JSONB)),
    ("bytea", (T.VARBINARY, T.BINARY)),
):
    for _type in _types:
        _CLASSES[_type] = _class
_TEXT_LIKE_EXTENSIONS = frozenset({"citext"})


def value_class(dtype: exp.DataType) -> str:
    """The kind of value clients read for a type (``text`` for varchar(50) and text alike)."""
    if dtype.this is T.ARRAY:
        inner = dtype.expressions[0] if dtype.expressions else None
        return "array of " + (value_class(inner) if isinstance(inner, exp.DataType) else "?")
    if dtype.this is T.USERDEFINED:
        kind = dtype.args.get("kind")
        name = _udt_name(kind)
        return "text" if name in _TEXT_LIKE_EXTENSIONS else f"type {name}"
    known = _CLASSES.get(dtype.this)
    if known is not None:
        return known
    if isinstance(dtype.this, exp.DataType.Type):
        return str(dtype.this.value).lower()
    return dtype.sql(dialect="postgres").lower()  # INTERVAL DAY TO SECOND and the like


def _udt_name(kind: object) -> str:
    if isinstance(kind, exp.Dot):
        name = f"{ident(kind.this)}.{ident(kind.expression)}"
    elif isinstance(kind, exp.Expression):
        name = ident(kind)
    else:
        name = str(kind).lower()
    return name.removeprefix("public.")


def _type_changes(view: StatementView) -> Iterator[tuple[str, str, exp.DataType | None]]:
    """(table, column, new type) for each ALTER COLUMN ... TYPE of the statement."""
    if view.node is not None and isinstance(view.node, exp.Alter):
        table = view.alter_table() or "?"
        for action in view.alter_actions():
            if isinstance(action, exp.AlterColumn) and isinstance(
                action.args.get("dtype"), exp.DataType
            ):
                yield table, ident(action.this), action.args["dtype"]
    elif (
        view.shape is not None and view.shape.kind == "alter_table_column_type" and view.shape.args
    ):
        written = view.shape.args[1] if len(view.shape.args) > 1 else ""
        yield (
            view.shape.relation or "?",
            view.shape.args[0],
            parse_type(written) if written else None,
        )


@rule(
    "SO316",
    "incompatible-column-type",
    Category.INCOMPATIBLE,
    Severity.WARNING,
    summary=(
        "Changing a column to another kind of type changes what running clients read and write."
    ),
    rationale="""
        Client libraries decode a column by its type: integer to int, numeric to
        Decimal, timestamp to a naive datetime and timestamptz to an aware one,
        an enum through a registered codec. After ALTER COLUMN ... TYPE to
        another kind of type the previous release, still running during a
        rolling deploy, gets values it was not written for (comparing naive and
        aware datetimes raises, Decimal does not serialise as JSON) and binds
        parameters of the old type (strict drivers such as asyncpg reject text
        for an enum column). Widening within a kind (int to bigint, varchar(50) to
        text) is not reported here, nor are narrowing and rewrites, which
        the locking rules judge. When the previous type is unknown the rule
        assumes the worst; give --database-url so the catalog says.
    """,
    safer="""
        Expand and contract: ALTER TABLE t ADD COLUMN c_new <new type>; write both
        columns, backfill c_new in batches, move readers to c_new, and drop c in a
        later release.
    """,
    triggers=[
        Example(
            "ALTER TABLE logs ALTER COLUMN created_at TYPE timestamptz",
            columns={"logs": {"created_at": "timestamp without time zone"}},
        ),
        Example(
            "ALTER TABLE orders ALTER COLUMN status TYPE order_status USING status::order_status",
            columns={"orders": {"status": "text"}},
        ),
        Example(
            "alter table public.invoices alter column total set data type numeric(12, 2)",
            columns={"invoices": {"total": "integer"}},
        ),
        "ALTER TABLE patients ALTER COLUMN mrn TYPE bigint USING mrn::bigint",
    ],
    passes=[
        Example(
            "ALTER TABLE users ALTER COLUMN nickname TYPE text",
            columns={"users": {"nickname": "character varying(50)"}},
        ),
        Example(
            "ALTER TABLE orders ALTER COLUMN id TYPE bigint",
            columns={"orders": {"id": "integer"}},
        ),
        "CREATE TABLE t (a int);\nALTER TABLE t ALTER COLUMN a TYPE text",
        Example(
            "ALTER TABLE users ALTER COLUMN tags TYPE varchar(20)[]",
            columns={"users": {"tags": "text[]"}},
        ),
    ],
    kinds=("alter_table", "alter_table_column_type"),
)
def alter_column_type(view: StatementView, context: Context) -> Iterator[str]:
    if view.kind not in ("alter_table", "alter_table_column_type"):
        return
    for table, column, new in _type_changes(view):
        if context.schema.created_in_plan(table):
            continue
        old = context.schema.column_type(table, column)
        new_class = value_class(new) if new is not None else "an unreadable type"
        if old is None or new is None:
            known = "previous type unknown" if old is None else "new type unreadable"
            yield (
                f"changes the type of {table}.{column} to {new_class}; {known}, assuming "
                f"clients of the previous release read another kind of value"
                + (" (give --database-url)" if old is None else "")
            )
            continue
        old_class = value_class(old)
        if old_class != new_class:
            yield (
                f"changes {table}.{column} from {old_class} to {new_class}: clients of the "
                f"previous release decode and bind it as {old_class}"
            )
