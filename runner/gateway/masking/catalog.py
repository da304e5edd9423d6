"""The database's catalog as masking needs it: relation columns by (table OID,
attribute number), names to OIDs, view definitions, the string types, and the
functions a schema of its own defines. Read with the gateway's held credential,
once per database, again after DDL (``MaskingEngine.refresh``)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

SYSTEM_SCHEMAS = ("pg_catalog", "information_schema", "pg_toast")

_COLUMNS_SQL = """
SELECT c.oid::bigint, n.nspname, c.relname, c.relkind::text, a.attnum::int, a.attname,
       a.atttypid::bigint
FROM pg_class c
JOIN pg_namespace n ON n.oid = c.relnamespace
JOIN pg_attribute a ON a.attrelid = c.oid
WHERE a.attnum > 0 AND NOT a.attisdropped
  AND c.relkind IN ('r', 'v', 'm', 'p', 'f')
  AND n.nspname NOT IN ('pg_catalog', 'information_schema', 'pg_toast')
  AND n.nspname NOT LIKE 'pg_temp%' AND n.nspname NOT LIKE 'pg_toast_temp%'
ORDER BY c.oid, a.attnum
"""
_VIEWS_SQL = """
SELECT c.oid::bigint, pg_get_viewdef(c.oid)
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE c.relkind IN ('v', 'm') AND n.nspname NOT IN ('pg_catalog', 'information_schema')
"""
_STRING_TYPES_SQL = "SELECT oid::bigint FROM pg_type WHERE typcategory = 'S'"
_FUNCTIONS_SQL = """
SELECT DISTINCT lower(p.proname) FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
WHERE n.nspname NOT IN ('pg_catalog', 'information_schema')
"""


@dataclass(frozen=True)
class Column:
    relid: int
    schema: str
    table: str
    name: str
    attnum: int
    type_oid: int
    relkind: str

    @property
    def qualified(self) -> str:
        return f"{self.schema}.{self.table}.{self.name}"


@dataclass(frozen=True)
class Relation:
    oid: int
    schema: str
    name: str
    kind: str  # r, v, m, p, f
    columns: tuple[Column, ...]


# text, varchar, bpchar, name: PostgreSQL's string category, also without a catalog.
BUILTIN_STRING_TYPES = frozenset({25, 1042, 1043, 19})


@dataclass(frozen=True)
class Catalog:
    relations: Mapping[int, Relation] = field(default_factory=dict)
    view_sql: Mapping[int, str] = field(default_factory=dict)
    string_types: frozenset[int] = BUILTIN_STRING_TYPES
    functions: frozenset[str] = frozenset()
    complete: bool = True  # False: it could not be read (every result fails closed)

    def column(self, relid: int, attnum: int) -> Column | None:
        relation = self.relations.get(relid)
        if relation is None:
            return None
        for column in relation.columns:
            if column.attnum == attnum:
                return column
        return None

    def find(self, schema: str | None, name: str) -> list[Relation]:
        """Relations named ``name`` (in ``schema``, or in any schema when the name is
        unqualified: the search path is the session's own, so every candidate counts)."""
        lowered = name.lower()
        return [
            r
            for r in self.relations.values()
            if r.name.lower() == lowered and (schema is None or r.schema.lower() == schema.lower())
        ]

    def is_text(self, type_oid: int) -> bool:
        return type_oid in self.string_types


def read_catalog(url: str) -> Catalog:
    """The catalog over a new connection to ``url`` (the held credential)."""
    import psycopg

    with psycopg.connect(url, connect_timeout=10, autocommit=True) as conn:
        rows = conn.execute(_COLUMNS_SQL).fetchall()
        views: dict[int, str] = dict(conn.execute(_VIEWS_SQL).fetchall())
        strings = frozenset(r[0] for r in conn.execute(_STRING_TYPES_SQL).fetchall())
        functions = frozenset(r[0] for r in conn.execute(_FUNCTIONS_SQL).fetchall())
    by_rel: dict[int, list[Column]] = {}
    heads: dict[int, tuple[str, str, str]] = {}
    for oid, schema, table, kind, attnum, name, type_oid in rows:
        heads[oid] = (schema, table, kind)
        by_rel.setdefault(oid, []).append(Column(oid, schema, table, name, attnum, type_oid, kind))
    relations = {
        oid: Relation(oid, heads[oid][0], heads[oid][1], heads[oid][2], tuple(columns))
        for oid, columns in by_rel.items()
    }
    return Catalog(relations, views, strings | BUILTIN_STRING_TYPES, functions)
