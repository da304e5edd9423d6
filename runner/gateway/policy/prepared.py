"""SQL-level prepared statements: ``PREPARE name [(types)] AS stmt``, ``EXECUTE name
[(args)]`` and ``DEALLOCATE [PREPARE] name | ALL`` (what pg_dump sends, and any
client may).

The statement a PREPARE holds runs later, at each EXECUTE, against whatever the
catalog is then. So the gateway keeps, per session, the text each name was prepared
with; a PREPARE is forwarded only when that text is allowed as it stands (no grant:
a grant covers one run, and the run is the EXECUTE), and each EXECUTE is decided
again, as that text, at the moment it runs. An EXECUTE of a name the gateway did not
forward is left to the analysis, which cannot read it: it needs approval.

Statements are read from their tokens (names and their spans), never by matching
the text.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlglot.tokenizer_core import Token, TokenType

from runner.plan.statements import RawStatement

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


def read(raw: RawStatement) -> Prepare | Execute | Deallocate | None:
    """What ``raw`` is, when it is one of the three; None otherwise."""
    tokens = tuple(t for t in raw.tokens if t.token_type is not TokenType.SEMICOLON)
    if len(tokens) < 2:
        return None
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
