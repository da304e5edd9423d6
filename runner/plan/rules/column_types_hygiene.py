"""SO402-SO404: column types a PHI schema reviewer would ask about (advisory).

Each looks only at types the migration chooses now (CREATE TABLE, ADD COLUMN,
ALTER COLUMN ... TYPE); existing columns are not re-litigated. None of them
fires on ordinary choices such as text, bigint or timestamptz.
"""

from __future__ import annotations

from collections.abc import Iterator

from sqlglot import exp
from sqlglot.expressions.datatypes import DType

from runner.plan.model import Category, Severity
from runner.plan.rules.base import Context, StatementView, ident, rule, table_name

T = DType


def chosen_types(view: StatementView) -> Iterator[tuple[str, str, exp.DataType, exp.Expression]]:
    """(table, column, type, definition) for every column type the statement chooses."""
    node = view.node
    if isinstance(node, exp.Create):
        if (node.args.get("kind") or "").upper() != "TABLE" or not isinstance(
            node.this, exp.Schema
        ):
            return
        table = table_name(node.this)
        for column in node.this.expressions:
            kind = column.args.get("kind") if isinstance(column, exp.ColumnDef) else None
            if isinstance(kind, exp.DataType):
                yield table, ident(column.this), kind, column
    elif isinstance(node, exp.Alter):
        actions = view.alter_actions()
        if not actions:
            return
        table = table_name(node.this)
        for action in actions:
            if isinstance(action, exp.ColumnDef):
                kind = action.args.get("kind")
            elif isinstance(action, exp.AlterColumn):
                kind = action.args.get("dtype")
            else:
                continue
            if isinstance(kind, exp.DataType):
                yield table, ident(action.this), kind, action


def _element(dtype: exp.DataType) -> exp.DataType:
    while (
        dtype.this is T.ARRAY
        and dtype.expressions
        and isinstance(dtype.expressions[0], exp.DataType)
    ):
        dtype = dtype.expressions[0]
    return dtype


@rule(
    "SO402",
    "prefer-timestamptz",
    Category.HYGIENE,
    Severity.INFO,
    summary="A new column is timestamp without time zone; timestamptz records an instant.",
    rationale="""
        ``timestamp`` (without time zone) stores a wall-clock reading with no
        zone, so the same value means different instants to services, reports
        and people in different zones, and daylight-saving transitions make some
        readings ambiguous. For clinical data (admission, administration and
        observation times) the instant matters: ``timestamptz`` stores it in UTC
        and converts on output. Changing the type later rewrites the table.
    """,
    safer="""
        Declare the column timestamptz (timestamp with time zone), e.g. ALTER TABLE t
        ADD COLUMN admitted_at timestamptz; keep a separate text column for the
        original zone name if it must be shown.
    """,
    triggers=[
        "ALTER TABLE encounters ADD COLUMN admitted_at timestamp",
        "CREATE TABLE vitals (id bigint, taken_at timestamp(3) without time zone NOT NULL)",
        "ALTER TABLE doses ALTER COLUMN given_at TYPE timestamp[]",
    ],
    passes=[
        "ALTER TABLE encounters ADD COLUMN admitted_at timestamptz",
        "CREATE TABLE vitals (id bigint, taken_at timestamp with time zone, taken_on date)",
        "ALTER TABLE users ADD COLUMN bio text",
    ],
    kinds=("create_table", "alter_table"),
)
def prefer_timestamptz(view: StatementView, context: Context) -> Iterator[str]:
    if view.kind not in ("create_table", "alter_table"):
        return
    for table, column, dtype, _ in chosen_types(view):
        if _element(dtype).this is T.TIMESTAMP:
            yield (
                f"{table}.{column} is timestamp without time zone: it stores no instant; "
                f"prefer timestamptz"
            )


_SMALL_INTEGERS = frozenset({T.SMALLINT, T.INT, T.TINYINT, T.MEDIUMINT})
_SMALL_SERIALS = frozenset({T.SERIAL, T.SMALLSERIAL})


def _sequence_backed(column: exp.Expression) -> bool:
    for constraint in column.args.get("constraints") or []:
        kind = constraint.args.get("kind") if isinstance(constraint, exp.ColumnConstraint) else None
        if isinstance(kind, exp.GeneratedAsIdentityColumnConstraint):
            return True
        if isinstance(kind, exp.DefaultColumnConstraint):
            call = kind.this
            name = call.name if isinstance(call, exp.Anonymous) else ""
            if name.lower() == "nextval":
                return True
    return False


def _has_column_pk(column: exp.Expression) -> bool:
    return any(
        isinstance(c, exp.ColumnConstraint)
        and isinstance(c.args.get("kind"), exp.PrimaryKeyColumnConstraint)
        for c in column.args.get("constraints") or []
    )


