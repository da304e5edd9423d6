"""What each forwarded client message expects back, and the statements and portals.

The relay keeps a FIFO of ``Pending`` entries, one per forwarded message that the
server answers (Query, Parse, Bind, Describe, Execute, Close, Sync), so that
responses line up with statements, pipelined or not. ``Bookkeeping`` owns that FIFO,
the prepared statements and portals as the server has them, the outcomes waiting
for their ReadyForQuery, and the refusals the gateway answers in place of a
statement it did not let through.
"""

from __future__ import annotations

import struct
import time
from collections import deque
from collections.abc import Callable, Sequence

from runner.gateway import wire
from runner.gateway.model import AuditDecision, Outcome, StatementDecision
from runner.gateway.policy import prepared as held
from runner.gateway.policy.analysis import (
    Effect,
    SessionAnalysis,
    effect_of,
    needs_values,
    with_effect,
)
from runner.plan.model import sha256_hex

BLOCKED_SQL = "SIGNOFF BLOCKED"  # fails in the upstream's raw parser, before anything runs
SQLSTATE_BLOCKED = "42501"
IDLE = ord("I")  # ReadyForQuery status outside a transaction block

K_QUERY, K_PARSE, K_BIND, K_DESCRIBE, K_EXECUTE, K_CLOSE, K_SYNC = range(7)
NO_SEQS: list[int] = []

_BLOCKED = AuditDecision.BLOCKED

# A message that must be recorded before it is forwarded: its statements'
# decisions, and what to forward once their entries are durable (given their
# seqs, or None when the audit log failed; returning None forwards the message).
Recording = tuple[Sequence[StatementDecision], Callable[[list[int] | None], bytes | None]]


class Prepared:
    """A prepared statement as the proxy knows it."""

    __slots__ = ("approved", "blocked", "decisions", "deferred", "generation", "runs", "text")

    def __init__(
        self, decisions: list[StatementDecision], blocked: bool, text: bytes = b""
    ) -> None:
        self.decisions = decisions
        self.blocked = blocked
        self.text = text  # the Parse's text: what the server runs (the guard's mark names it)
        # A grant covers one run: a statement approved at its Parse runs once,
        # however many times it is bound and executed.
        self.approved = any(d.decision is AuditDecision.APPROVED for d in decisions)
        self.runs = 0
        # The session analysis's generation it was decided at: decided again at
        # Execute once that moved (a state change the server confirmed since).
        self.generation = 0
        # Refused as written but with parameters: decided at each Bind, on the values.
        self.deferred = False


class Portal(Prepared):
    """A bound portal: its statement, and whether it has started running (an
    Execute after PortalSuspended continues the same run)."""

    __slots__ = ("bound", "ran", "statement")

    def __init__(self, statement: Prepared) -> None:
        super().__init__(statement.decisions, statement.blocked, statement.text)
        self.statement = statement
        self.ran = False
        self.generation = statement.generation
        # A deferred statement's text with this Bind's values in place (for the analysis).
        self.bound: bytes | None = None


class Pending:
    """What one forwarded message expects back. The defaults live on the class:
    an entry sets the two or three fields its kind uses (one is made per message)."""

    seqs: list[int] = NO_SEQS  # statement entries recorded for it
    decisions: Sequence[StatementDecision] = ()
    blocked_error: bytes | None = None  # the gateway's error to send instead of upstream's
    t0 = 0.0
    results: list[Outcome] = NO_SEQS  # type: ignore[assignment]  # K_QUERY: its own list
    name = b""
    info: Prepared | None = None
    prev: Prepared | None = None
    copy_ends = 0
    copy_in = False
    target = 0
    # K_QUERY: its statements' effects not yet confirmed or given up; K_EXECUTE: its
    # statement's effect, until confirmed or given up (policy.analysis.Effect).
    effects_left = 0
    effect: Effect | None = None

    def __init__(self, kind: int) -> None:
        self.kind = kind


