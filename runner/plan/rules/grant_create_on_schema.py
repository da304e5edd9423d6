"""SO503: GRANT CREATE on a schema (or database) lets the grantee plant objects others run."""

from __future__ import annotations

from collections.abc import Iterator

from runner.plan.model import Category, Severity
from runner.plan.rules._grants import read_grant
from runner.plan.rules.base import Context, StatementView, rule

_KINDS = frozenset({"SCHEMA", "DATABASE", "SCHEMAS"})


@rule(
    "SO503",
    "grant-create-on-schema",
    Category.ACCESS_CONTROL,
    Severity.WARNING,
    summary="GRANT CREATE (or ALL) ON SCHEMA / DATABASE: the grantee may create objects there.",
    rationale="""
        CREATE on a schema lets the grantee add tables, views and functions to
        it. A function or operator created in a schema on other roles'
        search_path (public, or the application's) can shadow a built-in or
        an application function, and runs with the rights of whoever calls it:
        a classic path from a low-privileged role to the owner's or a
        superuser's rights (CVE-2018-1058). CREATE on a database lets it create
        schemas. Granting it is a change to who can run code as whom.
    """,
    safer="""
        Keep CREATE with the role that owns the schema and runs the migrations;
        give application roles USAGE and the table privileges they need.
    """,
    triggers=[
        "GRANT CREATE ON SCHEMA public TO app",
        "GRANT ALL ON SCHEMA ehr TO reporting",
        "GRANT USAGE, CREATE ON SCHEMA public TO PUBLIC",
        "GRANT CREATE ON DATABASE ehr TO contractor",
    ],
    passes=[
        "GRANT USAGE ON SCHEMA ehr TO app",
        "GRANT SELECT ON ALL TABLES IN SCHEMA ehr TO reporting",
        "REVOKE CREATE ON SCHEMA public FROM PUBLIC",
    ],
    kinds=("grant", "alter_default_privileges"),
)
def grant_create_on_schema(view: StatementView, context: Context) -> Iterator[str]:
    grant = read_grant(view)
    if grant is None or grant.kind not in _KINDS:
        return
    if not {"CREATE", "ALL"} & set(grant.privileges):
        return
    yield (
        f"grants CREATE on {grant.shown_objects} to {', '.join(grant.grantees)}: they may "
        "create objects that others' statements resolve to"
    )
