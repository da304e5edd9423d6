"""SO510: a SECURITY DEFINER function with no search_path of its own runs callers' objects."""

from __future__ import annotations

from collections.abc import Iterator

from sqlglot.tokenizer_core import TokenType

from runner.plan.commands import Word, words
from runner.plan.model import Category, Severity
from runner.plan.rules.base import Context, StatementView, rule


def _routine_words(view: StatementView) -> list[Word] | None:
    """The words of CREATE [OR REPLACE] FUNCTION/PROCEDURE or ALTER FUNCTION/PROCEDURE/
    ROUTINE, outside parentheses (bodies are string tokens, never read)."""
    tokens = view.raw.tokens
    if not tokens or tokens[0].text.upper() not in ("CREATE", "ALTER"):
        return None
    # Asked of every CREATE / ALTER: the routine's keyword is the 2nd or 4th word.
    heads = {t.text.upper() for t in tokens[1:4]}
    if not heads & {"FUNCTION", "PROCEDURE", "ROUTINE"}:
        return None
    ws = words(tokens)
    i = 1
    if ws[0].text == "CREATE" and [w.text for w in ws[1:3]] == ["OR", "REPLACE"]:
        i = 3
    if i >= len(ws) or ws[i].text not in ("FUNCTION", "PROCEDURE", "ROUTINE"):
        return None
    out, depth = [], 0
    for word in ws:
        kind = word.token.token_type
        if kind is TokenType.L_PAREN:
            depth += 1
        elif kind is TokenType.R_PAREN:
            depth -= 1
        elif depth == 0 and not word.is_string:
            out.append(word)
    return out


def _has(ws: list[str], *seq: str) -> bool:
    return any(ws[i : i + len(seq)] == list(seq) for i in range(len(ws)))


@rule(
    "SO510",
    "security-definer-without-search-path",
    Category.ACCESS_CONTROL,
    Severity.ERROR,
    summary="CREATE / ALTER FUNCTION ... SECURITY DEFINER with no SET search_path of its own.",
    rationale="""
        A SECURITY DEFINER function runs with its owner's rights, often the
        schema owner's or a superuser's. Without a search_path fixed on the
        function it resolves unqualified tables, functions and operators along
        the caller's search_path, so a caller who can create objects in any
        schema on that path (public, before PostgreSQL 15; pg_temp, always)
        plants a same-named function or table and has it run, or read, with
        the owner's rights: a privilege escalation PostgreSQL's documentation
        warns about. ALTER FUNCTION ... SECURITY DEFINER without SET search_path
        in the same statement is reported too (the analysis cannot see whether
        one is already set). List pg_temp last in the function's search_path.
    """,
    safer="""
        Fix the path on the function: 'CREATE FUNCTION ... SECURITY DEFINER SET
        search_path = ehr, pg_temp AS $$ ... $$;', and qualify names in the body.
    """,
    triggers=[
        "CREATE FUNCTION export_all() RETURNS void LANGUAGE sql SECURITY DEFINER AS $$ SELECT 1 $$",
        "CREATE OR REPLACE PROCEDURE purge() LANGUAGE plpgsql SECURITY DEFINER"
        " AS $$ BEGIN DELETE FROM sessions WHERE id = 1; END $$",
        "ALTER FUNCTION export_all() SECURITY DEFINER",
    ],
    passes=[
        "CREATE FUNCTION export_all() RETURNS void LANGUAGE sql SECURITY DEFINER"
        " SET search_path = ehr, pg_temp AS $$ SELECT 1 $$",
        "CREATE FUNCTION f() RETURNS int LANGUAGE sql SECURITY INVOKER AS $$ SELECT 1 $$",
        "CREATE FUNCTION f() RETURNS text LANGUAGE sql AS $$ SELECT 'SECURITY DEFINER' $$",
        "ALTER FUNCTION export_all() SECURITY DEFINER SET search_path = ehr, pg_temp",
    ],
)
def security_definer(view: StatementView, context: Context) -> Iterator[str]:
    found = _routine_words(view)
    if found is None:
        return
    # sqlglot's tokenizer joins some keyword pairs ("SQL SECURITY"): one word each.
    ws = [part for w in found for part in w.text.split()]
    if not _has(ws, "SECURITY", "DEFINER"):
        return
    if _has(ws, "SET", "SEARCH_PATH"):
        return
    at = 4 if found[1].text == "OR" else 2
    name = found[at].token.text if len(found) > at else "?"
    yield (
        f"SECURITY DEFINER routine {name} has no SET search_path: callers' objects on their "
        "search_path run with its owner's rights"
    )
