"""SO111-SO112: DELETE / UPDATE with no WHERE clause, or one that is always true.

``always_true`` is a small, conservative constant folder over sqlglot's AST: it
answers True only when the predicate is provably true for every row (``true``,
``1 = 1``, ``'a' = 'a'``, ``x OR true``, ``NOT false``, ``NULL IS NULL``...).
Anything that depends on a column, a function or a parameter is "unknown" and
never folded, so a real filter is never mistaken for no filter.
"""

from __future__ import annotations

from collections.abc import Iterator
from decimal import Decimal, InvalidOperation

from sqlglot import exp
from sqlglot.tokenizer_core import TokenType

from runner.plan.commands import words
from runner.plan.model import Category, Severity
from runner.plan.rules.base import Context, StatementView, rule, table_name
from runner.plan.rules.drop_reader import read_names


class _Unknown:
    """A value the folder cannot know (depends on a row, a function, a setting)."""


class _Null:
    """SQL NULL: known, but neither true nor false."""


UNKNOWN = _Unknown()
NULL = _Null()

Value = bool | Decimal | str | _Null | _Unknown

# PostgreSQL's boolean input forms (boolin), for 'yes'::boolean and WHERE 't'.
_TRUE_WORDS = frozenset({"t", "tr", "tru", "true", "y", "ye", "yes", "on", "1"})
_FALSE_WORDS = frozenset({"f", "fa", "fal", "fals", "false", "n", "no", "of", "off", "0"})


def always_true(predicate: exp.Expression | None) -> bool:
    """True only when ``predicate`` is provably true whatever the row."""
    return predicate is not None and _truth(predicate) is True


def _truth(node: exp.Expression) -> Value:
    """The predicate's value in a boolean context (a bare string literal is read as a boolean)."""
    value = _value(node)
    if isinstance(value, str):
        return _boolean_input(value)
    return value if isinstance(value, bool | _Null) else UNKNOWN


# The node types the folder knows; anything else (a column, a function call, a
# parameter: the usual case) is unknown, decided with one set lookup.
_FOLDABLE: frozenset[type[exp.Expression]] = frozenset(
    {
        exp.Paren,
        exp.Boolean,
        exp.Null,
        exp.Literal,
        exp.Neg,
        exp.Cast,
        exp.Not,
        exp.And,
        exp.Or,
        exp.Is,
        exp.NullSafeEQ,
        exp.NullSafeNEQ,
        exp.EQ,
        exp.NEQ,
        exp.GT,
        exp.GTE,
        exp.LT,
        exp.LTE,
        exp.In,
        exp.Between,
    }
)


def _value(node: exp.Expression) -> Value:
    if type(node) not in _FOLDABLE:
        return UNKNOWN
    if isinstance(node, exp.Paren):
        return _value(node.this)
    if isinstance(node, exp.Boolean):
        return bool(node.this)
    if isinstance(node, exp.Null):
        return NULL
    if isinstance(node, exp.Literal):
        if node.is_string:
            return str(node.this)
        try:
            return Decimal(str(node.this))
        except InvalidOperation:
            return UNKNOWN
    if isinstance(node, exp.Neg):
        inner = _value(node.this)
        return -inner if isinstance(inner, Decimal) else UNKNOWN
    if isinstance(node, exp.Cast):
        return _cast(node)
    if isinstance(node, exp.Not):
        inner = _truth(node.this)
        return (not inner) if isinstance(inner, bool) else inner
    if isinstance(node, exp.And):
        return _and(_truth(node.this), _truth(node.expression))
    if isinstance(node, exp.Or):
        return _or(_truth(node.this), _truth(node.expression))
    if isinstance(node, exp.Is):
        return _is(node)
    if isinstance(node, exp.NullSafeEQ | exp.NullSafeNEQ):
        left, right = _value(node.this), _value(node.expression)
        if not _comparable(left, right, allow_null=True):
            return UNKNOWN
        same = left == right if not isinstance(left, _Null) else isinstance(right, _Null)
        return same if isinstance(node, exp.NullSafeEQ) else not same
    if isinstance(node, exp.EQ | exp.NEQ | exp.GT | exp.GTE | exp.LT | exp.LTE):
        return _compare(node, _value(node.this), _value(node.expression))
    if isinstance(node, exp.In):
        return _in(node)
    if isinstance(node, exp.Between) and not node.args.get("symmetric"):
        value, low, high = (_value(node.args[k]) for k in ("this", "low", "high"))
        if isinstance(value, Decimal) and isinstance(low, Decimal) and isinstance(high, Decimal):
            return low <= value <= high
        return UNKNOWN
    return UNKNOWN


