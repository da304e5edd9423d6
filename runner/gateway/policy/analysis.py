"""One session's run of the planner's analysis, and its cache of plain reads' findings.

A session's statements are analysed in order by one ``Analysis`` (the same engine
as ``signoff plan``), so a table the session created is new and a transaction is a
transaction. A plain read (SELECT with no data-modifying or locking keyword) is
judged the same whatever its literal values, so its findings are cached by
fingerprint; everything else is analysed every time.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field

from sqlglot import exp
from sqlglot.tokenizer_core import TokenType

from runner.gateway.model import StatementDecision
from runner.gateway.policy.guard import needs_literal_guard
from runner.plan.analyse import Analysis, Judged, snapshot
from runner.plan.functions import FunctionFacts
from runner.plan.model import Finding
from runner.plan.policy import Policy
from runner.plan.rules.base import Context, table_name
from runner.plan.schema import SchemaState
from runner.plan.statements import RawStatement

# Tokens that make a SELECT more than a plain read: writes (data-modifying
# CTEs, SELECT INTO), row locks, and anything the token classifier handles.
_NOT_A_PLAIN_READ = frozenset(
    {
        TokenType.DELETE,
        TokenType.UPDATE,
        TokenType.INSERT,
        TokenType.MERGE,
        TokenType.INTO,
        TokenType.FOR,
        TokenType.COMMAND,
        TokenType.EXECUTE,
        TokenType.LOCK,
        TokenType.DROP,
        TokenType.ALTER,
        TokenType.CREATE,
        TokenType.TRUNCATE,
        TokenType.SEMICOLON,
    }
)
READ_CACHE_SIZE = 4096

# (fingerprint, in a transaction?): the key of a plain read's cached judgement.
ReadKey = tuple[str, bool]


def plain_read(raw: RawStatement) -> bool:
    """A SELECT that reads only, with no comment: a comment may hold a signoff
    directive, which changes the findings but not the fingerprint. Nor a call of
    set_config: what it sets is in its literals, which the fingerprint does not
    keep (set_config('session_replication_role', 'origin') and '... replica' are
    one fingerprint and two verdicts), nor any text holding a word of
    ``LITERAL_GUARD_WORDS`` (its verdict may hang on a literal, as SO512's does on a
    string naming schema signoff_guard)."""
    tokens = raw.tokens
    if not tokens or tokens[0].token_type is not TokenType.SELECT or raw.comments:
        return False
    if needs_literal_guard(raw.text):
        return False
    for token in tokens:
        kind = token.token_type
        if kind in _NOT_A_PLAIN_READ or (kind is _VAR and token.text.lower() == "set_config"):
            return False
    return True


_VAR = TokenType.VAR


@dataclass(frozen=True)
class ServerFacts:
    """What the analysis knows of the server: its version and catalog (table ->
    column -> type); ``None`` and ``{}`` when unreadable (the planner's worst case)."""

    server_version: int | None
    columns: Mapping[str, Mapping[str, str]]
    # pg_proc's functions (built-in names, user functions' bodies); None: unread.
    functions: FunctionFacts | None = None


class Effect:
    """What one allowed statement changes in its session's analysis: applied when the
    server reports the statement done (its CommandComplete), never before, and not
    at all when it fails or does not run."""

    __slots__ = ("judged", "session")

    def __init__(self, session: SessionAnalysis, judged: Judged) -> None:
        self.session = session
        self.judged = judged

    def done(self, tag: str) -> None:
        self.session.confirm(self.judged, tag)


class Effectful(StatementDecision):
    """A decision on a statement that changes what the analysis knows once it has run
    (a StatementDecision everywhere else: the audit log, the lane and the relay read
    it as one); ``effect`` is applied at its CommandComplete (``effect_of``)."""

    effect: Effect


class NeedsValues(StatementDecision):
    """A statement with parameters refused as it is written: the values bound to it
    may change that (``set_config($1, $2, false)``), so it is decided again at each
    Bind, with those values (``prepared.bound_text``)."""


def with_effect(decision: StatementDecision, effect: Effect | None) -> StatementDecision:
    """``decision`` carrying ``effect`` (unchanged when there is none)."""
    if effect is None:
        return decision
    carrying = Effectful._make(decision)
    carrying.effect = effect
    return carrying


def effect_of(decision: StatementDecision) -> Effect | None:
    return decision.effect if type(decision) is Effectful else None


def needs_values(decision: StatementDecision) -> bool:
    return type(decision) is NeedsValues


# Kinds whose statements change nothing the analysis follows: no effect to confirm.
_STATELESS_KINDS = frozenset({"select", "insert", "update", "delete", "merge", "copy", "show"})
# A mark: where a ROLLBACK (None) or ROLLBACK TO SAVEPOINT (its name) takes the state
# back to, and the generation then.
Mark = tuple[str | None, Context, int]


@dataclass
class SessionAnalysis:
    """One session's analysis state: statements are judged in the order they run, and
    what the state holds is only what the server confirmed.

    ``judge`` changes nothing; ``confirm`` (a statement's CommandComplete) applies
    what it did. BEGIN and SAVEPOINT keep a snapshot (``marks``) that ROLLBACK and
    ROLLBACK TO SAVEPOINT restore and COMMIT and RELEASE let go; a transaction that
    ends without either being confirmed (the server's ReadyForQuery says so,
    ``ready``) leaves what it touched in doubt (``doubtful``), as does an error after
    statements confirmed since the last ReadyForQuery (``failed``: an implicit
    transaction rolled back with it). ``generation`` counts the confirmed changes: a
    statement decided earlier (a prepared one) is decided again once it moved."""

    analysis: Analysis
    read_cache: OrderedDict[ReadKey, tuple[Finding, ...]] = field(default_factory=OrderedDict)
    marks: list[Mark] = field(default_factory=list)
    generation: int = 0
    # The state before the first statement confirmed since the last ReadyForQuery.
    batch: Context | None = None
    # Held while the state changes: the session's decisions take the same lock.
    lock: threading.Lock = field(default_factory=threading.Lock)
    _speculating: bool = False
    # Called once cached verdicts on reads stop holding after a confirmed change (the
    # session's caches empty the C lane's: it must not serve them one read longer).
    on_unhold: Callable[[], None] | None = None

    @classmethod
    def start(
        cls,
        *,
        server_version: int | None,
        columns: Mapping[str, Mapping[str, str]],
        lock_timeout: bool = False,
        functions: FunctionFacts | None = None,
        lock: threading.Lock | None = None,
    ) -> SessionAnalysis:
        """``lock_timeout``: the session's role puts a non-zero lock_timeout in force
        on its upstream connections (without one, assume none: a client's own startup
        setting or the server's default may be 0). ``lock``: the one the session's
        decisions are made under."""
        return cls(
            Analysis(
                Policy(apply_lock_timeout=lock_timeout),
                server_version=server_version,
                schema=SchemaState.from_catalog(columns),
                functions=functions,
            ),
            lock=lock if lock is not None else threading.Lock(),
        )

    @property
    def reads_hold(self) -> bool:
        """Whether a verdict cached on a plain read still holds: not once an enum got
        a label in this session (a read of it is then judged again, every time; the
        set of added labels only grows), nor once a function or search_path changed
        (Context.cached_verdicts_hold)."""
        return self.analysis.context.cached_verdicts_hold

    def read_key(self, raw: RawStatement, *, in_transaction: bool) -> ReadKey | None:
        """The cache key of a plain read (None: analyse it)."""
        if plain_read(raw) and self.analysis.context.cached_verdicts_hold:
            return (raw.fingerprint, in_transaction)
        return None

    def cached_reads_hold(self, in_transaction: bool) -> bool:
        """Keep the session in step; whether a cached verdict on a plain read still
        holds (see ``reads_hold``)."""
        self.sync(in_transaction)
        return self.analysis.context.cached_verdicts_hold

    def findings(
        self, raw: RawStatement, *, in_transaction: bool
    ) -> tuple[str, tuple[Finding, ...]]:
        """(kind, findings) of one statement, taken as run at once (what the planner
        does; the gateway judges with ``judge`` and confirms on the server's word)."""
        kind, findings, judged = self.judge(raw, in_transaction=in_transaction)
        if judged is not None:
            self.confirm(judged, None)
        return kind, findings

    def judge(
        self, raw: RawStatement, *, in_transaction: bool
    ) -> tuple[str, tuple[Finding, ...], Judged | None]:
        """(kind, findings, what confirming it would apply: None when it changes
        nothing the analysis follows) of one statement; the state does not change."""
        self.sync(in_transaction)
        if plain_read(raw) and self.analysis.context.cached_verdicts_hold:
            key = (raw.fingerprint, in_transaction)
            cached = self.read_cache.get(key)
            if cached is not None:
                self.read_cache.move_to_end(key)
                return "select", cached, None
            read = self.analysis.judge(raw).statement
            self.read_cache[key] = read.findings
            if len(self.read_cache) > READ_CACHE_SIZE:
                self.read_cache.popitem(last=False)
            return read.kind, read.findings, None
        judged = self.analysis.judge(raw)
        result = judged.statement
        if result.kind in _STATELESS_KINDS and not _may_set(raw):
            return result.kind, result.findings, None
        return result.kind, result.findings, judged

    # -- what the server confirmed -------------------------------------------------------

    def confirm(self, judged: Judged, tag: str | None) -> None:
        """The statement ran (its CommandComplete ``tag``; None: take it as written)."""
        if self._speculating:
            self._apply(judged, tag)
            return
        with self.lock:
            if self.batch is None and judged.view.kind not in _TRANSACTION_CONTROL:
                # (An error after a BEGIN or SAVEPOINT leaves it to the ROLLBACK that
                # must follow, after a COMMIT nothing before it is undone: no copy.)
                self.batch = snapshot(self.analysis.context)
            self._apply(judged, tag)
            self._held()

    def failed(self) -> None:
        """An error before the next ReadyForQuery: what was confirmed since the last
        one may have been rolled back with it (an implicit transaction)."""
        with self.lock:
            before, self.batch = self.batch, None
            if before is not None:
                self._doubt(before)
                self._held()

    def ready(self, status: int) -> None:
        """The server's ReadyForQuery (``I``, ``T`` or ``E``): the truth about the
        transaction, whatever the analysis saw."""
        idle = status == _IDLE
        if (
            self.batch is None
            and idle is (self.analysis.context.transaction is None)
            and not (idle and self.marks)
        ):
            return  # nothing to settle (the common case: no lock taken)
        with self.lock:
            self.batch = None
            context = self.analysis.context
            if status == _IDLE:
                if context.transaction is not None or self.marks:
                    # Ended without a COMMIT or ROLLBACK the analysis saw confirmed.
                    if self.marks:
                        self._doubt(self.marks[0][1])
                    self._end_transaction()
            elif context.transaction is None:
                self.sync(True)

    def sync(self, in_transaction: bool) -> None:
        """A transaction the server is in that the analysis did not see begin (a
        driver's, a procedure's): followed from here. (The other way round, a
        transaction the analysis takes as open, is settled by ``ready``: a status
        read before the last statements confirmed is stale.)"""
        context = self.analysis.context
        if in_transaction and context.transaction is None:
            context.transaction = -1
            self.marks = [(None, snapshot(context), self.generation)]

    # -- judging a text of several statements -----------------------------------------

    @contextmanager
    def speculating(self) -> Iterator[None]:
        """Judge the statements of one text each as if those before it had run (the
        server stops at the first that fails, so none runs on a wrong assumption),
        on a copy: what is known is the same afterwards."""
        if self._speculating:
            yield
            return
        analysis = self.analysis
        saved = analysis.context, self.marks
        analysis.context = snapshot(saved[0])
        self.marks = list(saved[1])
        self._speculating = True
        try:
            yield
        finally:
            self._speculating = False
            analysis.context, self.marks = saved

    def speculate(self, judged: Judged) -> None:
        """Within ``speculating``: take ``judged`` as run."""
        if self._speculating:
            self._apply(judged, None)

    # -- the changes ------------------------------------------------------------------------

    def _apply(self, judged: Judged, tag: str | None) -> None:
        analysis = self.analysis
        context = analysis.context
        kind = judged.view.kind
        if kind == "begin":
            if context.transaction is None:
                self.marks = [(None, snapshot(context), self.generation)]
            analysis.confirm(judged)
            return
        if kind in ("commit", "rollback"):
            if kind == "rollback" or tag == "ROLLBACK":  # a COMMIT of a failed one
                self._restore(0)
            self.marks = []
            analysis.confirm(judged)
            return
        if kind == "savepoint":
            self._savepoint(judged.view.raw)
            analysis.confirm(judged)
            return
        analysis.confirm(judged)
        node = judged.view.node
        if isinstance(node, exp.Create) and node.args.get("exists"):
            # CREATE ... IF NOT EXISTS answers CREATE TABLE (and a notice) when it
            # found a table already there: not one this session made.
            analysis.context.schema.disown(table_name(node.this))
        elif kind == "discard":
            analysis.context.schema.forget_temporary()
        elif kind == "drop_schema" and isinstance(node, exp.Drop):
            for dropped in node.args.get("tables") or node.expressions:
                analysis.context.schema.forget_schema(table_name(dropped))
        elif kind == "alter_table_set_schema":
            shape = judged.view.shape
            if shape is not None and shape.relation and shape.args:
                # The session's table is then the one in the new schema, not a table
                # someone makes under the old name.
                analysis.context.schema.move_table(shape.relation, shape.args[0])
        self._bump()

    def _savepoint(self, raw: RawStatement) -> None:
        action, name = savepoint_action(raw)
        marks = self.marks
        if action == "savepoint":
            if self.analysis.context.transaction is not None:
                marks.append((name, snapshot(self.analysis.context), self.generation))
            return
        at = next((i for i in range(len(marks) - 1, 0, -1) if marks[i][0] == name), None)
        if at is None:
            return  # not one the analysis saw: the server refused it, or it was earlier
        if action == "release":
            del marks[at:]
        else:  # rollback to: the savepoint stays, the ones after it go
            self._restore(at)
            del marks[at + 1 :]

    def _restore(self, at: int) -> None:
        if at >= len(self.marks):
            return
        _, kept, generation = self.marks[at]
        self.analysis.context = snapshot(kept)
        if generation != self.generation:
            self._bump()

    def _doubt(self, before: Context) -> None:
        self.analysis.context = doubtful(before, self.analysis.context)
        self._bump()

    def _end_transaction(self) -> None:
        context = self.analysis.context
        context.transaction = None
        context.not_valid_in_transaction.clear()
        context.local_lock_timeout = None
        self.marks = []

    def _held(self) -> None:
        if self.on_unhold is not None and not self.analysis.context.cached_verdicts_hold:
            self.on_unhold()

    def _bump(self) -> None:
        if not self._speculating:
            self.generation += 1


_IDLE = ord("I")
_TRANSACTION_CONTROL = frozenset({"begin", "commit", "rollback", "savepoint"})


def doubtful(before: Context, now: Context) -> Context:
    """What is known when the changes from ``before`` to ``now`` may or may not have
    taken effect: a table they touched is no longer one the session made, a
    search_path they changed is unknown (unqualified names then resolve to nothing
    the session made), enum labels added stay added."""
    merged = snapshot(before)
    merged.schema = now.schema.doubtful(before.schema)
    if now.search_path != before.search_path:
        merged.search_path = ()
        merged.schema.search_path = ()
    merged.enum_labels_added = {**before.enum_labels_added, **now.enum_labels_added}
    merged.functions = now.functions
    merged.definitions_changed = True
    merged.transaction = now.transaction
    return merged


def savepoint_action(raw: RawStatement) -> tuple[str, str]:
    """("savepoint" | "release" | "rollback_to", name) of a savepoint statement."""
    names = [t for t in raw.tokens if t.token_type is not TokenType.SEMICOLON]
    first = names[0].text.upper() if names else ""
    action = {"SAVEPOINT": "savepoint", "RELEASE": "release"}.get(first, "rollback_to")
    last = names[-1] if names else None
    if last is None:
        return action, ""
    name = last.text if last.token_type is TokenType.IDENTIFIER else last.text.lower()
    return action, name


def _may_set(raw: RawStatement) -> bool:
    """A statement of a stateless kind that may still change a setting the analysis
    follows (``SELECT set_config('search_path', ...)``)."""
    return any(t.text.lower() == "set_config" for t in raw.tokens)
