"""SO004: a ``-- signoff:`` directive that does not do what it says."""

from __future__ import annotations

from collections.abc import Iterator

from runner.plan.model import Category, Severity
from runner.plan.rules.base import Context, StatementView, rule


@rule(
    "SO004",
    "invalid-signoff-directive",
    Category.HYGIENE,
    Severity.WARNING,
    summary="An inline signoff directive is malformed, misplaced or matches nothing.",
    rationale="""
        ``-- signoff: allow SO123 because <reason>`` downgrades one finding of the
        statement it leads, and the plan shows it. A directive that cannot be
        read, sits after the statement's semicolon (outside the reviewed text),
        or names a rule that did not fire would otherwise be silently ignored
        and mislead the next reader.
    """,
    safer="""
        Put '-- signoff: allow <RULE> because <reason>' on the line just before the
        statement, naming a rule the statement actually triggers.
    """,
    triggers=[
        "-- signoff: allow SO302\nALTER TABLE users RENAME COLUMN a TO b",
        "-- signoff: allow SO101 because the table was empty\nSELECT 1",
        "ALTER TABLE users RENAME COLUMN a TO b; -- signoff: allow SO302 because renamed",
        "-- signoff: permit everything\nSELECT 1",
    ],
    passes=[
        "-- signoff: allow SO302 because no reader uses column a yet\n"
        "ALTER TABLE users RENAME COLUMN a TO b",
        "-- an ordinary comment\nSELECT 1",
    ],
)
def invalid_directive(view: StatementView, context: Context) -> Iterator[str]:
    # Reported by runner.plan.directives, which reads the statement's comments
    # after every other rule has run; this entry carries the documentation.
    return iter(())
