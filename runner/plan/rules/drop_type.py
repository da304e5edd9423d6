"""SO105: DROP TYPE / DROP DOMAIN removes a type that stored data is (or was) declared with."""

from __future__ import annotations

from collections.abc import Iterator

from runner.plan.model import Category, Severity
from runner.plan.rules.base import Context, StatementView, rule
from runner.plan.rules.drop_reader import read_drop


@rule(
    "SO105",
    "drop-type",
    Category.DESTRUCTIVE,
    Severity.ERROR,
    summary="DROP TYPE / DROP DOMAIN removes a type; with CASCADE, every column of that type.",
    rationale="""
        With CASCADE, dropping an enum, composite, range type or domain drops
        every table column declared with it, and the column's data in every row.
        Without CASCADE the statement fails while a column still uses the type,
        but the definition itself (an enum's labels and their order, a domain's
        constraints) is gone, and whatever still depends on it without a tracked
        dependency (function bodies, casts in application queries) breaks; a
        rollback has to recreate it exactly. The usual enum migration (rename
        the old type, create the new one, convert the column, drop the old
        type) ends here, so a reviewer checks that no column still uses it.
    """,
    safer="""
        Check nothing uses the type first ('SELECT attrelid::regclass, attname
        FROM pg_attribute WHERE atttypid = 'order_status_old'::regtype;'), never
        use CASCADE, and drop the old type in a later release than the column
        conversion: 'DROP TYPE order_status_old;'.
    """,
    triggers=[
        "DROP TYPE order_status_old",
        "DROP TYPE IF EXISTS mood, public.weather CASCADE",
        "DROP DOMAIN us_postal_code CASCADE",
        "ALTER TYPE order_status RENAME TO order_status_old;\n"
        "CREATE TYPE order_status AS ENUM ('pending', 'paid');\n"
        "ALTER TABLE orders ALTER COLUMN status TYPE order_status"
        " USING status::text::order_status;\n"
        "DROP TYPE order_status_old",
        "DO $$ BEGIN DROP TYPE IF EXISTS mood; END $$",
    ],
    passes=[
        "CREATE TYPE mood AS ENUM ('sad', 'ok')",
        "ALTER TYPE mood ADD VALUE 'happy'",
        "ALTER TYPE mood RENAME TO feeling",
        "DROP TABLE IF EXISTS mood_log;\nCREATE TABLE mood_log (id int)",
    ],
    kinds=(None, "drop*"),
)
def drop_type(view: StatementView, context: Context) -> Iterator[str]:
    dropped = read_drop(view)
    if dropped is None or dropped.kind not in ("TYPE", "DOMAIN"):
        return
    kind = dropped.kind.lower()
    for name in dropped.names:
        if dropped.cascade:
            yield f"drops {kind} {name} and every column declared with it, with its data (CASCADE)"
        else:
            yield f"drops {kind} {name}; its definition is lost (fails if a column still uses it)"
