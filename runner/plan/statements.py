"""Split SQL text into statements, keeping each statement's original text and lines.

The split is done on sqlglot's PostgreSQL token stream, never on the raw text,
so semicolons inside strings, dollar-quoted bodies and comments cannot cut a
statement in two. The text of a statement is the source slice from the end of
the previous statement to its last token: leading comments (where an inline
``-- signoff: allow`` lives) are part of it and so part of its sha256, and the
terminating semicolon is not.

A file given to ``signoff lint`` is a psql script: psql runs a line that starts
with a backslash (outside a statement's strings, quoted names, dollar quotes and
comments) as a meta-command of its own, up to the end of the line or a ``\\``.
With ``psql_script=True`` such lines are not SQL: they are kept on the
statement next to them (``RawStatement.meta_commands``) for the analysis to
report, and the statements around them are split as psql would send them.
What a driver sends (the gateway, alembic's offline SQL) never has any, so
there a backslash stays what the server sees: a syntax error. In a script, the
lines after a ``COPY ... FROM STDIN;`` up to a line ``\\.`` (pg_dump's table data)
are data psql sends to that COPY: they are skipped, neither SQL nor meta-commands.
"""

from __future__ import annotations

import functools
import itertools
import re
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import ClassVar, NamedTuple

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
class MetaCommand:
    """A psql meta-command line: psql runs it itself, the server never sees it."""

    name: str  # "\\set", as written (psql names are case-sensitive: \\C is not \\c)
    text: str  # the meta-command up to the end of its line or a ``\\``
    line: int
    # It came before the statement it is attached to had ended: psql sends that
    # statement (the \\g family) or goes on reading it after the line (any other).
    inside_statement: bool = False


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
    # psql meta-commands next to this statement: the ones before it (since the
    # previous statement), the one that ended it, or, for the last statement of
    # a script, the ones after it. A script of meta-commands alone is one
    # statement with no tokens whose text is those lines (``meta_only``).
    meta_commands: tuple[MetaCommand, ...] = ()
    meta_only: bool = False

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
    # One loop, the normal form inline (each statement's fingerprint, in the gateway
    # and in lint's JSON: a call per token was a third of it).
    parts: list[str] = []
    append = parts.append
    literals = _LITERAL_TYPES
    previous_kind: TokenType | None = None
    previous_end = -2
    for token in tokens:
        kind = token.token_type
        # "$1" arrives as PARAMETER "$" + NUMBER "1": one placeholder, one "?".
        if (
            kind is TokenType.NUMBER
            and previous_kind is TokenType.PARAMETER
            and token.start == previous_end + 1
        ):
            previous_kind, previous_end = kind, token.end
            continue
        if kind in literals:
            append("?")
        elif kind is TokenType.HEREDOC_STRING:
            append("$$" + token.text + "$$")
        elif kind is TokenType.IDENTIFIER:  # quoted identifier: case matters
            append('"' + token.text + '"')
        elif kind is TokenType.VAR:  # unquoted identifiers fold to lower case in PostgreSQL
            append(token.text.lower())
        else:
            append(token.text.upper())
        previous_kind, previous_end = kind, token.end
    return sha256_hex(" ".join(parts))


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
    sql: str,
    *,
    first_line: int = 1,
    tokens: list[Token] | None = None,
    psql_script: bool = False,
) -> list[RawStatement]:
    """Split ``sql`` into statements (``tokens``: its tokens, when already read).

    Text that cannot be tokenized (an unterminated string or comment) fails
    closed rather than guessing where statements end: without ``psql_script``
    it becomes one statement with no tokens, which the analysis reports as
    unanalysable; in a psql script the statements before the unreadable part
    are split as usual (see ``split_untokenizable``) and the rest is that one
    statement.
    """
    if tokens is not None:
        statements, trailing = assemble(sql, tokens, [], first_line, len(sql))
        return with_trailing(statements, trailing, first_line)
    try:
        tokens, metas = scan(sql, psql_script=psql_script)
    except TokenError as error:
        if psql_script:
            statements, trailing = split_untokenizable(sql, first_line)
            return with_trailing(statements, trailing, first_line)
        unreadable = _unreadable(sql, 0, first_line, error)
        return [unreadable] if unreadable is not None else []
    statements, trailing = assemble(sql, tokens, metas, first_line, len(sql))
    return with_trailing(statements, trailing, first_line)


