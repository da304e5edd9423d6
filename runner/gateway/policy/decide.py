"""The decision on one session's text: caches first, then the analysis, the role, grants.

``GatewayPolicy.decide`` is the one call the service makes; ``SessionPolicy`` is one
session's state behind it (its analysis, its caches, what it needs to decide);
``decide_statement`` maps one analysed statement's findings to a decision.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from functools import partial
from typing import Any, Protocol

from sqlglot.tokenizer_core import Token

from runner.gateway.config import RoleConfig
from runner.gateway.model import (
    AuditDecision,
    Grant,
    Session,
    StatementDecision,
    Verdict,
    utcnow,
)
from runner.plan.analyse import Judged
from runner.plan.model import Category, Decision, Finding, Severity, sha256_hex
from runner.plan.statements import RawStatement, split_statements

from . import prepared
from .analysis import (
    Effect,
    NeedsValues,
    ServerFacts,
    SessionAnalysis,
    effect_of,
    with_effect,
)
from .caches import LaneEntryData, SessionCaches, literal_shape
from .guard import literal_reading_refusal, needs_literal_guard

# (database, fingerprint, session id, now) -> the grant it used up, or None.
GrantLookup = Callable[[str, str, str, datetime], Grant | None]
# (database, decision) -> the statement entry's data (whole, or up to its sha256).
EntryData = Callable[[str, StatementDecision], str]

_ALLOWED = AuditDecision.ALLOWED
_RANK = {Verdict.ALLOW: 0, Verdict.NEEDS_APPROVAL: 1, Verdict.DENY: 2}


def refusal_of(
    own: tuple[str, str, str],
    reason: str,
    *,
    findings: tuple[Mapping[str, Any], ...] = (),
) -> StatementDecision:
    return StatementDecision(*own, findings, AuditDecision.BLOCKED, reason=reason)


def split(sql: str, *, tokens: list[Token] | None = None) -> list[RawStatement]:
    return split_statements(sql, tokens=tokens)


def role_verdict(role: RoleConfig, findings: tuple[Finding, ...]) -> tuple[Verdict, list[Finding]]:
    """The strictest verdict over the findings, and the findings that caused it."""
    worst = Verdict.ALLOW
    causes: list[Finding] = []
    for finding in findings:
        verdict = role.verdict(finding.rule, finding.category)
        if _RANK[verdict] > _RANK[worst]:
            worst, causes = verdict, [finding]
        elif verdict is worst and verdict is not Verdict.ALLOW:
            causes.append(finding)
    return worst, causes


class Identified(Protocol):
    """What a decision records of a statement: its text and the two hashes."""

    @property
    def text(self) -> str: ...
    @property
    def sha256(self) -> str: ...
    @property
    def fingerprint(self) -> str: ...


@dataclass(frozen=True)
class Opaque:
    """A text over ``max_statement_bytes``: never tokenized or parsed (that is where
    its memory and time would go), so identified by its sha256 alone."""

    text: str

    @property
    def sha256(self) -> str:
        return sha256_hex(self.text)

    @property
    def fingerprint(self) -> str:
        return "sha256:" + self.sha256


def too_large(text: str, limit: int) -> Finding:
    """The unanalysable finding of a text over the gateway's size bound."""
    return Finding(
        rule="SO001",
        name="unparseable-statement",
        category=Category.UNANALYSABLE,
        severity=Severity.ERROR,
        decision=Decision.NEEDS_APPROVAL,
        message=(
            f"not analysed: {len(text)} characters, over the gateway's max_statement_bytes "
            f"({limit}); split it, or have it approved"
        ),
    )


