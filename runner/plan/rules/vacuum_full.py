"""SO212: VACUUM FULL rewrites each table under ACCESS EXCLUSIVE."""

from __future__ import annotations

from collections.abc import Iterator, Sequence

from sqlglot.tokenizer_core import TokenType

from runner.plan.commands import Word, normalise_name, words
from runner.plan.model import Category, Severity
from runner.plan.rules._locks import is_new
from runner.plan.rules.base import Context, StatementView, rule

_LEGACY_OPTIONS = frozenset({"FULL", "FREEZE", "VERBOSE", "ANALYZE", "ANALYSE"})
_OFF = frozenset({"FALSE", "OFF", "0"})


def vacuum_full_tables(tokens: Sequence[Word]) -> tuple[bool, list[str]]:
    """(whether FULL is on, the tables named) for a VACUUM statement's words."""
    i, full = 1, False
    if i < len(tokens) and tokens[i].token.token_type is TokenType.L_PAREN:
        i += 1
        while i < len(tokens) and tokens[i].token.token_type is not TokenType.R_PAREN:
            if tokens[i].text == "FULL":
                following = tokens[i + 1].text if i + 1 < len(tokens) else ""
                full = following not in _OFF
            i += 1
        i += 1
    else:
        while i < len(tokens) and tokens[i].text in _LEGACY_OPTIONS:
            full = full or tokens[i].text == "FULL"
            i += 1
    tables: list[str] = []
    parts: list[Word] = []
    depth = 0
    for word in tokens[i:]:
        kind = word.token.token_type
        if kind is TokenType.L_PAREN:
            depth += 1
        elif kind is TokenType.R_PAREN:
            depth -= 1
        elif depth == 0 and kind is TokenType.COMMA:
            if parts:
                tables.append(normalise_name(parts))
            parts = []
        elif depth == 0 and word.is_name:
            parts.append(word)
    if parts:
        tables.append(normalise_name(parts))
    return full, tables


_KINDS = frozenset({"vacuum"})


@rule(
    "SO212",
    "vacuum-full",
    Category.LOCKING,
    Severity.WARNING,
    summary="VACUUM FULL rewrites the table while blocking reads and writes.",
    rationale="""
        VACUUM FULL copies the whole table into a new file and rebuilds its
        indexes, holding ACCESS EXCLUSIVE for all of it: every read and write of
        the table waits, for minutes to hours on a large table, and the copy
        needs as much free disk again. Without a table name it does this to every
        table of the database in turn. A plain VACUUM (without FULL) reclaims
        space for reuse without blocking reads or writes; pg_repack or
        pg_squeeze shrink a table online. Tables created earlier in the plan
        are not reported.
    """,
    safer="""
        VACUUM (ANALYZE) t; for routine cleanup, or pg_repack --table t to give
        space back to the operating system without a long lock.
    """,
    triggers=[
        "VACUUM FULL orders",
        "vacuum (full, analyze) public.orders, events",
        "VACUUM FULL",
        "VACUUM (VERBOSE, FULL true) orders",
    ],
    passes=[
        "VACUUM ANALYZE orders",
        "VACUUM (FULL false) orders",
        "CREATE TABLE staging (id int);\nVACUUM FULL staging",
    ],
    kinds=_KINDS,
)
def vacuum_full(view: StatementView, context: Context) -> Iterator[str]:
    # Called only for the kinds above (the engine dispatches on kinds=).
    if view.kind != "vacuum" or view.shape is None or "full" not in view.shape.flags:
        return
    full, tables = vacuum_full_tables(words(view.raw.tokens))
    if not full:
        return
    if not tables:
        yield (
            "VACUUM FULL without a table rewrites every table of the database in turn, each "
            "under ACCESS EXCLUSIVE (blocks its reads and writes)"
        )
        return
    busy = [t for t in tables if not is_new(context, t)]
    if busy:
        yield (
            f"VACUUM FULL rewrites {', '.join(busy)} under ACCESS EXCLUSIVE (blocks reads "
            "and writes until the copy ends)"
        )
