"""The gateway's core, between its two listeners: token exchange, sessions,
per-statement decisions and the audit chain. The HTTP API (``app``) and the
PostgreSQL proxy (``pgproxy``) both call into one ``GatewayService``.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import quote

from sqlglot.errors import TokenError
from sqlglot.tokenizer_core import Token

from runner.errors import DatabaseError
from runner.gateway.auditlog import (
    AuditWriter,
    outcome_entry,
    statement_data_json,
    statement_data_prefix,
    statement_entry,
)
from runner.gateway.config import AccessRule, GatewayConfig, RoleConfig
from runner.gateway.model import (
    AuditDecision,
    EntryKind,
    FastLane,
    Grant,
    NewEntry,
    Outcome,
    Principal,
    ScramVerifier,
    Session,
    StatementDecision,
    StateStore,
    Upstream,
    new_secret,
    new_session_id,
    utcnow,
)
from runner.gateway.oidc import OidcValidator, TokenRejected, claims_match
from runner.gateway.policy import (
    SessionAnalysis,
    decide_statement,
    literal_reading_refusal,
    needs_literal_guard,
    split,
)
from runner.plan.model import Finding, sha256_hex
from runner.plan.statements import RawStatement, literal_shape, tokenize
from runner.speedups import native as _native

_ALLOWED = AuditDecision.ALLOWED


def _literal_shape(sql: str) -> tuple[str | None, str | None, bool, list[Token] | None]:
    """(literal mask, single-statement text, made in C?, sqlglot tokens if read) of
    ``sql``: from C when it can read the text plainly (its masks are a keyspace of
    their own), else from sqlglot's tokens; no mask when those fail too (split then
    makes it an unanalysable statement)."""
    if _native is not None:
        plain = _native.literal_shape(sql)
        if plain is not None:
            return plain[0], sql[plain[1] : plain[2]], True, None
    try:
        tokens = tokenize(sql)
    except TokenError:
        return None, None, False, None
    mask, text = literal_shape(sql, tokens)
    return mask, text, False, tokens


class ExchangeRefused(Exception):
    """A token exchange the gateway refuses; ``status`` is the HTTP status to answer."""

    def __init__(self, status: int, error: str, detail: str) -> None:
        super().__init__(detail)
        self.status = status
        self.error = error
        self.detail = detail


@dataclass(frozen=True)
class Exchanged:
    session: Session
    secret: str  # shown once, to the caller of POST /v1/sessions


@dataclass(frozen=True)
class ServerFacts:
    server_version: int | None
    columns: Mapping[str, Mapping[str, str]]


class GatewayService:
    def __init__(
        self,
        config: GatewayConfig,
        store: StateStore,
        *,
        validator: OidcValidator | None = None,
    ) -> None:
        self.config = config
        self.store = store
        self.validator = validator or OidcValidator(
            config.issuers, config.audience, replay=store.remember_jti
        )
        # A local SQLite store is written from the event loop itself, once per loop
        # iteration (group commit without a thread hand-off); PostgreSQL from a thread.
        from runner.gateway.store import SqliteStore

        self.writer = AuditWriter(store, inline=isinstance(store, SqliteStore))
        # The proxy's C fast lane (runner/_lane.c), where the writer can take its
        # entries; SIGNOFF_FAST_LANE=0 leaves every statement to the Python relay
        # (the tests compare both).
        self.fast_lanes = self.writer.lane_queue is not None and os.environ.get(
            "SIGNOFF_FAST_LANE", "1"
        ) not in ("", "0")
        self._analyses: dict[str, SessionAnalysis] = {}
        self._facts: dict[str, ServerFacts] = {}
        self._upstreams: dict[str, Upstream] = {}
        self._lock = threading.Lock()
        self._sessions: dict[str, Session] = {}

    def close(self) -> None:
        self.writer.close()

    # -- token exchange -------------------------------------------------------------------

    def exchange(self, token: str, database: str, *, ttl: timedelta | None = None) -> Exchanged:
        """Validate the OIDC token, match an access rule, issue a session.

        Every outcome, refusals included, is an audit event with its reason.
        """
        try:
            principal = self.validator.validate(token)
        except TokenRejected as rejected:
            self._event(None, "exchange-refused", reason=rejected.reason, detail=str(rejected))
            raise ExchangeRefused(401, rejected.reason, str(rejected)) from None
        if database not in self.config.databases:
            self._event(
                None,
                "exchange-refused",
                reason="unknown-database",
                principal=principal.to_json(),
                database=database,
            )
            raise ExchangeRefused(
                404, "unknown-database", f"no database {database!r} behind this gateway"
            )
        rule = self._access_rule(principal, database)
        if rule is None:
            self._event(
                None,
                "exchange-refused",
                reason="no-access-rule",
                principal=principal.to_json(),
                database=database,
            )
            raise ExchangeRefused(
                403,
                "forbidden",
                f"no access rule lets {principal.sub} open a session on {database}",
            )
        lifetime = min(ttl or self.config.session_ttl, self.config.max_session_ttl)
        secret = new_secret()
        now = utcnow()
        session = Session(
            id=new_session_id(),
            verifier=ScramVerifier.create(secret),
            principal=principal,
            database=database,
            role=rule.role,
            created_at=now,
            expires_at=now + lifetime,
        )
        self.store.create_session(session)
        self._event(
            session,
            "session-created",
            principal=principal.to_json(),
            claims=dict(principal.claims),
            database=database,
            role=rule.role,
            expires_at=session.expires_at.isoformat(),
        )
        return Exchanged(session, secret)

    def _access_rule(self, principal: Principal, database: str) -> AccessRule | None:
        issuer_names = {i.issuer: i.name for i in self.config.issuers}
        for rule in self.config.access:
            if rule.database != database or issuer_names.get(principal.iss) != rule.issuer:
                continue
            if claims_match(principal.claims, rule.claims):
                return rule
        return None

    def authenticate_http(self, session_id: str, secret: str) -> Session | None:
        """The session when ``secret`` is its secret (bearer auth of the HTTP API)."""
        session = self.store.get_session(session_id)
        if session is None:
            # Same work for unknown ids as for wrong secrets.
            ScramVerifier.create(secrets.token_urlsafe(8)).matches(secret)
            return None
        return session if session.verifier.matches(secret) else None

    def revoke(self, session: Session) -> None:
        self.store.revoke_session(session.id, utcnow())
        self._event(session, "session-revoked")

    # -- ProxyBackend ---------------------------------------------------------------------

    async def session(self, session_id: str) -> Session | None:
        session = await asyncio.to_thread(self.store.get_session, session_id)
        if session is not None:
            # Read the server's facts now, off the event loop, not at the first statement.
            await asyncio.to_thread(self._server_facts, session.database)
        return session

    def upstream(self, session: Session) -> Upstream:
        with self._lock:
            upstream = self._upstreams.get(session.database)
            if upstream is None:
                upstream = self.config.databases[session.database].upstream()
                self._upstreams[session.database] = upstream
            return upstream

    def decide(
        self, session: Session, sql: str, *, in_transaction: bool
    ) -> list[StatementDecision]:
        analysis = self._analysis(session)
        role = self.config.roles[session.role]
        now: datetime | None = None
        decisions = []
        with self._lock:
            known = analysis.allowed_text(sql, in_transaction=in_transaction)
            if known is not None:
                return [known]
            if needs_literal_guard(sql):
                return self._decide_guarded(
                    session, analysis, role, sql, in_transaction=in_transaction
                )
            mask, text, native, tokens = _literal_shape(sql)
            if mask is not None:
                shape = analysis.allowed_shape(mask, native=native, in_transaction=in_transaction)
                if shape is not None and text is not None:
                    fingerprint, findings_json = shape
                    return [
                        StatementDecision(
                            text, sha256_hex(text), fingerprint, findings_json, _ALLOWED
                        )
                    ]
            statements = split(sql, tokens=tokens)
            single = len(statements) == 1
            for raw in statements:
                key = analysis.read_key(raw, in_transaction=in_transaction)
                if key is not None:
                    allowed = analysis.allowed_read(key)
                    if allowed is not None:
                        decision = StatementDecision(
                            raw.text, raw.sha256, raw.fingerprint, allowed, _ALLOWED
                        )
                        if single:
                            self._remember(
                                session, analysis, sql, mask, native, decision, in_transaction
                            )
                        decisions.append(decision)
                        continue
                _, findings = analysis.findings(raw, in_transaction=in_transaction)
                if now is None:
                    now = utcnow()
                decision = self._decide_one(session, role, raw, findings, now)
                if key is not None and decision.decision is _ALLOWED and decision.grant is None:
                    analysis.remember_allowed(key, decision.findings)
                    if single:
                        self._remember(
                            session, analysis, sql, mask, native, decision, in_transaction
                        )
                decisions.append(decision)
        return decisions

    def _decide_guarded(
        self,
        session: Session,
        analysis: SessionAnalysis,
        role: RoleConfig,
        sql: str,
        *,
        in_transaction: bool,
    ) -> list[StatementDecision]:
        """Text that might touch standard_conforming_strings: every statement analysed
        (no cache: its literal values matter) and refused if it could turn it off.
        The caller holds the lock."""
        now = utcnow()
        decisions = []
        for raw in split(sql):
            _, findings = analysis.findings(raw, in_transaction=in_transaction)
            refusal = literal_reading_refusal(raw)
            if refusal is not None:
                decisions.append(
                    StatementDecision(
                        raw.text,
                        raw.sha256,
                        raw.fingerprint,
                        tuple(f.to_json() for f in findings),
                        AuditDecision.BLOCKED,
                        reason=refusal,
                    )
                )
                continue
            decisions.append(self._decide_one(session, role, raw, findings, now))
        return decisions

    def _decide_one(
        self,
        session: Session,
        role: RoleConfig,
        raw: RawStatement,
        findings: tuple[Finding, ...],
        now: datetime,
    ) -> StatementDecision:
        return decide_statement(
            raw,
            findings,
            role=role,
            database=session.database,
            session_id=session.id,
            now=now,
            consume_grant=self.store.consume_grant,
        )

    def _remember(
        self,
        session: Session,
        analysis: SessionAnalysis,
        sql: str,
        mask: str | None,
        native: bool,
        decision: StatementDecision,
        in_transaction: bool,
    ) -> None:
        """An ALLOW on ``sql``, one plain read: by its exact text and its literal mask
        (and for the C lane, which serves only masks made in C, outside transactions)."""
        analysis.remember_allowed_text(sql, decision, in_transaction=in_transaction)
        if not in_transaction and self.fast_lanes:
            analysis.remember_lane_text(
                sql, statement_data_json(session.database, decision), decision
            )
        if mask is not None:
            analysis.remember_allowed_shape(
                mask, decision, native=native, in_transaction=in_transaction
            )
            if native and not in_transaction and self.fast_lanes:
                analysis.remember_lane_shape(
                    mask, statement_data_prefix(session.database, decision)
                )

    def fast_lane(self, session: Session) -> FastLane | None:
        """What a connection's C lane needs (the writer's queue, the session's lane
        caches), or None: every statement goes through the Python relay."""
        if not self.fast_lanes:
            return None
        analysis = self._analysis(session)
        database = session.database
        return FastLane(
            self.writer.lane_queue,
            analysis.lane_shapes,
            analysis.lane_texts,
            lambda decision: statement_data_json(database, decision),
        )

    def submit_statements(
        self,
        session: Session,
        decisions: Sequence[StatementDecision],
        done: Callable[[list[int] | None], None],
    ) -> None:
        session_id, database = session.id, session.database
        self.writer.submit_seqs([statement_entry(session_id, database, d) for d in decisions], done)

    def submit_outcomes(self, session: Session, outcomes: Sequence[tuple[int, Outcome]]) -> None:
        session_id = session.id
        self.writer.submit_seqs([outcome_entry(session_id, seq, o) for seq, o in outcomes])

    async def record_event(self, session: Session | None, event: str, **data: Any) -> None:
        await self.writer.append([self._event_entry(session, event, data)])

    # -- helpers ---------------------------------------------------------------------------

    def _event_entry(
        self, session: Session | None, event: str, data: Mapping[str, Any]
    ) -> NewEntry:
        body = {"event": event, **data}
        if session is not None and "principal" not in body:
            body["principal"] = session.principal.to_json()
        return NewEntry(EntryKind.SESSION, session.id if session else None, body)

    def _event(self, session: Session | None, event: str, **data: Any) -> None:
        self.writer.append_now([self._event_entry(session, event, data)])

    def _analysis(self, session: Session) -> SessionAnalysis:
        with self._lock:
            analysis = self._analyses.get(session.id)
            if analysis is not None:
                return analysis
        facts = self._server_facts(session.database)
        with self._lock:
            analysis = self._analyses.setdefault(
                session.id,
                SessionAnalysis.start(server_version=facts.server_version, columns=facts.columns),
            )
        return analysis

    def _server_facts(self, database: str) -> ServerFacts:
        """Server version and catalog, read once per database with the held credential,
        so the gateway judges type changes and version-dependent rules as the planner
        did with --database-url. Unreadable: assume the worst, as the planner does."""
        with self._lock:
            facts = self._facts.get(database)
        if facts is not None:
            return facts
        from runner.dbinfo import read_facts

        upstream = self.config.databases[database].upstream()
        auth = quote(upstream.user, safe="")
        if upstream.password is not None:
            auth += ":" + quote(upstream.password, safe="")
        url = (
            f"postgresql://{auth}@{upstream.host}:{upstream.port}/"
            f"{quote(upstream.dbname, safe='')}?sslmode={upstream.sslmode}"
        )
        try:
            read = read_facts(url)
            facts = ServerFacts(read.server_version_num, read.columns)
        except DatabaseError:
            facts = ServerFacts(None, {})
        with self._lock:
            self._facts[database] = facts
        return facts

    # -- grants (admin CLI; approvals later) -------------------------------------------------

    def add_grant(
        self,
        *,
        database: str,
        fingerprint: str,
        approver: str,
        evidence_url: str | None = None,
        session_id: str | None = None,
        plan_hash: str | None = None,
    ) -> Grant:
        grant = Grant(
            id="gr_" + secrets.token_hex(8),
            database=database,
            fingerprint=fingerprint,
            approver=approver,
            evidence_url=evidence_url,
            created_at=utcnow(),
            session_id=session_id,
            plan_hash=plan_hash,
        )
        self.store.add_grant(grant)
        self.writer.append_now(
            [
                NewEntry(
                    EntryKind.GRANT,
                    session_id,
                    {
                        "grant": grant.id,
                        "database": database,
                        "fingerprint": fingerprint,
                        "approver": approver,
                        "evidence_url": evidence_url,
                        "plan_hash": plan_hash,
                    },
                )
            ]
        )
        return grant


def is_usable(session: Session | None, now: datetime | None = None) -> bool:
    return session is not None and session.usable(now or utcnow()) is None


__all__ = ["AuditDecision", "ExchangeRefused", "Exchanged", "GatewayService", "is_usable"]
