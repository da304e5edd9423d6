"""SO512: any statement that names schema signoff_guard, the server-side guard's own."""

from __future__ import annotations

from collections.abc import Iterator

from sqlglot.tokenizer_core import TokenType

from runner.plan.model import Category, Severity
from runner.plan.rules._calls import unicode_folded
from runner.plan.rules.base import Context, StatementView, rule

GUARD_SCHEMA = "signoff_guard"
_STRINGS = frozenset({TokenType.STRING, TokenType.HEREDOC_STRING, TokenType.NATIONAL_STRING})


def _names_guard(text: str) -> bool:
    """A string that is a list of (qualified) names naming the schema: 'signoff_guard',
    'signoff_guard.mark(int)' (a regprocedure), 'public, signoff_guard' (a search_path),
    '"signoff_guard".t'. Prose that mentions it is not a name list."""
    for item in text.split(","):
        name = item.split("(", 1)[0].strip()
        if not name or any(c.isspace() for c in name):
            continue
        if any(part.strip('"').lower() == GUARD_SCHEMA for part in name.split(".")):
            return True
    return False


@rule(
    "SO512",
    "signoff-guard-touched",
    Category.ACCESS_CONTROL,
    Severity.ERROR,
    summary="A statement names schema signoff_guard (the server-side guard's own objects).",
    rationale="""
        Schema signoff_guard holds the server-side guard: the event triggers,
        TRUNCATE triggers and functions that refuse destructive statements the
        gateway did not grant, and the per-statement marks they check. A
        statement that names it, to drop or replace a function, read or write
        its tables, put it on search_path or grant on it, may switch the guard
        off or forge a mark. Only signoff gateway install-guard changes it;
        any statement from a migration or a session that names it, as a name
        or as a name inside a string ('signoff_guard.mark'::regproc,
        set_config('search_path', 'signoff_guard', ...)), is reported.
    """,
    safer="""
        Leave the schema to signoff gateway install-guard; nothing an
        application or a migration does needs it.
    """,
    triggers=[
        "DROP SCHEMA signoff_guard CASCADE",
        "CREATE OR REPLACE FUNCTION signoff_guard.check_ddl() RETURNS event_trigger"
        " LANGUAGE plpgsql AS $$ BEGIN END $$",
        'SELECT * FROM "signoff_guard".marks',
        "SET search_path = signoff_guard, public",
        "SELECT set_config('search_path', 'public, signoff_guard', false)",
        "GRANT USAGE ON SCHEMA signoff_guard TO app",
    ],
    passes=[
        "SELECT 'the signoff guard is installed'",
        "CREATE SCHEMA signoff_guards_archive",
        "SET search_path = ehr, public",
    ],
)
def signoff_guard(view: StatementView, context: Context) -> Iterator[str]:
    tokens = view.raw.tokens
    # Asked of every statement: a cheap necessary condition on the text first (the
    # name, or a Unicode escape that could spell it), then the tokens decide.
    lowered = view.raw.text.lower()
    if GUARD_SCHEMA not in lowered and "u&" not in lowered:
        return
    for token in unicode_folded(tokens):
        kind = token.token_type
        if kind in _STRINGS:
            if _names_guard(token.text):
                yield f"names schema {GUARD_SCHEMA} (in a string): the server-side guard's own"
                return
        elif token.text.lower() == GUARD_SCHEMA:
            yield f"names schema {GUARD_SCHEMA}: the server-side guard's own"
            return
