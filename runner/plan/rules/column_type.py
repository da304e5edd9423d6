"""SO207: ALTER COLUMN ... TYPE that rewrites the table under ACCESS EXCLUSIVE.

Most type changes make PostgreSQL rewrite the whole table and rebuild its
indexes. A few are binary-coercible and only touch the catalog: widening a
``varchar`` or dropping its limit, ``varchar`` to ``text``, raising a
``numeric`` precision at the same scale, ``cidr`` to ``inet``... (checked
against PostgreSQL 15 by comparing ``pg_class.relfilenode`` before and after).
The previous type comes from the plan or the database catalog; when neither
says, a rewrite is assumed.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from sqlglot import exp

from runner.plan.model import Category, Severity
from runner.plan.rules._locks import actions, busy_table, is_new, qualified, type_text
from runner.plan.rules.base import Context, Example, StatementView, ident, rule
from runner.plan.schema import parse_type

_T = exp.DataType.Type

# sqlglot's type -> PostgreSQL's name for it (others use sqlglot's own name).
_NAMES: dict[object, str] = {
    _T.VARCHAR: "varchar",
    _T.NVARCHAR: "varchar",
    _T.TEXT: "text",
    _T.CHAR: "bpchar",
    _T.NCHAR: "bpchar",
    _T.BPCHAR: "bpchar",
    _T.DECIMAL: "numeric",
    _T.BIGDECIMAL: "numeric",
    _T.TIMESTAMP: "timestamp",
    _T.TIMESTAMPTZ: "timestamptz",
    _T.TIME: "time",
    _T.TIMETZ: "timetz",
    _T.INTERVAL: "interval",
    _T.INET: "inet",
    _T.BIT: "bit",
    _T.SMALLINT: "int2",
    _T.INT: "int4",
    _T.BIGINT: "int8",
    _T.XML: "xml",
}
# Types whose typmod is a precision, and the precision they have without one.
_PRECISION_TYPES = {"timestamp": 6, "timestamptz": 6, "time": 6, "timetz": 6, "interval": 6}
_TEXTUAL = frozenset({"text", "citext"})


@dataclass(frozen=True)
class _Type:
    name: str
    params: tuple[int, ...]
    array: bool = False


def _describe(dtype: exp.DataType | None) -> _Type | None:
    """A comparable description of a type, or None when sqlglot's reading is not simple."""
    if dtype is None:
        return None
    array = False
    if dtype.this is _T.ARRAY:
        inner = dtype.expressions[0] if dtype.expressions else None
        if not isinstance(inner, exp.DataType):
            return None
        dtype, array = inner, True
    if not isinstance(dtype.this, exp.DataType.Type):
        return None  # e.g. interval with fields
    if dtype.this is _T.USERDEFINED:
        kind = dtype.args.get("kind")
        if isinstance(kind, exp.Identifier):
            name = kind.this if kind.quoted else kind.this.lower()
        elif isinstance(kind, exp.Dot):
            name = kind.sql(dialect="postgres").lower()
        else:
            return None
        for schema in ("public.", "pg_catalog."):
            if name.startswith(schema):
                name = name[len(schema) :]
    else:
        name = _NAMES.get(dtype.this, dtype.this.value.lower())
    params: list[int] = []
    for param in dtype.expressions:
        value = param.this if isinstance(param, exp.DataTypeParam) else param
        if not (isinstance(value, exp.Literal) and value.is_int):
            return None
        params.append(int(value.this))
    return _Type(name, tuple(params), array)


_SPELLED = {"int2": "smallint", "int4": "integer", "int8": "bigint", "bpchar": "char"}
_SPELLED |= {"varbit": "bit varying"}


def _render(described: _Type | None, dtype: exp.DataType | None) -> str:
    """A type as a reviewer writes it: ``varchar(50)``, ``numeric(10,2)``, ``integer[]``."""
    if described is None:
        return type_text(dtype)
    params = f"({','.join(str(p) for p in described.params)})" if described.params else ""
    return _SPELLED.get(described.name, described.name) + params + ("[]" if described.array else "")


