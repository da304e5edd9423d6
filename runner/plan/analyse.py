"""Run the rule catalogue over a sequence of statements, carrying state between them.

One ``Analysis`` follows a whole plan: transactions opened and closed, tables
created earlier in the plan, column types, ``lock_timeout``. Each statement is
parsed once with sqlglot; statements sqlglot models only as ``exp.Command`` (or
cannot parse) are classified from their tokens; what neither recognises is
unanalysable. The same code serves the planner, ``signoff lint`` and (later)
the gateway, so a statement is judged the same way everywhere.
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, fields, is_dataclass

from sqlglot import exp
from sqlglot.dialects.postgres import Postgres
from sqlglot.errors import ParseError, TokenError

from runner.plan import bodies, directives
from runner.plan.commands import CommandShape, classify
from runner.plan.functions import FunctionFacts, Functions
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


@dataclass(frozen=True)
class Judged:
    """One statement judged before it runs: its findings (``statement``) and what
    running it changes in the analysis's state (``Analysis.confirm``), kept apart
    so the gateway changes its state only on what the server reports done."""

    statement: AnalysedStatement
    view: StatementView
    inner: tuple[StatementView, ...] = ()


def snapshot(context: Context) -> Context:
    """A copy of ``context`` that changes to either leave the other alone (what the
    gateway keeps at BEGIN and SAVEPOINT to undo a rollback): the schema copies
    only its changes over the catalog; containers are copied, values shared."""
    copied = copy.copy(context)
    for f in fields(context):
        setattr(copied, f.name, _copied(getattr(context, f.name)))
    return copied


def _copied(value: object) -> object:
    if isinstance(value, SchemaState):
        return value.snapshot()
    if isinstance(value, dict):
        return {key: _copied(item) for key, item in value.items()}
    if isinstance(value, list):
        return list(value)
    if isinstance(value, set):
        return set(value)
    if (
        is_dataclass(value)
        and not isinstance(value, type)
        and not getattr(type(value), "__dataclass_params__").frozen  # noqa: B009
    ):
        clone = copy.copy(value)
        for f in fields(value):
            setattr(clone, f.name, _copied(getattr(value, f.name)))
        return clone
    return value


def _creates_temporary(view: StatementView) -> bool:
    node = view.node
    if not isinstance(node, exp.Create):
        return False
    properties = node.args.get("properties")
    return properties is not None and any(
        isinstance(p, exp.TemporaryProperty) for p in properties.expressions
    )


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
        functions: FunctionFacts | None = None,
    ) -> None:
        self.policy = policy
        self.rules = list(catalogue().values()) if rules is None else list(rules)
        self.context = Context(
            server_version=server_version,
            schema=schema if schema is not None else SchemaState(),
            apply_lock_timeout=policy.apply_lock_timeout,
            # None: the catalog was not read (only the plan's own functions are judged).
            functions=Functions.from_facts(functions),
        )
        if functions is not None and functions.search_path is not None:
            # The server's own default (ALTER ROLE / DATABASE ... SET search_path).
            self.context.search_path = functions.search_path
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
        """Judge a statement and take it as run (the planner: every statement runs)."""
        judged = self.judge(raw)
        self.confirm(judged)
        return judged.statement

    def judge(self, raw: RawStatement) -> Judged:
        """The findings on ``raw`` against what is known now; nothing known changes
        (``confirm`` does that, once the statement has run)."""
        view = self._view_of(raw)
        context = self.context
        context.schema.search_path = context.search_path
        transaction = context.transaction
        opened = view.kind == "begin" and transaction is None
        if opened:  # the rules on a BEGIN see the transaction it opens
            transaction = context.transaction = self._next_transaction
        try:
            # DO blocks and the bodies of the functions it calls (runner.plan.bodies).
            inner = bodies.expand(view, context, view_of)
            hits = self._hits(view)
            if inner:
                hits.extend(self._inner_hits(inner))
        finally:
            if opened:
                context.transaction = None
        findings = directives.apply(raw, hits, self.policy)
        statement = AnalysedStatement(raw, view.kind or "unknown", transaction, tuple(findings))
        return Judged(statement, view, tuple(i.view for i in inner if i.runs_now))

    def confirm(self, judged: Judged) -> None:
        """Take the judged statement as run: what it changes becomes what is known."""
        view = judged.view
        self._enter(view)
        context = self.context
        schema = context.schema
        for inner_view in judged.inner:
            schema.search_path = context.search_path
            observe(inner_view, context)
        schema.search_path = context.search_path
        schema.creating_temporary = _creates_temporary(view)
        try:
            observe(view, context)
        finally:
            schema.creating_temporary = False
        schema.search_path = context.search_path
        self._leave(view)

    def _inner_hits(self, inner: list[bodies.Inner]) -> list[tuple[Rule, str]]:
        """A DO body's (or called function's) statements, each judged after the ones
        before it had run: on a copy of what is known, so judging changes nothing. Of
        a body that is only defined, not run, only what needs a reviewer is kept."""
        saved = self.context
        self.context = working = snapshot(saved)
        hits: list[tuple[Rule, str]] = []
        try:
            for item in inner:
                found = self._hits(item.view, item.prefix)
                if item.review_only:
                    found = [hit for hit in found if self._needs_review(hit[0])]
                hits.extend(found)
                if item.runs_now:
                    working.schema.search_path = working.search_path
                    observe(item.view, working)
        finally:
            self.context = saved
        return hits

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
            self.context.local_lock_timeout = None

    # -- rules ----------------------------------------------------------------------

    def _hits(self, view: StatementView, prefix: str = "") -> list[tuple[Rule, str]]:
        # The hot loop of the analysis: every rule sees every statement.
        hits: list[tuple[Rule, str]] = []
        context = self.context
        rules = self._rules_by_kind.get(view.kind)
        if rules is None:
            rules = [r for r in self.rules if r.reads_kind(view.kind)]
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

    def _needs_review(self, rule: Rule) -> bool:
        decision = self.policy.decide(rule.id, rule.category, rule.decision)
        return decision in (Decision.NEEDS_APPROVAL, Decision.DENY)


def needs_review(findings: Iterable[Finding]) -> bool:
    return any(f.decision in (Decision.NEEDS_APPROVAL, Decision.DENY) for f in findings)


def category_counts(findings: Iterable[Finding]) -> dict[Category, int]:
    counts: dict[Category, int] = {}
    for f in findings:
        counts[f.category] = counts.get(f.category, 0) + 1
    return counts
