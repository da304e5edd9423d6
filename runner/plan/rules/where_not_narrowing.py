"""SO121: DELETE / UPDATE whose WHERE clause is not shown to narrow the rows it changes.

SO111 / SO112 report a missing WHERE and one that folds to true on its own
(``WHERE 1 = 1``). This rule closes what folding cannot see: a tautology over a
column (``WHERE id = id``, ``x IS NULL OR x IS NOT NULL``), a branch that does not
depend on the target row (``WHERE $1``, ``id = $1 OR $2``, ``current_user = 'x'``,
``EXISTS (SELECT 1 FROM other)``), and a join whose condition never names the
target (``DELETE FROM t USING u WHERE u.active``). See ``_narrowing``.
"""

from __future__ import annotations

from collections.abc import Iterator

from sqlglot import exp

from runner.plan.model import Category, Severity
from runner.plan.rules._narrowing import target_of, why_not_narrowed
from runner.plan.rules.base import Context, StatementView, rule
from runner.plan.rules.unbounded_dml import always_true, data_modifying

_KINDS = frozenset({"delete", "update", "insert", "select", "merge", "create_table"})


@rule(
    "SO121",
    "dml-where-does-not-narrow",
    Category.DESTRUCTIVE,
    Severity.ERROR,
    summary="DELETE / UPDATE with a WHERE clause that is not shown to narrow the rows.",
    rationale="""
        A WHERE clause protects a table only if it picks some rows. One that
        compares a column with itself (WHERE id = id), pairs a test with its
        opposite (WHERE x IS NULL OR x IS NOT NULL), or has a branch that does
        not depend on the row at all (WHERE $1, WHERE id = $1 OR $2, WHERE
        current_user = 'admin', WHERE EXISTS (SELECT 1 FROM other)) holds for
        every row or for none: a bound parameter decides at run time whether the
        whole table goes. In DELETE ... USING and UPDATE ... FROM a condition on
        the joined table alone matches every target row. Signoff reports any
        condition it cannot show to narrow, including these, and a reviewer
        decides; a condition provably false changes nothing and is not reported.
    """,
    safer="""
        Name the rows by the target's own columns with values fixed in the
        statement ('DELETE FROM sessions WHERE expires_at < now() - interval '30
        days';'); join on the target ('DELETE FROM events e USING events_archive a
        WHERE a.id = e.id;'); never let a parameter stand as a branch of its own.
    """,
    triggers=[
        "DELETE FROM patients WHERE id = id",
        "DELETE FROM patients WHERE ssn IS NOT NULL OR ssn IS NULL",
        "DELETE FROM patients WHERE $1",
        "DELETE FROM patients WHERE id = $1 OR $2",
        "UPDATE patients SET name = 'x' WHERE id > 0 OR current_user = 'app'",
        "DELETE FROM patients p USING clinics c WHERE c.closed",
        "UPDATE patients p SET clinic = c.name FROM clinics c WHERE c.id = 5",
        "DELETE FROM patients WHERE NOT (mrn IS NULL AND mrn IS NOT NULL)",
        "DELETE FROM patients WHERE EXISTS (SELECT 1 FROM clinics)",
        "DELETE FROM patients WHERE id IN (SELECT id FROM patients)",
        "WITH d AS (DELETE FROM patients WHERE status = status RETURNING *) SELECT count(*) FROM d",
        "DELETE FROM patients WHERE name LIKE '%'",
        "DO $$ BEGIN DELETE FROM patients WHERE id = id; END $$",
    ],
    passes=[
        "DELETE FROM patients WHERE id = $1",
        "DELETE FROM patients WHERE id = $1 AND $2",
        "DELETE FROM sessions WHERE expires_at < now() - interval '30 days'",
        "DELETE FROM events e USING events_archive a WHERE a.id = e.id",
        "UPDATE patients p SET clinic = c.name FROM clinics c WHERE c.id = p.clinic_id",
        "DELETE FROM patients WHERE EXISTS (SELECT 1 FROM merged m WHERE m.old_id = patients.id)",
        "DELETE FROM patients WHERE 1 = 0",
        "DELETE FROM patients WHERE deleted_at IS NOT NULL",
        "DELETE FROM patients WHERE true",
        "CREATE TABLE scratch (id int);\nDELETE FROM scratch WHERE id = id",
        "UPDATE alembic_version SET version_num = '2' WHERE version_num = version_num",
    ],
    kinds=_KINDS,
)
def where_not_narrowing(view: StatementView, context: Context) -> Iterator[str]:
    node = view.node
    if view.kind not in _KINDS or node is None:
        return
    for found in data_modifying(node):
        if not isinstance(found, exp.Delete | exp.Update):
            continue
        where = found.args.get("where")
        if where is None or always_true(where.this):
            continue  # SO111 / SO112 report these
        joined = bool(found.args.get("using") or found.args.get("from_"))
        target = target_of(found, joined=joined)
        if target is None or context.schema.created_in_plan(target.table):
            continue
        if isinstance(found, exp.Update) and target.table.split(".")[-1] == "alembic_version":
            continue
        state = context.schema.table(target.table)
        if state is not None:
            target = target_of(found, joined=joined, columns=state.columns)
            assert target is not None
        reason = why_not_narrowed(where.this, target)
        if reason is None:
            continue
        verb = "deletes" if isinstance(found, exp.Delete) else "updates"
        nested = "" if found is node else " (in a WITH query)"
        yield f"{verb} rows of {target.table}{nested} with a WHERE that does not narrow: {reason}"