def _length_widens(old: tuple[int, ...], new: tuple[int, ...]) -> bool:
    """varchar/varbit: no limit, or a limit at least as large as before."""
    if not new:
        return True
    return bool(old) and new[0] >= old[0]


def keeps_storage(old: _Type, new: _Type) -> bool:
    """True when PostgreSQL changes the type without rewriting the table."""
    if old == new:
        return True
    if old.array or new.array:
        return False  # even varchar(10)[] -> varchar(20)[] rewrites
    o, n = old.name, new.name
    if o == n == "varchar" or o == n == "varbit":
        return _length_widens(old.params, new.params)
    if o in {"varchar", *_TEXTUAL} and n in _TEXTUAL:
        return True
    if o in _TEXTUAL and n == "varchar":
        return not new.params
    if (o, n) in (("xml", "text"), ("cidr", "inet")):
        return True
    if o == n == "numeric":
        if not new.params:
            return True
        if not old.params:
            return False
        old_scale = old.params[1] if len(old.params) > 1 else 0
        new_scale = new.params[1] if len(new.params) > 1 else 0
        return new_scale == old_scale and new.params[0] >= old.params[0]
    if o == n and o in _PRECISION_TYPES:
        default = _PRECISION_TYPES[o]
        old_p = old.params[0] if old.params else default
        new_p = new.params[0] if new.params else default
        return new_p >= old_p
    return False


@dataclass(frozen=True)
class _Change:
    table: str
    column: str
    new: exp.DataType | None
    written: str  # the new type as written, when read from tokens ("" from the AST)
    using: bool

    @property
    def new_text(self) -> str:
        return self.written.lower() if self.written else type_text(self.new)


def _retypes(action: exp.Expression) -> bool:
    return isinstance(action, exp.AlterColumn) and isinstance(
        action.args.get("dtype"), exp.DataType
    )


def _changes(view: StatementView, context: Context) -> Iterator[_Change]:
    found = busy_table(view, context, _retypes)
    if found is not None:
        node, table = found
        for action in actions(node):
            if not isinstance(action, exp.AlterColumn):
                continue
            dtype = action.args.get("dtype")
            if not isinstance(dtype, exp.DataType):
                continue
            column = ident(action.this)
            using = action.args.get("using")
            # USING the column itself is no conversion at all.
            trivial = isinstance(using, exp.Column) and ident(using.this) == column
            yield _Change(table, column, dtype, "", bool(using) and not trivial)
    elif view.kind == "alter_table_column_type" and view.shape is not None:
        shape = view.shape
        column, written = (*shape.args, "", "")[:2]
        yield _Change(
            shape.relation or "?",
            column,
            parse_type(written) if written else None,
            written or "?",
            "using" in shape.flags,
        )


_KINDS = frozenset({"alter_table", "alter_table_column_type"})