def _boolean_input(text: str) -> Value:
    word = text.strip().lower()
    if word in _TRUE_WORDS:
        return True
    if word in _FALSE_WORDS:
        return False
    return UNKNOWN


def _cast(node: exp.Cast) -> Value:
    to = node.args.get("to")
    inner = _value(node.this)
    if not isinstance(to, exp.DataType) or to.this != exp.DataType.Type.BOOLEAN:
        return UNKNOWN
    if isinstance(inner, bool | _Null):
        return inner
    if isinstance(inner, str):
        return _boolean_input(inner)
    if (
        isinstance(inner, Decimal)
        and inner == inner.to_integral_value()
        and "." not in str(node.this)
    ):
        return inner != 0  # int::boolean
    return UNKNOWN


def _and(left: Value, right: Value) -> Value:
    if left is False or right is False:
        return False
    if left is True and right is True:
        return True
    if isinstance(left, bool | _Null) and isinstance(right, bool | _Null):
        return NULL
    return UNKNOWN


def _or(left: Value, right: Value) -> Value:
    if left is True or right is True:
        return True
    if left is False and right is False:
        return False
    if isinstance(left, bool | _Null) and isinstance(right, bool | _Null):
        return NULL
    return UNKNOWN


def _is(node: exp.Is) -> Value:
    value = _is_positive(node)
    if node.args.get("negate") and isinstance(value, bool):
        return not value
    return value


def _is_positive(node: exp.Is) -> Value:
    left = _value(node.this)
    target = node.expression
    if isinstance(target, exp.Null):
        if isinstance(left, _Unknown):
            return UNKNOWN
        return isinstance(left, _Null)
    if isinstance(target, exp.Boolean):
        truth = _truth(node.this)
        if isinstance(truth, _Unknown):
            return UNKNOWN
        return truth is bool(target.this)  # NULL IS TRUE / IS FALSE -> false
    return UNKNOWN


def _comparable(left: Value, right: Value, *, allow_null: bool = False) -> bool:
    if isinstance(left, _Unknown) or isinstance(right, _Unknown):
        return False
    if isinstance(left, _Null) or isinstance(right, _Null):
        return allow_null
    return type(left) is type(right)


def _compare(node: exp.Expression, left: Value, right: Value) -> Value:
    if isinstance(left, _Null) or isinstance(right, _Null):
        return UNKNOWN if isinstance(left, _Unknown) or isinstance(right, _Unknown) else NULL
    if not _comparable(left, right):
        return UNKNOWN
    if isinstance(node, exp.EQ):
        return left == right
    if isinstance(node, exp.NEQ):
        return left != right
    # Ordering only for numbers: string order depends on the collation.
    if not (isinstance(left, Decimal) and isinstance(right, Decimal)):
        return UNKNOWN
    if isinstance(node, exp.GT):
        return left > right
    if isinstance(node, exp.GTE):
        return left >= right
    if isinstance(node, exp.LT):
        return left < right
    return left <= right


def _in(node: exp.In) -> Value:
    if node.args.get("query") is not None or node.args.get("unnest") is not None:
        return UNKNOWN
    left = _value(node.this)
    values = [_value(e) for e in node.expressions]
    if not values or isinstance(left, _Unknown | _Null):
        return UNKNOWN
    if any(_comparable(left, v) and left == v for v in values):
        return True
    return UNKNOWN


# -- finding the DELETEs and UPDATEs of a statement ---------------------------------

_DML_KINDS = frozenset({"delete", "update", "insert", "select", "merge", "create_table"})


