"""SO610: pg_terminate_backend / pg_cancel_backend end or cancel other sessions' work."""

from __future__ import annotations

from collections.abc import Iterator

from runner.plan.model import Category, Severity
from runner.plan.rules._calls import calls_named
from runner.plan.rules.base import Context, StatementView, rule

_SIGNALS = frozenset({"pg_terminate_backend", "pg_cancel_backend"})


@rule(
    "SO610",
    "signal-other-backend",
    Category.ESCAPE_HATCH,
    Severity.ERROR,
    summary="pg_terminate_backend / pg_cancel_backend on another session's backend.",
    rationale="""
        Terminating or cancelling another backend ends someone else's work: the
        application's connections, a running backup, an auditor's session,
        another deploy holding the migration lock (which then runs a second
        time). With a pid from pg_stat_activity it can end every connection at
        once. Signalling the session's own backend, pg_terminate_backend(
        pg_backend_pid()), touches no one else and is not reported; any other
        argument, a literal pid, a subquery or a parameter, is. Denied by default.
    """,
    safer="""
        Set lock_timeout and statement_timeout so a migration gives up instead of
        waiting; leave ending other sessions to the database's operators.
    """,
    triggers=[
        "SELECT pg_terminate_backend(12345)",
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = 'ehr'",
        "SELECT pg_catalog.pg_cancel_backend($1)",
        "SELECT pg_cancel_backend(pg_backend_pid() + 1)",
    ],
    passes=[
        "SELECT pg_terminate_backend(pg_backend_pid())",
        "SELECT pg_cancel_backend(pg_catalog.pg_backend_pid())",
        "SELECT pid FROM pg_stat_activity WHERE state = 'active'",
    ],
)
def signal_backend(view: StatementView, context: Context) -> Iterator[str]:
    for call in calls_named(view, _SIGNALS):
        if call.first_argument_is_call_to("pg_backend_pid"):
            continue
        yield f"calls {call.name}() on a backend that may be another session's"
