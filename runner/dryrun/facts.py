"""The database facts: what the planner and dry-run read from a live PostgreSQL.

This is the I/O edge the pure planner (:mod:`runner.plan`) is fed from: the
current alembic heads, the server version, and the columns and row estimates
of user tables. Nothing here writes; the session is read-only.

Errors are :class:`runner.errors.DatabaseError` with one line that names the
database (``host:port/db``) and the fix. A password never appears in one.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

import psycopg
from psycopg import sql
from psycopg.conninfo import make_conninfo
from psycopg.rows import TupleRow

from runner.errors import DatabaseError
from runner.pgurl import describe, scrub, to_psycopg_conninfo
from runner.plan.functions import (
    CatalogDefault,
    CatalogFunction,
    CatalogTrigger,
    CatalogView,
    FunctionFacts,
    Signature,
    parse_search_path,
)
from runner.plan.rules.signoff_guard import GUARD_SCHEMA

__all__ = [
    "DatabaseFacts",
    "connect",
    "current_heads",
    "read_facts",
    "read_function_facts",
    "read_functions",
]

_CONNECT_TIMEOUT_S = 10


@dataclass(frozen=True)
class DatabaseFacts:
    """What the planner needs to know about the target database."""

    current_heads: tuple[str, ...]
    """Rows of the alembic version table, sorted; () when the table is missing."""
    server_version_num: int
    """``SHOW server_version_num``, e.g. 160004."""
    columns: dict[str, dict[str, str]]
    """"schema.table" (and "table" when visible on the search_path) -> column -> type."""
    populated: dict[str, int]
    """Same keys -> ``pg_class.reltuples`` estimate (-1: never vacuumed/analysed)."""
    functions: FunctionFacts | None = None
    """Built-in function names and the user functions with their definitions (None:
    not read), so a call is judged by the body it runs."""


def connect(url: str) -> psycopg.Connection[TupleRow]:
    """Open a psycopg connection or raise a one-line :class:`DatabaseError`."""
    conninfo = to_psycopg_conninfo(url)
    if "connect_timeout" not in conninfo:
        conninfo = make_conninfo(conninfo, connect_timeout=_CONNECT_TIMEOUT_S)
    try:
        return psycopg.connect(conninfo)
    except psycopg.Error as exc:
        raise DatabaseError(
            f"cannot connect to database at {describe(url)}: {_reason(exc, url)}; "
            "check --database-url"
        ) from None


def read_facts(
    url: str,
    *,
    version_table: str = "alembic_version",
    version_schema: str | None = None,
) -> DatabaseFacts:
    """Read :class:`DatabaseFacts` in one read-only transaction."""
    with connect(url) as conn:
        conn.read_only = True
        try:
            with conn.cursor() as cur:
                cur.execute("SHOW server_version_num")
                row = cur.fetchone()
                server_version_num = int(str(row[0])) if row else 0
                heads = current_heads(cur, version_table, version_schema)
                columns, populated = _tables(cur)
                functions = read_functions(cur)
        except psycopg.Error as exc:
            raise DatabaseError(
                f"cannot read from database at {describe(url)}: {_reason(exc, url)}; "
                "check that the --database-url user may read the catalog and the "
                f"{version_table} table"
            ) from None
        finally:
            with contextlib.suppress(psycopg.Error):
                conn.rollback()
    return DatabaseFacts(
        current_heads=heads,
        server_version_num=server_version_num,
        columns=columns,
        populated=populated,
        functions=functions,
    )


def current_heads(cur: psycopg.Cursor[TupleRow], table: str, schema: str | None) -> tuple[str, ...]:
    """The rows of the alembic version table (sorted); () when the table does not exist."""
    name = sql.Identifier(schema, table) if schema else sql.Identifier(table)
    cur.execute(sql.SQL("SELECT to_regclass({})").format(sql.Literal(name.as_string(cur))))
    row = cur.fetchone()
    if row is None or row[0] is None:
        return ()
    cur.execute(sql.SQL("SELECT version_num FROM {}").format(name))
    return tuple(sorted(str(r[0]) for r in cur.fetchall()))


_TABLES_SQL = """
SELECT n.nspname, c.relname, pg_catalog.pg_table_is_visible(c.oid), c.reltuples,
       a.attname, pg_catalog.format_type(a.atttypid, a.atttypmod)
FROM pg_catalog.pg_class c
JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
LEFT JOIN pg_catalog.pg_attribute a
       ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
