"""Split SQL text into statements, keeping each statement's original text and lines.

The split is done on sqlglot's PostgreSQL token stream, never on the raw text,
so semicolons inside strings, dollar-quoted bodies and comments cannot cut a
statement in two. The text of a statement is the source slice from the end of
the previous statement to its last token: leading comments (where an inline
``-- signoff: allow`` lives) are part of it and so part of its sha256, and the
terminating semicolon is not.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import ClassVar

from sqlglot.dialects.postgres import Postgres
from sqlglot.errors import TokenError
from sqlglot.tokenizer_core import Token, TokenType

from runner.plan.model import sha256_hex


class _PlainTokenizer(Postgres.Tokenizer):
    """PostgreSQL tokens with sqlglot's "command" mode off.

    sqlglot turns everything after ``DO``, ``VACUUM``, ``EXECUTE``... into one
    string token; the splitter and the token classifier need the real tokens.
    """

    COMMANDS: ClassVar[set[TokenType]] = set()


_TOKENIZER = _PlainTokenizer()

# Literal token types: replaced by "?" in the fingerprint so that the same
# statement with other values (or with $1 placeholders, as it arrives over the
# extended protocol) matches. Dollar-quoted bodies are *not* replaced: they are
# code (DO blocks, function bodies) and two different bodies must never share a
# fingerprint, or a grant for one would cover the other.
_LITERAL_TYPES = frozenset(
    {
        TokenType.STRING,
        TokenType.NUMBER,
        TokenType.NATIONAL_STRING,
        TokenType.BIT_STRING,
        TokenType.HEX_STRING,
        TokenType.BYTE_STRING,
        TokenType.RAW_STRING,
        TokenType.UNICODE_STRING,
        TokenType.PLACEHOLDER,
        TokenType.PARAMETER,
    }
)


@dataclass(frozen=True)
class Comment:
    text: str  # without the -- or /* */ markers, stripped
    line: int  # 1-based, in the source the statement came from
    # False for a comment after the terminating semicolon on the same line: it
    # reads as belonging to the statement but is not part of its text (or hash).
    in_text: bool = True


@dataclass(frozen=True)
class RawStatement:
    """A statement as it stands in the source, before any analysis."""

    text: str
    line: int  # 1-based line of the first character of ``text``
    end_line: int
    tokens: tuple[Token, ...]  # empty when the text could not be tokenized
    comments: tuple[Comment, ...]
    token_error: str | None = None
    # The text the tokens' offsets index into (the whole file); the parser reads
    # the tokens against it, so a statement is tokenized once, not twice.
    source_text: str = field(default="", compare=False, repr=False)

    # Computed once: the gateway reads both several times per statement.
    @functools.cached_property
    def sha256(self) -> str:
        return sha256_hex(self.text)

    @functools.cached_property
    def fingerprint(self) -> str:
        if not self.tokens:
            return sha256_hex("unreadable:" + self.text)
        return fingerprint(self.tokens)


def tokenize(sql: str) -> list[Token]:
    return list(_TOKENIZER.tokenize(sql))


def fingerprint(tokens: Sequence[Token]) -> str:
    """sha256 of the normalised token stream: keywords upper, literals as ``?``."""
    parts: list[str] = []
    previous: Token | None = None
    for token in tokens:
        # "$1" arrives as PARAMETER "$" + NUMBER "1": one placeholder, one "?".
        if (
            previous is not None
            and previous.token_type is TokenType.PARAMETER
            and token.token_type is TokenType.NUMBER
            and token.start == previous.end + 1
        ):
            previous = token
            continue
        parts.append(_normal_form(token))
        previous = token
    return sha256_hex(" ".join(parts))


def _normal_form(token: Token) -> str:
    kind = token.token_type
    if kind in _LITERAL_TYPES:
        return "?"
    if kind is TokenType.HEREDOC_STRING:
        return "$$" + token.text + "$$"
    if kind is TokenType.IDENTIFIER:  # quoted identifier: case matters
        return '"' + token.text + '"'
    if kind is TokenType.VAR:  # unquoted identifiers fold to lower case in PostgreSQL
        return token.text.lower()
    return token.text.upper()


def literal_shape(sql: str, tokens: Sequence[Token]) -> tuple[str, str | None]:
    """(mask, text) of ``sql`` tokenized as ``tokens``, in one pass.

    The mask is ``sql`` with each literal token (strings of every kind, numbers,
    parameters) replaced by ``?``, everything else (comments and spacing
    included) verbatim: two texts with the same mask differ only in their
    literals' values, so they have the same fingerprint (which also drops
    spacing and case), a finer key. The text is what ``split_statements(sql)``
    gives when ``sql`` is one statement, with or without its semicolon; None
    otherwise.
    """
    parts: list[str] = []
    position = 0
    semicolons = 0
    for token in tokens:
        kind = token.token_type
        if kind in _LITERAL_TYPES:
            parts.append(sql[position : token.start])
            parts.append("?")
            position = token.end + 1
        elif kind is TokenType.SEMICOLON:
            semicolons += 1
    parts.append(sql[position:])
    mask = "".join(parts)
    last = len(tokens) - 1
    if semicolons and tokens[last].token_type is TokenType.SEMICOLON:
        semicolons -= 1
        last -= 1
    if semicolons or last < 0:
        return mask, None
    start = len(sql) - len(sql.lstrip())
    return mask, sql[start : tokens[last].end + 1]


def split_statements(
    sql: str, *, first_line: int = 1, tokens: list[Token] | None = None
) -> list[RawStatement]:
    """Split ``sql`` into statements (``tokens``: its tokens, when already read).

    Text that cannot be tokenized (an unterminated string or comment) becomes one
    statement with no tokens, which the analysis reports as unanalysable: the
    split fails closed rather than guessing where statements end.
    """
    try:
        if tokens is None:
            tokens = tokenize(sql)
    except TokenError as error:
        text = sql.strip()
        if not text:
            return []
        start = sql.index(text)
        line = first_line + sql.count("\n", 0, start)
        return [
            RawStatement(
                text=text,
                line=line,
                end_line=line + text.count("\n"),
                tokens=(),
                comments=(),
                token_error=str(error).splitlines()[0],
            )
        ]

    lines = _LineCounter(sql, first_line)
    statements: list[RawStatement] = []
    current: list[Token] = []
    # Offset where the text of the next statement may begin (just after the
    # previous terminator), and comments waiting for the statement they lead.
    region_start = 0
    for token in tokens:
        if token.token_type is not TokenType.SEMICOLON:
            current.append(token)
            continue
        next_region = _after_trailing_comment(sql, token.end + 1)
        if current:
            statements.append(_make(sql, region_start, current, next_region, lines))
        current = []
        region_start = next_region
    if current:
        statements.append(_make(sql, region_start, current, len(sql), lines))
    return statements


class _LineCounter:
    """1-based line of an offset; offsets asked for only grow, so counting is linear."""

    def __init__(self, sql: str, first_line: int) -> None:
        self.sql = sql
        self.offset = 0
        self.line = first_line
        self.first_line = first_line

    def at(self, offset: int) -> int:
        if offset < self.offset:
            return self.first_line + self.sql.count("\n", 0, offset)
        self.line += self.sql.count("\n", self.offset, offset)
        self.offset = offset
        return self.line


def _make(
    sql: str, region_start: int, tokens: list[Token], region_end: int, lines: _LineCounter
) -> RawStatement:
    start = region_start
    while start < len(sql) and sql[start].isspace():
        start += 1
    end = tokens[-1].end + 1
    text = sql[start:end]
    line = lines.at(start)
    region = sql[start:region_end]
    comments = (
        tuple(
            Comment(body, lines.at(offset), in_text=offset < end)
            for offset, body in _comments(sql, start, region_end, tokens)
        )
        if "--" in region or "/*" in region  # most statements carry none
        else ()
    )
    return RawStatement(
        text=text,
        line=line,
        end_line=line + text.count("\n"),
        tokens=tuple(tokens),
        comments=comments,
        source_text=sql,
    )


def _after_trailing_comment(sql: str, offset: int) -> int:
    """A comment on the same line after a ``;`` belongs to the statement it ends."""
    index = offset
    while index < len(sql) and sql[index] in " \t":
        index += 1
    if sql.startswith("--", index):
        newline = sql.find("\n", index)
        return len(sql) if newline < 0 else newline + 1
    return offset


def _comments(sql: str, start: int, end: int, tokens: Sequence[Token]) -> list[tuple[int, str]]:
    """Comments in the gaps between tokens (the only places the tokenizer skipped)."""
    found: list[tuple[int, str]] = []
    position = start
    for token in [*tokens, None]:
        gap_end = end if token is None else token.start
        found.extend(_scan_gap(sql, position, gap_end))
        if token is not None:
            position = token.end + 1
    return found


def _scan_gap(sql: str, start: int, end: int) -> list[tuple[int, str]]:
    found: list[tuple[int, str]] = []
    index = start
    while index < end:
        if sql.startswith("--", index):
            newline = sql.find("\n", index, end)
            stop = end if newline < 0 else newline
            found.append((index, sql[index + 2 : stop].strip()))
            index = stop
        elif sql.startswith("/*", index):
            depth, cursor = 1, index + 2
            while cursor < end and depth:
                if sql.startswith("/*", cursor):
                    depth, cursor = depth + 1, cursor + 2
                elif sql.startswith("*/", cursor):
                    depth, cursor = depth - 1, cursor + 2
                else:
                    cursor += 1
            found.append((index, sql[index + 2 : cursor - 2].strip()))
            index = cursor
        else:
            index += 1
    return found
