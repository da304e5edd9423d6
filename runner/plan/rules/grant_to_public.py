"""SO501: GRANT ... TO PUBLIC gives every role, present and future, the privilege."""

from __future__ import annotations

from collections.abc import Iterator

from runner.plan.model import Category, Severity
from runner.plan.rules._grants import read_grant
from runner.plan.rules.base import Context, StatementView, rule


@rule(
    "SO501",
    "grant-to-public",
    Category.ACCESS_CONTROL,
    Severity.ERROR,
    summary="GRANT ... TO PUBLIC: every role on the server gets the privilege.",
    rationale="""
        PUBLIC is every role, including ones created later: a reporting login,
        a contractor's account, a compromised application role. GRANT SELECT ON
        patients TO PUBLIC, or ON ALL TABLES IN SCHEMA ..., makes PHI readable
        by all of them, and a grant of USAGE or EXECUTE re-opens what hardening
        revoked. Access to PHI is granted to a named role whose members are
        known (HIPAA's minimum necessary). Granting a role's membership to
        PUBLIC (which PostgreSQL refuses today) is reported too. Reported
        whether or not the object was created in the plan: who may read a new
        table matters as much as an old one.
    """,
    safer="""
        Grant to the role that needs it ('GRANT SELECT ON patients TO
        clinician_app;'), and give people membership in that role.
    """,
    triggers=[
        "GRANT SELECT ON patients TO PUBLIC",
        "GRANT SELECT, UPDATE (ssn) ON TABLE public.patients TO app, public",
        "GRANT ALL ON ALL TABLES IN SCHEMA public TO PUBLIC",
        "GRANT USAGE ON SCHEMA public TO PUBLIC",
        "GRANT EXECUTE ON FUNCTION export_patients(int) TO PUBLIC",
        "CREATE TABLE notes (id int);\nGRANT SELECT ON notes TO PUBLIC",
        "GRANT clinician TO PUBLIC",
    ],
    passes=[
        "GRANT SELECT ON patients TO clinician_app",
        "GRANT USAGE ON SCHEMA billing TO billing_app",
        "REVOKE ALL ON patients FROM PUBLIC",
        "GRANT clinician TO dr_house",
        "ALTER DEFAULT PRIVILEGES IN SCHEMA app GRANT SELECT ON TABLES TO reporting",
    ],
    kinds=("grant",),
)
def grant_to_public(view: StatementView, context: Context) -> Iterator[str]:
    grant = read_grant(view)
    if grant is None or grant.default_privileges or not grant.to_public:
        return
    if grant.kind is None:
        yield f"grants membership in {', '.join(grant.privileges)} to PUBLIC (every role)"
    else:
        yield (
            f"grants {', '.join(grant.privileges)} on {grant.shown_objects} to PUBLIC: "
            "every role, present and future"
        )
