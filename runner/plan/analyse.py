"""Run the rule catalogue over a sequence of statements, carrying state between them.

One ``Analysis`` follows a whole plan: transactions opened and closed, tables
created earlier in the plan, column types, ``lock_timeout``. Each statement is
parsed once with sqlglot; statements sqlglot models only as ``exp.Command`` (or
cannot parse) are classified from their tokens; what neither recognises is
unanalysable. The same code serves the planner, ``signoff lint`` and (later)
the gateway, so a statement is judged the same way everywhere.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from sqlglot import exp
from sqlglot.dialects.postgres import Postgres
from sqlglot.errors import ParseError, TokenError

from runner.plan import directives, plpgsql
from runner.plan.commands import CommandShape, classify
from runner.plan.model import Category, Decision, Finding
from runner.plan.policy import Policy
from runner.plan.rules import catalogue
from runner.plan.rules.base import Context, Rule, StatementView
from runner.plan.schema import SchemaState
from runner.plan.state import observe
from runner.plan.statements import RawStatement

# sqlglot logs a warning for every statement it falls back to exp.Command on;
# that is expected here and handled by the token classifier.
logging.getLogger("sqlglot").setLevel(logging.ERROR)

_PARSER = Postgres().parser()
_COMMAND_TOKENS = frozenset(Postgres.Tokenizer.COMMANDS)

# Statement types sqlglot parses reliably. Anything else at the top level is a
# misparse (``START TRANSACTION`` comes back as an alias) and is classified
# from its tokens instead.
_KNOWN_NODES: tuple[type[exp.Expression], ...] = (
    exp.Select,
    exp.SetOperation,
    exp.Insert,
    exp.Update,
    exp.Delete,
    exp.Merge,
    exp.Create,
    exp.Drop,
    exp.Alter,
    exp.TruncateTable,
    exp.Set,
    exp.Comment,
    exp.Grant,
    exp.Revoke,
    exp.Copy,
    exp.Analyze,
    exp.Commit,
    exp.Rollback,
    exp.Transaction,
)
# First words of transaction control, classified from tokens: sqlglot misreads
# some (START TRANSACTION) and ROLLBACK TO SAVEPOINT must not end the transaction.
UNPARSEABLE_RULE = "SO001"
PSQL_META_KIND = "psql_meta_command"
_TRANSACTION_WORDS = frozenset({"BEGIN", "START", "COMMIT", "END", "ROLLBACK", "ABORT"})
# Parses kept per plan, by exact statement text.
_PARSED_LIMIT = 512
_SEEN_LIMIT = 8192


@dataclass(frozen=True)
class AnalysedStatement:
    raw: RawStatement
    kind: str
    transaction: int | None
    findings: tuple[Finding, ...]


def view_of(raw: RawStatement, origin: str | None = None) -> StatementView:
    """Parse one statement and say what it is."""
    if raw.token_error is not None:
        return StatementView(raw, None, None, None, parse_error=raw.token_error, origin=origin)
    if raw.meta_only:  # psql meta-commands alone: the rules about them speak
        return StatementView(raw, None, None, PSQL_META_KIND, origin=origin)
    if raw.tokens[0].text.upper() in _TRANSACTION_WORDS:
        shape = classify(raw.tokens)
        if shape is not None:
            return StatementView(raw, None, shape, shape.kind, origin=origin)
    try:
        nodes = _PARSER.parse(list(raw.tokens), raw.source_text)
    except (ParseError, TokenError) as error:
        shape = classify(raw.tokens)
        kind = shape.kind if shape is not None else None
        if raw.tokens[0].token_type in _COMMAND_TOKENS:
            # sqlglot models these only as opaque commands: not a syntax error.
            return StatementView(raw, None, shape, kind, origin=origin)
        message = str(error).splitlines()[0] if str(error) else type(error).__name__
        return StatementView(raw, None, shape, kind, parse_error=message, origin=origin)
    node = nodes[0] if len(nodes) == 1 and isinstance(nodes[0], exp.Expression) else None
    if node is not None and _lossy(node):
        # sqlglot kept part of the statement only as an opaque option; judge
        # it from its tokens instead (or not at all) rather than half-read.
        node = None
    if node is None or isinstance(node, exp.Command) or not isinstance(node, _KNOWN_NODES):
        shape = classify(raw.tokens)
        kind = shape.kind if shape is not None else None
        return StatementView(raw, node, shape, kind, origin=origin)
    return StatementView(raw, node, None, _node_kind(node), origin=origin)


def _lossy(node: exp.Expression) -> bool:
    """Parses that drop meaning: ``ALTER TABLE t ADD a int, SET SCHEMA x`` keeps
    ``SET SCHEMA`` as a generic option of the ALTER."""
    return isinstance(node, exp.Alter) and bool(node.args.get("options"))


_DDL_NODES = (exp.Create, exp.Drop, exp.Alter)


def _node_kind(node: exp.Expression) -> str:
    if isinstance(node, exp.Commit):
        return "commit"
    if isinstance(node, exp.Rollback):
        return "rollback"
    if isinstance(node, exp.Transaction):
        return "begin"
    if isinstance(node, _DDL_NODES):
        verb = type(node).__name__.lower()
        kind = (node.args.get("kind") or "").lower().replace(" ", "_")
        if node.args.get("materialized") or (
            isinstance(node, exp.Create) and _is_materialized(node)
        ):
            kind = "materialized_view"
        return f"{verb}_{kind}" if kind else verb
    if isinstance(node, exp.TruncateTable):
        return "truncate"
    if isinstance(node, exp.SetOperation):
        return "select"
    return type(node).__name__.lower()


def _is_materialized(node: exp.Create) -> bool:
    properties = node.args.get("properties")
    return properties is not None and any(
        isinstance(p, exp.MaterializedProperty) for p in properties.expressions
    )


class Analysis:
    """Analyses statements in plan order; one instance per plan."""

    def __init__(
        self,
        policy: Policy,
        *,
        server_version: int | None,
        schema: SchemaState | None = None,
        rules: Sequence[Rule] | None = None,
        reuse_parses: bool = False,
    ) -> None:
        self.policy = policy
        self.rules = list(catalogue().values()) if rules is None else list(rules)
        self.context = Context(
            server_version=server_version,
            schema=schema if schema is not None else SchemaState(),
            apply_lock_timeout=policy.apply_lock_timeout,
        )
        self._next_transaction = 1
        self._rules_by_kind: dict[str | None, list[Rule]] = {}
        self._unanalysable = catalogue()[UNPARSEABLE_RULE]
        # A plan read once (lint, plan) keeps recent parses; a gateway session,
        # which lives long and of which there are many, does not.
        self._reuse_parses = reuse_parses
        self._parsed: dict[
            str, tuple[exp.Expression | None, CommandShape | None, str | None, str | None]
        ] = {}
        self._seen: dict[str, None] = {}  # texts parsed once (insertion-ordered set)

    def analyse(self, raws: Iterable[RawStatement]) -> list[AnalysedStatement]:
        return [self.analyse_one(raw) for raw in raws]

    def analyse_one(self, raw: RawStatement) -> AnalysedStatement:
        view = self._view_of(raw)
        transaction = self._enter(view)
        inner = self._read_do_block(view) if view.kind == "do" else []
        hits = self._hits(view)
        for inner_view in inner:
            prefix = f"{inner_view.origin}, line {inner_view.raw.line}: "
            hits.extend(self._hits(inner_view, prefix))
            observe(inner_view, self.context)
        observe(view, self.context)
        findings = directives.apply(raw, hits, self.policy)
        self._leave(view)
        return AnalysedStatement(raw, view.kind or "unknown", transaction, tuple(findings))

    def _view_of(self, raw: RawStatement) -> StatementView:
        """``view_of``, parsing a text seen before in this plan only once.

        Migration dumps repeat statements verbatim (BEGIN, COMMIT, SET
        lock_timeout...). The parse depends on the text alone and the rules only
        read the tree, so the tree is shared; what a rule says still depends on
        the context, so only the parse is reused, never a finding.
        """
        parsed = self._parsed.get(raw.text)
        if parsed is not None:
            node, shape, kind, error = parsed
            return StatementView(raw, node, shape, kind, parse_error=error)
        view = view_of(raw)
        if self._reuse_parses and raw.tokens and not raw.meta_commands:
            # Only a text seen before is kept: most texts of a dump are unique, and
            # a tree kept a while dies old, where only a full collection finds it.
            if raw.text in self._seen:
                if len(self._parsed) >= _PARSED_LIMIT:
                    self._parsed.clear()  # bounded; the common texts come back at once
                self._parsed[raw.text] = (view.node, view.shape, view.kind, view.parse_error)
            else:
                if len(self._seen) >= _SEEN_LIMIT:
                    self._seen.clear()
                self._seen[raw.text] = None
        return view

    # -- transactions ---------------------------------------------------------------

    def _enter(self, view: StatementView) -> int | None:
        if view.kind == "begin" and self.context.transaction is None:
            self.context.transaction = self._next_transaction
            self._next_transaction += 1
            self.context.not_valid_in_transaction.clear()
        return self.context.transaction

    def _leave(self, view: StatementView) -> None:
        if view.kind in ("commit", "rollback"):
            self.context.transaction = None
            self.context.not_valid_in_transaction.clear()
            self.context.local_lock_timeout = False

    # -- rules ----------------------------------------------------------------------

    def _hits(self, view: StatementView, prefix: str = "") -> list[tuple[Rule, str]]:
        # The hot loop of the analysis: every rule sees every statement.
        hits: list[tuple[Rule, str]] = []
        context = self.context
        rules = self._rules_by_kind.get(view.kind)
        if rules is None:
            rules = [r for r in self.rules if r.kinds is None or view.kind in r.kinds]
            self._rules_by_kind[view.kind] = rules
        for rule in rules:
            try:
                for message in rule.check(view, context):
                    hits.append((rule, prefix + message))
            except Exception as error:  # a rule that cannot read a statement fails closed
                hits.append(
                    (
                        self._unanalysable,
                        f"{prefix}cannot be analysed: rule {rule.id} failed on it "
                        f"({type(error).__name__}); it needs a reviewer",
                    )
                )
        return hits

    def _read_do_block(self, view: StatementView) -> list[StatementView]:
        """The statements of a DO body; what cannot be read is noted on the outer view."""
        body = plpgsql.read_do(view.raw)
        view.unreadable_reasons.extend(body.unreadable)
        return [
            view_of(inner, origin=origin)
            for inner, origin in zip(body.statements, body.origins, strict=True)
        ]


def needs_review(findings: Iterable[Finding]) -> bool:
    return any(f.decision in (Decision.NEEDS_APPROVAL, Decision.DENY) for f in findings)


def category_counts(findings: Iterable[Finding]) -> dict[Category, int]:
    counts: dict[Category, int] = {}
    for f in findings:
        counts[f.category] = counts.get(f.category, 0) + 1
    return counts
