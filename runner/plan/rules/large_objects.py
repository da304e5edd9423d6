"""SO604: large-object functions read and change data outside the tables' access control."""

from __future__ import annotations

from collections.abc import Iterator

from runner.plan.model import Category, Severity
from runner.plan.rules._calls import calls, may_call
from runner.plan.rules.base import Context, StatementView, rule
from runner.plan.rules.server_file_functions import SERVER_FILE_FUNCTIONS

_LARGE_OBJECT_FUNCTIONS = frozenset(
    {
        "lo_unlink",
        "lo_truncate",
        "lo_truncate64",
        "lo_put",
        "lo_get",
        "lo_from_bytea",
        "lo_create",
        "lo_creat",
        "lo_open",
        "lo_close",
        "lo_lseek",
        "lo_lseek64",
        "lo_tell",
        "lo_tell64",
        "loread",
        "lowrite",
    }
)


@rule(
    "SO604",
    "large-object-function",
    Category.ESCAPE_HATCH,
    Severity.ERROR,
    summary="lo_unlink, lo_put, lo_get, lo_truncate...: large objects, outside table grants.",
    rationale="""
        Large objects live in pg_largeobject, not in the tables that reference
        them by OID, so row-level security and column grants on those tables do
        not cover them, and with lo_compat_privileges on no privilege check
        applies at all. lo_unlink deletes one for good (the referencing row keeps
        a dangling OID), lo_truncate and lo_put overwrite it in place, lo_get and
        loread return the whole content (scanned documents, images) past the
        gateway's column masking. Denied by default; lo_import / lo_export are
        SO603 (they reach the server's files).
    """,
    safer="""
        Store documents in bytea columns of a table under row-level security, or
        in an object store the application controls, and change them with
        reviewed UPDATE / DELETE statements.
    """,
    triggers=[
        "SELECT lo_unlink(16404)",
        "SELECT lo_unlink(scan_oid) FROM scans WHERE patient_id = 7",
        "SELECT lo_truncate(lo_open(16404, 131072), 0)",
        "SELECT lo_put(16404, 0, '\\x00')",
        "SELECT pg_catalog.lo_get(16404)",
    ],
    passes=[
        "SELECT scan_oid FROM scans WHERE patient_id = 7",
        "SELECT lo_import_count FROM stats",
    ],
)
def large_object_function(view: StatementView, context: Context) -> Iterator[str]:
    if not may_call(view, _LARGE_OBJECT_FUNCTIONS):
        return  # (asked of every statement: most name none of them)
    for call in calls(view):
        if call.name in _LARGE_OBJECT_FUNCTIONS and call.name not in SERVER_FILE_FUNCTIONS:
            yield f"calls {call.name}(): large-object data, outside the tables' grants and RLS"