def _unreadable(sql: str, start: int, first_line: int, error: TokenError) -> RawStatement | None:
    text = sql[start:].strip()
    if not text:
        return None
    begin = sql.index(text, start)
    line = first_line + sql.count("\n", 0, begin)
    return RawStatement(
        text=text,
        line=line,
        end_line=line + text.count("\n"),
        tokens=(),
        comments=(),
        token_error=str(error).splitlines()[0] if str(error) else "cannot be tokenized",
    )


# A line that starts (after blanks) with a backslash: a psql meta-command, unless
# it lies inside a string, a quoted name, a dollar quote or a block comment; or
# one that starts with COPY: perhaps a COPY ... FROM STDIN, data lines after it.
# Candidates only: each is confirmed by the tokens of the text before it.
_META_LINE = re.compile(r"^[ \t]*(?:\\|(?i:copy)\b)", re.MULTILINE)
_META_NAME = re.compile(r"\\(?:[A-Za-z_]+[+]?|[^\sA-Za-z_])")
# A COPY statement longer than this many lines is not looked at for FROM STDIN
# (its lines are then read as SQL): it bounds the retokenizing of its prefix.
_COPY_LINES_MAX = 64


class Span(NamedTuple):
    """What in a psql script is not SQL: a meta-command, or COPY data (its lines
    through the ``\\.`` line; ``closed`` False when the text ends before one)."""

    start: int
    end: int
    data: bool = False
    closed: bool = True


def scan(sql: str, *, psql_script: bool) -> tuple[list[Token], list[Span]]:
    """The tokens of ``sql`` and the spans of its psql meta-commands and COPY data.

    Each candidate line is confirmed by tokenizing the text before it: that
    fails exactly when the line is inside something still open. Raises
    TokenError when the text (meta-commands and data aside) cannot be tokenized.
    """
    if not psql_script or _META_LINE.search(sql) is None:
        return tokenize(sql), []
    tokens: list[Token] = []
    metas: list[Span] = []
    position = 0
    for candidate in _META_LINE.finditer(sql):
        at = candidate.end() - 1
        if at < position:
            continue
        if sql[at] != "\\":  # a line starting with COPY
            at = candidate.end() - 4
            copy = _copy_from_stdin(sql, position, at)
            if copy is None:
                continue  # not one: read as SQL with the text around it
            part, data = copy
            tokens.extend(part)
            metas.append(data)
            position = data.end
            continue
        try:
            part = tokenize(sql[position:at])
        except TokenError:
            continue  # inside a string or comment: psql reads it as part of that
        tokens.extend(_shifted(part, position))
        newline = sql.find("\n", at)
        line_end = len(sql) if newline < 0 else newline
        separator = sql.find("\\\\", at + 1, line_end)  # `\\` ends it early
        end = line_end if separator < 0 else separator + 2
        metas.append(Span(at, end))
        position = end
        if (
            end < len(sql)
            and sql.startswith("\\copy", at)
            and _from_stdin(sql[at:end].upper().split())
        ):
            # psql reads \\copy's rows from the script too, up to a `\\.` line
            data_end, closed = copy_data_end(sql, end + 1, at_end=True)
            metas.append(Span(end + 1, data_end, data=True, closed=closed))
            position = data_end
    tokens.extend(_shifted(tokenize(sql[position:]), position))
    return tokens, metas


def _copy_from_stdin(sql: str, position: int, at: int) -> tuple[list[Token], Span] | None:
    """When a ``COPY ... FROM STDIN`` statement starts at ``at`` (a statement of its
    own, not inside a string or another statement): the tokens from ``position``
    through its line, and the span of its data after it. Else None."""
    try:
        before = tokenize(sql[position:at])
    except TokenError:
        return None
    if before and before[-1].token_type is not TokenType.SEMICOLON:
        return None  # COPY as a word inside a statement
    end = at
    for _ in range(_COPY_LINES_MAX):
        newline = sql.find("\n", end)
        if newline < 0:
            return None  # no data can follow on a line of its own
        end = newline + 1
        try:
            statement = tokenize(sql[at:end])
        except TokenError:
            continue  # a string or comment still open: the statement goes on
        semicolon = next(
            (i for i, t in enumerate(statement) if t.token_type is TokenType.SEMICOLON), None
        )
        if semicolon is None:
            continue
        words = [t.text.upper() for t in statement[:semicolon]]
        if not _from_stdin(words):
            return None
        data_end, closed = copy_data_end(sql, end, at_end=True)
        return (
            _shifted(before, position) + _shifted(statement, at),
            Span(end, data_end, data=True, closed=closed),
        )
    return None


