"""SO122: INSERT ... SELECT ... ON CONFLICT DO UPDATE overwrites the rows a query collides with."""

from __future__ import annotations

from collections.abc import Iterator

from sqlglot import exp

from runner.plan.model import Category, Severity
from runner.plan.rules._narrowing import target_of, why_not_narrowed
from runner.plan.rules.base import Context, StatementView, rule
from runner.plan.rules.unbounded_dml import data_modifying

_KINDS = frozenset({"insert", "select", "delete", "update", "merge"})


def _bounded_source(source: exp.Expression | None) -> bool:
    """A VALUES list, or a SELECT of no table: at most as many rows as it spells out."""
    while isinstance(source, exp.Subquery | exp.Paren):
        source = source.this
    if isinstance(source, exp.Values):
        return True
    return (
        isinstance(source, exp.Select)
        and source.args.get("from_") is None
        and not source.args.get("joins")
        and not any(True for _ in source.find_all(exp.Select, exp.Values) if _ is not source)
        and not any(_set_returning(f) for f in source.find_all(exp.Func))
    )


def _set_returning(node: exp.Func) -> bool:
    # generate_series, unnest, json_*_elements...: one SELECT row becomes many.
    name = node.name.lower() if isinstance(node, exp.Anonymous) else node.sql_name().lower()
    return name in ("generate_series", "unnest", "explode") or name.endswith("_elements")


@rule(
    "SO122",
    "upsert-overwrites-from-query",
    Category.DESTRUCTIVE,
    Severity.WARNING,
    summary="INSERT ... SELECT ... ON CONFLICT DO UPDATE overwrites every row the query meets.",
    rationale="""
        An upsert reads as an insert, but ON CONFLICT DO UPDATE overwrites the
        existing row of every key the inserted rows collide with. From a VALUES
        list that is at most the keys written in the statement; from a query
        (a staging table, another table, generate_series) it is as many existing
        rows as the query happens to return: a wrong or stale source overwrites
        them all, and the old values are gone once it commits. A DO UPDATE ...
        WHERE that narrows by the existing row (WHERE patients.name IS NULL)
        limits what is overwritten and is not reported; DO NOTHING never
        overwrites.
    """,
    safer="""
        Restrict the overwrite to the rows that should change ('... DO UPDATE SET
        name = excluded.name WHERE patients.updated_at < excluded.updated_at;'),
        or keep the previous values first ('CREATE TABLE archive.patients_before
        AS SELECT p.* FROM patients p JOIN staged s USING (id);').
    """,
    triggers=[
        "INSERT INTO patients (id, name) SELECT id, name FROM staged_patients"
        " ON CONFLICT (id) DO UPDATE SET name = excluded.name",
        "INSERT INTO prices SELECT * FROM import.prices ON CONFLICT ON CONSTRAINT prices_pkey"
        " DO UPDATE SET amount = excluded.amount WHERE true",
        "WITH s AS (SELECT id, 0 AS amount FROM products)"
        " INSERT INTO prices (id, amount) SELECT id, amount FROM s"
        " ON CONFLICT (id) DO UPDATE SET amount = excluded.amount",
        "INSERT INTO flags (id, on_) SELECT g, true FROM generate_series(1, 100000) g"
        " ON CONFLICT (id) DO UPDATE SET on_ = excluded.on_",
    ],
    passes=[
        "INSERT INTO patients (id, name) VALUES (1, 'a'), ($1, $2)"
        " ON CONFLICT (id) DO UPDATE SET name = excluded.name",
        "INSERT INTO settings (key, value) SELECT 'theme', 'dark'"
        " ON CONFLICT (key) DO UPDATE SET value = excluded.value",
        "INSERT INTO patients (id, name) SELECT id, name FROM staged_patients"
        " ON CONFLICT (id) DO NOTHING",
        "INSERT INTO patients (id, name) SELECT id, name FROM staged_patients"
        " ON CONFLICT (id) DO UPDATE SET name = excluded.name WHERE patients.name IS NULL",
        "CREATE TABLE scratch (id int PRIMARY KEY, v int);\n"
        "INSERT INTO scratch SELECT id, 1 FROM staged ON CONFLICT (id) DO UPDATE SET v = 2",
    ],
    kinds=_KINDS,
)
def upsert_overwrite(view: StatementView, context: Context) -> Iterator[str]:
    node = view.node
    if view.kind not in _KINDS or node is None:
        return
    for found in data_modifying(node):
        if not isinstance(found, exp.Insert):
            continue
        conflict = found.args.get("conflict")
        if not isinstance(conflict, exp.OnConflict):
            continue
        action = conflict.args.get("action")
        if not (isinstance(action, exp.Var) and "UPDATE" in str(action.this).upper()):
            continue
        if _bounded_source(found.args.get("expression")):
            continue
        target = target_of(found, joined=True)
        if target is None or context.schema.created_in_plan(target.table):
            continue
        where = conflict.args.get("where")
        if isinstance(where, exp.Where) and why_not_narrowed(where.this, target) is None:
            continue
        yield (
            f"overwrites the existing row of {target.table} for every key the query's rows "
            "collide with (INSERT ... SELECT ... ON CONFLICT DO UPDATE, no narrowing WHERE)"
        )
