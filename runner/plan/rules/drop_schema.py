"""SO103: DROP SCHEMA ... CASCADE removes every object in the schema with its data."""

from __future__ import annotations

from collections.abc import Iterator

from runner.plan.model import Category, Severity
from runner.plan.rules.base import Context, StatementView, rule
from runner.plan.rules.drop_reader import read_drop


@rule(
    "SO103",
    "drop-schema",
    Category.DESTRUCTIVE,
    Severity.ERROR,
    summary="DROP SCHEMA removes a schema; with CASCADE, every table in it and their rows.",
    rationale="""
        DROP SCHEMA ... CASCADE drops every table, sequence, type, function and
        view in the schema, with all their rows, and whatever in other schemas
        depends on them, in one statement that only a backup restore can undo.
        Without CASCADE the statement fails unless the schema is empty, but the
        namespace (and its grants) are still gone, and any object created in it
        between planning and applying is lost with it.
    """,
    safer="""
        Drop the schema's tables one by one (each reviewed as a DROP TABLE) and
        then the empty schema without CASCADE: 'DROP SCHEMA archive;' fails
        rather than destroy anything left behind. Or keep the data reachable:
        'ALTER SCHEMA archive RENAME TO archive_retired;'.
    """,
    triggers=[
        "DROP SCHEMA archive CASCADE",
        "drop schema if exists Archive, staging cascade",
        'DROP SCHEMA "Legacy"',
        "DO $$ BEGIN EXECUTE 'DROP SCHEMA archive CASCADE'; END $$",
    ],
    passes=[
        "CREATE SCHEMA archive",
        "ALTER SCHEMA archive RENAME TO archive_retired",
        "DROP TABLE IF EXISTS archive",
        "SELECT 'DROP SCHEMA archive CASCADE'",
    ],
    kinds=(None, "drop*"),
)
def drop_schema(view: StatementView, context: Context) -> Iterator[str]:
    dropped = read_drop(view)
    if dropped is None or dropped.kind != "SCHEMA":
        return
    for name in dropped.names:
        if dropped.cascade:
            yield f"drops schema {name} and every table in it with all their rows (CASCADE)"
        else:
            yield f"drops schema {name} (fails unless it is empty; its grants are lost)"