# -- refusals ---------------------------------------------------------------------------------


def ms(since: float, now: float) -> float:
    return round((now - since) * 1000.0, 3)


def refusal(text: str, reason: str) -> StatementDecision:
    """A blocked decision made by the proxy itself (policy error, undecodable text)."""
    digest = sha256_hex(text)
    return StatementDecision(
        text=text,
        sha256=digest,
        fingerprint=digest,
        findings=(),
        decision=AuditDecision.BLOCKED,
        reason=reason,
    )


def spent(decision: StatementDecision) -> StatementDecision:
    """An approved decision whose grant was already used by an earlier run."""
    if decision.decision is not AuditDecision.APPROVED:
        return decision
    grant = decision.grant
    return decision._replace(
        decision=AuditDecision.BLOCKED,
        grant=None,
        reason=(
            f"the approval{f' (grant {grant.id})' if grant else ''} covered one run of this "
            "statement and was used; running it again needs a new approval"
        ),
    )


def blocked_error(decisions: Sequence[StatementDecision]) -> bytes:
    """The gateway's ErrorResponse for a statement it refused."""
    blocked = [d for d in decisions if d.blocked]
    rules: list[str] = []
    for decision in blocked:
        findings = [f for f in decision.findings if f.get("decision") in ("needs-approval", "deny")]
        for finding in findings or decision.findings:
            rule = finding.get("rule")
            if isinstance(rule, str) and rule not in rules:
                rules.append(rule)
    reasons = list(dict.fromkeys(d.reason or "refused by the gateway's policy" for d in blocked))
    label = f" ({', '.join(rules)})" if rules else ""
    text = f"signoff blocked the statement{label}: {'; '.join(reasons)}"
    first = blocked[0].text.strip() if blocked else ""
    detail = "statement: " + (first if len(first) <= 300 else first[:297] + "...")
    return wire.error_response(SQLSTATE_BLOCKED, text, detail=detail)


def audit_failed_error() -> bytes:
    return wire.error_response(
        "58000",
        "signoff could not record the statement in the audit log; it was not run",
    )


def blocked_outcome(entry: Pending, index: int) -> Outcome:
    decisions = entry.decisions
    blocked = index < len(decisions) and decisions[index].blocked
    return Outcome(sqlstate=SQLSTATE_BLOCKED if blocked else None, status="not-run")


def bind_values(body: bytes, codec: str) -> list[str | None] | None:
    """The parameter values of a Bind message as text (None for NULL); None when one
    is in binary format or not in the client encoding (or the message is malformed:
    the server refuses it)."""
    try:
        at = body.index(0) + 1  # portal name
        at = body.index(0, at) + 1  # statement name
        (formats,) = struct.unpack_from("!h", body, at)
        codes = struct.unpack_from(f"!{formats}h", body, at + 2)
        at += 2 + 2 * formats
        (count,) = struct.unpack_from("!h", body, at)
        at += 2
        values: list[str | None] = []
        for index in range(count):
            code = codes[0] if len(codes) == 1 else (codes[index] if codes else 0)
            (length,) = struct.unpack_from("!i", body, at)
            at += 4
            if length < 0:
                values.append(None)
                continue
            if code != 0 or at + length > len(body):
                return None
            values.append(body[at : at + length].decode(codec))
            at += length
        return values
    except (ValueError, IndexError, struct.error, UnicodeDecodeError, LookupError):
        return None


# -- the bookkeeping --------------------------------------------------------------------------


