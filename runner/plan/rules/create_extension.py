"""SO607: CREATE EXTENSION runs the extension's install script with elevated rights."""

from __future__ import annotations

from collections.abc import Iterator

from runner.plan.commands import words
from runner.plan.model import Category, Severity
from runner.plan.rules.base import Context, StatementView, rule


@rule(
    "SO607",
    "create-extension",
    Category.ESCAPE_HATCH,
    Severity.ERROR,
    summary="CREATE EXTENSION / ALTER EXTENSION ... UPDATE installs code into the server.",
    rationale="""
        An extension's script runs as the installing role (for a trusted
        extension, as the bootstrap superuser), creating functions in C that run
        inside the server process: dblink and postgres_fdw open connections out,
        adminpack writes files, file_fdw reads them, plpython3u and plperlu run
        arbitrary code. Which extension is installed decides what any later
        statement can reach, so the set of extensions is the database
        operators' decision, not a migration's; ALTER EXTENSION ... UPDATE runs
        a new script the same way. Denied by default: allow this rule for the
        role that installs the extensions a schema needs.
    """,
    safer="""
        Have the database's operators install the extensions the schema needs
        once, ahead of the migrations that use them; migrations then only use
        them.
    """,
    triggers=[
        "CREATE EXTENSION dblink",
        "CREATE EXTENSION IF NOT EXISTS plpython3u",
        'create extension "uuid-ossp" schema public',
        "ALTER EXTENSION pg_trgm UPDATE TO '1.6'",
    ],
    passes=[
        "DROP EXTENSION IF EXISTS hstore",
        "COMMENT ON EXTENSION hstore IS 'key/value pairs'",
        "ALTER EXTENSION hstore SET SCHEMA ext",
    ],
    kinds=("create_extension", "alter_extension"),
)
def create_extension(view: StatementView, context: Context) -> Iterator[str]:
    if view.shape is None:
        return
    name = view.shape.relation or "?"
    if view.kind == "create_extension":
        yield f"installs extension {name}: its script and C functions run in the server"
    elif view.kind == "alter_extension" and "UPDATE" in [w.text for w in words(view.raw.tokens)]:
        yield f"updates extension {name}: its upgrade script runs in the server"