@rule(
    "SO207",
    "alter-column-type-rewrite",
    Category.LOCKING,
    Severity.WARNING,
    summary="Changing a column's type rewrites the table under ACCESS EXCLUSIVE.",
    rationale="""
        ALTER COLUMN ... TYPE holds an ACCESS EXCLUSIVE lock (no reads, no
        writes) and, unless the new type is binary-coercible from the old one,
        rewrites every row and rebuilds every index of the table: minutes to
        hours on a large table. Binary-coercible changes only touch the catalog:
        varchar(n) to varchar(m >= n) or unbounded varchar or text, text to
        unbounded varchar, numeric(p,s) to numeric(p2 >= p, s) or unbounded
        numeric, a larger or no timestamp/time/interval precision, cidr to inet,
        varbit widening, text/varchar to citext. Everything else rewrites,
        including int to bigint, any narrowing, numeric scale changes, and any
        USING expression. timestamp to timestamptz (and back) rewrites unless the
        session TimeZone is UTC (PostgreSQL 12+), which the plan cannot show, so
        it is always reported. The previous type is read from the plan or the
        database catalog; when neither knows it, a rewrite is assumed. Tables
        created earlier in the plan are not reported.
    """,
    safer="""
        Add a new column of the new type (ALTER TABLE t ADD COLUMN c_new bigint),
        backfill it in batches, keep it in sync with a trigger, then swap the
        names in one short transaction; or for a widening, use a binary-coercible
        target (varchar(n) -> text, numeric(p,s) -> numeric).
    """,
    triggers=[
        Example(
            "ALTER TABLE users ALTER COLUMN nickname TYPE varchar(5)",
            columns={"users": {"nickname": "character varying(50)"}},
        ),
        Example(
            "ALTER TABLE logs ALTER COLUMN created_at TYPE timestamptz",
            columns={"logs": {"created_at": "timestamp without time zone"}},
        ),
        Example(
            "ALTER TABLE orders ALTER COLUMN id SET DATA TYPE bigint",
            columns={"orders": {"id": "integer"}},
        ),
        Example(
            "ALTER TABLE orders ALTER COLUMN total TYPE numeric(12,3)",
            columns={"orders": {"total": "numeric(10,2)"}},
        ),
        Example(
            "ALTER TABLE users ALTER COLUMN nickname TYPE varchar(80) USING trim(nickname)",
            columns={"users": {"nickname": "character varying(50)"}},
        ),
        "ALTER TABLE users ALTER COLUMN age TYPE smallint",
        "ALTER TABLE users ADD COLUMN code text;\n"
        "ALTER TABLE users ALTER COLUMN code TYPE varchar(8)",
    ],
    passes=[
        Example(
            "ALTER TABLE users ALTER COLUMN nickname TYPE text",
            columns={"users": {"nickname": "character varying(50)"}},
        ),
        Example(
            "ALTER TABLE users ALTER COLUMN nickname TYPE varchar(80)",
            columns={"users": {"nickname": "character varying(50)"}},
        ),
        Example(
            "ALTER TABLE orders ALTER COLUMN total TYPE numeric(14,2)",
            columns={"orders": {"total": "numeric(10,2)"}},
        ),
        Example(
            "ALTER TABLE hosts ALTER COLUMN addr TYPE inet",
            columns={"hosts": {"addr": "cidr"}},
        ),
        Example(
            "ALTER TABLE flags ALTER COLUMN bits TYPE bit varying(16)",
            columns={"flags": {"bits": "bit varying(8)"}},
        ),
        "ALTER TABLE users ADD COLUMN code varchar(8);\n"
        "ALTER TABLE users ALTER COLUMN code TYPE varchar",
        "CREATE TABLE counters (n integer);\nALTER TABLE counters ALTER COLUMN n TYPE bigint",
    ],
    kinds=_KINDS,
)
def alter_column_type_rewrite(view: StatementView, context: Context) -> Iterator[str]:
    # Called only for the kinds above (the engine dispatches on kinds=).
    if not isinstance(view.node, exp.Alter) and view.kind != "alter_table_column_type":
        return
    for change in _changes(view, context):
        if is_new(context, change.table):
            continue
        column = qualified(change.table, change.column)
        lock = f"rewrites {change.table} and rebuilds its indexes under ACCESS EXCLUSIVE"
        old_type = context.schema.column_type(change.table, change.column)
        old, new = _describe(old_type), _describe(change.new)
        if change.using:
            yield f"changes {column} to {change.new_text} with a USING expression: {lock}"
        elif old is None:
            yield (
                f"changes {column} to {change.new_text}: previous type unknown; assuming it "
                f"{lock} (give --database-url so the catalog can tell)"
            )
        elif new is None or not keeps_storage(old, new):
            note = ""
            if {old.name, new.name if new else ""} == {"timestamp", "timestamptz"}:
                note = (
                    " (PostgreSQL 12+ skips the rewrite only when the session TimeZone is UTC,"
                    " which the plan cannot show)"
                )
            yield (
                f"changes {column} from {_render(old, old_type)} to "
                f"{_render(new, change.new) if new else change.new_text}: {lock}{note}"
            )
