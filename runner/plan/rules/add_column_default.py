"""SO208: ADD COLUMN with a default PostgreSQL must write into every row.

Since PostgreSQL 11 a column added with a non-volatile default is instant: the
value is stored once in the catalog. A volatile default (a different value per
row) still rewrites the table, and before 11 any non-null default did.
"""

from __future__ import annotations

from collections.abc import Iterator

from sqlglot import exp

from runner.plan.model import Category, Severity
from runner.plan.rules._locks import (
    added_columns,
    busy_table,
    column_constraints,
    has_constraint,
    qualified,
    server_version_text,
)
from runner.plan.rules.base import Context, Example, StatementView, ident, rule

# Functions PostgreSQL marks volatile (pg_proc.provolatile = 'v') that show up in defaults.
VOLATILE_FUNCTIONS = frozenset(
    {
        "clock_timestamp",
        "timeofday",
        "random",
        "random_normal",
        "setseed",
        "nextval",
        "currval",
        "lastval",
        "setval",
        "gen_random_uuid",
        "gen_random_bytes",
        "uuid_generate_v1",
        "uuid_generate_v1mc",
        "uuid_generate_v4",
        "uuidv4",
        "uuidv7",
        "pg_current_wal_lsn",
    }
)
# Functions sqlglot leaves by name that PostgreSQL marks stable or immutable.
NON_VOLATILE_FUNCTIONS = frozenset(
    {
        "now",
        "transaction_timestamp",
        "statement_timestamp",
        "localtimestamp",
        "current_setting",
        "current_database",
        "txid_current",
        "pg_current_xact_id",
        "pg_backend_pid",
        "inet_client_addr",
        "inet_server_addr",
        "version",
        "timezone",
        "to_timestamp",
        "to_date",
        "to_number",
        "to_char",
        "make_date",
        "make_time",
        "make_timestamp",
        "make_timestamptz",
        "make_interval",
        "date_part",
        "date_trunc",
        "age",
        "json_build_object",
        "jsonb_build_object",
        "json_build_array",
        "jsonb_build_array",
        "to_json",
        "to_jsonb",
        "jsonb_object",
        "array_fill",
        "string_to_array",
        "array_to_string",
        "format",
        "concat_ws",
        "repeat",
        "replace",
        "lpad",
        "rpad",
        "btrim",
        "ltrim",
        "rtrim",
        "substr",
        "split_part",
        "initcap",
        "encode",
        "decode",
        "sha256",
        "justify_interval",
    }
)
# sqlglot's own nodes for volatile functions (random(), gen_random_uuid()).
_VOLATILE_NODES: tuple[type[exp.Expression], ...] = (exp.Rand, exp.Uuid)


def _function_name(node: exp.Expression) -> str:
    if isinstance(node, exp.Anonymous):
        return str(node.this).lower()
    if isinstance(node, exp.Uuid):
        return "gen_random_uuid"
    if isinstance(node, exp.Rand):
        return "random"
    return node.sql_name().lower() if isinstance(node, exp.Func) else type(node).__name__


def volatility(expression: exp.Expression) -> tuple[str, str] | None:
    """("volatile" | "unknown", function name) for the first function that may be volatile."""
    for node in expression.walk():
        if isinstance(node, _VOLATILE_NODES):
            return "volatile", _function_name(node)
        if isinstance(node, exp.Anonymous):
            name = str(node.this).lower()
            if name in VOLATILE_FUNCTIONS:
                return "volatile", name
            if name not in NON_VOLATILE_FUNCTIONS:
                return "unknown", name
    return None


def is_null(expression: exp.Expression | None) -> bool:
    while isinstance(expression, exp.Cast | exp.Paren):
        expression = expression.this
    return expression is None or isinstance(expression, exp.Null)


_KINDS = frozenset({"alter_table"})


@rule(
    "SO208",
    "add-column-volatile-default",
    Category.LOCKING,
    Severity.WARNING,
    summary="ADD COLUMN with a volatile default (or any default before PG 11) rewrites the table.",
    rationale="""
        PostgreSQL 11+ adds a column with a non-volatile DEFAULT (a literal, a
        cast of one, now(), current_timestamp...) without touching the rows: the
        value is kept in the catalog. A volatile default - gen_random_uuid(),
        random(), clock_timestamp(), nextval(), uuid_generate_v4()... - has to be
        computed for each row, so the whole table is rewritten under ACCESS
        EXCLUSIVE (no reads, no writes) for as long as that takes. A function
        Signoff does not know is assumed volatile. Before PostgreSQL 11 every
        non-null default rewrites the table; when the server version is unknown
        that is assumed. Tables created earlier in the plan are not reported.
    """,
    safer="""
        ALTER TABLE t ADD COLUMN c uuid; ALTER TABLE t ALTER COLUMN c SET DEFAULT
        gen_random_uuid(); then backfill existing rows in batches (UPDATE t SET c =
        gen_random_uuid() WHERE id BETWEEN ...), and add NOT NULL afterwards with
        a validated CHECK (c IS NOT NULL).
    """,
    triggers=[
        "ALTER TABLE users ADD COLUMN public_id uuid DEFAULT gen_random_uuid()",
        "ALTER TABLE users ADD COLUMN seen_at timestamptz NOT NULL DEFAULT clock_timestamp()",
        "alter table public.users add column token text default md5(random()::text)",
        "ALTER TABLE users ADD COLUMN ref text DEFAULT my_schema.next_ref()",
        Example("ALTER TABLE users ADD COLUMN score integer DEFAULT 0", server_version=100000),
        Example("ALTER TABLE users ADD COLUMN score integer DEFAULT 0", server_version=None),
    ],
    passes=[
        "ALTER TABLE users ADD COLUMN score integer DEFAULT 0",
        "ALTER TABLE users ADD COLUMN score integer NOT NULL DEFAULT 0",
        "ALTER TABLE users ADD COLUMN created_at timestamptz DEFAULT now()",
        "ALTER TABLE users ADD COLUMN prefs jsonb DEFAULT '{}'::jsonb",
        Example("ALTER TABLE users ADD COLUMN bio text DEFAULT NULL", server_version=None),
        "CREATE TABLE tokens (id int);\n"
        "ALTER TABLE tokens ADD COLUMN value uuid DEFAULT gen_random_uuid()",
    ],
    kinds=_KINDS,
)
def add_column_volatile_default(view: StatementView, context: Context) -> Iterator[str]:
    # Called only for the kinds above (the engine dispatches on kinds=).
    found = busy_table(view, context, _has_default)
    if found is None:
        return
    node, table = found
    for column in added_columns(node):
        defaults = [
            k.this for k in column_constraints(column) if isinstance(k, exp.DefaultColumnConstraint)
        ]
        if not defaults or is_null(defaults[0]):
            continue
        name = qualified(table, ident(column.this))
        lock = f"rewrites {table} under ACCESS EXCLUSIVE (blocks reads and writes)"
        found_volatile = volatility(defaults[0])
        if found_volatile is not None:
            how, function = found_volatile
            if how == "volatile":
                reason = f"{function}() is volatile, so every row gets its own value"
            else:
                reason = f"{function}() is not a function Signoff knows; assumed volatile"
            yield f"adds column {name} with DEFAULT {function}(): {reason}; {lock}"
        elif context.version_below(110000):
            yield (
                f"adds column {name} with a DEFAULT: before PostgreSQL 11 any non-null default "
                f"{lock} ({server_version_text(context)})"
            )


def _has_default(action: exp.Expression) -> bool:
    return has_constraint(action, exp.DefaultColumnConstraint)
