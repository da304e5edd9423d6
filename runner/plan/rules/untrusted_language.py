"""SO613: functions in C, internal or an untrusted language run code the database cannot confine."""

from __future__ import annotations

from collections.abc import Iterator

from sqlglot.tokenizer_core import TokenType

from runner.plan.commands import word_text, words
from runner.plan.model import Category, Severity
from runner.plan.rules.base import Context, StatementView, rule

# Languages whose code runs unconfined in the server process (C, internal: a
# shared library or any built-in under a new name) or with the server's OS
# rights (the "u" languages, untrusted by PostgreSQL's own definition).
_UNCONFINED = frozenset(
    {"c", "internal", "plpython3u", "plpythonu", "plpython2u", "plperlu", "pltclu", "plsh"}
)


# Native code: a C function's library is loaded (its initialisation run) when the
# function is created; internal renames a built-in past the rules that know it.
_NATIVE = frozenset({"c", "internal"})
_ROUTINE_HEADS = frozenset({"FUNCTION", "PROCEDURE", "LANGUAGE"})


def _languages(view: StatementView) -> list[str]:
    """The LANGUAGE names of a CREATE FUNCTION / PROCEDURE / LANGUAGE or DO, outside
    parentheses (``LANGUAGE c``, ``LANGUAGE 'C'``, ``LANGUAGE "plpython3u"``)."""
    tokens = view.raw.tokens
    if not tokens or tokens[0].text.upper() not in ("CREATE", "DO"):
        return []
    if word_text(tokens[0]) == "CREATE" and not _ROUTINE_HEADS.intersection(
        t.text.upper() for t in tokens[:5]
    ):
        # Asked of every CREATE: answered from its first tokens before building its
        # words (a word's text is its token's, upper-cased or quoted: never more matches).
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
        server, already when the function is created; LANGUAGE internal exposes
        any built-in under a new name (a pg_read_file the escape-hatch rules do
        not recognise); plpython3u, plperlu and the other untrusted languages
        run with the server's OS rights: they open files and sockets and run
        programs. None of that is bound by grants, row-level security or the
        gateway. Reported: C and internal functions when defined, a DO block in
        an untrusted language (it runs at once), and CREATE LANGUAGE. A function
        defined in an untrusted language runs nothing until called, and its call
        is unanalysable (SO010). Denied by default.
    """,
    safer="""
        Write the function in SQL or PL/pgSQL; if native code is really needed,
        have the operators install it as a reviewed extension.
    """,
    triggers=[
        "CREATE FUNCTION rd(text) RETURNS text LANGUAGE internal AS 'pg_read_file_off_len'",
        "CREATE FUNCTION evil() RETURNS void LANGUAGE c AS '/tmp/evil.so', 'evil'",
        "DO LANGUAGE plperlu $$ system('id') $$",
        "DO $$ import os $$ LANGUAGE plpython3u",
        "CREATE LANGUAGE plpython3u",
    ],
    passes=[
        "CREATE FUNCTION f() RETURNS int LANGUAGE sql AS $$ SELECT 1 $$",
        "CREATE FUNCTION g() RETURNS int LANGUAGE plpgsql AS $$ BEGIN RETURN 1; END $$",
        "DO $$ BEGIN RAISE NOTICE 'LANGUAGE c'; END $$",
        "CREATE TABLE languages (language text)",
        "CREATE FUNCTION sh(cmd text) RETURNS text LANGUAGE plpython3u"
        " AS $$ import os; return os.popen(cmd).read() $$",
    ],
)
def unconfined_language(view: StatementView, context: Context) -> Iterator[str]:
    languages = _languages(view)  # (none for a statement without tokens)
    tokens = view.raw.tokens
    routine = bool(languages) and (
        tokens[0].text.upper() == "CREATE"
        and not any(t.text.upper() == "LANGUAGE" for t in tokens[1:4])
    )
    for language in languages:
        name = language.strip('"')
        if name not in _UNCONFINED:
            continue
        if routine and name not in _NATIVE:
            # Defining a function in an untrusted language runs nothing; its call is
            # unanalysable (SO010) and needs a reviewer there.
            continue
        yield f"runs code in language {language}: outside what the database can confine"
        return
