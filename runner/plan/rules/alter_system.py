"""SO608: ALTER SYSTEM rewrites the server's configuration file."""

from __future__ import annotations

from collections.abc import Iterator

from runner.plan.commands import words
from runner.plan.model import Category, Severity
from runner.plan.rules.base import Context, StatementView, rule


@rule(
    "SO608",
    "alter-system",
    Category.ESCAPE_HATCH,
    Severity.ERROR,
    summary="ALTER SYSTEM writes postgresql.auto.conf: server-wide settings, for every database.",
    rationale="""
        ALTER SYSTEM changes the configuration of the whole server, every
        database and every role on it, from the next reload or restart: logging
        and auditing (log_statement, pgaudit.log), the libraries loaded at start
        (shared_preload_libraries, which runs their code in every backend),
        archive_command and restore_command (shell commands the server runs),
        ssl and authentication settings. It is the operators' change process,
        not a migration's. Denied by default; it also stays SO002
        (unrecognised), so an allow of this rule alone still needs approval.
    """,
    safer="""
        Change server settings through the operators' configuration management;
        for one role or database use ALTER ROLE / ALTER DATABASE ... SET, which
        a reviewer can see and which stays in the database.
    """,
    triggers=[
        "ALTER SYSTEM SET work_mem = '64MB'",
        "alter system set archive_command = 'curl -T %p https://example.com'",
        "ALTER SYSTEM RESET ALL",
    ],
    passes=[
        "ALTER DATABASE ehr SET work_mem = '64MB'",
        "SET work_mem = '64MB'",
    ],
    kinds=(None,),
)
def alter_system(view: StatementView, context: Context) -> Iterator[str]:
    ws = words(view.raw.tokens)
    if len(ws) > 1 and ws[0].text == "ALTER" and ws[1].text == "SYSTEM":
        yield "ALTER SYSTEM changes the configuration of the whole server"
