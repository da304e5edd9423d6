"""SO502: WITH GRANT OPTION / WITH ADMIN OPTION lets the grantee hand the access on."""

from __future__ import annotations

from collections.abc import Iterator

from runner.plan.model import Category, Severity
from runner.plan.rules._grants import read_grant
from runner.plan.rules.base import Context, StatementView, rule


@rule(
    "SO502",
    "grant-with-grant-option",
    Category.ACCESS_CONTROL,
    Severity.WARNING,
    summary="GRANT ... WITH GRANT OPTION / WITH ADMIN OPTION: the grantee may grant it to others.",
    rationale="""
        A privilege granted WITH GRANT OPTION, or a role granted WITH ADMIN
        OPTION, can be passed on by the grantee to any role, without a
        migration, a review or an entry in this audit trail: who can read PHI
        stops being decided by the schema's owners. A REVOKE of the original
        grant needs CASCADE to take the re-grants back. Reported for default
        privileges too.
    """,
    safer="""
        Grant the privilege itself to each role that needs it, in reviewed
        migrations; keep the right to grant with the owning role.
    """,
    triggers=[
        "GRANT SELECT ON patients TO app WITH GRANT OPTION",
        "GRANT clinician TO team_lead WITH ADMIN OPTION",
        "GRANT clinician TO team_lead WITH ADMIN TRUE",
        "ALTER DEFAULT PRIVILEGES GRANT SELECT ON TABLES TO app WITH GRANT OPTION",
    ],
    passes=[
        "GRANT SELECT ON patients TO app",
        "GRANT clinician TO dr_house WITH INHERIT TRUE",
        "REVOKE GRANT OPTION FOR SELECT ON patients FROM app",
    ],
    kinds=("grant", "alter_default_privileges"),
)
def grant_option(view: StatementView, context: Context) -> Iterator[str]:
    grant = read_grant(view)
    if grant is None or not grant.grant_option:
        return
    what = ", ".join(grant.privileges)
    on = f" on {grant.shown_objects}" if grant.kind is not None else ""
    yield f"grants {what}{on} to {', '.join(grant.grantees)} with the right to grant it on"