def data_modifying(node: exp.Expression) -> list[exp.Expression]:
    """The statement itself and the bodies of its top-level WITH queries.

    PostgreSQL accepts a data-modifying statement only there ("WITH clause
    containing a data-modifying statement must be at the top level"), so
    nothing deeper needs walking.
    """
    holder = node.args.get("expression") if isinstance(node, exp.Create) else node
    with_ = holder.args.get("with_") if isinstance(holder, exp.Expression) else None
    if with_ is None:
        return [node]
    return [node, *(cte.this for cte in with_.expressions if isinstance(cte, exp.CTE))]


# Statements that may hold a MERGE: itself, or in a top-level WITH query.
MERGE_KINDS = frozenset({"merge", "insert", "select", "delete", "update"})


def merges(view: StatementView) -> Iterator[exp.Merge]:
    """The MERGEs of a statement: itself, or the bodies of its top-level WITH queries."""
    node = view.node
    if view.kind not in MERGE_KINDS or node is None:
        return
    if not isinstance(node, exp.Merge) and node.args.get("with_") is None:
        return
    for merge in data_modifying(node):
        if isinstance(merge, exp.Merge):
            yield merge


def unbounded(view: StatementView, context: Context, kind: type[exp.Expression]) -> Iterator[str]:
    """Messages for every ``kind`` (Delete / Update) in the statement that touches every row."""
    if view.kind is None:
        yield from _unparsed(view, context, kind)
        return
    node = view.node
    if view.kind not in _DML_KINDS or node is None:
        return
    verb = "deletes" if kind is exp.Delete else "updates"
    for found in data_modifying(node):
        if not isinstance(found, kind):
            continue
        where = found.args.get("where")
        if where is not None and not always_true(where.this):
            continue  # the common case: a real filter
        target = found.this
        if not isinstance(target, exp.Table):
            continue
        table = table_name(target)
        if context.schema.created_in_plan(table):
            continue
        if kind is exp.Update and table.split(".")[-1] == "alembic_version":
            continue  # alembic's own one-row bookkeeping table
        nested = "" if found is node else ", in a WITH query"
        if where is None:
            yield f"{verb} every row of {table} (no WHERE clause{nested})"
        else:
            condition = where.this.sql(dialect="postgres")
            yield f"{verb} every row of {table} (WHERE {condition} is always true{nested})"


def _unparsed(view: StatementView, context: Context, kind: type[exp.Expression]) -> Iterator[str]:
    """A DELETE / UPDATE sqlglot could not parse: its tokens still show a missing WHERE."""
    ws = words(view.raw.tokens)
    verb = "DELETE" if kind is exp.Delete else "UPDATE"
    if not ws or ws[0].text != verb:
        return
    i = 2 if verb == "DELETE" and len(ws) > 1 and ws[1].text == "FROM" else 1
    names, _ = read_names(ws, i)
    depth = 0
    for word in ws:
        depth += word.token.token_type is TokenType.L_PAREN
        depth -= word.token.token_type is TokenType.R_PAREN
        if depth == 0 and word.text == "WHERE":
            return
    if not names or context.schema.created_in_plan(names[0]):
        return
    if verb == "DELETE" or names[0].split(".")[-1] != "alembic_version":
        yield f"{verb.lower()}s every row of {names[0]} (no WHERE clause)"


