"""SO104: DROP DATABASE removes a whole database."""

from __future__ import annotations

from collections.abc import Iterator

from runner.plan.model import Category, Severity
from runner.plan.rules.base import Context, StatementView, rule
from runner.plan.rules.drop_reader import read_drop


@rule(
    "SO104",
    "drop-database",
    Category.DESTRUCTIVE,
    Severity.ERROR,
    summary="DROP DATABASE deletes a database and everything in it.",
    rationale="""
        DROP DATABASE removes every schema, table and row of the database and
        cannot be rolled back (it cannot even run inside a transaction). WITH
        (FORCE) (PostgreSQL 13+) first terminates every session connected to
        it. Only a restore from backup of the whole cluster brings it back.
    """,
    safer="""
        Databases are not a migration's business: take a final dump
        ('pg_dump -Fc analytics > analytics.dump'), keep it, and have an operator
        drop the database outside the migration, after review.
    """,
    triggers=[
        "DROP DATABASE analytics",
        "drop database if exists analytics with (force)",
        'DROP DATABASE "Reporting" (FORCE)',
    ],
    passes=[
        "CREATE DATABASE analytics",
        "ALTER DATABASE analytics SET work_mem = '64MB'",
        "DROP SCHEMA IF EXISTS analytics_tmp CASCADE",
    ],
    kinds=(None, "drop*"),
)
def drop_database(view: StatementView, context: Context) -> Iterator[str]:
    dropped = read_drop(view)
    if dropped is None or dropped.kind != "DATABASE":
        return
    for name in dropped.names:
        force = ", terminating every session connected to it (FORCE)" if dropped.force else ""
        yield f"drops database {name} and everything in it{force}"
