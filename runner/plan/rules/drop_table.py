"""SO101: DROP TABLE removes a table and every row in it."""

from __future__ import annotations

from collections.abc import Iterator

from runner.plan.model import Category, Severity
from runner.plan.rules.base import Context, StatementView, rule
from runner.plan.rules.drop_reader import read_drop


@rule(
    "SO101",
    "drop-table",
    Category.DESTRUCTIVE,
    Severity.ERROR,
    summary="DROP TABLE deletes the table and all of its rows.",
    rationale="""
        DROP TABLE removes the table's rows, its indexes and TOAST data and, for
        a partitioned table, every partition with their rows. Nothing short of a
        backup restore (point-in-time recovery of the whole cluster) brings them
        back, and on a PHI database those rows are patient records. A table
        created earlier in the same plan holds nothing that existed before the
        plan, so dropping it is not reported.
    """,
    safer="""
        Rename now, drop later: 'ALTER TABLE users RENAME TO users_retired;' in
        this release, and 'DROP TABLE users_retired;' in a later one, once nothing
        reads it and a backup (or 'CREATE TABLE archive.users AS TABLE users;')
        has been verified.
    """,
    triggers=[
        "DROP TABLE users",
        'DROP TABLE IF EXISTS "billing"."Invoice Lines" CASCADE',
        "drop table public.orders, line_items",
        "CREATE TABLE scratch (id int); DROP TABLE scratch, users",
        "ALTER TABLE measurements DETACH PARTITION measurements_2019;\n"
        "DROP TABLE measurements_2019",
        "DO $$ BEGIN IF true THEN DROP TABLE tmp_import; END IF; END $$",
        "DO $$ BEGIN EXECUTE 'DROP TABLE legacy_users'; END $$",
    ],
    passes=[
        "CREATE TABLE tmp_import (id int);\nDROP TABLE tmp_import",
        "CREATE TABLE public.staging (id int);\nDROP TABLE IF EXISTS STAGING",
        "DROP VIEW users",
        "DROP MATERIALIZED VIEW IF EXISTS users_summary",
        "DROP FOREIGN TABLE remote_users",
        "SELECT $tag$DROP TABLE users$tag$ AS not_executed",
        "/* DROP TABLE users; */ SELECT 1",
    ],
    kinds=(None, "drop*"),
)
def drop_table(view: StatementView, context: Context) -> Iterator[str]:
    dropped = read_drop(view)
    if dropped is None or dropped.kind != "TABLE":
        return
    for name in dropped.names:
        if not context.schema.created_in_plan(name):
            yield f"drops table {name} and all its rows"
