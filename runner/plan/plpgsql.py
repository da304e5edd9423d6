"""Read the SQL statements inside a ``DO`` block, so they are judged like any other.

A PL/pgSQL body is split on its tokens; block syntax (``DECLARE``, ``BEGIN``,
``IF ... THEN``, ``LOOP``, ``END IF``, ``EXCEPTION WHEN ... THEN``) is stripped;
what is left is either procedural (``RAISE``, assignments, ``RETURN``...) or an
SQL statement, which is returned for analysis. ``EXECUTE 'literal'`` is read as
SQL; ``EXECUTE`` of anything computed cannot be known before it runs and is
reported as unreadable, so the block fails closed.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from sqlglot.tokenizer_core import Token, TokenType

from runner.plan.statements import RawStatement, split_statements

_STRING_TYPES = frozenset({TokenType.STRING, TokenType.HEREDOC_STRING})

# Procedural statements that run no SQL of their own worth judging.
_PROCEDURAL = frozenset(
    {
        "RAISE",
        "RETURN",
        "NULL",
        "PERFORM",
        "GET",
        "EXIT",
        "CONTINUE",
        "ASSERT",
        "OPEN",
        "FETCH",
        "CLOSE",
        "MOVE",
    }
)
# Block openers stripped up to (and including) the word that ends their header.
_HEADERS = {
    "IF": "THEN",
    "ELSIF": "THEN",
    "ELSEIF": "THEN",
    "WHEN": "THEN",
    "WHILE": "LOOP",
    "FOR": "LOOP",
    "FOREACH": "LOOP",
    "CASE": None,
}


@dataclass
class DoBody:
    language: str
    statements: list[RawStatement] = field(default_factory=list)
    origins: list[str] = field(default_factory=list)  # "DO block" / "EXECUTE string", per statement
    unreadable: list[str] = field(default_factory=list)


def read_do(raw: RawStatement) -> DoBody:
    tokens = list(raw.tokens[1:])  # after DO
    language = "plpgsql"
    body: Token | None = None
    index = 0
    while index < len(tokens):
        token = tokens[index]
        if token.text.upper() == "LANGUAGE" and index + 1 < len(tokens):
            language = tokens[index + 1].text.lower()
            index += 2
            continue
        if token.token_type in _STRING_TYPES and body is None:
            body = token
        index += 1
    result = DoBody(language=language)
    if body is None:
        result.unreadable.append("DO block without a body")
        return result
    if language != "plpgsql":
        result.unreadable.append(f"DO block in language {language} cannot be read")
        return result
    first_line = _line_of(raw, body)
    _read_body(body.text, first_line, result, origin="DO block")
    return result


def _line_of(raw: RawStatement, token: Token) -> int:
    text_start = raw.tokens[-1].end + 1 - len(raw.text)
    return raw.line + raw.text.count("\n", 0, max(0, token.start - text_start))


def _read_body(body: str, first_line: int, result: DoBody, *, origin: str) -> None:
    in_declare = False
    for chunk in split_statements(body, first_line=first_line):
        if chunk.token_error:
            result.unreadable.append(f"{origin} line {chunk.line}: {chunk.token_error}")
            continue
        tokens = list(chunk.tokens)
        tokens, in_declare = _strip_block_syntax(tokens, in_declare)
        if not tokens or in_declare:
            continue
        head = tokens[0].text.upper()
        if head in _PROCEDURAL or (len(tokens) > 1 and tokens[1].token_type is TokenType.COLON_EQ):
            continue
        if (
            len(tokens) > 1
            and tokens[1].token_type is TokenType.EQ
            and tokens[0].token_type is TokenType.VAR
        ):
            continue  # "x = expr" assignment
        if head == "EXECUTE":
            _read_execute(tokens, chunk, result)
            continue
        result.statements.append(_sub_statement(body, tokens, chunk))
        result.origins.append(origin)


def _strip_block_syntax(tokens: list[Token], in_declare: bool) -> tuple[list[Token], bool]:
    while tokens:
        word = tokens[0].text.upper()
        if tokens[0].token_type is TokenType.LT and len(tokens) > 4:  # <<label>>
            tokens = tokens[5:]
        elif word == "DECLARE":
            tokens, in_declare = tokens[1:], True
        elif word == "BEGIN":
            tokens, in_declare = tokens[1:], False
        elif word in ("ELSE", "LOOP", "EXCEPTION"):
            tokens = tokens[1:]
        elif word == "END":
            return [], in_declare
        elif word in _HEADERS:
            stop = _HEADERS[word]
            if stop is None:
                tokens = tokens[2:]
                continue
            end = _find_top_level(tokens, stop)
            if end is None:
                return [], in_declare
            tokens = tokens[end + 1 :]
        else:
            break
    return tokens, in_declare


def _find_top_level(tokens: Sequence[Token], word: str) -> int | None:
    depth = 0
    for index, token in enumerate(tokens):
        if token.token_type is TokenType.L_PAREN:
            depth += 1
        elif token.token_type is TokenType.R_PAREN:
            depth -= 1
        elif depth == 0 and token.text.upper() == word:
            return index
    return None


def _read_execute(tokens: list[Token], chunk: RawStatement, result: DoBody) -> None:
    # EXECUTE 'literal' [INTO ...] [USING ...]: the literal is the SQL that runs.
    literal = len(tokens) > 1 and tokens[1].token_type in _STRING_TYPES
    tail_ok = len(tokens) == 2 or tokens[2].text.upper() in ("INTO", "USING")
    if literal and tail_ok:
        _read_body(tokens[1].text, chunk.line, result, origin="EXECUTE string")
        return
    result.unreadable.append(
        f"line {chunk.line}: EXECUTE of a computed string (its SQL is only known when it runs)"
    )


def _sub_statement(body: str, tokens: list[Token], chunk: RawStatement) -> RawStatement:
    text = body[tokens[0].start : tokens[-1].end + 1]
    line = chunk.line + chunk.text.count("\n", 0, max(0, len(chunk.text) - len(text)))
    return RawStatement(
        text=text,
        line=line,
        end_line=line + text.count("\n"),
        tokens=tuple(tokens),
        comments=chunk.comments,
        source_text=body,
    )
