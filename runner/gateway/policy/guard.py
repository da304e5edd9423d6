"""The literal guard: nothing that could turn standard_conforming_strings off runs.

The splitter and the analysis read '...' as PostgreSQL does with
standard_conforming_strings on (a backslash is an ordinary character). With it
off, "SELECT 'a\\''; DROP TABLE t; --'" is one harmless string to the gateway
and a DROP to the server. So nothing that could turn it off is forwarded (and the
proxy refuses everything once the server reports it off, however that happened).

``needs_literal_guard`` is the cheap test on the whole text (the C lane makes the
same one, runner/_lane.c); a text that passes it is decided statement by statement,
never from a cache, and ``literal_reading_refusal`` judges each statement.
"""

from __future__ import annotations

import functools

from sqlglot.tokenizer_core import Token, TokenType

from runner.plan.statements import RawStatement

_SCS = "standard_conforming_strings"
SCS_REFUSAL = (
    "changing standard_conforming_strings is refused: with it off the server reads "
    "backslashes in string literals differently from the gateway's analysis"
)


# Words that make a text decided statement by statement, never from a cache (whose
# keys mask literal values): its verdict may hang on a literal. standard_conforming_
# strings by any spelling, and schema signoff_guard (the server-side guard's), which
# SO512 also finds named inside strings ('signoff_guard.granted'::regclass).
# Lower-case ASCII: the C lane (runner/_native) is handed these and folds A-Z.
LITERAL_GUARD_WORDS: tuple[str, ...] = ("conforming", "set_config", "u&", "signoff_guard")


def needs_literal_guard(sql: str) -> bool:
    """Whether ``sql`` might touch standard_conforming_strings: then it is decided
    statement by statement, never from a cache (literal values matter here)."""
    lowered = sql.lower()
    # A loop, not any() over a generator: this runs on nearly every text the relay
    # decides (0.4 us against 2 us here).
    for word in LITERAL_GUARD_WORDS:  # noqa: SIM110
        if word in lowered:
            return True
    return False


# What turning it on may be spelt as (SET ... = on is harmless: it is the reading
# the analysis assumes). DEFAULT and RESET are not here: a role or database default
# may be off.
_ON = frozenset({"on", "true", "yes", "1"})


def _plain(token: Token, source: str, first: str) -> bool:
    """The token is spelt plainly: its first character in the text is ``first``'s
    class (a letter for a name, a quote for a string), not an escape or a quote."""
    head = source[token.start : token.start + 1]
    return head == "'" if first == "'" else head.isalpha() or head.isdigit()


def _turns_it_on(tokens: tuple[Token, ...], source: str) -> bool:
    """``SET [SESSION|LOCAL] standard_conforming_strings {=|TO} on`` exactly."""
    words = [t for t in tokens if t.token_type is not TokenType.SEMICOLON]
    i = 1
    if len(words) > i and words[i].text.upper() in ("SESSION", "LOCAL"):
        i += 1
    if len(words) != i + 3:
        return False
    name, equals, value = words[i], words[i + 1], words[i + 2]
    quote = "'" if value.token_type is TokenType.STRING else "a"
    return (
        name.text.lower() == _SCS
        and _plain(name, source, "a")
        and (equals.token_type is TokenType.EQ or equals.text.upper() == "TO")
        and value.text.lower() in _ON
        and _plain(value, source, quote)
    )


# pg_dump sets settings it may lack by reading their names from pg_settings:
#   SELECT set_config(name, '...', false) FROM pg_settings WHERE name = '...'
# The WHERE names the one setting it can change; read exactly that shape.
_SETTINGS_ROW = (
    (TokenType.SELECT, None),
    (None, "set_config"),
    (TokenType.L_PAREN, None),
    (None, "name"),
    (TokenType.COMMA, None),
    (TokenType.STRING, None),
    (TokenType.COMMA, None),
    (None, ("false", "true")),
    (TokenType.R_PAREN, None),
    (TokenType.FROM, None),
    (None, "pg_settings"),
    (TokenType.WHERE, None),
    (None, "name"),
    (TokenType.EQ, None),
    (TokenType.STRING, None),
)


