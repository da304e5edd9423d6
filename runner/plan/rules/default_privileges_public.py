"""SO509: ALTER DEFAULT PRIVILEGES ... GRANT ... TO PUBLIC exposes every future object."""

from __future__ import annotations

from collections.abc import Iterator

from runner.plan.model import Category, Severity
from runner.plan.rules._grants import read_grant
from runner.plan.rules.base import Context, StatementView, rule


@rule(
    "SO509",
    "default-privileges-to-public",
    Category.ACCESS_CONTROL,
    Severity.ERROR,
    summary="ALTER DEFAULT PRIVILEGES ... GRANT ... TO PUBLIC: future tables open to every role.",
    rationale="""
        Default privileges apply to objects created later, so this grant shows
        in no migration that creates a table: every table (or sequence,
        function) the role creates from now on is readable or writable by
        PUBLIC, every role on the server, the day it is created and before
        anyone thinks to revoke it. PHI tables added next year are exposed by a
        line written today.
    """,
    safer="""
        Set default privileges for the named role that needs them ('ALTER
        DEFAULT PRIVILEGES IN SCHEMA ehr GRANT SELECT ON TABLES TO reporting;'),
        or grant per table in the migration that creates it.
    """,
    triggers=[
        "ALTER DEFAULT PRIVILEGES IN SCHEMA public GRANT SELECT ON TABLES TO PUBLIC",
        "ALTER DEFAULT PRIVILEGES FOR ROLE owner GRANT ALL ON SEQUENCES TO public",
    ],
    passes=[
        "ALTER DEFAULT PRIVILEGES IN SCHEMA ehr GRANT SELECT ON TABLES TO reporting",
        "ALTER DEFAULT PRIVILEGES IN SCHEMA ehr REVOKE EXECUTE ON FUNCTIONS FROM PUBLIC",
    ],
    kinds=("alter_default_privileges",),
)
def default_privileges_public(view: StatementView, context: Context) -> Iterator[str]:
    grant = read_grant(view)
    if grant is None or not grant.default_privileges or not grant.to_public:
        return
    yield (
        f"grants {', '.join(grant.privileges)} on every future {grant.shown_objects.lower()} "
        "to PUBLIC (default privileges)"
    )