def _from_stdin(words: Sequence[str]) -> bool:
    return any(a == "FROM" and b == "STDIN" for a, b in itertools.pairwise(words))


def copy_data_end(sql: str, start: int, *, at_end: bool) -> tuple[int, bool]:
    """Where COPY data starting at ``start`` ends: just after its ``\\.`` line, and
    True; else, with ``at_end`` (nothing follows ``sql``), the end of ``sql``,
    otherwise the end of its last whole line, and False."""
    index = start
    while True:
        index = sql.find("\\.", index)
        if index < 0:
            break
        after = index + 2
        at_line_start = index == start or sql[index - 1] == "\n"
        if at_line_start and (after == len(sql) or sql.startswith(("\n", "\r\n"), after)):
            newline = sql.find("\n", after)
            if newline >= 0:
                return newline + 1, True
            if at_end:
                return len(sql), True
            break  # `\\.` ends what has been read: its line may go on
        index = after
    if at_end:
        return len(sql), False
    return max(start, sql.rfind("\n", start) + 1), False


def _shifted(tokens: list[Token], offset: int) -> list[Token]:
    if offset:
        for token in tokens:
            token.start += offset
            token.end += offset
    return tokens


def _meta_command(sql: str, span: Span, line: int, inside: bool) -> MetaCommand:
    start, end = span.start, span.end
    text = sql[start:end].rstrip()
    match = _META_NAME.match(text)
    return MetaCommand(match.group(0) if match else "\\", text, line, inside)


def assemble(
    sql: str,
    tokens: Sequence[Token],
    metas: Sequence[Span],
    first_line: int,
    end: int,
) -> tuple[list[RawStatement], list[MetaCommand]]:
    """The statements of ``sql[:end]`` from its tokens and meta-command spans, and
    the meta-commands after its last statement (the caller decides where they go)."""
    lines = _LineCounter(sql, first_line)
    statements: list[RawStatement] = []
    current: list[Token] = []
    pending: list[MetaCommand] = []  # meta-commands waiting for the next statement
    next_meta = 0
    # Offset where the text of the next statement may begin (just after the
    # previous terminator), and comments waiting for the statement they lead.
    region_start = 0
    # Offset of the next meta-command (past the end when none: the common case
    # costs one comparison per token).
    meta_at = metas[0][0] if metas else len(sql) + 1
    for token in tokens:
        while meta_at < token.start:
            span = metas[next_meta]
            next_meta += 1
            meta_at = metas[next_meta][0] if next_meta < len(metas) else len(sql) + 1
            if span.data:  # COPY data: after its statement's `;`, no statement open
                region_start = span.end
                continue
            meta = _meta_command(sql, span, lines.at(span[0]), bool(current))
            if current:  # it ends the statement psql had been reading
                statements.append(
                    _make(sql, region_start, current, span[0], lines, (*pending, meta))
                )
                current, pending = [], []
            else:
                pending.append(meta)
            region_start = span[1]
        if token.token_type is not TokenType.SEMICOLON:
            current.append(token)
            continue
        next_region = _after_trailing_comment(sql, token.end + 1)
        if current:
            statements.append(_make(sql, region_start, current, next_region, lines, pending))
            pending = []
        current = []
        region_start = next_region
    for span in metas[next_meta:]:
        if span.data:
            region_start = span.end
            continue
        meta = _meta_command(sql, span, lines.at(span[0]), bool(current))
        if current:
            statements.append(_make(sql, region_start, current, span[0], lines, (*pending, meta)))
            current, pending = [], []
        else:
            pending.append(meta)
        region_start = span[1]
    if current:
        statements.append(_make(sql, region_start, current, end, lines, pending))
        pending = []
    return statements, pending