@rule(
    "SO111",
    "delete-without-where",
    Category.DESTRUCTIVE,
    Severity.ERROR,
    summary="DELETE with no WHERE clause (or an always-true one) deletes every row.",
    rationale="""
        A DELETE without a WHERE clause, or with one that holds for every row
        (WHERE true, WHERE 1 = 1, WHERE x OR true), empties the table row by row:
        it takes ROW EXCLUSIVE, writes every row to the WAL, fires the DELETE
        triggers, and once committed only a backup restore brings the rows back.
        It is as often a forgotten condition as a deliberate purge, and a data-
        modifying WITH query (WITH moved AS (DELETE FROM events RETURNING *)
        INSERT ...) deletes just as much. DELETE ... USING with a WHERE join
        condition is not reported; nor is a table created earlier in the plan.
    """,
    safer="""
        Say which rows: 'DELETE FROM sessions WHERE expires_at < now() - interval
        '30 days';', in batches for large tables; to move rows, copy them first
        and delete only what was copied: 'DELETE FROM events e USING
        events_archive a WHERE a.id = e.id;'.
    """,
    triggers=[
        "DELETE FROM sessions",
        "DELETE FROM sessions WHERE true",
        "delete from public.sessions s where 1 = 1 or s.id > 5",
        "DELETE FROM sessions WHERE NOT false AND 'a' = 'a'",
        "WITH moved AS (DELETE FROM events RETURNING *)"
        " INSERT INTO events_archive SELECT * FROM moved",
        "DELETE FROM sessions USING users",
        "DO $$ BEGIN DELETE FROM sessions; END $$",
        "DO $$ BEGIN EXECUTE 'DELETE FROM sessions WHERE TRUE'; END $$",
    ],
    passes=[
        "DELETE FROM sessions WHERE expires_at < now()",
        "DELETE FROM events e USING events_archive a WHERE a.id = e.id",
        "DELETE FROM sessions WHERE 1 = 0 OR id = 3",
        "DELETE FROM sessions WHERE id IS NULL OR true = false",
        "CREATE TABLE scratch (id int);\nDELETE FROM scratch",
        "CREATE OR REPLACE FUNCTION purge_sessions() RETURNS void LANGUAGE sql"
        " AS $$ DELETE FROM sessions $$",
        "/* DELETE FROM users; */ SELECT 1",
        "DELETE FROM alembic_version WHERE alembic_version.version_num = '2b3c4d5e6f7a'",
    ],
    kinds=(None, *_DML_KINDS),
)
def delete_without_where(view: StatementView, context: Context) -> Iterator[str]:
    return unbounded(view, context, exp.Delete)


@rule(
    "SO112",
    "update-without-where",
    Category.DESTRUCTIVE,
    Severity.ERROR,
    summary="UPDATE with no WHERE clause (or an always-true one) overwrites every row.",
    rationale="""
        An UPDATE without a WHERE clause, or with one that holds for every row,
        overwrites the assigned columns in every row: the previous values are
        gone once it commits, it writes a new version of every row (doubling the
        table's size until vacuum) and holds a row lock on all of them, blocking
        every concurrent write to the table until it commits. UPDATE ... FROM
        with a WHERE join condition is not reported, nor is alembic's own
        version-table update or a table created earlier in the plan.
    """,
    safer="""
        Restrict it to the rows that need the change, in batches for large tables:
        'UPDATE users SET status = 'active' WHERE status IS NULL AND id BETWEEN 1 AND 10000;'.
        If every row really must change, keep the old values first
        ('CREATE TABLE archive.users_status AS SELECT id, status FROM users;').
    """,
    triggers=[
        "UPDATE users SET status = 'active'",
        "update public.users set status = null where 'x' = 'x'",
        "UPDATE users u SET plan = p.name FROM plans p",
        "WITH touched AS (UPDATE users SET seen = true RETURNING id) SELECT count(*) FROM touched",
        "DO $$ BEGIN UPDATE users SET status = 'active' WHERE TRUE; END $$",
    ],
    passes=[
        "UPDATE users SET status = 'active' WHERE status IS NULL AND id BETWEEN 1 AND 10000",
        "UPDATE alembic_version SET version_num='3c4d5e6f7a8b'"
        " WHERE alembic_version.version_num = '2b3c4d5e6f7a'",
        "UPDATE alembic_version SET version_num='3c4d5e6f7a8b'",
        "CREATE TABLE scratch (id int, v int);\nUPDATE scratch SET v = 1",
        "INSERT INTO users (id, status) VALUES (1, 'a')"
        " ON CONFLICT (id) DO UPDATE SET status = excluded.status",
        "MERGE INTO users u USING staged s ON u.id = s.id"
        " WHEN MATCHED THEN UPDATE SET status = s.status",
    ],
    kinds=(None, *_DML_KINDS),
)
def update_without_where(view: StatementView, context: Context) -> Iterator[str]:
    return unbounded(view, context, exp.Update)