def _table_pk_columns(node: exp.Create) -> list[str]:
    """Columns of a table-level PRIMARY KEY (...) clause."""
    if not isinstance(node.this, exp.Schema):
        return []
    for item in node.this.expressions:
        primary = item if isinstance(item, exp.PrimaryKey) else item.find(exp.PrimaryKey)
        if isinstance(primary, exp.PrimaryKey):
            return [
                ident(c.this if isinstance(c, exp.Ordered | exp.Column) else c)
                for c in primary.expressions
            ]
    return []


@rule(
    "SO403",
    "prefer-bigint-primary-key",
    Category.HYGIENE,
    Severity.INFO,
    summary="A sequence-generated primary key is 32-bit (or less); it runs out at 2^31 - 1.",
    rationale="""
        serial and integer identity keys stop at 2^31 - 1. Busy tables (events,
        audit rows, observations, messages) reach that within years, sequences
        also advance on rolled-back inserts, and then every insert fails. Moving
        a populated key and every foreign key that references it to bigint later
        rewrites all of those tables under ACCESS EXCLUSIVE locks. bigint costs
        four bytes a row.
    """,
    safer="""
        Declare the key bigint from the start: id bigint GENERATED ALWAYS AS
        IDENTITY PRIMARY KEY (or bigserial), and reference it with bigint
        columns.
    """,
    triggers=[
        "CREATE TABLE events (id serial PRIMARY KEY, body text)",
        "CREATE TABLE observations (\n  id integer GENERATED BY DEFAULT AS IDENTITY,\n"
        "  value numeric,\n  CONSTRAINT observations_pkey PRIMARY KEY (id)\n)",
        "CREATE TABLE messages (id int DEFAULT nextval('messages_id_seq') PRIMARY KEY)",
    ],
    passes=[
        "CREATE TABLE payments (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY)",
        "CREATE TABLE events (id bigserial PRIMARY KEY, body text)",
        "CREATE TABLE visit_codes (code smallint PRIMARY KEY, label text)",
        "CREATE TABLE patient_tags (\n  patient_id serial,\n  tag_id serial,\n"
        "  PRIMARY KEY (patient_id, tag_id)\n)",
    ],
    kinds=("create_table",),
)
def prefer_bigint_primary_key(view: StatementView, context: Context) -> Iterator[str]:
    node = view.node
    if view.kind != "create_table" or not isinstance(node, exp.Create):
        return
    table_pk = _table_pk_columns(node)
    for table, column, dtype, definition in chosen_types(view):
        if not (_has_column_pk(definition) or table_pk == [column]):
            continue
        if dtype.this in _SMALL_SERIALS or (
            dtype.this in _SMALL_INTEGERS and _sequence_backed(definition)
        ):
            small = dtype.this in (T.SMALLINT, T.SMALLSERIAL, T.TINYINT)
            bits, limit = ("16-bit", "32,767") if small else ("32-bit", "2,147,483,647")
            yield (
                f"primary key {table}.{column} is a {bits} sequence-generated "
                f"{str(dtype.this.value).lower()}: inserts fail after {limit} ids; prefer bigint"
            )


@rule(
    "SO404",
    "prefer-text-to-char-n",
    Category.HYGIENE,
    Severity.INFO,
    summary="A new column is char(n), which pads values with spaces.",
    rationale="""
        character(n) (char(n), bpchar) pads every value with spaces to n
        characters, ignores trailing spaces in comparisons but not in LIKE or in
        clients, and is no faster than text or varchar in PostgreSQL. Codes that
        look fixed-length (identifiers, postcodes, code systems) change length,
        and padded values surprise matching and export code.
    """,
    safer="""
        Use text (or varchar(n)) with a CHECK constraint for the format, e.g.
        ALTER TABLE t ADD COLUMN country text CHECK (char_length(country) = 2).
    """,
    triggers=[
        "ALTER TABLE patients ADD COLUMN sex char(1)",
        "CREATE TABLE addresses (id bigint, country character(2) NOT NULL)",
    ],
    passes=[
        "ALTER TABLE patients ADD COLUMN sex text CHECK (sex IN ('F', 'M', 'X', 'U'))",
        "CREATE TABLE addresses (id bigint, country varchar(2) NOT NULL)",
        "ALTER TABLE users ADD COLUMN bio text",
    ],
    kinds=("create_table", "alter_table"),
)
def prefer_text_to_char(view: StatementView, context: Context) -> Iterator[str]:
    if view.kind not in ("create_table", "alter_table"):
        return
    for table, column, dtype, _ in chosen_types(view):
        if _element(dtype).this in (T.CHAR, T.BPCHAR, T.NCHAR):
            yield (
                f"{table}.{column} is char(n): values are blank-padded; prefer text with a "
                f"CHECK constraint"
            )
