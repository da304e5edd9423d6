"""SO514: granting a predefined role that reads files, runs programs or bypasses grants."""

from __future__ import annotations

from collections.abc import Iterator

from runner.plan.model import Category, Severity
from runner.plan.rules._grants import read_grant
from runner.plan.rules.base import Context, StatementView, rule

# Predefined roles whose members escape the database's own access model, and the
# managed services' stand-ins for superuser.
_PRIVILEGED_ROLES = {
    "pg_read_server_files": "read any file on the server",
    "pg_write_server_files": "write any file on the server",
    "pg_execute_server_program": "run programs on the server (COPY ... PROGRAM)",
    "pg_read_all_data": "read every table, whatever its grants",
    "pg_write_all_data": "write every table, whatever its grants",
    "pg_signal_backend": "cancel and terminate other sessions",
    "pg_checkpoint": "force checkpoints",
    "pg_create_subscription": "create subscriptions that connect out",
    "pg_monitor": "read every session's queries and the server's statistics",
    "pg_read_all_stats": "read every session's queries",
    "pg_read_all_settings": "read every setting",
    "rds_superuser": "act as the managed service's superuser",
    "rds_replication": "read the change stream",
    "azure_pg_admin": "act as the managed service's administrator",
    "cloudsqlsuperuser": "act as the managed service's superuser",
    "alloydbsuperuser": "act as the managed service's superuser",
}


@rule(
    "SO514",
    "grant-privileged-role",
    Category.ACCESS_CONTROL,
    Severity.ERROR,
    summary="GRANT pg_read_all_data / pg_read_server_files / rds_superuser... TO a role.",
    rationale="""
        PostgreSQL's predefined roles carry rights no table grant can take back:
        pg_read_all_data reads every table (PHI included) whatever its grants,
        pg_read_server_files and pg_execute_server_program reach the server's
        files and shell (COPY ... PROGRAM), pg_signal_backend ends other
        sessions, pg_monitor shows every session's query text, bind values
        included; managed services' rds_superuser, azure_pg_admin and
        cloudsqlsuperuser act as superuser. Membership in one of them is a
        change to who can do almost anything.
    """,
    safer="""
        Grant the specific privileges the role needs on the specific objects
        ('GRANT SELECT ON reports.daily TO analyst;').
    """,
    triggers=[
        "GRANT pg_read_all_data TO analyst",
        "GRANT pg_execute_server_program, pg_read_server_files TO app",
        "GRANT rds_superuser TO deployer",
    ],
    passes=[
        "GRANT clinician TO dr_house",
        "GRANT SELECT ON pg_read_all_data_log TO auditor",
        "REVOKE pg_read_all_data FROM analyst",
    ],
    kinds=("grant",),
)
def grant_privileged_role(view: StatementView, context: Context) -> Iterator[str]:
    grant = read_grant(view)
    if grant is None or grant.kind is not None:
        return
    for role in grant.privileges:
        what = _PRIVILEGED_ROLES.get(role)
        if what is not None:
            yield f"grants {role} to {', '.join(grant.grantees)}: its members {what}"
