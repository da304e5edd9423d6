"""SO110: CASCADE on a DROP or TRUNCATE reaches objects (and rows) the statement does not name."""

from __future__ import annotations

from collections.abc import Iterator

from runner.plan.model import Category, Severity
from runner.plan.rules.base import Context, StatementView, rule
from runner.plan.rules.drop_column import dropped_columns
from runner.plan.rules.drop_reader import Dropped, read_drop
from runner.plan.rules.truncate import read_truncate

# What a CASCADE drop of each kind of object reaches, by kind ("{}" is the name).
_REACHES: dict[str, str] = {
    "TABLE": (
        "also drops the views and foreign keys that depend on table {}, and any tables"
        " that inherit from it with all their rows"
    ),
    "SCHEMA": (
        "also drops objects in other schemas that depend on what schema {} holds:"
        " views, foreign keys, and columns of its types with their data"
    ),
    "TYPE": "drops every column declared with type {}, in every table, with its data",
    "DOMAIN": "drops every column declared with domain {}, in every table, with its data",
    "EXTENSION": (
        "drops every column of a type from extension {}, with its data, and the indexes,"
        " views and defaults that use its functions"
    ),
    "OWNED": (
        "also drops other roles' objects that depend on what role {} owns, including"
        " columns of its types with their data"
    ),
    "FUNCTION": (
        "drops what uses function {}: generated columns with their data, indexes,"
        " constraints, triggers, defaults and views"
    ),
    "COLLATION": "drops every column and index that uses collation {}, with the columns' data",
    "VIEW": (
        "also drops the views and materialized views built on view {}, and any column"
        " declared with its row type"
    ),
    "MATERIALIZED VIEW": (
        "also drops the views and materialized views built on materialized view {},"
        " and any column declared with its row type"
    ),
    "SEQUENCE": (
        "also drops the column defaults that draw from sequence {}; inserts relying on them fail"
    ),
}
for _alias in ("PROCEDURE", "ROUTINE", "AGGREGATE", "OPERATOR"):
    _REACHES[_alias] = _REACHES["FUNCTION"].replace("function", _alias.lower())


@rule(
    "SO110",
    "cascade-reaches-data",
    Category.DESTRUCTIVE,
    Severity.ERROR,
    summary="CASCADE drops or empties objects the statement does not name.",
    rationale="""
        CASCADE tells PostgreSQL to remove whatever depends on the named object
        instead of failing: for DROP TYPE, DROP DOMAIN, DROP EXTENSION and DROP
        COLLATION that is every table column declared with them, with its data;
        for DROP TABLE the dependent views and foreign keys and the tables that
        inherit from it, with their rows; for DROP SCHEMA everything in it; for
        TRUNCATE every table with a foreign key to the truncated one, and the
        tables referencing those, emptied entirely (not just the referencing
        rows). Which objects these are is known only to the database, so the
        statement's effect cannot be reviewed from its text. Without CASCADE
        the statement fails and lists the dependents instead.
    """,
    safer="""
        Leave CASCADE out ('DROP TYPE mood;', 'TRUNCATE orders;') so that
        PostgreSQL refuses and names the dependents, then remove those explicitly,
        each in a statement a reviewer can read.
    """,
    triggers=[
        "TRUNCATE orders CASCADE",
        "drop table if exists users cascade",
        "DROP EXTENSION IF EXISTS hstore CASCADE",
        "DROP DOMAIN us_postal_code CASCADE",
        "ALTER TABLE users DROP COLUMN legacy_flag CASCADE",
        "DROP FUNCTION normalise_phone(text) CASCADE",
        "CREATE TABLE parents (id int PRIMARY KEY);\nTRUNCATE parents CASCADE",
        "DO $$ BEGIN EXECUTE 'DROP SCHEMA archive CASCADE'; END $$",
    ],
    passes=[
        "DROP TABLE users",
        "TRUNCATE orders RESTRICT",
        "CREATE TABLE scratch (id int);\nDROP TABLE scratch CASCADE",
        'DROP TABLE "cascade"',
        "ALTER TABLE users DROP CONSTRAINT users_email_key",
        "SELECT 'DROP TYPE mood CASCADE'",
    ],
    kinds=(None, "truncate", "drop*", "alter_table*"),
)
def cascade(view: StatementView, context: Context) -> Iterator[str]:
    kind = view.kind
    if kind is not None and kind != "truncate" and not kind.startswith(("drop", "alter_table")):
        return
    dropped = read_drop(view)
    if dropped is not None:
        if dropped.cascade:
            yield from _drop_cascade(dropped, context)
        return
    truncated = read_truncate(view)
    if truncated is not None:
        if truncated.cascade:
            for table in truncated.tables:
                yield (
                    f"CASCADE also truncates every table with a foreign key to {table}, and the"
                    " tables referencing those: all their rows"
                )
        return
    for column in dropped_columns(view):
        if column.cascade and not context.schema.created_in_plan(column.table):
            yield (
                f"CASCADE also drops the views, indexes and constraints (foreign keys of other"
                f" tables included) that use column {column.table}.{column.column}"
            )


def _drop_cascade(dropped: Dropped, context: Context) -> Iterator[str]:
    names = dropped.names
    if dropped.kind == "TABLE":
        names = tuple(n for n in names if not context.schema.created_in_plan(n))
    reach = _REACHES.get(dropped.kind)
    for name in names:
        if reach is not None:
            yield "CASCADE " + reach.format(name)
        else:
            yield (
                f"CASCADE also drops every object that depends on {dropped.kind.lower()} {name},"
                " and what depends on those; only the database knows which"
            )