def with_trailing(
    statements: list[RawStatement], trailing: Sequence[MetaCommand], first_line: int
) -> list[RawStatement]:
    """Meta-commands after the last statement go on it; alone, they are a statement."""
    if not trailing:
        return statements
    if statements:
        last = statements[-1]
        statements[-1] = replace(last, meta_commands=(*last.meta_commands, *trailing))
        return statements
    return [meta_only(trailing)]


def meta_only(metas: Sequence[MetaCommand]) -> RawStatement:
    text = "\n".join(m.text for m in metas)
    return RawStatement(
        text=text,
        line=metas[0].line,
        end_line=metas[-1].line,
        tokens=(),
        comments=(),
        meta_commands=tuple(metas),
        meta_only=True,
    )


def clean_cut(sql: str, tokens: Sequence[Token]) -> int:
    """The last offset where ``sql`` (tokenized as ``tokens``) can be cut between
    statements: the end of a line whose last token is a ``;`` (a line comment may
    follow it). 0 when there is none.

    The statements before such a cut are the same whether the text after it is
    split with them or on its own, so lint can split a file piece by piece.
    """
    # A meta-command starts a line of its own, so none lies between a ``;`` and the
    # end of its line; those before or after the cut are split with their side.
    for index in range(len(tokens) - 1, -1, -1):
        token = tokens[index]
        if token.token_type is not TokenType.SEMICOLON:
            continue
        newline = sql.find("\n", token.end + 1)
        if newline < 0:
            return 0  # the line goes on past what has been read
        rest = sql[token.end + 1 : newline].strip()
        if (not rest or rest.startswith("--")) and (
            index + 1 == len(tokens) or tokens[index + 1].start > newline
        ):
            return newline + 1
    return 0


def split_untokenizable(sql: str, first_line: int) -> tuple[list[RawStatement], list[MetaCommand]]:
    """A psql script that cannot be tokenized as a whole: from the start, each time
    the text up to the end of a line ending in ``;`` can be, that piece is split
    as usual (the shortest such piece first, so the result does not depend on how
    the text was read); the rest is one statement that cannot be tokenized."""
    statements: list[RawStatement] = []
    start, line = 0, first_line
    for newline in _semicolon_line_ends(sql):
        if newline < start:
            continue
        piece = sql[start : newline + 1]
        try:
            tokens, metas = scan(piece, psql_script=True)
        except TokenError:
            continue
        if clean_cut(piece, tokens) != len(piece):
            continue
        found, _ = assemble(piece, tokens, metas, line, len(piece))
        statements.extend(found)
        start, line = newline + 1, line + piece.count("\n")
    try:
        tokens, metas = scan(sql[start:], psql_script=True)
    except TokenError as error:
        unreadable = _unreadable(sql[start:], 0, line, error)
        if unreadable is not None:
            statements.append(unreadable)
        return statements, []
    found, trailing = assemble(sql[start:], tokens, metas, line, len(sql) - start)
    return statements + found, trailing


def _semicolon_line_ends(sql: str) -> list[int]:
    return [m.end() - 1 for m in re.finditer(r";[^\n]*\n", sql)]


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
    sql: str,
    region_start: int,
    tokens: list[Token],
    region_end: int,
    lines: _LineCounter,
    metas: Sequence[MetaCommand] = (),
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
        meta_commands=tuple(metas),
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
    # Jumps from one comment opener to the next (str.find), not a character at a time.
    found: list[tuple[int, str]] = []
    index = start
    while index < end:
        dash = sql.find("--", index, end)
        slash = sql.find("/*", index, end)
        if dash < 0 and slash < 0:
            break
        if slash < 0 or 0 <= dash < slash:
            newline = sql.find("\n", dash, end)
            stop = end if newline < 0 else newline
            found.append((dash, sql[dash + 2 : stop].strip()))
            index = stop
            continue
        depth, cursor = 1, slash + 2
        while cursor < end and depth:
            opening = sql.find("/*", cursor, end)
            closing = sql.find("*/", cursor, end)
            if closing < 0:
                cursor = end
                break
            if 0 <= opening < closing:
                depth, cursor = depth + 1, opening + 2
            else:
                depth, cursor = depth - 1, closing + 2
        found.append((slash, sql[slash + 2 : cursor - 2].strip()))
        index = cursor
    return found
