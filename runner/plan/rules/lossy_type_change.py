"""SO114: ALTER COLUMN ... TYPE that silently rounds, truncates or replaces stored values.

Most type changes either keep every value or fail loudly (``text`` to
``varchar(5)`` raises on a longer value). Some conversions succeed and quietly
change the data instead: numeric to integer rounds, timestamp to date drops the
time, a USING expression that does not read the column replaces every value.
Those are data loss the statement's author may not have meant.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from sqlglot import exp

from runner.plan.model import Category, Severity
from runner.plan.rules.base import Context, Example, StatementView, ident, rule, table_name

_T = exp.DataType.Type
_INT_BITS = {
    _T.SMALLINT: 16,
    _T.SMALLSERIAL: 16,
    _T.INT: 32,
    _T.SERIAL: 32,
    _T.BIGINT: 64,
    _T.BIGSERIAL: 64,
}
_TIMESTAMPS = frozenset({_T.TIMESTAMP, _T.TIMESTAMPTZ})
_TIMES = frozenset({_T.TIME, _T.TIMETZ})
_BOUNDED_STRINGS = frozenset({_T.VARCHAR, _T.CHAR, _T.NCHAR, _T.NVARCHAR, _T.BIT})
# Significant decimal digits a float keeps, by mantissa bits.
_FLOAT_DIGITS = {24: 6, 53: 15}


@dataclass(frozen=True)
class _Kind:
    family: str  # "int", "numeric", "float", "timestamp", "time", "date"
    bits: int | None = None  # int width, float mantissa
    precision: int | None = None  # numeric precision, fractional-second digits
    scale: int | None = None  # numeric scale (None: unconstrained numeric)


def _params(dtype: exp.DataType) -> list[int]:
    out = []
    for param in dtype.expressions:
        value = param.this if isinstance(param, exp.DataTypeParam) else param
        try:
            out.append(int(str(value.this if isinstance(value, exp.Literal) else value)))
        except ValueError:
            return []
    return out


def _kind(dtype: exp.DataType | None) -> _Kind | None:
    if dtype is None:
        return None
    t = dtype.this
    params = _params(dtype)
    if t in _INT_BITS:
        return _Kind("int", bits=_INT_BITS[t])
    if t == _T.DECIMAL:
        if not params:
            return _Kind("numeric")
        return _Kind("numeric", precision=params[0], scale=params[1] if len(params) > 1 else 0)
    if t == _T.FLOAT:
        return _Kind("float", bits=24)
    if t == _T.DOUBLE:
        return _Kind("float", bits=24 if params and params[0] <= 24 else 53)
    if t in _TIMESTAMPS:
        return _Kind("timestamp", precision=params[0] if params else 6)
    if t in _TIMES:
        return _Kind("time", precision=params[0] if params else 6)
    if t == _T.DATE:
        return _Kind("date")
    return None


def lossy(old: exp.DataType | None, new: exp.DataType | None) -> str | None:
    """How converting ``old`` to ``new`` (an assignment cast) loses data, or None."""
    a, b = _kind(old), _kind(new)
    if a is None or b is None:
        return None
    fractional = a.family == "float" or (a.family == "numeric" and a.scale != 0)
    if b.family == "int" and fractional:
        return "rounds every fractional value to a whole number"
    if (
        b.family == "numeric"
        and b.scale is not None
        and (
            a.family == "float"
            or (a.family == "numeric" and (a.scale is None or a.scale > b.scale))
        )
    ):
        return f"rounds every value to {b.scale} decimal places"
    if b.family == "float" and b.bits is not None:
        digits = _FLOAT_DIGITS[b.bits]
        if (
            (a.family == "float" and (a.bits or 0) > b.bits)
            or (a.family == "numeric" and (a.precision is None or a.precision > digits))
            or (a.family == "int" and (a.bits or 0) > b.bits)
        ):
            return f"keeps only about {digits} significant digits; other values are rounded"
    if a.family == "timestamp" and b.family == "date":
        return "drops the time of day from every value"
    if a.family == "timestamp" and b.family == "time":
        return "drops the date from every value"
    if (
        a.family == b.family
        and a.family in ("timestamp", "time")
        and (a.precision or 0) > (b.precision or 0)
    ):
        return f"rounds fractional seconds to {b.precision} digits"
    return None


def _cast_chain(using: exp.Expression) -> tuple[exp.Expression, list[exp.DataType]]:
    """``c::numeric(10,2)::int`` -> (``c``, [numeric(10,2), int])."""
    steps: list[exp.DataType] = []
    node = using
    while isinstance(node, exp.Cast | exp.Paren):
        if isinstance(node, exp.Cast):
            to = node.args.get("to")
            if not isinstance(to, exp.DataType):
                break
            steps.append(to)
        node = node.this
    steps.reverse()
    return node, steps


def _using_loss(
    column: str, old: exp.DataType | None, new: exp.DataType, using: exp.Expression
) -> str | None:
    reads_column = any(ident(c.this) == column for c in using.find_all(exp.Column))
    if not reads_column:
        shown = using.sql(dialect="postgres")
        return f"replaces every value with USING {shown}, which does not read the column"
    inner, steps = _cast_chain(using)
    if not (isinstance(inner, exp.Column) and ident(inner.this) == column):
        return None  # a computed conversion: what it keeps is the author's to explain
    previous = old
    # The USING result is then assignment-cast to the column's new type.
    for step in [*steps, new]:
        if step.this in _BOUNDED_STRINGS and step.expressions:
            shown = step.sql(dialect="postgres")
            return f"the explicit cast to {shown} silently truncates longer values"
        reason = lossy(previous, step)
        if reason is not None:
            return reason
        previous = step
    return None


@rule(
    "SO114",
    "lossy-column-type-change",
    Category.DESTRUCTIVE,
    Severity.ERROR,
    summary="ALTER COLUMN ... TYPE silently rounds, truncates or replaces the stored values.",
    rationale="""
        Changing a column's type converts every stored value, and some
        conversions succeed while changing the data: numeric or float to an
        integer type rounds away the fraction, to numeric(p, s) rounds to s
        decimals, to real or double precision keeps only 6 or 15 significant
        digits, timestamp to date drops the time, a lower timestamp precision
        rounds the fractional seconds. A USING clause can do worse: an explicit
        cast to varchar(n) truncates longer strings, and an expression that does
        not read the column (USING NULL, USING 0) replaces every value. The old
        values are gone once the statement commits. The previous type is known
        when the table was created in the plan or a database was given
        (--database-url); without it only the USING clause can be judged.
    """,
    safer="""
        Add a new column of the new type, backfill it with an explicit, reviewed
        conversion ('UPDATE products SET price_cents = round(price * 100) WHERE id
        BETWEEN 1 AND 10000;'), switch readers to it, and drop the old column in a
        later release; or convert to a type that holds every value
        ('ALTER TABLE products ALTER COLUMN price TYPE numeric(12, 2);').
    """,
    triggers=[
        Example(
            "ALTER TABLE products ALTER COLUMN price TYPE integer",
            columns={"products": {"price": "numeric(10,2)"}},
        ),
        Example(
            "ALTER TABLE visits ALTER COLUMN seen_at TYPE date",
            columns={"visits": {"seen_at": "timestamp with time zone"}},
        ),
        Example(
            "ALTER TABLE readings ALTER COLUMN value TYPE real",
            columns={"readings": {"value": "double precision"}},
        ),
        "ALTER TABLE users ALTER COLUMN nickname TYPE varchar(10) USING nickname::varchar(10)",
        "ALTER TABLE users ALTER COLUMN status TYPE text USING NULL",
        "ALTER TABLE products ALTER COLUMN price TYPE bigint USING price::numeric(10,2)::bigint",
    ],
    passes=[
        "ALTER TABLE users ALTER COLUMN nickname TYPE text",
        "ALTER TABLE users ALTER COLUMN nickname TYPE varchar(5)",
        Example(
            "ALTER TABLE users ALTER COLUMN id TYPE bigint",
            columns={"users": {"id": "integer"}},
        ),
        Example(
            "ALTER TABLE products ALTER COLUMN price TYPE numeric(12,2)",
            columns={"products": {"price": "numeric(10,2)"}},
        ),
        Example(
            "ALTER TABLE logs ALTER COLUMN created_at TYPE timestamptz",
            columns={"logs": {"created_at": "timestamp without time zone"}},
        ),
        "CREATE TABLE scratch (id int, v numeric(10,2));\n"
        "ALTER TABLE scratch ALTER COLUMN v TYPE integer",
        "ALTER TABLE orders ALTER COLUMN status TYPE order_status USING status::text::order_status",
    ],
    kinds=("alter_table",),
)
def lossy_type_change(view: StatementView, context: Context) -> Iterator[str]:
    if view.kind != "alter_table" or not isinstance(view.node, exp.Alter):
        return
    for action in view.alter_actions():
        new = action.args.get("dtype") if isinstance(action, exp.AlterColumn) else None
        if not isinstance(new, exp.DataType):
            continue
        table = table_name(view.node.this)
        if context.schema.created_in_plan(table):
            return
        column = ident(action.this)
        old = context.schema.column_type(table, column)
        using = action.args.get("using")
        if isinstance(using, exp.Expression):
            reason = _using_loss(column, old, new, using)
        else:
            reason = lossy(old, new)
        if reason is None:
            continue
        was = f" from {old.sql(dialect='postgres')}" if old is not None else ""
        yield f"changes {table}.{column}{was} to {new.sql(dialect='postgres')}: {reason}"
