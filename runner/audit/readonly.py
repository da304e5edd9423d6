"""Which statements outside a plan a verified bundle may hold: the runner's own
reads and session settings around the apply (``runner/apply.py``: ``SET`` and
``SHOW`` of its timeouts, ``SELECT current_database()``, the advisory apply lock,
the alembic version table read, ``ROLLBACK``).

Fail closed: a statement is *housekeeping* only when sqlglot parses it whole into
one of a few shapes that change nothing and read no data: a plain ``SELECT`` (no
``INTO``, no data-modifying CTE) of the catalog only (``pg_catalog``,
``information_schema``, ``pg_*`` relations, the ``alembic_version`` table: a read
of a table of patients outside the plan is not housekeeping) calling only the
functions listed here (an unknown function could be ``setval`` or ``dblink_exec``);
``SHOW``; ``SET`` /
``RESET`` of the settings listed here (not ``ROLE`` nor ``SESSION AUTHORIZATION``);
transaction control. Anything else outside the plan fails verification.
"""

from __future__ import annotations

import re

import sqlglot
from sqlglot import exp

# Functions a housekeeping SELECT may call: pure reads of the catalog or session,
# and the session's advisory locks (the apply lock).
READ_FUNCTIONS = frozenset(
    {
        "current_database",
        "current_schema",
        "current_schemas",
        "current_setting",
        "current_user",
        "session_user",
        "version",
        "to_regclass",
        "pg_backend_pid",
        "pg_is_in_recovery",
        "pg_table_is_visible",
        "format_type",
        "pg_get_userbyid",
        "pg_get_functiondef",
        "pg_get_expr",
        "pg_get_viewdef",

        "has_table_privilege",
        "has_schema_privilege",
        "pg_try_advisory_lock",
        "pg_advisory_lock",
        "pg_advisory_unlock",
        "pg_try_advisory_xact_lock",
        "pg_advisory_xact_lock",
    }
)
SESSION_SETTINGS = frozenset(
    {
        "lock_timeout",
        "statement_timeout",
        "idle_in_transaction_session_timeout",
        "search_path",
        "application_name",
        "client_encoding",
        "client_min_messages",
        "datestyle",
        "intervalstyle",
        "timezone",
        "extra_float_digits",
        "standard_conforming_strings",
    }
)
_SET = re.compile(
    r"\s*(?:SET|RESET)\s+(?:(?:SESSION|LOCAL)\s+)?\"?([A-Za-z_][A-Za-z0-9_.]*)\"?", re.IGNORECASE
)
_SHOW = re.compile(r"\s*SHOW\s+\"?[A-Za-z_][A-Za-z0-9_.]*\"?\s*;?\s*\Z", re.IGNORECASE)
# A transaction's modes change nothing themselves (the planner reads the target's
# facts in BEGIN READ ONLY).
_MODE = (
    r"(?:READ\s+ONLY|READ\s+WRITE|(?:NOT\s+)?DEFERRABLE|ISOLATION\s+LEVEL\s+"
    r"(?:SERIALIZABLE|REPEATABLE\s+READ|READ\s+COMMITTED|READ\s+UNCOMMITTED))"
)
_TRANSACTION = re.compile(
    r"\s*(?:(?:BEGIN|START\s+TRANSACTION)(?:\s+(?:WORK|TRANSACTION))?"
    rf"(?:\s+{_MODE}(?:\s*,?\s*{_MODE})*)?"
    r"|(?:COMMIT|END|ROLLBACK|ABORT)(?:\s+(?:WORK|TRANSACTION))?)"
    r"\s*;?\s*\Z",
    re.IGNORECASE,
)
_MODIFYING = (exp.Insert, exp.Update, exp.Delete, exp.Merge, exp.Into, exp.Create, exp.Drop)


def is_housekeeping(text: str) -> bool:
    """Whether ``text`` is one statement that changes nothing (see the module doc)."""
    if "--" in text or "/*" in text:
        return False  # keep the shape checks below simple: comments never qualify
    if _TRANSACTION.match(text) or _SHOW.match(text):
        return True
    setting = _SET.match(text)
    if setting is not None:
        name = setting.group(1).lower()
        if name == "time":  # SET TIME ZONE 'UTC': the timezone setting's own syntax
            rest = text.strip().rstrip(";").split(None, 3)
            return len(rest) >= 3 and rest[2].upper() == "ZONE" and ";" not in text.rstrip("; ")
        if name == "all":
            return text.strip().rstrip(";").strip().upper() == "RESET ALL"
        return name in SESSION_SETTINGS and ";" not in text.strip().rstrip(";")
    return _read_only_select(text)


def _read_only_select(text: str) -> bool:
    try:
        parsed = sqlglot.parse(text, read="postgres")
    except sqlglot.errors.SqlglotError:
        return False
    if len(parsed) != 1 or parsed[0] is None:
        return False
    node = parsed[0]
    if not isinstance(node, exp.Select | exp.SetOperation):
        return False
    if any(isinstance(n, _MODIFYING) for n in node.walk()):
        return False
    for table in node.find_all(exp.Table):
        if not _catalog_relation(table):
            return False
    for call in node.find_all(exp.Anonymous):
        if str(call.name).lower().rsplit(".", 1)[-1] not in READ_FUNCTIONS:
            return False
    for func in node.find_all(exp.Func):
        if isinstance(func, exp.Anonymous):
            continue
        # sqlglot types the functions it knows (count, coalesce, now...): pure ones.
        # Those that are not pure are named here.
        if type(func).__name__.lower() in ("nextval", "setval"):
            return False
    return True


def _catalog_relation(table: exp.Table) -> bool:
    schema = str(table.db or "").lower()
    name = str(table.name or "").lower()
    if schema in ("pg_catalog", "information_schema"):
        return True
    return not schema and (name.startswith("pg_") or name == "alembic_version")
