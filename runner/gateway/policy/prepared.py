"""Statements that hold another statement for later: SQL-level prepared statements
(``PREPARE name [(types)] AS stmt``, ``EXECUTE name [(args)]``, ``DEALLOCATE
[PREPARE] name | ALL``: what pg_dump sends) and cursors (``DECLARE name ... CURSOR
... FOR query``, then ``FETCH``/``MOVE``/``CLOSE``: psycopg's server-side cursors).

A cursor's query is fixed at its DECLARE and only read by FETCH and MOVE: the
DECLARE is forwarded when that query is allowed as it stands (no grant), and
FETCH/MOVE/CLOSE of a cursor the gateway forwarded are allowed.

The statement a PREPARE holds runs later, at each EXECUTE, against whatever the
catalog is then. So the gateway keeps, per session, the text each name was prepared
with; a PREPARE is forwarded only when that text is allowed as it stands (no grant:
a grant covers one run, and the run is the EXECUTE), and each EXECUTE is decided
again, as that text, at the moment it runs. An EXECUTE of a name the gateway did not
forward is left to the analysis, which cannot read it: it needs approval.

A statement sent with parameters (``$1``) through the extended protocol that is
refused as written may be allowed with the values bound to it (``SELECT
set_config($1, $2, false)`` setting application_name): it is decided again at each
Bind, on ``bound_text``, the text with each value in place as a literal, for the
analysis only (the server runs the statement as sent, with its parameters).

Statements are read from their tokens (names and their spans), never by matching
the text.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass

from sqlglot.tokenizer_core import Token, TokenType

from runner.plan.statements import RawStatement, split_statements

_NAME_TYPES = (TokenType.VAR, TokenType.IDENTIFIER)


@dataclass(frozen=True)
class Prepare:
    name: str
    text: str  # the statement it prepares, as written


@dataclass(frozen=True)
class Execute:
    name: str


@dataclass(frozen=True)
class Deallocate:
    name: str | None  # None: ALL


@dataclass(frozen=True)
class Declare:
    name: str
    text: str  # the cursor's query, as written


@dataclass(frozen=True)
class Fetch:
    name: str  # FETCH or MOVE of this cursor


@dataclass(frozen=True)
class CloseCursor:
    name: str | None  # None: ALL


Held = Prepare | Execute | Deallocate | Declare | Fetch | CloseCursor

_CURSOR_OPTIONS = frozenset({"BINARY", "ASENSITIVE", "INSENSITIVE", "NO", "SCROLL"})
_HOLD_OPTIONS = frozenset({"WITH", "WITHOUT", "HOLD"})
_DIRECTIONS = frozenset(
    {"NEXT", "PRIOR", "FIRST", "LAST", "ABSOLUTE", "RELATIVE", "ALL", "FORWARD", "BACKWARD"}
)


def _name(token: Token) -> str | None:
    if token.token_type not in _NAME_TYPES:
        return None
    # PostgreSQL folds an unquoted name to lower case; a quoted one is kept.
    return token.text if token.token_type is TokenType.IDENTIFIER else token.text.lower()


def _skip_parens(tokens: tuple[Token, ...], i: int) -> int | None:
    """The index after a balanced ( ... ) starting at ``i`` (``i`` when none)."""
    if i >= len(tokens) or tokens[i].token_type is not TokenType.L_PAREN:
        return i
    depth = 0
    for j in range(i, len(tokens)):
        kind = tokens[j].token_type
        if kind is TokenType.L_PAREN:
            depth += 1
        elif kind is TokenType.R_PAREN:
            depth -= 1
            if depth == 0:
                return j + 1
    return None


def _cursor(tokens: tuple[Token, ...], raw: RawStatement) -> Held | None:
    verb = tokens[0].text.upper()
    if verb == "DECLARE":
        name = _name(tokens[1])
        words = [t.text.upper() for t in tokens]
        if name is None or "CURSOR" not in words or "FOR" not in words:
            return None
        cursor, for_at = words.index("CURSOR"), words.index("FOR")
        if not (
            set(words[2:cursor]) <= _CURSOR_OPTIONS
            and cursor < for_at < len(tokens) - 1
            and set(words[cursor + 1 : for_at]) <= _HOLD_OPTIONS
        ):
            return None
        start = tokens[for_at + 1].start
        return Declare(name, raw.source_text[start : tokens[-1].end + 1])
    if verb in ("FETCH", "MOVE"):
        name = _name(tokens[-1])
        middle = tokens[1:-1]
        if name is None:
            return None
        for token in middle:
            word = token.text.upper()
            if not (
                word in _DIRECTIONS
                or word in ("FROM", "IN")
                or token.token_type in (TokenType.NUMBER, TokenType.DASH, TokenType.PLUS)
            ):
                return None
        return Fetch(name)
    if verb == "CLOSE" and len(tokens) == 2:
        if tokens[1].text.upper() == "ALL":
            return CloseCursor(None)
        name = _name(tokens[1])
        return CloseCursor(name) if name is not None else None
    return None


_VERBS = frozenset({"PREPARE", "EXECUTE", "DEALLOCATE", "DECLARE", "FETCH", "MOVE", "CLOSE"})


def read(raw: RawStatement) -> Held | None:
    """What ``raw`` is, when it holds or uses a held statement; None otherwise (the
    decision path asks this of every statement it analyses: the first word decides
    before anything is copied)."""
    if not raw.tokens or raw.tokens[0].text.upper() not in _VERBS:
        return None
    tokens = tuple(t for t in raw.tokens if t.token_type is not TokenType.SEMICOLON)
    if len(tokens) < 2:
        return None
    cursor = _cursor(tokens, raw)
    if cursor is not None:
        return cursor
    verb = tokens[0].text.upper()
    name = _name(tokens[1])
    if verb == "PREPARE" and name is not None:
        at = _skip_parens(tokens, 2)
        if at is None or at + 1 >= len(tokens) or tokens[at].text.upper() != "AS":
            return None
        start = tokens[at + 1].start
        text = raw.source_text[start : tokens[-1].end + 1]
        return Prepare(name, text)
    if verb == "EXECUTE" and name is not None:
        end = _skip_parens(tokens, 2)
        return Execute(name) if end == len(tokens) else None
    if verb == "DEALLOCATE":
        rest = tokens[1:]
        if rest and rest[0].text.upper() == "PREPARE":
            rest = rest[1:]
        if len(rest) == 1 and rest[0].text.upper() == "ALL":
            return Deallocate(None)
        if len(rest) == 1 and _name(rest[0]) is not None:
            return Deallocate(_name(rest[0]))
    return None


# -- parameters ---------------------------------------------------------------------------


def _parameters(tokens: Sequence[Token]) -> list[tuple[int, int, int]]:
    """(start, end, number) of each ``$n`` in ``tokens`` (the tokenizer gives ``$``
    and the number as two tokens, side by side)."""
    found = []
    for first, second in itertools.pairwise(tokens):
        if (
            first.token_type is TokenType.PARAMETER
            and second.token_type is TokenType.NUMBER
            and second.start == first.end + 1
            and second.text.isdigit()
        ):
            found.append((first.start, second.end + 1, int(second.text)))
    return found


def has_parameters(raw: RawStatement) -> bool:
    return bool(_parameters(raw.tokens))


def bound_text(text: str, values: Sequence[str | None]) -> str | None:
    """``text`` with each ``$n`` replaced by the n-th value as a string literal (NULL
    for None), for the analysis to read what the statement does with them; None
    when a ``$n`` has no value (the server refuses that Bind anyway)."""
    spans = [span for raw in split_statements(text) for span in _parameters(raw.tokens)]
    pieces: list[str] = []
    at = 0
    for start, end, number in spans:
        if not 1 <= number <= len(values):
            return None
        value = values[number - 1]
        pieces.append(text[at:start])
        # A '...' literal as PostgreSQL reads it with standard_conforming_strings on
        # (the relay refuses everything once it is off): only the quote is doubled.
        pieces.append("NULL" if value is None else "'" + value.replace("'", "''") + "'")
        at = end
    pieces.append(text[at:])
    return "".join(pieces)
