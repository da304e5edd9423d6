"""SO107: DROP EXTENSION removes the extension's types, functions and tables."""

from __future__ import annotations

from collections.abc import Iterator

from runner.plan.model import Category, Severity
from runner.plan.rules.base import Context, StatementView, rule
from runner.plan.rules.drop_reader import read_drop


@rule(
    "SO107",
    "drop-extension",
    Category.DESTRUCTIVE,
    Severity.ERROR,
    summary="DROP EXTENSION removes its types, functions and tables (with CASCADE, columns too).",
    rationale="""
        An extension owns objects that data depends on: types (hstore, citext,
        geometry, vector), the functions and operators indexes and defaults use,
        and sometimes tables of its own (pg_cron's job list, PostGIS's
        spatial_ref_sys), which DROP EXTENSION deletes with their rows. With
        CASCADE every table column of one of its types is dropped with its data,
        and every index, view and default that uses its functions goes too.
        Without CASCADE the statement fails while a column uses one of its types,
        but function bodies and application queries calling its functions break.
    """,
    safer="""
        Convert the columns that use the extension's types first (for example
        'ALTER TABLE products ALTER COLUMN attrs TYPE jsonb USING hstore_to_jsonb(attrs);'),
        then drop the extension without CASCADE so that anything left makes it
        fail: 'DROP EXTENSION hstore;'.
    """,
    triggers=[
        "DROP EXTENSION IF EXISTS hstore CASCADE",
        "DROP EXTENSION pg_cron",
        "drop extension citext, pg_trgm",
        "DO $$ BEGIN DROP EXTENSION IF EXISTS hstore; END $$",
    ],
    passes=[
        "CREATE EXTENSION IF NOT EXISTS hstore",
        "ALTER EXTENSION hstore UPDATE TO '1.8'",
        "COMMENT ON EXTENSION hstore IS 'key/value pairs'",
    ],
    kinds=(None, "drop*"),
)
def drop_extension(view: StatementView, context: Context) -> Iterator[str]:
    dropped = read_drop(view)
    if dropped is None or dropped.kind != "EXTENSION":
        return
    for name in dropped.names:
        if dropped.cascade:
            yield (
                f"drops extension {name}, its tables and every column of its types,"
                " with their data (CASCADE)"
            )
        else:
            yield f"drops extension {name} with its types, functions and any tables it owns"
