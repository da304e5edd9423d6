"""SO224: ADD CONSTRAINT ... EXCLUDE builds its index under ACCESS EXCLUSIVE."""

from __future__ import annotations

from collections.abc import Iterator

from sqlglot import exp

from runner.plan.model import Category, Severity
from runner.plan.rules._locks import (
    actions,
    added_constraints,
    busy_table,
    constraint_label,
)
from runner.plan.rules.base import Context, StatementView, rule

_KINDS = frozenset({"alter_table"})


@rule(
    "SO224",
    "add-exclusion-constraint",
    Category.LOCKING,
    Severity.WARNING,
    summary="Adding an exclusion constraint builds its index while the table is locked.",
    rationale="""
        ALTER TABLE ... ADD CONSTRAINT ... EXCLUDE builds the constraint's index
        (and checks every row against it) inside the ALTER TABLE, holding ACCESS
        EXCLUSIVE on the table the whole time: no reads and no writes. Unlike
        UNIQUE, there is no USING INDEX form and no NOT VALID for exclusion
        constraints, so the lock cannot be shortened. Tables created earlier in
        the plan are not reported.
    """,
    safer="""
        Add exclusion constraints when the table is created, or plan the ALTER
        for a maintenance window; where possible enforce the rule with a UNIQUE
        index built CONCURRENTLY instead.
    """,
    triggers=[
        "ALTER TABLE bookings ADD CONSTRAINT no_overlap EXCLUDE USING gist "
        "(room WITH =, during WITH &&)",
        "alter table public.bookings add constraint no_overlap exclude using gist "
        "(during with &&) where (active)",
    ],
    passes=[
        "CREATE TABLE slots (during tstzrange);\n"
        "ALTER TABLE slots ADD CONSTRAINT no_overlap EXCLUDE USING gist (during WITH &&)",
        "ALTER TABLE bookings ADD CONSTRAINT ref_key UNIQUE USING INDEX bookings_ref_idx",
    ],
    kinds=_KINDS,
)
def add_exclusion_constraint(view: StatementView, context: Context) -> Iterator[str]:
    # Called only for the kinds above (the engine dispatches on kinds=).
    found = busy_table(view, context, lambda action: isinstance(action, exp.AddConstraint))
    if found is None:
        return
    node, table = found
    for action in actions(node):
        for name, body in added_constraints(action):
            if isinstance(body, exp.ExcludeColumnConstraint):
                yield (
                    f"adds {constraint_label('EXCLUDE constraint', name)} on {table}: builds "
                    f"its index while ACCESS EXCLUSIVE blocks reads and writes of {table}"
                )
