"""SO602: COPY ... TO / FROM a file reads or writes the database server's own filesystem."""

from __future__ import annotations

from collections.abc import Iterator

from runner.plan.model import Category, Severity
from runner.plan.rules._copy import copy_end
from runner.plan.rules.base import Context, StatementView, rule


@rule(
    "SO602",
    "copy-server-file",
    Category.ESCAPE_HATCH,
    Severity.ERROR,
    summary="COPY ... TO / FROM '/path' reads or writes a file on the database server.",
    rationale="""
        COPY with a file name opens the file on the database server, as the
        server's OS user, not on the client: COPY FROM can read the server's
        configuration, keys and other databases' exported files into a table,
        COPY TO can write a table of PHI to a path outside any backup, audit or
        access control (or overwrite a file the server trusts). What was
        exported never passes the gateway. Denied by default: a role or the
        configuration must allow the rule by id.
    """,
    safer="""
        Use COPY ... TO STDOUT / FROM STDIN, which moves the data through the
        client connection the gateway sees (psql's \\copy does this).
    """,
    triggers=[
        "COPY patients TO '/tmp/patients.csv' WITH (FORMAT csv)",
        "COPY settings FROM '/etc/postgresql/15/main/pg_hba.conf'",
        "COPY (SELECT ssn FROM patients) TO '/var/lib/postgresql/out'",
    ],
    passes=[
        "COPY patients TO STDOUT WITH (FORMAT csv)",
        "COPY patients (id, name) FROM STDIN",
        "COPY (SELECT id FROM patients WHERE id < 4) TO STDOUT",
    ],
    kinds=("copy", None),
)
def copy_server_file(view: StatementView, context: Context) -> Iterator[str]:
    end = copy_end(view)
    if end is None or end.kind in ("program", "client"):
        return
    if end.kind == "file":
        yield f"COPY {end.direction} the server's file {end.where!r}"
    else:
        yield f"COPY {end.direction} {end.where or '?'}: not STDIN / STDOUT, so a server-side end"
