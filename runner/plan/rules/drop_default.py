"""SO310: dropping a column default breaks inserts of the release that omits the column."""

from __future__ import annotations

from collections.abc import Iterator

from sqlglot import exp

from runner.plan.model import Category, Severity
from runner.plan.rules.base import Context, StatementView, ident, rule


def _drops_default(action: exp.Expression) -> bool:
    if not isinstance(action, exp.AlterColumn):
        return False
    if action.args.get("drop") and not action.args.get("allow_null"):
        return True  # ALTER COLUMN c DROP DEFAULT
    return isinstance(action.args.get("default"), exp.Null)  # SET DEFAULT NULL


@rule(
    "SO310",
    "drop-default",
    Category.INCOMPATIBLE,
    Severity.WARNING,
    summary="Dropping a column default breaks inserts that rely on it.",
    rationale="""
        The previous release, still running during a rolling deploy, inserts rows
        without naming columns it leaves to their defaults (or does not know
        about, when the column was added by this deploy). Once the default is
        gone those inserts store NULL, or fail with a not-null violation when
        the column is NOT NULL. Django-style "add with default, then drop the
        default" migrations hit exactly this.
    """,
    safer="""
        Keep the default until every running release sets the column itself; drop
        it in a later release (ALTER TABLE t ALTER COLUMN c DROP DEFAULT) once no
        writer relies on it.
    """,
    triggers=[
        "ALTER TABLE users ALTER COLUMN status DROP DEFAULT",
        "alter table public.orders alter currency drop default",
        "ALTER TABLE users ALTER COLUMN status SET DEFAULT NULL",
    ],
    passes=[
        "ALTER TABLE users ALTER COLUMN status SET DEFAULT 'active'",
        "ALTER TABLE users ALTER COLUMN status DROP NOT NULL",
        "CREATE TABLE t (status text DEFAULT 'new');\n"
        "ALTER TABLE t ALTER COLUMN status DROP DEFAULT",
    ],
    kinds=("alter_table",),
)
def drop_default(view: StatementView, context: Context) -> Iterator[str]:
    found = view.live_table_actions(context)
    if found is None:
        return
    table, actions = found
    for action in actions:
        if _drops_default(action):
            yield (
                f"drops the default of {table}.{ident(action.this)}: inserts of the previous "
                f"release that omit the column now store NULL, or fail if it is NOT NULL"
            )
