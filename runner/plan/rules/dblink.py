"""SO605: dblink opens connections to other databases and runs SQL there."""

from __future__ import annotations

from collections.abc import Iterator

from runner.plan.model import Category, Severity
from runner.plan.rules._calls import calls, may_call
from runner.plan.rules.base import Context, StatementView, rule


@rule(
    "SO605",
    "dblink",
    Category.ESCAPE_HATCH,
    Severity.ERROR,
    summary="dblink, dblink_exec, dblink_connect...: SQL run on another connection, unseen.",
    rationale="""
        dblink opens a new connection from the database server, to this
        database or any other, and runs SQL there: dblink_exec('...', 'DROP
        TABLE patients') is a DROP the gateway never sees, made under whatever
        credentials the connection string or a user mapping holds, and
        dblink('...', 'SELECT ...') pulls data across databases past grants and
        audit. Every dblink* function is reported, in any schema (the extension
        installs into whichever schema it was created in). Denied by default.
    """,
    safer="""
        Run each statement through the gateway on the database it is for; move
        data between databases with reviewed exports.
    """,
    triggers=[
        "SELECT dblink_exec('dbname=ehr', 'DROP TABLE patients')",
        "SELECT * FROM dblink('host=10.0.0.5 dbname=ehr', 'SELECT ssn FROM patients')"
        " AS t(ssn text)",
        "SELECT public.dblink_connect('c', 'dbname=ehr user=postgres')",
        "WITH r AS (SELECT * FROM DBLINK('c', 'select 1') AS t(x int)) SELECT * FROM r",
    ],
    passes=[
        "SELECT link FROM dblinks",
        "SELECT 'dblink_exec'",
    ],
)
def dblink(view: StatementView, context: Context) -> Iterator[str]:
    if not may_call(view, prefix="dblink"):
        return  # (asked of every statement; sqlglot models no dblink* function of its own)
    for call in calls(view):
        if _is_dblink(call.name):
            yield f"calls {call.name}(): runs SQL over a connection the gateway does not see"


def _is_dblink(name: str) -> bool:
    return name.startswith("dblink")
