"""Read what a ``DROP`` / ``TRUNCATE`` statement removes, from its tokens.

Shared by the destructive rules (SO101-SO110); it defines no rule itself.

sqlglot parses only some ``DROP`` forms (``DROP TYPE a, b``, ``DROP SEQUENCE
IF EXISTS s1, s2``, ``DROP DATABASE x WITH (FORCE)`` and ``DROP EXTENSION`` come
back as errors or opaque commands), so the object kind and the names are read
from the statement's tokens, which exist for every statement that tokenizes.
Tokens, not text: a ``DROP`` inside a string, a dollar-quoted body or a comment
is not a token of the statement and is never read.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from sqlglot.tokenizer_core import TokenType

from runner.plan.commands import Word, normalise_name, words
from runner.plan.rules.base import StatementView

# Object kinds of more than one word, longest first. The value is the kind as
# reported (``OWNED BY`` is reported as ``OWNED``).
_MULTI_WORD_KINDS: tuple[tuple[tuple[str, ...], str], ...] = (
    (("FOREIGN", "DATA", "WRAPPER"), "FOREIGN DATA WRAPPER"),
    (("TEXT", "SEARCH", "CONFIGURATION"), "TEXT SEARCH CONFIGURATION"),
    (("TEXT", "SEARCH", "DICTIONARY"), "TEXT SEARCH DICTIONARY"),
    (("TEXT", "SEARCH", "PARSER"), "TEXT SEARCH PARSER"),
    (("TEXT", "SEARCH", "TEMPLATE"), "TEXT SEARCH TEMPLATE"),
    (("PROCEDURAL", "LANGUAGE"), "LANGUAGE"),
    (("MATERIALIZED", "VIEW"), "MATERIALIZED VIEW"),
    (("FOREIGN", "TABLE"), "FOREIGN TABLE"),
    (("EVENT", "TRIGGER"), "EVENT TRIGGER"),
    (("ACCESS", "METHOD"), "ACCESS METHOD"),
    (("OPERATOR", "CLASS"), "OPERATOR CLASS"),
    (("OPERATOR", "FAMILY"), "OPERATOR FAMILY"),
    (("USER", "MAPPING"), "USER MAPPING"),
    (("OWNED", "BY"), "OWNED"),
)

# Words that end the list of dropped names.
_NAME_LIST_END = frozenset({"CASCADE", "RESTRICT", "WITH", "ON", "FOR", "RESTART", "CONTINUE"})


@dataclass(frozen=True)
class Dropped:
    """What one ``DROP`` statement removes.

    ``kind`` is the object kind upper-cased (``TABLE``, ``MATERIALIZED VIEW``,
    ``OWNED``...); ``names`` the objects (roles for ``DROP OWNED``) as
    PostgreSQL folds them: ``public."Users"``, ``archive``.
    """

    kind: str
    names: tuple[str, ...]
    cascade: bool
    if_exists: bool
    force: bool = False  # DROP DATABASE ... WITH (FORCE)


# The last statement read, and what it drops: every drop rule asks about the same
# statement in turn, so one entry saves reading its tokens again for each. (One
# tuple, read and replaced whole, so concurrent analyses cannot mix two entries.)
_last: tuple[StatementView, Dropped | None] | None = None


def read_drop(view: StatementView) -> Dropped | None:
    """The object a ``DROP`` statement removes, or None for any other statement."""
    global _last
    kind = view.kind
    if kind is not None and not kind.startswith("drop"):
        return None
    last = _last
    if last is not None and last[0] is view:
        return last[1]
    dropped = _read_drop(view)
    _last = (view, dropped)
    return dropped


def _read_drop(view: StatementView) -> Dropped | None:
    tokens = view.raw.tokens
    if not tokens or tokens[0].token_type is not TokenType.DROP:
        return None
    ws = words(tokens)
    i = 1
    kind = ""
    for prefix, name in _MULTI_WORD_KINDS:
        if _texts(ws, i, len(prefix)) == list(prefix):
            kind, i = name, i + len(prefix)
            break
    else:
        if i < len(ws):
            kind, i = ws[i].text, i + 1
    if i < len(ws) and ws[i].text == "CONCURRENTLY":
        i += 1
    if_exists = _texts(ws, i, 2) == ["IF", "EXISTS"]
    if if_exists:
        i += 2
    start = i
    names, i = read_names(ws, i)
    rest = {w.text for w in _top_level(ws[i:]) if not _quoted(w)}
    # DROP DATABASE name [WITH] (FORCE): the option list reads like an argument list.
    options = {w.text for w in ws[start + 1 :] if not _quoted(w)}
    return Dropped(
        kind=kind,
        names=tuple(names),
        cascade="CASCADE" in rest,
        if_exists=if_exists,
        force=kind == "DATABASE" and "FORCE" in options,
    )


def read_names(ws: Sequence[Word], i: int) -> tuple[list[str], int]:
    """A comma-separated list of possibly qualified names from ``ws[i]`` on.

    An argument list after a name (``DROP FUNCTION f(int)``) and a ``*`` after a
    table name (``TRUNCATE t *``) are skipped; ``ONLY`` before a name is skipped.
    Returns the names and the index after the list.
    """
    names: list[str] = []
    while i < len(ws):
        if ws[i].text == "ONLY" and i + 1 < len(ws) and ws[i + 1].is_name:
            i += 1
        parts: list[Word] = []
        while (
            i < len(ws)
            and ws[i].is_name
            and not (not parts and ws[i].text in _NAME_LIST_END and not _quoted(ws[i]))
        ):
            parts.append(ws[i])
            i += 1
            if i < len(ws) and ws[i].token.token_type is TokenType.DOT:
                i += 1
                continue
            break
        if not parts:
            break
        names.append(normalise_name(parts))
        if i < len(ws) and ws[i].token.token_type is TokenType.L_PAREN:
            i = _skip_parens(ws, i)
        if i < len(ws) and ws[i].text == "*":
            i += 1
        if i < len(ws) and ws[i].token.token_type is TokenType.COMMA:
            i += 1
            continue
        break
    return names, i


def _texts(ws: Sequence[Word], i: int, n: int) -> list[str]:
    return [w.text for w in ws[i : i + n]]


def _quoted(word: Word) -> bool:
    return word.token.token_type is TokenType.IDENTIFIER


def _skip_parens(ws: Sequence[Word], i: int) -> int:
    depth = 0
    while i < len(ws):
        kind = ws[i].token.token_type
        depth += kind is TokenType.L_PAREN
        depth -= kind is TokenType.R_PAREN
        i += 1
        if depth == 0:
            break
    return i


def _top_level(ws: Sequence[Word]) -> list[Word]:
    out: list[Word] = []
    depth = 0
    for word in ws:
        kind = word.token.token_type
        if kind is TokenType.L_PAREN:
            depth += 1
        elif kind is TokenType.R_PAREN:
            depth -= 1
        elif depth == 0:
            out.append(word)
    return out
