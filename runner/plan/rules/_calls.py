"""The function calls of a statement, wherever they are: shared by the escape-hatch rules.

It defines no rule itself. A call is found by walking sqlglot's tree (select
lists, FROM items, subqueries, CTEs, DEFAULTs, CHECKs: anything the tree holds);
for a statement sqlglot models only as an opaque command, or cannot parse, from
its tokens: a name followed by ``(``. Tokens, not text: a name inside a string
or a comment is never a call.

Names are compared lower-cased and without their schema: ``pg_catalog.pg_read_file``,
``PG_READ_FILE`` and ``"pg_read_file"`` are one function to a reviewer, and a
function of that name in another schema (an extension installed in ``public``,
a wrapper) is reported too: the analysis cannot see which one runs, so it
assumes the dangerous one.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass

from sqlglot import exp
from sqlglot.dialects.postgres import Postgres
from sqlglot.tokenizer_core import Token, TokenType

from runner.plan.rules.base import StatementView

_CALLS_KEY = "signoff.calls"
_NOT_A_NAME = frozenset(
    {
        TokenType.STRING,
        TokenType.HEREDOC_STRING,
        TokenType.NATIONAL_STRING,
        TokenType.NUMBER,
        TokenType.L_PAREN,
        TokenType.R_PAREN,
        TokenType.COMMA,
        TokenType.DOT,
        TokenType.SEMICOLON,
        TokenType.EQ,
        TokenType.PARAMETER,
        TokenType.PLACEHOLDER,
    }
)


@dataclass(frozen=True)
class Call:
    """One function call: its bare name lower-cased, and its arguments when the tree
    holds them (``None``: read from tokens, the arguments are not known)."""

    name: str
    args: tuple[exp.Expression, ...] | None

    def first_argument_is_call_to(self, name: str) -> bool:
        """``f(name())`` exactly (with no other argument)."""
        if self.args is None or len(self.args) != 1:
            return False
        arg = self.args[0]
        while isinstance(arg, exp.Paren | exp.Dot):
            # (f()), pg_catalog.f(): the call itself
            arg = arg.expression if isinstance(arg, exp.Dot) else arg.this
        return isinstance(arg, exp.Anonymous) and not arg.expressions and _name(arg) == name


def unicode_unescaped(text: str, escape: str = "\\") -> str:
    """The name a ``U&"..."`` identifier spells: ``\\XXXX`` and ``\\+XXXXXX`` code
    points, a doubled escape character for itself (PostgreSQL's rules). Text that is
    not a valid escape is kept as written: the server would refuse it anyway."""
    out: list[str] = []
    i = 0
    while i < len(text):
        char = text[i]
        if char != escape:
            out.append(char)
            i += 1
            continue
        if text[i + 1 : i + 2] == escape:
            out.append(escape)
            i += 2
            continue
        width = 6 if text[i + 1 : i + 2] == "+" else 4
        digits = text[i + 1 + (width == 6) : i + 1 + (width == 6) + width]
        try:
            out.append(chr(int(digits, 16)) if len(digits) == width else char)
        except ValueError:
            out.append(char)
            i += 1
            continue
        i += 1 + (width == 6) + width if len(digits) == width else 1
    return "".join(out)


def _name(node: exp.Func) -> str:
    if isinstance(node, exp.Anonymous):
        this = node.this
        text = str(this.this if isinstance(this, exp.Identifier) else this)
        if isinstance(this, exp.Identifier) and this.quoted and "\\" in text:
            # U&"pg\\005fread_file" reaches the tree as its escaped text.
            text = unicode_unescaped(text)
        return text.lower()
    return node.sql_name().lower()


def calls(view: StatementView) -> tuple[Call, ...]:
    """Every function call of the statement, in order."""
    node = view.node
    if node is not None and not isinstance(node, exp.Command):
        cached = node.meta.get(_CALLS_KEY)
        if cached is None:
            # Several rules ask for the calls of the same (never modified) tree.
            cached = node.meta[_CALLS_KEY] = tuple(
                Call(_name(f), tuple(f.expressions) if isinstance(f, exp.Anonymous) else None)
                for f in node.find_all(exp.Func)
            )
        return tuple(cached)
    return _token_calls(view)


def _token_calls(view: StatementView) -> tuple[Call, ...]:
    tokens = view.raw.tokens
    found = []
    for index, token in enumerate(tokens[:-1]):
        if token.token_type in _NOT_A_NAME:
            continue
        following = tokens[index + 1]
        name = token.text
        if (
            token.token_type is TokenType.IDENTIFIER
            and index >= 2
            and tokens[index - 1].token_type is TokenType.AMP
            and tokens[index - 2].text.upper() == "U"
        ):
            # U&"..." [UESCAPE 'c'] (: the name its escapes spell.
            escape = "\\"
            if following.text.upper() == "UESCAPE" and index + 3 < len(tokens):
                escape = tokens[index + 2].text[:1] or escape
                following = tokens[index + 3]
            name = unicode_unescaped(name, escape)
        if following.token_type is TokenType.L_PAREN:
            found.append(Call(name.lower(), None))
    return tuple(found)


def calls_named(view: StatementView, names: frozenset[str]) -> list[Call]:
    if not may_call(view, names):
        return []
    return [c for c in calls(view) if c.name in names]


def may_call(view: StatementView, names: frozenset[str] = frozenset(), prefix: str = "") -> bool:
    """False only when no call ``calls(view)`` finds can be named one of ``names`` (or,
    with ``prefix``, a name starting so): asked of every statement by several rules,
    it spares most of them the walk of the tree.

    A call's name is a token's text lower-cased (``_name``, ``_token_calls``), except
    for a name spelt by escapes (``U&"..."``: an ``&`` token or a backslash in a
    token, then every call is looked for) and for sqlglot's own functions, named by
    sqlglot (``names`` holding one, or a ``prefix`` starting one: always looked for).
    """
    if names & _sqlglot_function_names() or (prefix and _starts_a_sqlglot_function(prefix)):
        return True
    if "(" not in view.raw.text:
        # No parenthesis in the text, so no "(" token: nothing is called there but
        # sqlglot's own keyword functions (CURRENT_DATE...), looked for above.
        return False
    texts = _token_texts(view.raw.tokens)
    if texts is None:
        return True
    lowered, joined = texts
    # (each name a token's text: the joined texts hold the prefix whenever one starts so)
    return not lowered.isdisjoint(names) or (bool(prefix) and prefix in joined)


# The last statement's token texts (one entry, replaced whole, as commands.words).
_LAST_TEXTS: tuple[Sequence[Token] | None, tuple[frozenset[str], str] | None] = (None, None)


def _token_texts(tokens: Sequence[Token]) -> tuple[frozenset[str], str] | None:
    """The statement's token texts lower-cased, as a set and joined; None when a name
    may be spelt by escapes."""
    global _LAST_TEXTS
    last_tokens, last_texts = _LAST_TEXTS
    if tokens is last_tokens:
        return last_texts
    lowered = frozenset({t.text.lower() for t in tokens})
    joined = "".join(lowered)
    # An AMP token's text is "&"; any backslash in a token is in the joined texts.
    texts = None if "&" in lowered or "\\" in joined else (lowered, joined)
    if type(tokens) is tuple:
        _LAST_TEXTS = (tokens, texts)
    return texts


@functools.cache
def _starts_a_sqlglot_function(prefix: str) -> bool:
    return any(name.startswith(prefix) for name in _sqlglot_function_names())


@functools.cache
def _sqlglot_function_names() -> frozenset[str]:
    """Every name sqlglot gives a function it models (``Func.sql_name``) or parses by."""
    found: set[str] = {name.lower() for name in Postgres.Parser.FUNCTIONS}
    found |= {name.lower() for name in Postgres.Parser.FUNCTION_PARSERS}
    found |= {name.lower() for name in Postgres.Parser.NO_PAREN_FUNCTIONS if isinstance(name, str)}
    pending: list[type[exp.Func]] = [exp.Func]
    while pending:
        cls = pending.pop()
        for sub in cls.__subclasses__():
            pending.append(sub)
            found |= {name.lower() for name in sub.sql_names()}
    return frozenset(found)


def unicode_folded(tokens: Sequence[Token]) -> list[Token]:
    """``tokens`` with each ``U&"..." [UESCAPE 'c']`` (three or five tokens to sqlglot)
    as one identifier token holding the name its escapes spell, so token readers
    compare names as PostgreSQL does (``U&"\\0070ublic"`` is PUBLIC)."""
    out: list[Token] = []
    i = 0
    while i < len(tokens):
        token = tokens[i]
        if (
            i + 2 < len(tokens)
            and token.text.upper() == "U"
            and tokens[i + 1].token_type is TokenType.AMP
            and tokens[i + 2].token_type is TokenType.IDENTIFIER
            and tokens[i + 1].start == token.end + 1
        ):
            ident = tokens[i + 2]
            escape, step = "\\", 3
            if (
                i + 4 < len(tokens)
                and tokens[i + 3].text.upper() == "UESCAPE"
                and tokens[i + 4].token_type is TokenType.STRING
            ):
                escape, step = tokens[i + 4].text[:1] or escape, 5
            text = unicode_unescaped(ident.text, escape)
            out.append(
                Token(TokenType.IDENTIFIER, text, ident.line, ident.col, token.start, ident.end, [])
            )
            i += step
            continue
        out.append(token)
        i += 1
    return out