def _sets_one_named_setting(tokens: tuple[Token, ...], source: str) -> bool:
    words = [t for t in tokens if t.token_type is not TokenType.SEMICOLON]
    if len(words) != len(_SETTINGS_ROW):
        return False
    for token, (kind, text) in zip(words, _SETTINGS_ROW, strict=True):
        if kind is not None and token.token_type is not kind:
            return False
        if text is not None and token.text.lower() not in (
            (text,) if isinstance(text, str) else text
        ):
            return False
        if kind is None and not _plain(token, source, "a"):
            return False  # "name" in quotes or escapes is another column's spelling
        if kind is TokenType.STRING and not _plain(token, source, "'"):
            return False
    setting = words[-1].text.lower()
    return all(word not in setting for word in LITERAL_GUARD_WORDS)


def literal_reading_refusal(raw: RawStatement) -> str | None:
    """Why ``raw`` is refused for what it could do to standard_conforming_strings;
    None when it cannot change it (SHOW may read it; SET ... = on is what the
    analysis assumes; pg_dump's set_config over one named pg_settings row)."""
    tokens = raw.tokens
    if not tokens:
        return None  # unanalysable: refused (needs approval) by the analysis anyway
    first = tokens[0].text.upper()
    if first == "SHOW":
        return None
    source = raw.source_text
    if first == "SET" and _turns_it_on(tokens, source):
        return None
    if first == "SELECT" and _sets_one_named_setting(tokens, source):
        return None
    if first in ("SET", "RESET", "ALTER") and any(
        source[t.start : t.start + 2].lower() == "u&" for t in tokens
    ):
        return SCS_REFUSAL + " (a setting spelt with Unicode escapes is refused)"
    for index, token in enumerate(tokens):
        text = token.text.lower()
        if _SCS in text:
            return SCS_REFUSAL
        if text == "set_config" and index + 1 < len(tokens):
            # Its setting name must be a plain '...' literal (not computed, not
            # escaped), so the check above has read it.
            following = tokens[index + 1 : index + 4]
            plain_name = (
                len(following) == 3
                and following[0].token_type is TokenType.L_PAREN
                and following[1].token_type is TokenType.STRING
                and source[following[1].start : following[1].start + 1] == "'"
                and following[2].token_type is TokenType.COMMA
            )
            if not plain_name:
                return SCS_REFUSAL + " (set_config with a setting name that is not a plain literal)"
    return None


# -- backslashes in a text pipelined behind statements not yet answered ---------------------
#
# The server reports a changed standard_conforming_strings only at its next
# ReadyForQuery, so a text decided while statements ahead of it are still running is
# read by the server with whatever they left. Two things make that harmless, either
# one enough: the text reads the same with the setting on or off, or nothing ahead
# could have changed it.

# Where a backslash means the same whatever the setting: comments, quoted
# identifiers, E'...' strings (always escapes), dollar-quoted bodies (never).
_ALIKE_TOKENS = frozenset({"SQL_COMMENT", "C_COMMENT"})


def backslashes_read_alike(text: str) -> bool:
    """Every backslash of ``text`` sits where standard_conforming_strings changes
    nothing (PostgreSQL's own scanner says where). Only a plain '...' literal reads
    differently, and as long as none holds a backslash every token, and so every
    boundary, is the same either way. Unscannable: False."""
    from pglast.parser import scan  # the gateway's only use of the scanner: on demand

    data = text.encode("utf-8")
    at = data.find(b"\\")
    if at < 0:
        return True
    try:
        tokens = scan(text)
    except Exception:  # pglast raises its own error types for what does not scan
        return False
    index = 0
    while at >= 0:
        while index < len(tokens) and tokens[index].end < at:
            index += 1
        if index == len(tokens) or tokens[index].start > at:
            return False  # a backslash outside any token: not SQL the analysis reads
        token = tokens[index]
        head = data[token.start : token.start + 1]
        alike = (
            token.name in _ALIKE_TOKENS
            or (token.name == "IDENT" and head == b'"')
            or (token.name == "SCONST" and head in (b"E", b"e", b"$"))
        )
        if not alike:
            return False
        at = data.find(b"\\", token.end + 1)
    return True


