"""SO603: functions that read, list or write files on the database server."""

from __future__ import annotations

from collections.abc import Iterator

from runner.plan.model import Category, Severity
from runner.plan.rules._calls import calls_named
from runner.plan.rules.base import Context, StatementView, rule

# Core (pg_read_file...), large-object import/export of server files, and
# adminpack's writers.
SERVER_FILE_FUNCTIONS = frozenset(
    {
        "pg_read_file",
        "pg_read_binary_file",
        "pg_ls_dir",
        "pg_stat_file",
        "pg_ls_logdir",
        "pg_ls_waldir",
        "pg_ls_tmpdir",
        "pg_ls_archive_statusdir",
        "pg_ls_logicalsnapdir",
        "pg_ls_logicalmapdir",
        "pg_ls_replslotdir",
        "lo_import",
        "lo_export",
        "pg_file_write",
        "pg_file_rename",
        "pg_file_unlink",
        "pg_file_sync",
        "pg_logdir_ls",
    }
)


@rule(
    "SO603",
    "server-file-function",
    Category.ESCAPE_HATCH,
    Severity.ERROR,
    summary="pg_read_file, pg_ls_dir, lo_import / lo_export...: the server's own files, from SQL.",
    rationale="""
        These functions open, list or write files on the database server as its
        OS user: pg_read_file('/etc/...') and pg_read_binary_file return any file
        the server can read (its configuration, keys, other databases' data
        files), pg_ls_dir and pg_stat_file map the filesystem, lo_import loads a
        server file into the database and lo_export writes one out, and
        adminpack's pg_file_write writes anywhere the server may. None of it is
        bound by table grants, row-level security or the gateway's masking. A
        call is found anywhere in the statement (a subquery, a CTE, a DEFAULT),
        whatever its schema qualification or case. Denied by default.
    """,
    safer="""
        Read server files with the server's administrators' tools, outside the
        migration; load data through COPY ... FROM STDIN.
    """,
    triggers=[
        "SELECT pg_read_file('/etc/passwd')",
        "SELECT pg_catalog.PG_READ_BINARY_FILE('global/pg_control')",
        "SELECT * FROM pg_ls_dir('.') AS f",
        "WITH f AS (SELECT pg_stat_file('postgresql.conf') AS s) SELECT * FROM f",
        "SELECT lo_import('/etc/ssl/private/server.key')",
        "SELECT lo_export(16404, '/tmp/out')",
        "CREATE TABLE leak (t text DEFAULT pg_read_file('/etc/hostname'))",
        "INSERT INTO notes (body) SELECT pg_read_file('pg_hba.conf')",
        "DO $$ BEGIN PERFORM pg_read_file('/etc/passwd'); END $$",
    ],
    passes=[
        "SELECT 'pg_read_file(''/etc/passwd'')'",
        "SELECT read_file FROM exports",
        "SELECT lo_get(16404)",
    ],
)
def server_file_function(view: StatementView, context: Context) -> Iterator[str]:
    for call in calls_named(view, SERVER_FILE_FUNCTIONS):
        yield f"calls {call.name}(): reads, lists or writes files on the database server"
