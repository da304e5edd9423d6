"""SO309: dropping a constraint removes guarantees the running release relies on."""

from __future__ import annotations

from collections.abc import Iterator

from sqlglot import exp

from runner.plan.model import Category, Severity
from runner.plan.rules.base import Context, StatementView, ident, rule


def _name(node: exp.Expression) -> str:
    return ident(node.this if isinstance(node, exp.Table | exp.Column) else node)


def _added_names(actions: list[exp.Expression]) -> set[str]:
    names: set[str] = set()
    for action in actions:
        if isinstance(action, exp.AddConstraint):
            for constraint in action.expressions:
                if isinstance(constraint, exp.Constraint):
                    names.add(ident(constraint.this))
    return names


@rule(
    "SO309",
    "drop-constraint",
    Category.INCOMPATIBLE,
    Severity.WARNING,
    summary=(
        "Dropping a constraint removes uniqueness, reference or check guarantees clients rely on."
    ),
    rationale="""
        Code is written against the constraints it knows: it relies on a UNIQUE
        or PRIMARY KEY constraint to reject duplicates (and on its name in ON
        CONFLICT ON CONSTRAINT, which fails once it is gone), on a FOREIGN KEY to
        keep references valid or cascade deletes, on a CHECK to keep values in
        range. Dropping the constraint takes those guarantees away from the
        release still running, and data it would have rejected can now be
        written. Dropping a UNIQUE or PRIMARY KEY constraint also drops its
        index, so queries that used it turn into sequential scans; with CASCADE,
        foreign keys that reference it go too.
    """,
    safer="""
        Drop a constraint only after a release that no longer depends on it. To
        replace one, add the new constraint first (NOT VALID, then VALIDATE
        CONSTRAINT), or drop and re-add it under the same name in one ALTER TABLE
        statement; for a unique constraint, build the replacement index with
        CREATE UNIQUE INDEX CONCURRENTLY before dropping the old one.
    """,
    triggers=[
        "ALTER TABLE orders DROP CONSTRAINT orders_user_fk",
        "ALTER TABLE IF EXISTS public.users DROP CONSTRAINT IF EXISTS users_email_key CASCADE",
        'alter table "Patients" drop constraint "Patients_mrn_key"',
    ],
    passes=[
        "ALTER TABLE orders DROP CONSTRAINT orders_user_fk, ADD CONSTRAINT orders_user_fk "
        "FOREIGN KEY (user_id) REFERENCES users (id) ON DELETE CASCADE NOT VALID",
        "CREATE TABLE t (a int CONSTRAINT t_a_check CHECK (a > 0));\n"
        "ALTER TABLE t DROP CONSTRAINT t_a_check",
        "ALTER TABLE orders DROP COLUMN legacy_flag",
    ],
    kinds=("alter_table",),
)
def drop_constraint(view: StatementView, context: Context) -> Iterator[str]:
    found = view.live_table_actions(context)
    if found is None:
        return
    table, actions = found
    readded = _added_names(actions)
    for action in actions:
        if (
            not isinstance(action, exp.Drop)
            or (action.args.get("kind") or "").upper() != "CONSTRAINT"
        ):
            continue
        cascade = (
            " (CASCADE: constraints that depend on it go too)" if action.args.get("cascade") else ""
        )
        for target in action.args.get("tables") or []:
            name = _name(target)
            if name in readded:
                continue
            yield (
                f"drops constraint {name} on {table}{cascade}: the previous release loses the "
                f"uniqueness, reference or check it relies on (a UNIQUE or PRIMARY KEY "
                f"constraint also takes its index with it)"
            )
