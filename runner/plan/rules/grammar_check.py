"""SO007: PostgreSQL's own grammar reads the statement differently from the analysis."""

from __future__ import annotations

from collections.abc import Iterator

from runner.plan import grammar
from runner.plan.model import Category, Severity
from runner.plan.rules.base import Context, StatementView, rule


@rule(
    "SO007",
    "grammar-disagreement",
    Category.UNANALYSABLE,
    Severity.ERROR,
    summary="PostgreSQL's parser reads this text as other statements than the analysis did.",
    rationale="""
        The rules judge the statement as sqlglot read it, but the server runs it as
        PostgreSQL's own scanner and parser read it. Where the two disagree (a
        comment one of them sees and the other does not, a text PostgreSQL splits
        into two statements, a query that PostgreSQL parses as something else),
        the analysis describes a statement that is not the one that would run: a
        DROP hidden from the analysis by ``=|/*--*/`` would run unjudged. Every
        statement is read by both (pglast, the server's parser in C); a
        disagreement is never passed as safe.
    """,
    safer="""
        Write the statement so that both readings agree: put a space between an
        operator and a following comment (``= | /* ... */``), end each statement
        with its own semicolon, or have a reviewer approve it.
    """,
    triggers=[
        "SELECT 1 FROM t WHERE 1 =|/*--*/ 1; DROP TABLE t",
        "SELECT a1 =|/*--*/ 1 FROM t",
    ],
    passes=[
        "SELECT 'a' || 'b'",
        "SELECT 1 | /* a comment */ 4",
        "WITH gone AS (DELETE FROM t WHERE id = 1 RETURNING *) SELECT count(*) FROM gone",
        "SELECT $$ ; DROP TABLE t; $$",
    ],
)
def grammar_disagreement(view: StatementView, context: Context) -> Iterator[str]:
    if view.raw.token_error is not None or view.raw.meta_only or not view.raw.tokens:
        return
    reason = grammar.disagreement(view.raw.text, view.node)
    if reason is not None:
        yield reason