WHERE c.relkind IN ('r', 'p')
  AND n.nspname NOT IN ('pg_catalog', 'information_schema')
  AND n.nspname NOT LIKE 'pg\\_toast%'
  AND n.nspname NOT LIKE 'pg\\_temp\\_%'
ORDER BY n.nspname, c.relname, a.attnum
"""


def _tables(
    cur: psycopg.Cursor[TupleRow],
) -> tuple[dict[str, dict[str, str]], dict[str, int]]:
    columns: dict[str, dict[str, str]] = {}
    populated: dict[str, int] = {}
    cur.execute(_TABLES_SQL)
    for schema, table, visible, reltuples, column, type_ in cur.fetchall():
        keys = [f"{schema}.{table}"]
        if visible:
            keys.append(str(table))
        for key in keys:
            cols = columns.setdefault(key, {})
            populated[key] = int(float(str(reltuples)))
            if column is not None:
                cols[str(column)] = str(type_)
    return columns, populated


# A function an extension installed is the extension's (as trusted as a built-in);
# every other function of a user schema is the database's own, with its body.
_EXTENSION_MEMBER = """
EXISTS (SELECT 1 FROM pg_catalog.pg_depend d
        WHERE d.classid = 'pg_catalog.pg_proc'::pg_catalog.regclass
          AND d.objid = p.oid AND d.deptype = 'e')
"""
_SYSTEM_SCHEMA = """
(n.nspname IN ('pg_catalog', 'information_schema')
 OR n.nspname LIKE 'pg\\_toast%' OR n.nspname LIKE 'pg\\_temp\\_%')
"""

# A function's input argument types by typname, in order (proargtypes is an oidvector).
_ARG_TYPES = """
ARRAY(SELECT t.typname::text
      FROM pg_catalog.unnest(p.proargtypes::pg_catalog.oid[]) WITH ORDINALITY AS a(oid, i)
      JOIN pg_catalog.pg_type t ON t.oid = a.oid ORDER BY a.i)
"""

_BUILTIN_FUNCTIONS_SQL = f"""
SELECT n.nspname, p.proname, {_ARG_TYPES}
FROM pg_catalog.pg_proc p
JOIN pg_catalog.pg_namespace n ON n.oid = p.pronamespace
WHERE n.nspname IN ('pg_catalog', 'information_schema') OR {_EXTENSION_MEMBER}
"""

# The triggers on user tables (enabled, not a constraint's internal one), with the
# events that fire them: tgtype bits 2 INSERT, 3 DELETE, 4 UPDATE, 5 TRUNCATE.
_TRIGGERS_SQL = f"""
SELECT tn.nspname, c.relname, pn.nspname, p.proname, t.tgtype::int
FROM pg_catalog.pg_trigger t
JOIN pg_catalog.pg_class c ON c.oid = t.tgrelid
JOIN pg_catalog.pg_namespace tn ON tn.oid = c.relnamespace
JOIN pg_catalog.pg_proc p ON p.oid = t.tgfoid
JOIN pg_catalog.pg_namespace pn ON pn.oid = p.pronamespace
WHERE NOT t.tgisinternal AND t.tgenabled <> 'D' AND NOT {_SYSTEM_SCHEMA.replace("n.", "tn.")}
ORDER BY 1, 2, t.tgname
"""
_TRIGGER_EVENTS = ((4, "INSERT"), (8, "DELETE"), (16, "UPDATE"), (32, "TRUNCATE"))
# User views and materialized views, by their definitions.
_VIEWS_SQL = f"""
SELECT tn.nspname, c.relname, pg_catalog.pg_get_viewdef(c.oid)
FROM pg_catalog.pg_class c
JOIN pg_catalog.pg_namespace tn ON tn.oid = c.relnamespace
WHERE c.relkind IN ('v', 'm') AND NOT {_SYSTEM_SCHEMA.replace("n.", "tn.")}
ORDER BY 1, 2
"""
# Column defaults and generated columns of user tables, as expressions.
_DEFAULTS_SQL = f"""
SELECT tn.nspname, c.relname, pg_catalog.pg_get_expr(d.adbin, d.adrelid)
FROM pg_catalog.pg_attrdef d
JOIN pg_catalog.pg_class c ON c.oid = d.adrelid
JOIN pg_catalog.pg_namespace tn ON tn.oid = c.relnamespace
WHERE NOT {_SYSTEM_SCHEMA.replace("n.", "tn.")}
ORDER BY 1, 2, d.adnum
"""

_USER_FUNCTIONS_SQL = f"""
SELECT n.nspname, p.proname, p.prokind, l.lanname, p.pronargs, p.pronargdefaults,
       p.provariadic <> 0,
       CASE WHEN p.prokind IN ('f', 'p') AND l.lanname IN ('sql', 'plpgsql')
            THEN pg_catalog.pg_get_functiondef(p.oid) END,
       {_ARG_TYPES}
