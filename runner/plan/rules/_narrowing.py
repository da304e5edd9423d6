"""Whether a condition narrows the rows of a table a statement changes; no rule of its own.

A condition narrows when it is shown to hold for only some rows of the target:
every branch of an OR must depend on the target row (a column of the target,
outside any subquery, or inside a subquery that names the target), and no
branch may be a tautology over it (``id = id``, ``x LIKE '%'``) or pair with
another into one (``x IS NULL OR x IS NOT NULL``, ``a = 1 OR a <> 1``). A branch
that does not depend on the target row at all (``$1``, ``current_user = 'x'``,
``EXISTS (SELECT 1 FROM other)``, a condition on the joined table only) is
either true for every row or for none: it does not narrow, whatever its value
turns out to be. Anything the analysis cannot show to narrow is reported (fail
closed); a condition provably false (``1 = 0``) changes nothing and narrows.

``why_not_narrowed`` returns the reason in words, or None when it narrows.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from sqlglot import exp

from runner.plan.rules.base import ident, table_name
from runner.plan.rules.unbounded_dml import NULL, _truth

_MAX_SHOWN = 80

# Comparisons that hold when both sides are the same (non-null) value, and the
# ones that fail then (which hold under NOT).
_REFLEXIVE = (exp.EQ, exp.GTE, exp.LTE, exp.NullSafeEQ)
_IRREFLEXIVE = (exp.NEQ, exp.GT, exp.LT, exp.NullSafeNEQ)
# op -> the op true exactly where it is false (on non-null operands).
_COMPLEMENT: dict[type[exp.Expression], type[exp.Expression]] = {
    exp.EQ: exp.NEQ,
    exp.NEQ: exp.EQ,
    exp.LT: exp.GTE,
    exp.GTE: exp.LT,
    exp.GT: exp.LTE,
    exp.LTE: exp.GT,
}
# op -> the same comparison with its operands swapped.
_MIRROR: dict[type[exp.Expression], type[exp.Expression]] = {
    exp.EQ: exp.EQ,
    exp.NEQ: exp.NEQ,
    exp.LT: exp.GT,
    exp.GT: exp.LT,
    exp.LTE: exp.GTE,
    exp.GTE: exp.LTE,
}
_SUBQUERY = (exp.Select, exp.SetOperation, exp.Subquery)


@dataclass(frozen=True)
class Target:
    """The table a statement changes, as a condition can name it.

    ``names``: its name, bare name and alias, lower-cased as written;
    ``unqualified``: whether an unqualified column is the target's (no other table
    is in scope: a plain DELETE / UPDATE); ``columns``: the target's columns the
    schema knows (an unqualified one of them is the target's even in a join: were
    it the other table's too, PostgreSQL would refuse it as ambiguous);
    ``table`` for messages.
    """

    table: str
    names: frozenset[str]
    unqualified: bool
    columns: frozenset[str] = frozenset()


def target_of(node: exp.Expression, *, joined: bool, columns: Iterable[str] = ()) -> Target | None:
    """The target of a DELETE / UPDATE / MERGE / INSERT node (``joined``: other tables
    are in scope, so an unqualified column may be theirs)."""
    table = node.this
    if isinstance(table, exp.Schema):
        table = table.this
    if not isinstance(table, exp.Table):
        return None
    name = table_name(table)
    names = {name, name.split(".")[-1]}
    alias = table.args.get("alias")
    if isinstance(alias, exp.TableAlias) and alias.this is not None:
        names.add(ident(alias.this))
    return Target(name, frozenset(names), not joined, frozenset(columns))


def shown(node: exp.Expression) -> str:
    text = node.sql(dialect="postgres")
    return text if len(text) <= _MAX_SHOWN else text[: _MAX_SHOWN - 3] + "..."


def why_not_narrowed(condition: exp.Expression, target: Target) -> str | None:
    """Why ``condition`` may hold for every row of ``target``; None: it narrows."""
    return _why(condition, target, negated=False)


# A target no column names: with it, a branch that does not read the row is not
# held against the condition (a policy's ``current_user = 'x'`` is a real test).
_ANY_ROW = Target("the table", frozenset(), unqualified=True)


def true_for_every_row(condition: exp.Expression) -> str | None:
    """Why ``condition`` certainly holds for every row (always true, a tautology, a
    test paired with its opposite); None when it may not. A condition that only
    does not read the row (a role or setting test) is not counted."""
    return _why(condition, _ANY_ROW, negated=False)


def _why(node: exp.Expression, target: Target, *, negated: bool) -> str | None:
    while isinstance(node, exp.Paren):
        node = node.this
    if isinstance(node, exp.Not):
        return _why(node.this, target, negated=not negated)
    conjunction = isinstance(node, exp.And) != negated and isinstance(node, exp.And | exp.Or)
    if conjunction:
        # (NOT) a AND b: narrows when either side does.
        left = _why(node.this, target, negated=negated)
        if left is None:
            return None
        right = _why(node.expression, target, negated=negated)
        return None if right is None else left
    if isinstance(node, exp.And | exp.Or):
        # (NOT) a OR b: every branch must narrow, and no two may cover every row together.
        branches = list(_branches(node, negated))
        for branch, branch_negated in branches:
            reason = _why(branch, target, negated=branch_negated)
            if reason is not None:
                return reason
        return _complementary(branches)
    return _atom(node, target, negated=negated)


def _branches(node: exp.Expression, negated: bool) -> Iterator[tuple[exp.Expression, bool]]:
    """The OR branches of ``node`` (of ``NOT (a AND b)`` when ``negated``: NOT a, NOT b)."""
    splitting = exp.And if negated else exp.Or
    while isinstance(node, exp.Paren):
        node = node.this
    if isinstance(node, exp.Not) and isinstance(_unparen(node.this), exp.And | exp.Or):
        yield from _branches(_unparen(node.this), not negated)
        return
    if isinstance(node, splitting):
        yield from _branches(node.this, negated)
        yield from _branches(node.expression, negated)
        return
    yield node, negated


def _unparen(node: exp.Expression) -> exp.Expression:
    while isinstance(node, exp.Paren):
        node = node.this
    return node


def _atom(node: exp.Expression, target: Target, *, negated: bool) -> str | None:
    truth = _truth(node)
    if isinstance(truth, bool):
        # Provably true: every row; provably false: no row, which narrows.
        return f"{_what(node, negated)} is always true" if truth != negated else None
    if truth is NULL:
        return None
    tautology = _tautology(node, target, negated=negated)
    if tautology is not None:
        return tautology
    if target is not _ANY_ROW and not _reads_target(node, target):
        what = _what(node, negated)
        if any(True for _ in node.find_all(exp.Parameter, exp.Placeholder)):
            return (
                f"{what} does not depend on the row of {target.table}: the bound value "
                "can make it true for every row"
            )
        return (
            f"{what} does not depend on the row of {target.table}: it holds for every row "
            "or for none"
        )
    return None


def _what(node: exp.Expression, negated: bool) -> str:
    # Only for a message: SQL generation is most of the cost of a narrowing check.
    return "NOT " + shown(node) if negated else shown(node)


def _tautology(node: exp.Expression, target: Target, *, negated: bool) -> str | None:
    reflexive = _IRREFLEXIVE if negated else _REFLEXIVE
    if isinstance(node, reflexive) and _same(node.this, node.expression):
        what = _what(node, negated)
        return f"{what} compares {shown(node.this)} with itself: true for every row"
    if (
        not negated
        and isinstance(node, exp.Like | exp.ILike)
        and isinstance(node.expression, exp.Literal)
        and node.expression.is_string
        and str(node.expression.this)
        and set(str(node.expression.this)) == {"%"}
    ):
        return f"{shown(node)} matches every non-null value"
    if not negated and isinstance(node, exp.In) and _self_subquery(node, target):
        return f"{shown(node)} lists every value of {target.table}"
    return None


def _same(a: exp.Expression | None, b: exp.Expression | None) -> bool:
    if a is None or b is None:
        return False
    a, b = _unparen(a), _unparen(b)
    # Structural equality (sqlglot compares the trees), type first: the common
    # ``column = value`` is told apart without walking either side.
    return type(a) is type(b) and a == b


def _self_subquery(node: exp.In, target: Target) -> bool:
    """``x IN (SELECT x FROM <target>)`` with nothing to filter it."""
    query = node.args.get("query")
    select = query.this if isinstance(query, exp.Subquery) else query
    if not isinstance(select, exp.Select) or len(select.expressions) != 1:
        return False
    if any(select.args.get(k) for k in ("where", "limit", "having", "joins", "offset", "fetch")):
        return False
    source = select.args.get("from_")
    table = source.this if isinstance(source, exp.From) else None
    if not (isinstance(table, exp.Table) and table_name(table) in target.names):
        return False
    return _same(_column_name(select.expressions[0]), _column_name(node.this))


def _column_name(node: exp.Expression | None) -> exp.Expression | None:
    node = _unparen(node) if node is not None else None
    return node.this if isinstance(node, exp.Column) else node


def _complementary(branches: list[tuple[exp.Expression, bool]]) -> str | None:
    """Two OR branches that together hold for every row with a value."""
    seen: list[tuple[_Key, exp.Expression]] = []
    for branch, negated in branches:
        keys = _keys(_unparen(branch), negated)
        for key in keys:
            for earlier_key, earlier in seen:
                if earlier_key == _flip(key):
                    return (
                        f"{shown(earlier)} OR {shown(branch)} holds for every row"
                        " (one or the other is true of each value)"
                    )
        seen.extend((key, branch) for key in keys)
    return None


# ("is-null", holds, operand) | ("cmp", op, left, right) | ("expr", holds, sql)
_Key = tuple[str, str, str, str]


def _keys(node: exp.Expression, negated: bool) -> list[_Key]:
    """Canonical forms of a branch (a comparison in both operand orders), to find its
    opposite among the others."""
    while isinstance(node, exp.Paren | exp.Not):
        negated = negated != isinstance(node, exp.Not)
        node = node.this
    holds = "no" if negated else "yes"
    if isinstance(node, exp.Is) and isinstance(node.expression, exp.Null):
        if node.args.get("negate"):
            holds = "yes" if negated else "no"
        return [("is-null", holds, _unparen(node.this).sql(dialect="postgres"), "")]
    kind = type(node)
    if kind in _COMPLEMENT:
        left = _unparen(node.this).sql(dialect="postgres")
        right = _unparen(node.expression).sql(dialect="postgres")
        op = _COMPLEMENT[kind] if negated else kind
        return [("cmp", op.key, left, right), ("cmp", _MIRROR[op].key, right, left)]
    return [("expr", holds, node.sql(dialect="postgres"), "")]


_BY_KEY = {kind.key: kind for kind in _COMPLEMENT}


def _flip(key: _Key) -> _Key:
    form, a, b, c = key
    if form == "cmp":
        return (form, _COMPLEMENT[_BY_KEY[a]].key, b, c)
    return (form, "no" if a == "yes" else "yes", b, c)


def _reads_target(node: exp.Expression, target: Target) -> bool:
    for column in node.find_all(exp.Column):
        qualifier = column.args.get("table")
        inside = _inside_subquery(column, node)
        if qualifier is not None:
            if ident(qualifier) in target.names:
                return True  # the target's column, or a subquery correlated with it
            continue
        if not inside and (target.unqualified or ident(column.this) in target.columns):
            return True
    return False


def _inside_subquery(column: exp.Expression, stop: exp.Expression) -> bool:
    parent = column.parent
    while parent is not None and parent is not stop:
        if isinstance(parent, _SUBQUERY):
            return True
        parent = parent.parent
    return False