def decide_statement(
    raw: Identified,
    findings: tuple[Finding, ...],
    *,
    role: RoleConfig,
    database: str,
    session_id: str,
    now: datetime,
    consume_grant: GrantLookup,
) -> StatementDecision:
    """The role's verdict on ``findings``; a needs-approval statement is APPROVED only
    with a grant for its fingerprint, which this uses up."""
    verdict, causes = role_verdict(role, findings)
    findings_json: tuple[Mapping[str, Any], ...] = tuple(f.to_json() for f in findings)
    if verdict is Verdict.ALLOW:
        return StatementDecision(
            raw.text, raw.sha256, raw.fingerprint, findings_json, AuditDecision.ALLOWED
        )
    rules = ", ".join(f"{f.rule} {f.name}" for f in causes)
    if verdict is Verdict.DENY:
        return StatementDecision(
            raw.text,
            raw.sha256,
            raw.fingerprint,
            findings_json,
            AuditDecision.BLOCKED,
            reason=f"denied by role {role.name}: {rules}; no grant can allow it",
        )
    grant = consume_grant(database, raw.fingerprint, session_id, now)
    if grant is None:
        return StatementDecision(
            raw.text,
            raw.sha256,
            raw.fingerprint,
            findings_json,
            AuditDecision.BLOCKED,
            reason=(
                f"needs approval ({rules}); an approved plan or "
                f"`signoff gateway grant --database {database} --fingerprint "
                f"{raw.fingerprint}` allows it once"
            ),
        )
    return StatementDecision(
        raw.text,
        raw.sha256,
        raw.fingerprint,
        findings_json,
        AuditDecision.APPROVED,
        grant=grant,
    )


