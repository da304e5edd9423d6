"""Read the SQL inside a PL/pgSQL body (a DO block, a function, a procedure).

The body is parsed by PostgreSQL's own PL/pgSQL parser (``pglast.parse_plpgsql``,
a DO block wrapped as a function), so every statement it embeds is found: plain
SQL, ``PERFORM``, ``CALL``, the query of ``FOR r IN <query> LOOP``, a cursor's
``DECLARE c CURSOR FOR <query>`` and ``OPEN c FOR <query>``, ``RETURN QUERY``,
and the handlers of ``EXCEPTION`` blocks. ``EXECUTE 'literal'`` (and the dynamic
forms of FOR, OPEN and RETURN QUERY) is read as the SQL of its literal; dynamic
SQL of a computed string cannot be known before it runs and is reported, so the
body fails closed. Expressions (conditions, assignments, RAISE arguments...) run
no statement of their own but may call functions: they are returned as
``SELECT <expression>`` for the analysis to find those calls.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import pglast
from pglast.parser import ParseError
from sqlglot.errors import TokenError
from sqlglot.tokenizer_core import Token, TokenType

from runner.plan.statements import RawStatement, split_statements, tokenize

_STRING_TYPES = frozenset({TokenType.STRING, TokenType.HEREDOC_STRING})
EXECUTE_ORIGIN = "EXECUTE string"

# (statement, key) of the expressions whose value is SQL run as dynamic SQL.
_DYNAMIC = frozenset(
    {
        ("PLpgSQL_stmt_dynexecute", "query"),
        ("PLpgSQL_stmt_dynfors", "query"),
        ("PLpgSQL_stmt_open", "dynquery"),
        ("PLpgSQL_stmt_return_query", "dynquery"),
    }
)
# PLpgSQL_expr.parseMode: 0 a whole SQL statement; 2 an expression; 3-5 an
# assignment (``target := expression``).
_STATEMENT_MODE = 0
_ASSIGN_MODES = frozenset({3, 4, 5})


@dataclass(frozen=True)
class BodyStatement:
    """One SQL statement a body runs, or an expression it evaluates (``calls_only``)."""

    raw: RawStatement
    origin: str  # "" (the body itself), "EXECUTE string", or "DO block"
    calls_only: bool = False


@dataclass
class Body:
    language: str
    statements: list[BodyStatement] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)  # what could not be read


def read_do(raw: RawStatement) -> Body:
    """The statements of ``DO [LANGUAGE x] 'body'``."""
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
    result = Body(language=language)
    if body is None:
        result.problems.append("DO block without a body")
        return result
    if language != "plpgsql":
        result.problems.append(f"DO block in language {language} cannot be read")
        return result
    wrapped = "CREATE FUNCTION signoff_do_block() RETURNS void LANGUAGE plpgsql AS " + dollar_quote(
        body.text
    )
    _read(wrapped, line_of(raw, body), result, origin="DO block")
    return result


def read_function(definition: str, body_line: int) -> Body:
    """The statements of a ``CREATE FUNCTION|PROCEDURE ... LANGUAGE plpgsql`` body
    (``body_line``: the line its body string starts on)."""
    result = Body(language="plpgsql")
    _read(definition, body_line, result, origin="")
    return result


def dollar_quote(text: str) -> str:
    """``text`` as a dollar-quoted string whose tag does not occur in it."""
    tag, n = "$signoff$", 0
    while tag in text:
        n += 1
        tag = f"$signoff{n}$"
    return f"{tag}{text}{tag}"


def line_of(raw: RawStatement, token: Token) -> int:
    """The line of the plan ``token`` of ``raw`` starts on."""
    text_start = raw.tokens[-1].end + 1 - len(raw.text)
    return raw.line + raw.text.count("\n", 0, max(0, token.start - text_start))


def _read(definition: str, body_line: int, result: Body, *, origin: str) -> None:
    try:
        tree = pglast.parse_plpgsql(definition)
    except ParseError as error:
        message = str(error).splitlines()[0] if str(error) else "syntax error"
        result.problems.append(f"cannot read the PL/pgSQL body: {message}")
        return
    _walk(tree, "", "", 1, _Reader(result, body_line, origin))


@dataclass
class _Reader:
    result: Body
    body_line: int  # the plan line of the body's line 1
    origin: str

    def line(self, lineno: int) -> int:
        return self.body_line + max(lineno, 1) - 1

    def add(self, sql: str, lineno: int, origin: str, *, calls_only: bool = False) -> None:
        for raw in split_statements(sql, first_line=self.line(lineno)):
            if raw.token_error is not None and calls_only:
                self.result.problems.append(
                    f"line {raw.line}: cannot read the expression {sql!r}: {raw.token_error}"
                )
                continue
            self.result.statements.append(BodyStatement(raw, origin, calls_only))


def _walk(value: Any, statement: str, key: str, lineno: int, reader: _Reader) -> None:
    if isinstance(value, list):
        for item in value:
            _walk(item, statement, key, lineno, reader)
        return
    if not isinstance(value, Mapping):
        return
    if len(value) == 1:
        ((name, node),) = value.items()
        if name == "PLpgSQL_expr" and isinstance(node, Mapping):
            _expression(node, statement, key, lineno, reader)
            return
        if name.startswith("PLpgSQL_") and isinstance(node, Mapping):
            lineno = int(node.get("lineno", lineno))
            inner = name if name.startswith("PLpgSQL_stmt_") else statement
            for child_key, child in node.items():
                _walk(child, inner, child_key, lineno, reader)
            return
    for child_key, child in value.items():
        _walk(child, statement, child_key, lineno, reader)


def _expression(
    expr: Mapping[str, Any], statement: str, key: str, lineno: int, reader: _Reader
) -> None:
    query = str(expr.get("query") or "")
    mode = int(expr.get("parseMode", _STATEMENT_MODE))
    if (statement, key) in _DYNAMIC:
        literal = _literal(query)
        if literal is None:
            reader.result.problems.append(
                f"line {reader.line(lineno)}: EXECUTE of a computed string "
                "(its SQL is only known when it runs)"
            )
        else:
            reader.add(literal, lineno, EXECUTE_ORIGIN)
        return
    if mode == _STATEMENT_MODE:
        reader.add(query, lineno, reader.origin)
        return
    tokens = _tokens(query)
    if tokens is None:
        reader.result.problems.append(
            f"line {reader.line(lineno)}: cannot read the expression {query!r}"
        )
        return
    if not any(t.token_type is TokenType.L_PAREN for t in tokens):
        return  # no call in it
    if mode in _ASSIGN_MODES:
        cut = _assignment(tokens)
        if cut is not None:
            query = f"{query[: cut.start]}, {query[cut.end + 1 :]}"
    reader.add(f"SELECT {query}", lineno, reader.origin, calls_only=True)


def _tokens(text: str) -> list[Token] | None:
    try:
        return list(tokenize(text))
    except TokenError:
        return None


def _literal(query: str) -> str | None:
    """The content of ``'text'`` / ``$$text$$`` (an E'' string only without escapes)."""
    tokens = _tokens(query)
    if tokens is None or len(tokens) != 1:
        return None
    token = tokens[0]
    if token.token_type in _STRING_TYPES:
        return token.text
    if token.token_type is TokenType.BYTE_STRING and "\\" not in token.text:
        return token.text
    return None


def _assignment(tokens: Iterable[Token]) -> Token | None:
    """The ``:=`` (or ``=``) of ``target := value`` outside brackets."""
    depth = 0
    for token in tokens:
        if token.token_type in (TokenType.L_PAREN, TokenType.L_BRACKET):
            depth += 1
        elif token.token_type in (TokenType.R_PAREN, TokenType.R_BRACKET):
            depth -= 1
        elif depth == 0 and token.token_type in (TokenType.COLON_EQ, TokenType.EQ):
            return token
    return None
