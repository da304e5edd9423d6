"""SO306: moving an object to another schema breaks clients that name it as before."""

from __future__ import annotations

from collections.abc import Iterator

from runner.plan.commands import normalise_name, words
from runner.plan.model import Category, Severity
from runner.plan.rules.base import Context, StatementView, rule

_SHAPES = {
    "alter_table_set_schema": "table",
    "alter_foreign_table_set_schema": "foreign table",
    "alter_view_set_schema": "view",
    "alter_materialized_view_set_schema": "materialized view",
    "alter_type_set_schema": "type",
}
# Shapes the classifier keeps coarse; SET SCHEMA is read from their tokens.
_COARSE = {"alter_function": "function", "alter_sequence": "sequence", "alter_domain": "domain"}


def _coarse_target(view: StatementView) -> str | None:
    """The schema after ``SET SCHEMA`` in an ALTER FUNCTION/SEQUENCE/DOMAIN, else None."""
    ws = words(view.raw.tokens)
    for index in range(len(ws) - 1):
        if ws[index].text == "SET" and ws[index + 1].text == "SCHEMA":
            parts = [w for w in ws[index + 2 :] if w.is_name]
            return normalise_name(parts[:1]) if parts else "?"
    return None


@rule(
    "SO306",
    "set-schema",
    Category.INCOMPATIBLE,
    Severity.WARNING,
    summary="Moving an object to another schema breaks clients that still find it where it was.",
    rationale="""
        ALTER ... SET SCHEMA moves a table, view, type, sequence or function at
        once, for every session. The previous release, still running during a
        rolling deploy, resolves the old qualified name (or its search_path) and
        fails with "does not exist" until it is replaced. For a table, the move
        also takes an ACCESS EXCLUSIVE lock.
    """,
    safer="""
        Move objects in two releases: ship code that uses the qualified new name
        (or a search_path listing both schemas), then move the object; or move it
        and leave a view in the old schema (CREATE VIEW old_schema.t AS SELECT *
        FROM new_schema.t) until no running code uses the old name.
    """,
    triggers=[
        "ALTER TABLE reports SET SCHEMA archive",
        'ALTER TABLE IF EXISTS ONLY public."Reports" SET SCHEMA archive',
        "ALTER TYPE mood SET SCHEMA shared",
        "ALTER FUNCTION full_name(patients) SET SCHEMA api",
    ],
    passes=[
        "CREATE TABLE staging (id bigint);\nALTER TABLE staging SET SCHEMA archive",
        "ALTER FUNCTION full_name(patients) SET search_path = public",
        "ALTER TABLE reports OWNER TO reporting",
    ],
    kinds=(*_SHAPES, *_COARSE),
)
def set_schema(view: StatementView, context: Context) -> Iterator[str]:
    shape = view.shape
    if shape is None or view.kind is None:
        return
    if view.kind in _SHAPES:
        kind, target = _SHAPES[view.kind], shape.args[0] if shape.args else "?"
    elif view.kind in _COARSE:
        found = _coarse_target(view)
        if found is None:
            return
        kind, target = _COARSE[view.kind], found
    else:
        return
    name = shape.relation or "?"
    if kind == "table" and context.schema.created_in_plan(name):
        return
    yield (
        f"moves {kind} {name} to schema {target}: the previous release still looks for it "
        f"under its old name and fails until it is replaced"
    )
