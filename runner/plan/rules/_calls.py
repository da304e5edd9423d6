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

from dataclasses import dataclass

from sqlglot import exp
from sqlglot.tokenizer_core import TokenType

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


def _name(node: exp.Func) -> str:
    if isinstance(node, exp.Anonymous):
        this = node.this
        text = this.this if isinstance(this, exp.Identifier) else this
        return str(text).lower()
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
        if token.token_type in _NOT_A_NAME or tokens[index + 1].token_type is not TokenType.L_PAREN:
            continue
        found.append(Call(token.text.lower(), None))
    return tuple(found)


def calls_named(view: StatementView, names: frozenset[str]) -> list[Call]:
    return [c for c in calls(view) if c.name in names]
