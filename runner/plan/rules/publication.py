"""SO516: CREATE / ALTER PUBLICATION streams tables' rows to whoever subscribes."""

from __future__ import annotations

from collections.abc import Iterator

from runner.plan.commands import words
from runner.plan.model import Category, Severity
from runner.plan.rules.base import Context, StatementView, rule


@rule(
    "SO516",
    "publication",
    Category.ACCESS_CONTROL,
    Severity.WARNING,
    summary="CREATE / ALTER PUBLICATION: every row change of the tables goes to subscribers.",
    rationale="""
        A publication offers the current rows and every later change of its
        tables to logical-replication subscribers: FOR ALL TABLES includes
        every PHI table, now and future. Any role that may connect for
        replication and subscribe receives the data with no table grant,
        row-level security or gateway in between, so adding a table to a
        publication is a decision about who holds a copy of it.
    """,
    safer="""
        Publish the specific tables a reviewed integration needs, with a row
        filter and column list where the version allows ('CREATE PUBLICATION
        billing_feed FOR TABLE invoices (id, total) WHERE (status = 'paid');').
    """,
    triggers=[
        "CREATE PUBLICATION everything FOR ALL TABLES",
        "ALTER PUBLICATION feed ADD TABLE patients",
        "CREATE PUBLICATION feed FOR TABLES IN SCHEMA ehr",
    ],
    passes=[
        "DROP PUBLICATION IF EXISTS feed",
        "ALTER PUBLICATION feed DROP TABLE patients",
        "COMMENT ON PUBLICATION feed IS 'billing'",
    ],
    kinds=("create_publication", "alter_publication"),
)
def publication(view: StatementView, context: Context) -> Iterator[str]:
    name = view.shape.relation if view.shape is not None and view.shape.relation else "?"
    if view.kind == "create_publication":
        ws = [w.text for w in words(view.raw.tokens)]
        what = "every table" if ws[4:6] == ["ALL", "TABLES"] else "its tables"
        yield f"publishes {what} of publication {name} to logical-replication subscribers"
    elif view.kind == "alter_publication":
        ws = [w.text for w in words(view.raw.tokens)]
        if len(ws) > 3 and ws[3] in ("ADD", "SET"):
            yield f"changes what publication {name} sends to its subscribers ({ws[3]})"