FROM pg_catalog.pg_proc p
JOIN pg_catalog.pg_namespace n ON n.oid = p.pronamespace
JOIN pg_catalog.pg_language l ON l.oid = p.prolang
WHERE NOT {_SYSTEM_SCHEMA} AND NOT {_EXTENSION_MEMBER}
ORDER BY n.nspname, p.proname, p.oid
"""


def read_function_facts(
    url: str,
    *,
    builtins: frozenset[tuple[str, str]],
    signatures: frozenset[Signature] | None = None,
) -> FunctionFacts:
    """The user functions as they are now (``builtins`` and their ``signatures`` as
    read before): the gateway reads them at each connection, as another session may
    have replaced one."""
    with connect(url) as conn:
        conn.read_only = True
        try:
            with conn.cursor() as cur:
                return read_functions(cur, builtins=builtins, signatures=signatures)
        except psycopg.Error as exc:
            raise DatabaseError(
                f"cannot read the functions of database at {describe(url)}: "
                f"{_reason(exc, url)}; check that the user may read pg_proc"
            ) from None
        finally:
            with contextlib.suppress(psycopg.Error):
                conn.rollback()


def read_functions(
    cur: psycopg.Cursor[TupleRow],
    *,
    builtins: frozenset[tuple[str, str]] | None = None,
    signatures: frozenset[Signature] | None = None,
) -> FunctionFacts:
    """The built-in functions (pg_catalog, information_schema, extensions'; names and
    argument types, read unless given) and every other function with what its body
    is read from."""
    if builtins is None or signatures is None:
        cur.execute(_BUILTIN_FUNCTIONS_SQL)
        signatures = frozenset(
            (str(schema), str(name), tuple(str(t) for t in types))
            for schema, name, types in cur.fetchall()
        )
        builtins = frozenset((schema, name) for schema, name, _ in signatures)
    cur.execute("SELECT pg_catalog.current_setting('search_path')")
    row = cur.fetchone()
    search_path = parse_search_path(str(row[0])) if row else None
    cur.execute(_USER_FUNCTIONS_SQL)
    functions = tuple(
        CatalogFunction(
            schema=str(schema),
            name=str(name),
            kind=str(kind),
            language=str(language),
            nargs=int(nargs),
            nargdefaults=int(nargdefaults),
            variadic=bool(variadic),
            definition=None if definition is None else str(definition),
            arg_types=tuple(str(t) for t in arg_types),
        )
        for schema, name, kind, language, nargs, nargdefaults, variadic, definition, arg_types in (
            cur.fetchall()
        )
        # The server-side guard's own trigger functions (`signoff gateway
        # install-guard`), never called by a statement; left out here rather than in
        # the query, which would then name the schema (SO512) when read through the
        # gateway.
        if schema != GUARD_SCHEMA
    )
    cur.execute(_TRIGGERS_SQL)
    triggers = tuple(
        CatalogTrigger(
            table_schema=str(table_schema),
            table=str(table),
            function_schema=str(function_schema),
            function=str(function),
            events=frozenset(event for bit, event in _TRIGGER_EVENTS if int(tgtype) & bit),
        )
        for table_schema, table, function_schema, function, tgtype in cur.fetchall()
        if function_schema != GUARD_SCHEMA  # the guard's own TRUNCATE check
    )
    cur.execute(_DEFAULTS_SQL)
    defaults = tuple(
        CatalogDefault(str(schema), str(table), str(expression))
        for schema, table, expression in cur.fetchall()
        if expression is not None and "(" in str(expression)  # only a call can run a body
    )
    cur.execute(_VIEWS_SQL)
    views = tuple(
        CatalogView(str(schema), str(name), str(definition))
        for schema, name, definition in cur.fetchall()
        # every view, a call in its definition or not: a view over a view runs both
        if definition is not None
    )
    return FunctionFacts(
        builtins=builtins,
        functions=functions,
        search_path=search_path,
        builtin_signatures=signatures,
        triggers=triggers,
        defaults=defaults,
        views=views,
    )


def _reason(exc: BaseException, url: str) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    return scrub(text, url)