class SessionPolicy:
    """One session's decisions, in the order its statements run. Not thread-safe:
    ``GatewayPolicy`` calls it under the session's ``lock``."""

    def __init__(
        self,
        session: Session,
        role: RoleConfig | None,
        facts: ServerFacts,
        *,
        consume_grant: GrantLookup,
        lane: LaneEntryData,
        max_statement_bytes: int = 262_144,
    ) -> None:
        self.max_statement_bytes = max_statement_bytes
        # Per session, not one for the gateway: a large text analysed in a worker
        # (runner.gateway.proxy.aside) must not hold up other sessions' decisions.
        self.lock = threading.Lock()
        self.session_id = session.id
        self.database = session.database
        self.role_name = session.role
        # None: the session's role is no longer configured (a session outlives a
        # restart with another configuration); each of its texts is refused.
        self.role = role
        self.analysis = SessionAnalysis.start(
            server_version=facts.server_version,
            columns=facts.columns,
            lock_timeout=bool(role is not None and role.lock_timeout_ms),
            functions=facts.functions,
            lock=self.lock,  # the server's confirmations change the state under it too
        )
        self.caches = SessionCaches()
        self.analysis.on_unhold = self.caches.forget_lanes
        # SQL-level prepared statements the gateway forwarded: name -> the text it runs.
        self.prepared_texts: dict[str, str] = {}
        self.cursors: set[str] = set()  # cursors the gateway forwarded a DECLARE of
        self.consume_grant = consume_grant
        self.lane = lane

    def decide(self, sql: str, *, in_transaction: bool, lanes: bool) -> list[StatementDecision]:
        """The decisions on ``sql``'s statements, in order (``lanes``: also fill the
        C lane's caches)."""
        caches = self.caches
        analysis = self.analysis
        known = caches.allowed_texts.get((sql, in_transaction))
        if known is not None and analysis.cached_reads_hold(in_transaction):
            return [known]
        if self.role is None:
            raise KeyError(f"role {self.role_name!r} is not configured")
        if len(sql) > self.max_statement_bytes:
            # Bounded whatever a client sends: no tokens, no tree, one finding.
            opaque = Opaque(sql)
            finding = too_large(sql, self.max_statement_bytes)
            decision = decide_statement(
                opaque,
                (finding,),
                role=self.role,
                database=self.database,
                session_id=self.session_id,
                now=utcnow(),
                consume_grant=self.consume_grant,
            )
            if decision.blocked:
                decision = decision._replace(
                    reason=f"{finding.message}: `signoff gateway grant --database "
                    f"{self.database} --fingerprint {opaque.fingerprint}` allows it once"
                )
            return [decision]
        if needs_literal_guard(sql):
            return self._decide_guarded(sql, in_transaction=in_transaction)
        mask, text, native, tokens = literal_shape(sql)
        if mask is not None:
            shape = caches.allowed_shapes.get((mask, native, in_transaction))
            if (
                shape is not None
                and analysis.cached_reads_hold(in_transaction)
                and text is not None
            ):
                fingerprint, findings_json = shape
                return [
                    StatementDecision(text, sha256_hex(text), fingerprint, findings_json, _ALLOWED)
                ]
        statements = split(sql, tokens=tokens)
        single = len(statements) == 1
        lane = self.lane if lanes else None
        now: datetime | None = None
        decisions = []
        # Each statement of a text judged as if those before it had run (on a copy:
        # the state changes only as the server confirms each one).
        with contextlib.nullcontext() if single else analysis.speculating():
            for raw in statements:
                named = prepared.read(raw)
                if named is not None:
                    decision_of = self._prepared(raw, named, in_transaction=in_transaction)
                    if decision_of is not None:
                        decisions.append(decision_of)
                        continue
                key = analysis.read_key(raw, in_transaction=in_transaction)
                if key is not None:
                    allowed = caches.allowed_reads.get(key)
                    if allowed is not None:
                        decision = StatementDecision(
                            raw.text, raw.sha256, raw.fingerprint, allowed, _ALLOWED
                        )
                        if single:
                            caches.remember_single(
                                sql,
                                mask,
                                native,
                                decision,
                                in_transaction=in_transaction,
                                lane=lane,
                            )
                        decisions.append(decision)
                        continue
                findings, judged = self._judge(raw, in_transaction)
                if now is None:
                    now = utcnow()
                decision = self._effect(raw, self._decide_one(raw, findings, now), judged, single)
                # Never a decision that needed a grant: a grant covers one run.
                if key is not None and decision.decision is _ALLOWED and decision.grant is None:
                    caches.remember_read(key, decision.findings)
                    if single:
                        caches.remember_single(
                            sql,
                            mask,
                            native,
                            decision,
                            in_transaction=in_transaction,
                            # (the analysis of a plain read adds no enum label: defensive)
                            lane=lane if analysis.reads_hold else None,
                        )
                decisions.append(decision)
        return decisions

    def _prepared(
        self,
        raw: RawStatement,
        named: prepared.Held,
        *,
        in_transaction: bool,
    ) -> StatementDecision | None:
        """A statement that holds, uses or drops a held statement (see policy.prepared);
        None: an EXECUTE or FETCH of a name the gateway never forwarded (the analysis
        judges it: it cannot read it, so it needs approval)."""
        own = (raw.text, raw.sha256, raw.fingerprint)
        if isinstance(named, prepared.CloseCursor):
            if named.name is None:
                self.cursors.clear()
            else:
                self.cursors.discard(named.name)
            return StatementDecision(*own, (), _ALLOWED)
        if isinstance(named, prepared.Fetch):
            if named.name not in self.cursors:
                return None
            return StatementDecision(*own, (), _ALLOWED)
        if isinstance(named, prepared.Deallocate):
            if named.name is None:
                self.prepared_texts.clear()
            else:
                self.prepared_texts.pop(named.name, None)
            return StatementDecision(*own, (), _ALLOWED)
        if isinstance(named, prepared.Execute):
            text = self.prepared_texts.get(named.name)
            if text is None:
                return None
            # Decided again now, as the statement it runs: the catalog may have changed.
            inner = self.decide(text, in_transaction=in_transaction, lanes=False)
            if len(inner) != 1:
                return refusal_of(own, f"EXECUTE {named.name}: not one statement")
            own_text = inner[0]._replace(
                text=raw.text, sha256=raw.sha256, fingerprint=raw.fingerprint
            )
            return with_effect(own_text, effect_of(inner[0]))
        inner = self.decide(named.text, in_transaction=in_transaction, lanes=False)
        verb = "PREPARE" if isinstance(named, prepared.Prepare) else "DECLARE"
        if len(inner) == 1 and inner[0].decision is _ALLOWED and inner[0].grant is None:
            if isinstance(named, prepared.Prepare):
                self.prepared_texts[named.name] = named.text
            else:
                self.cursors.add(named.name)
            return StatementDecision(*own, inner[0].findings, _ALLOWED)
        why = inner[0].reason if len(inner) == 1 and inner[0].reason else "not allowed"
        return refusal_of(
            own,
            f"{verb} {named.name}: the statement it holds is not allowed as it stands "
            f"({why}); run it directly, where a grant can cover its one run",
            findings=inner[0].findings if len(inner) == 1 else (),
        )

    def _decide_guarded(self, sql: str, *, in_transaction: bool) -> list[StatementDecision]:
        """Text that might touch standard_conforming_strings: every statement analysed
        (no cache: its literal values matter) and refused if it could turn it off."""
        now = utcnow()
        decisions = []
        statements = split(sql)
        single = len(statements) == 1
        with contextlib.nullcontext() if single else self.analysis.speculating():
            for raw in statements:
                findings, judged = self._judge(raw, in_transaction)
                refusal = literal_reading_refusal(raw)
                if refusal is not None:
                    decision = StatementDecision(
                        raw.text,
                        raw.sha256,
                        raw.fingerprint,
                        tuple(f.to_json() for f in findings),
                        AuditDecision.BLOCKED,
                        reason=refusal,
                    )
                else:
                    decision = self._decide_one(raw, findings, now)
                decisions.append(self._effect(raw, decision, judged, single))
        return decisions

    def _judge(
        self, raw: RawStatement, in_transaction: bool
    ) -> tuple[tuple[Finding, ...], Judged | None]:
        """The findings on ``raw`` and what it changes once it has run (None: nothing
        the analysis follows); the session's state does not change here."""
        analysis = self.analysis
        _, findings, judged = analysis.judge(raw, in_transaction=in_transaction)
        if not analysis.reads_hold:
            self.caches.forget_lanes()
        return findings, judged

    def _effect(
        self,
        raw: RawStatement,
        decision: StatementDecision,
        judged: Judged | None,
        single: bool,
    ) -> StatementDecision:
        """``decision`` with what its statement changes, applied when the server
        reports it done; within a text of several, taken as run for the next one. A
        refused statement with parameters is decided again with their values, at Bind."""
        if decision.blocked:
            if single and prepared.has_parameters(raw):
                return NeedsValues._make(decision)
            return decision
        if judged is None:
            return decision
        analysis = self.analysis
        if not single:
            analysis.speculate(judged)
        return with_effect(decision, Effect(analysis, judged))

    def _decide_one(
        self, raw: RawStatement, findings: tuple[Finding, ...], now: datetime
    ) -> StatementDecision:
        assert self.role is not None  # decide checked
        return decide_statement(
            raw,
            findings,
            role=self.role,
            database=self.database,
            session_id=self.session_id,
            now=now,
            consume_grant=self.consume_grant,
        )