class Bookkeeping:
    """The entries the server still owes answers for, the statements and portals it
    has, and the outcomes waiting for their ReadyForQuery."""

    codec: str  # the client encoding's codec (RelayCore's)

    def __init__(self) -> None:
        self.pending: deque[Pending] = deque()
        self.discarding = False  # an extended-protocol error: the server skips to Sync
        self.statements: dict[bytes, Prepared] = {}
        self.portals: dict[bytes, Prepared] = {}
        self.copy_ends = 0
        # The server reports a changed setting only at its next ReadyForQuery. Until
        # every statement forwarded so far has reached one, a text whose string
        # literals hold a backslash is refused: a statement still running (an existing
        # function, say) may have turned standard_conforming_strings off, and the
        # server would read that text differently from the analysis.
        self.settled = True
        # Whether a statement entry has left the FIFO since ``settled`` was last
        # recomputed: only then can it have become true, so a burst of Syncs (one
        # ReadyForQuery each) does not rescan the FIFO per answer (that was quadratic).
        self.statement_left = False
        self.batch: list[tuple[int, Outcome]] = []  # outcomes waiting for ReadyForQuery
        # The session's analysis, once a statement that changes it was forwarded: the
        # server's answers confirm what it changes (policy.analysis.SessionAnalysis).
        self.confirms: SessionAnalysis | None = None
        # Statements forwarded whose change to the analysis the server has not yet
        # confirmed (or refused): nothing more is decided until it has, since the
        # decision depends on it (relay: wait_for_confirms).
        self.unconfirmed = 0

    # what the client sends -----------------------------------------------------------------

    def query_recorded(self, entry: Pending, seqs: list[int] | None) -> bytes | None:
        decisions = entry.decisions
        if seqs is None:
            entry.blocked_error = audit_failed_error()
        else:
            entry.seqs = seqs
            for decision in decisions:
                if decision.decision is _BLOCKED:
                    entry.blocked_error = blocked_error(decisions)
                    break
        self.pending.append(entry)
        if entry.blocked_error is None:
            entry.t0 = time.perf_counter()
            self.settled = False
            for decision in decisions:
                effect = effect_of(decision)
                if effect is not None:
                    self.confirms = effect.session
                    entry.effects_left += 1
            self.unconfirmed += entry.effects_left
            return None
        return wire.query(BLOCKED_SQL)

    def _on_parse(
        self, message: wire.ParseMessage, decisions: list[StatementDecision]
    ) -> Recording | None:
        """Track the statement; None to forward the Parse as is, else what to record
        first and what to forward once recorded (a blocked statement)."""
        blocked = any(d.blocked for d in decisions)
        info = Prepared(decisions, blocked, message.text)
        info.generation = self._generation()
        if blocked and decisions and all(needs_values(d) for d in decisions):
            # Parsing runs nothing: the statement goes to the server, and is decided
            # at each Bind with the values bound to it (refused at its Execute).
            info.blocked = blocked = False
            info.deferred = True
        entry = Pending(K_PARSE)
        entry.name = message.name
        entry.info = info
        entry.prev = self.statements.get(message.name)
        entry.decisions = decisions
        self.statements[message.name] = info
        if not blocked:
            self.pending.append(entry)
            return None
        return decisions, lambda seqs: self._blocked_parse(entry, seqs)

    def _blocked_parse(self, entry: Pending, seqs: list[int] | None) -> bytes:
        if seqs is None:
            entry.blocked_error = audit_failed_error()
        else:
            entry.seqs = seqs
            entry.blocked_error = blocked_error(entry.decisions)
        self.pending.append(entry)
        return wire.parse(entry.name, BLOCKED_SQL)

    def _on_bind(self, body: bytes) -> None:
        portal, statement = wire.parse_bind_names(body)
        entry = Pending(K_BIND)
        entry.name = portal
        entry.prev = self.portals.get(portal)
        info = self.statements.get(statement)
        if info is None:
            self.portals.pop(portal, None)
        else:
            bound = entry.info = self.portals[portal] = Portal(info)
            if info.deferred:
                self._decide_bound(bound, body)
        self.pending.append(entry)

    # -- decisions made after the Parse ------------------------------------------------------

    def _decide(self, raw: bytes) -> list[StatementDecision]:
        raise NotImplementedError  # the relay's (ClientToServer)

    def _generation(self) -> int:
        """How many state changes of the session's analysis the server has confirmed
        (0 before the first)."""
        confirms = self.confirms
        return 0 if confirms is None else confirms.generation

    def _decide_bound(self, portal: Portal, body: bytes) -> None:
        """A deferred statement's decision for this Bind: on its text with the bound
        values as literals. Values the analysis cannot read (binary, not in the client
        encoding) fail closed."""
        original = portal.statement.decisions[0]
        values = bind_values(body, self.codec)
        text = None if values is None else held.bound_text(original.text, values)
        portal.blocked = False
        portal.generation = self._generation()
        if text is None:
            portal.decisions = [
                refusal(
                    original.text,
                    "its parameters decide whether it is allowed, and the values bound "
                    "are not readable as text (binary format, or not in the client "
                    "encoding); refused: bind them in text format",
                )
            ]
            return
        portal.bound = text.encode(self.codec)
        portal.decisions = self._bound_decisions(portal.bound, original)

    def _bound_decisions(
        self, bound: bytes, original: StatementDecision
    ) -> list[StatementDecision]:
        decisions = self._decide(bound)
        if len(decisions) != 1:
            return [refusal(original.text, "not one statement with its values bound; refused")]
        (decision,) = decisions
        # Recorded as the statement sent (its parameters, not their values).
        own = decision._replace(
            text=original.text, sha256=original.sha256, fingerprint=original.fingerprint
        )
        return [with_effect(own, effect_of(decision))]

    def _decide_again(self, portal: Portal) -> None:
        """The state the portal's decision was made in changed: decided again, now."""
        generation = self._generation()
        portal.generation = generation
        if portal.bound is not None:
            portal.decisions = self._bound_decisions(portal.bound, portal.statement.decisions[0])
            return
        text = portal.text or portal.decisions[0].text.encode(self.codec)
        decisions = self._decide(text)
        if len(decisions) != 1:
            decisions = [refusal(portal.decisions[0].text, "not one statement; refused")]
        statement = portal.statement
        statement.decisions = portal.decisions = decisions
        statement.generation = generation
        statement.approved = any(d.decision is AuditDecision.APPROVED for d in decisions)
        statement.runs = 0

    def _on_execute(self, body: bytes) -> Recording | None:
        portal_name, _ = wire.parse_execute(body)
        portal = self.portals.get(portal_name)
        entry = Pending(K_EXECUTE)
        entry.copy_ends = self.copy_ends
        if portal is None or portal.blocked or not portal.decisions:
            entry.t0 = time.perf_counter()
            self.pending.append(entry)
            return None
        if (
            isinstance(portal, Portal)
            and not portal.ran
            and portal.generation != self._generation()
        ):
            self._decide_again(portal)
        decisions = portal.decisions
        if isinstance(portal, Portal) and not portal.ran:
            portal.ran = True
            statement = portal.statement
            if statement.approved:
                statement.runs += 1
                if statement.runs > 1:
                    decisions = [spent(d) for d in decisions]
        return decisions, lambda seqs: self.execute_recorded(entry, decisions, seqs)

    def execute_recorded(
        self, entry: Pending, decisions: list[StatementDecision], seqs: list[int] | None
    ) -> bytes | None:
        entry.decisions = decisions
        if seqs is None:
            entry.blocked_error = audit_failed_error()
        elif any(d.blocked for d in decisions):
            entry.seqs = seqs
            entry.blocked_error = blocked_error(decisions)
        if entry.blocked_error is not None:
            # Not run: a Parse that fails upstream errors in the Execute's place
            # (and the server skips to Sync, as after a failed Execute).
            self.pending.append(entry)
            return wire.parse(b"signoff_refused", BLOCKED_SQL)
        entry.seqs = seqs or NO_SEQS
        entry.t0 = time.perf_counter()
        self.settled = False
        if decisions:
            effect = effect_of(decisions[0])
            if effect is not None:
                self.confirms = effect.session
                entry.effect = effect
                self.unconfirmed += 1
        self.pending.append(entry)
        return None

    def _on_close(self, body: bytes) -> None:
        target, name = wire.parse_target(body)
        entry = Pending(K_CLOSE)
        entry.target = target
        entry.name = name
        mapping = self.statements if target == ord("S") else self.portals
        entry.prev = mapping.pop(name, None)
        self.pending.append(entry)

    def _refused_function_call(self) -> bytes:
        """The fast-path FunctionCall carries no SQL to decide: a blocked text goes in
        its place and the gateway's error answers it."""
        entry = Pending(K_QUERY)
        entry.blocked_error = wire.error_response(
            SQLSTATE_BLOCKED,
            "signoff blocked a function call: the fast-path function call protocol "
            "is not allowed through the gateway; use a SELECT",
        )
        self.pending.append(entry)
        return wire.query(BLOCKED_SQL)

    # what the server answers ---------------------------------------------------------------

    def _statement_done(self, head: Pending, tag: str | None, rows: int | None) -> None:
        kind = head.kind
        if kind == K_QUERY:
            done = len(head.results)
            if tag is not None and head.effects_left and done < len(head.decisions):
                effect = effect_of(head.decisions[done])
                if effect is not None:  # this statement's change is now the server's word
                    head.effects_left -= 1
                    self.unconfirmed -= 1
                    self._confirm(effect, tag)
            if len(head.results) < len(head.seqs):
                now = time.perf_counter()
                head.results.append(
                    Outcome(tag=tag, rows=rows, duration_ms=ms(head.t0, now), status="completed")
                )
                head.t0 = now
        elif kind == K_EXECUTE:
            self.pending.popleft()
            self.statement_left = True
            effect = head.effect
            if effect is not None:
                if tag is not None:  # (a suspended portal has not finished: not confirmed)
                    self._confirm(effect, tag)
                self._effect_settled(head)
            if head.seqs:
                outcome = Outcome(
                    tag=tag,
                    rows=rows,
                    duration_ms=ms(head.t0, time.perf_counter()),
                    status="completed",
                )
                for seq in head.seqs:
                    self.batch.append((seq, outcome))
            if head.copy_in:
                self._drop_syncs_read_during_copy(head)

    def _drop_syncs_read_during_copy(self, head: Pending) -> None:
        """The server ignores Sync (and Flush) while in COPY FROM STDIN mode: libpq
        sends a Sync right after the Execute and another after CopyDone."""
        ignored = [e for e in self.pending if e.kind == K_SYNC and e.copy_ends == head.copy_ends]
        for entry in ignored:
            self.pending.remove(entry)

    def _settled(self) -> bool:
        """Every statement forwarded so far has reached its ReadyForQuery."""
        return self.settled and not any(
            entry.kind == K_QUERY or entry.kind == K_EXECUTE for entry in self.pending
        )

    def _finish_query(self, entry: Pending) -> None:
        if entry.effects_left:  # statements that failed or did not run: nothing confirmed
            self.unconfirmed -= entry.effects_left
            entry.effects_left = 0
        batch = self.batch
        results = entry.results
        for i, seq in enumerate(entry.seqs):
            if i < len(results):
                batch.append((seq, results[i]))
            elif entry.blocked_error is not None:
                batch.append((seq, blocked_outcome(entry, i)))
            else:
                batch.append((seq, Outcome(status="not-run")))

    def _discarded(self, entry: Pending) -> None:
        """An entry the server skipped (after an error, until Sync)."""
        kind = entry.kind
        if kind == K_EXECUTE:
            if entry.effect is not None:
                self._effect_settled(entry)
            for i, seq in enumerate(entry.seqs):
                self.batch.append((seq, blocked_outcome(entry, i)))
        elif kind == K_QUERY:
            self._finish_query(entry)
        elif kind == K_PARSE:
            for i, seq in enumerate(entry.seqs):
                self.batch.append((seq, blocked_outcome(entry, i)))
            self._revert(self.statements, entry, entry.prev)
        elif kind == K_BIND:
            self._revert(self.portals, entry, entry.prev)
        elif kind == K_CLOSE and entry.prev is not None:
            mapping = self.statements if entry.target == ord("S") else self.portals
            mapping.setdefault(entry.name, entry.prev)

    # -- the server's word on the analysis's state ----------------------------------------

    def _effect_settled(self, entry: Pending) -> None:
        """An Execute's effect confirmed or given up: decisions waiting on it go on."""
        entry.effect = None
        self.unconfirmed -= 1
        if not self.unconfirmed:
            self.confirms_settled()

    def _confirm(self, effect: Effect, tag: str) -> None:
        try:
            effect.done(tag)
        except Exception as exc:  # the analysis cannot follow the server: fail closed
            self.analysis_lost(exc)

    def analysis_lost(self, error: Exception) -> None:
        """The session's analysis failed to take in what the server did: nothing more
        may be decided on this connection (RelayCore ends it)."""
        raise error

    def confirms_settled(self) -> None:
        """Nothing forwarded is waiting for the server's confirmation any more (the
        relay goes on with what it held, see RelayCore.wait_for_confirms)."""

    def confirm_failed(self, head: Pending) -> None:
        """An ErrorResponse for ``head``: what it would have changed is not confirmed,
        and what was confirmed since the last ReadyForQuery may be rolled back too."""
        if self.confirms is not None:
            self.confirms.failed()
        if head.kind == K_EXECUTE and head.effect is not None:
            self._effect_settled(head)

    def confirm_ready(self, status: int) -> None:
        """ReadyForQuery: the server's word on the transaction, for the analysis."""
        if not self.pending:
            self.unconfirmed = 0  # (whatever was in flight has answered)
        if self.confirms is not None:
            self.confirms.ready(status)
        if not self.unconfirmed:
            self.confirms_settled()

    def _revert(self, mapping: dict[bytes, Prepared], entry: Pending, to: Prepared | None) -> None:
        """Undo what a Parse/Bind that did not take effect upstream did to the map."""
        if entry.info is not None and mapping.get(entry.name) is entry.info:
            if to is None:
                del mapping[entry.name]
            else:
                mapping[entry.name] = to
        for other in self.pending:
            if other.kind == entry.kind and other.name == entry.name and other.prev is entry.info:
                other.prev = to

    # the end ---------------------------------------------------------------------------------

    def owed_at_close(self) -> list[tuple[int, Outcome]]:
        """The outcomes of everything still waiting when the connection ends (a
        statement still running or answered without its ReadyForQuery is
        ``connection-lost``); the FIFO and the batch are emptied."""
        owed: list[tuple[int, Outcome]] = []
        status = "connection-lost"
        for seq, outcome in self.batch:
            if outcome.status == "completed":
                outcome = outcome._replace(status=status)
            owed.append((seq, outcome))
        self.batch = []
        now = time.perf_counter()
        for entry in self.pending:
            if entry.kind == K_QUERY:
                for i, seq in enumerate(entry.seqs):
                    if i < len(entry.results):
                        result = entry.results[i]
                        if result.status == "completed":
                            result = result._replace(status=status)
                        owed.append((seq, result))
                    elif entry.blocked_error is not None:
                        owed.append((seq, blocked_outcome(entry, i)))
                    else:
                        owed.append((seq, Outcome(status=status, duration_ms=ms(entry.t0, now))))
            elif entry.kind == K_EXECUTE:
                for i, seq in enumerate(entry.seqs):
                    if entry.blocked_error is not None:
                        owed.append((seq, blocked_outcome(entry, i)))
                    else:
                        owed.append((seq, Outcome(status=status, duration_ms=ms(entry.t0, now))))
            elif entry.kind == K_PARSE and entry.blocked_error is not None:
                for i, seq in enumerate(entry.seqs):
                    owed.append((seq, blocked_outcome(entry, i)))
        self.pending.clear()
        return owed