# Statements that run no code beyond what their text shows, as far as the text shows.
_PLAIN_KINDS = frozenset(
    {"SelectStmt", "InsertStmt", "UpdateStmt", "DeleteStmt", "TransactionStmt", "VariableShowStmt"}
)
# Settings about backslashes (the one the analysis depends on, and its companions).
_BACKSLASH_SETTINGS = frozenset({_SCS, "backslash_quote", "escape_string_warning"})
_RESET_ALL = 5  # VariableSetKind.VAR_RESET_ALL
# Built-in functions that run no SQL and change no setting (pg_catalog, unqualified or
# qualified so). Any other call (set_config, a user's function, query_to_xml...) may.
_PLAIN_FUNCTIONS = frozenset(
    {
        "abs", "array_agg", "array_length", "avg", "bool_and", "bool_or", "btrim",
        "cardinality", "ceil", "char_length", "concat", "concat_ws", "count", "currval",
        "date_part", "date_trunc", "decode", "dense_rank", "encode", "floor",
        "gen_random_uuid", "generate_series", "json_agg", "json_build_array",
        "json_build_object", "jsonb_agg", "jsonb_build_array", "jsonb_build_object",
        "lag", "lead", "left", "length", "lower", "ltrim", "make_interval", "max", "md5",
        "min", "nextval", "now", "position", "random", "rank", "regexp_replace",
        "replace", "right", "round", "row_number", "rtrim", "split_part", "string_agg",
        "strpos", "substr", "substring", "sum", "to_char", "to_date", "to_json",
        "to_jsonb", "to_number", "to_timestamp", "trim", "trunc", "unnest", "upper",
    }
)  # fmt: skip


def _plain_call(names: tuple[str, ...]) -> bool:
    if len(names) == 2 and names[0] == "pg_catalog":
        names = names[1:]
    return len(names) == 1 and names[0] in _PLAIN_FUNCTIONS


@functools.lru_cache(maxsize=1024)  # a pipeline repeats its few texts
def may_change_literal_reading(text: str) -> bool:
    """Whether running ``text`` could change how the server reads backslashes: a
    SET/RESET of a backslash setting or RESET ALL, a call of anything but a plain
    built-in (set_config, a user's function), DO, CALL, EXECUTE, any other kind of
    statement, and whatever does not parse. A plain INSERT/SELECT/UPDATE/DELETE,
    transaction control and SHOW do not, as far as their text shows. What the text
    does not show (a trigger, rule, policy or view calling a function that turns the
    setting off) is the one gap left: it needs such a function in the database, and
    a plain '...' literal with a backslash pipelined right behind; the server
    reports the change at its next ReadyForQuery, and from there the relay refuses
    everything on the connection."""
    from pglast import ast, parse_sql
    from pglast.visitors import Visitor

    try:
        statements = parse_sql(text)
    except Exception:  # pglast's ParseError and friends: unanalysable, so it may
        return True
    calls: list[tuple[str, ...]] = []

    class Calls(Visitor):
        def visit_FuncCall(self, ancestors: object, node: ast.FuncCall) -> None:
            names = node.funcname or ()
            calls.append(tuple(str(getattr(n, "sval", "")).lower() for n in names))

    for raw in statements:
        statement = raw.stmt
        kind = type(statement).__name__
        if isinstance(statement, ast.VariableSetStmt):
            name = (statement.name or "").lower()
            if statement.kind == _RESET_ALL or name in _BACKSLASH_SETTINGS or "." in name:
                return True  # a dotted name is an extension's setting: its code runs
        elif kind not in _PLAIN_KINDS:
            return True
    Calls()(statements)
    return not all(_plain_call(names) for names in calls)