class GatewayPolicy:
    """Every session's decisions: ``decide`` is the one call for a text; the state of
    each session (its analysis and caches) lives here, made at its first text."""

    def __init__(
        self,
        roles: Mapping[str, RoleConfig],
        *,
        facts: Callable[[str], ServerFacts],
        consume_grant: GrantLookup,
        entry_data: EntryData,
        entry_prefix: EntryData,
        max_statement_bytes: int = 262_144,
    ) -> None:
        self._max_statement_bytes = max_statement_bytes
        self._roles = roles
        self._facts = facts
        self._consume_grant = consume_grant
        self._entry_data = entry_data
        self._entry_prefix = entry_prefix
        self._lock = threading.Lock()
        self._sessions: dict[str, SessionPolicy] = {}

    def decide(
        self, session: Session, sql: str, *, in_transaction: bool, lanes: bool
    ) -> list[StatementDecision]:
        """Split ``sql`` (a simple-query string may hold several statements) and decide
        each, in the session's order; consumes grants for statements that need one.
        ``lanes``: an ALLOW on a plain read outside a transaction is also cached for
        the C lane (``lane_caches``)."""
        # A dict read is atomic: sessions are only added, under the lock, by _state.
        state = self._sessions.get(session.id) or self._state(session)
        with state.lock:
            return state.decide(sql, in_transaction=in_transaction, lanes=lanes)

    def lane_caches(
        self, session: Session
    ) -> tuple[dict[str, str], dict[str, tuple[str, StatementDecision]]]:
        """The session's caches the C lane reads (by literal mask, by exact text): filled
        by ``decide`` with ``lanes``, emptied for good once cached verdicts on reads
        stop holding; the same two dicts for the session's life."""
        caches = (self._sessions.get(session.id) or self._state(session)).caches
        return caches.lane_shapes, caches.lane_texts

    def caches(self, session_id: str) -> SessionCaches | None:
        """What the session's caches hold now (for tests and diagnostics); None before
        its first text."""
        state = self._sessions.get(session_id)
        return None if state is None else state.caches

    def _state(self, session: Session) -> SessionPolicy:
        # The server's facts are read (once per database) outside the lock: it may
        # be a round trip to the server.
        facts = self._facts(session.database)
        database = session.database
        lane = LaneEntryData(
            partial(self._entry_data, database), partial(self._entry_prefix, database)
        )
        with self._lock:
            state = self._sessions.get(session.id)
            if state is None:
                state = SessionPolicy(
                    session,
                    self._roles.get(session.role),
                    facts,
                    consume_grant=self._consume_grant,
                    lane=lane,
                    max_statement_bytes=self._max_statement_bytes,
                )
                self._sessions[session.id] = state
            return state
