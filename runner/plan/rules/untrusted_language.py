"""SO613: functions in C, internal or an untrusted language run code the database cannot confine."""

from __future__ import annotations

from collections.abc import Iterator

from sqlglot.tokenizer_core import TokenType

from runner.plan.commands import words
from runner.plan.model import Category, Severity
from runner.plan.rules.base import Context, StatementView, rule

# Languages whose code runs unconfined in the server process (C, internal: a
# shared library or any built-in under a new name) or with the server's OS
# rights (the "u" languages, untrusted by PostgreSQL's own definition).
_UNCONFINED = frozenset(
    {"c", "internal", "plpython3u", "plpythonu", "plpython2u", "plperlu", "pltclu", "plsh"}
)


def _languages(view: StatementView) -> list[str]:
    """The LANGUAGE names of a CREATE FUNCTION / PROCEDURE / LANGUAGE or DO, outside
    parentheses (``LANGUAGE c``, ``LANGUAGE 'C'``, ``LANGUAGE "plpython3u"``)."""
    tokens = view.raw.tokens
    if not tokens or tokens[0].text.upper() not in ("CREATE", "DO"):
        return []
    ws = words(tokens)
    heads = [w.text for w in ws[:5]]
    if heads[0] == "CREATE" and not {"FUNCTION", "PROCEDURE", "LANGUAGE"} & set(heads):
        return []
    found, depth = [], 0
    for i, word in enumerate(ws):
        kind = word.token.token_type
        depth += kind is TokenType.L_PAREN
        depth -= kind is TokenType.R_PAREN
        if depth == 0 and word.text == "LANGUAGE" and i + 1 < len(ws):
            found.append(ws[i + 1].token.text.lower())
    if heads[0] == "CREATE" and "LANGUAGE" in heads[1:4]:
        # CREATE [OR REPLACE] [TRUSTED] [PROCEDURAL] LANGUAGE name
        at = heads.index("LANGUAGE")
        found.append(ws[at + 1].token.text.lower() if at + 1 < len(ws) else "?")
    return found


@rule(
    "SO613",
    "unconfined-language",
    Category.ESCAPE_HATCH,
    Severity.ERROR,
    summary="A function, DO block or language in C, internal or an untrusted one (plpython3u...).",
    rationale="""
        LANGUAGE c loads a shared library file and runs its code inside the
        server; LANGUAGE internal exposes any built-in under a new name (a
        pg_read_file the escape-hatch rules do not recognise); plpython3u,
        plperlu and the other untrusted languages run with the server's OS
        rights: they open files and sockets and run programs. None of that is
        bound by grants, row-level security or the gateway, and the body's code
        is not SQL the analysis can read. Creating such a language (CREATE
        LANGUAGE) is reported too. Denied by default.
    """,
    safer="""
        Write the function in SQL or PL/pgSQL; if native code is really needed,
        have the operators install it as a reviewed extension.
    """,
    triggers=[
        "CREATE FUNCTION rd(text) RETURNS text LANGUAGE internal AS 'pg_read_file_off_len'",
        "CREATE FUNCTION evil() RETURNS void LANGUAGE c AS '/tmp/evil.so', 'evil'",
        "CREATE OR REPLACE FUNCTION sh(cmd text) RETURNS text LANGUAGE plpython3u"
        " AS $$ import os; return os.popen(cmd).read() $$",
        "DO LANGUAGE plperlu $$ system('id') $$",
        "CREATE LANGUAGE plpython3u",
    ],
    passes=[
        "CREATE FUNCTION f() RETURNS int LANGUAGE sql AS $$ SELECT 1 $$",
        "CREATE FUNCTION g() RETURNS int LANGUAGE plpgsql AS $$ BEGIN RETURN 1; END $$",
        "DO $$ BEGIN RAISE NOTICE 'LANGUAGE c'; END $$",
        "CREATE TABLE languages (language text)",
    ],
)
def unconfined_language(view: StatementView, context: Context) -> Iterator[str]:
    for language in _languages(view):
        if language.strip('"') in _UNCONFINED:
            yield f"runs code in language {language}: outside what the database can confine"
            return
