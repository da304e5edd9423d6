"""The gateway's core, between its two listeners: token exchange, sessions,
per-statement decisions and the audit chain. The HTTP API (``app``) and the
PostgreSQL proxy (``proxy``) both call into one ``GatewayService``.

Decisions are asked of ``policy.GatewayPolicy`` in one call per text; it keeps every
session's analysis and caches (the C lane's too). The service gives it what it
cannot know itself: the server's facts, the store's grants and how the audit log
writes a statement entry's data.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import quote

from runner.audit.attestation import load_signing_key
from runner.audit.entries import (
    outcome_entry,
    statement_data_json,
    statement_data_prefix,
    statement_entry,
)
from runner.audit.records import merge_records
from runner.audit.writer import AuditWriter
from runner.errors import DatabaseError
from runner.gateway.archive import archive_quietly, archived
from runner.gateway.config import AccessRule, GatewayConfig
from runner.gateway.masking.engine import MaskingEngine
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
from runner.gateway.policy import GatewayPolicy, ServerFacts
from runner.gateway.review import ReviewDesk, ReviewTarget
from runner.gateway.text import bounded, storable, storable_text
from runner.plan.build import ServerFacts as PlanFacts


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
        self.pg_port = config.pg_port  # the bound port once the proxy listens
        # Attestations are signed with it (preflight checked it at start).
        self.signing_key = (
            load_signing_key(config.signing_key) if config.signing_key is not None else None
        )
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
        # Every session's decisions and the caches behind them (the C lane's included).
        self.policy = GatewayPolicy(
            config.roles,
            facts=self._server_facts,
            consume_grant=self._consume_grant,
            entry_data=statement_data_json,
            entry_prefix=statement_data_prefix,
            max_statement_bytes=config.max_statement_bytes,
        )
        self._facts: dict[str, ServerFacts] = {}
        # PHI masking of results (runner.gateway.masking): None when nothing is masked.
        self.masking = (
            MaskingEngine(config.masking, self._admin_url) if config.masking.enabled else None
        )
        # Plans submitted for review and the approvals the gateway verifies itself.
        self.review = ReviewDesk(
            config,
            server_facts=self._plan_facts,
            add_grant=self.add_grant,
            record=lambda session, event, data: self._event(session, event, **data),
            session_records=lambda session_id: merge_records(
                self.store.entries(session_id=session_id)
            ),
        )
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
                database=bounded(database),
            )
            raise ExchangeRefused(
                404,
                "unknown-database",
                f"no database {bounded(storable_text(database))!r} behind this gateway",
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
            **self._masking_event(rule.role),
        )
        return Exchanged(session, secret)

    def _masking_event(self, role: str) -> dict[str, Any]:
        """What session-created says of masking: the policy's digest (the attestation
        carries it) and whether this role's results are masked."""
        if self.masking is None:
            return {}
        return {
            "masking_policy_digest": self.masking.digest(),
            "masked": self.config.masking.masks(role),
        }

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
        if self.config.archive is not None:
            uri = archive_quietly(
                self.store,
                session,
                destination=self.config.archive,
                signing_key=self.signing_key,
                spool_dir=self._archive_spool(),
                endpoint_url=self.config.archive_s3_endpoint_url,
            )
            self._event(session, "session-archived" if uri else "session-archive-failed", uri=uri)

    def sweep_archive(self, after: datetime, until: datetime) -> list[str]:
        """Archive the sessions that expired in (after, until] without being closed (a
        runner that was killed, or whose job no longer closes them): the ids
        archived. Each node may sweep: a bundle already in the archive is skipped,
        and the record goes to the chain without the session's id, so every node
        builds the same bytes."""
        destination = self.config.archive
        if destination is None:
            return []
        done = []
        for session in self.store.expired_sessions(after, until):
            if archived(destination, session, self.config.archive_s3_endpoint_url):
                continue
            uri = archive_quietly(
                self.store,
                session,
                destination=destination,
                signing_key=self.signing_key,
                spool_dir=self._archive_spool(),
                endpoint_url=self.config.archive_s3_endpoint_url,
            )
            self._event(
                None,
                "session-archived" if uri else "session-archive-failed",
                archived_session=session.id,
                uri=uri,
            )
            if uri:
                done.append(session.id)
        return done

    def _archive_spool(self) -> Path:
        base = self.config.path.parent if self.config.path is not None else Path.cwd()
        return base / "signoff-archive-spool"

    # -- ProxyBackend ---------------------------------------------------------------------

    async def session(self, session_id: str) -> Session | None:
        session = await asyncio.to_thread(self.store.get_session, session_id)
        if session is not None:
            # Read the server's facts now, off the event loop, not at the first statement.
            await asyncio.to_thread(self._fresh_functions, session.database)
            await asyncio.to_thread(self._server_facts, session.database)
            if self.masking is not None and self.masking.masks(session):
                await asyncio.to_thread(self.masking.database, session.database)
        return session

    def upstream(self, session: Session) -> Upstream:
        """The held credential for the session's database, with its role's settings."""
        key = f"{session.database}\x00{session.role}"
        with self._lock:
            upstream = self._upstreams.get(key)
            if upstream is None:
                role = self.config.roles.get(session.role)
                upstream = replace(
                    self.config.databases[session.database].upstream(),
                    settings=role.settings() if role is not None else (),
                )
                self._upstreams[key] = upstream
            return upstream

    def decide(
        self, session: Session, sql: str, *, in_transaction: bool
    ) -> list[StatementDecision]:
        masking = self.masking
        if masking is None or not masking.masks(session):
            return self.policy.decide(
                session, sql, in_transaction=in_transaction, lanes=self.fast_lanes
            )
        # A masked session never fills the C lane's caches (the lane relays rows as
        # they are); its decisions are reviewed for COPY and unmask grants.
        decisions = self.policy.decide(session, sql, in_transaction=in_transaction, lanes=False)
        return masking.review(session, decisions, consume_grant=self._consume_grant, now=utcnow)

    def fast_lane(self, session: Session) -> FastLane | None:
        """What a connection's C lane needs (the writer's queue, the session's lane
        caches), or None: every statement goes through the Python relay."""
        if not self.fast_lanes:
            return None
        if self.masking is not None and self.masking.masks(session):
            return None  # its results are masked: no statement of it goes by the lane
        shapes, texts = self.policy.lane_caches(session)
        database = session.database
        return FastLane(
            self.writer.lane_queue,
            shapes,
            texts,
            lambda decision: statement_data_json(database, decision),
        )

    def _consume_grant(
        self, database: str, fingerprint: str, session_id: str, now: datetime
    ) -> Grant | None:
        # Looked up on the store at each use, not bound once: the store's method is
        # what a test may wrap to count the lookups.
        return self.store.consume_grant(database, fingerprint, session_id, now)

    def submit_statements(
        self,
        session: Session,
        decisions: Sequence[StatementDecision],
        done: Callable[[list[int] | None], None],
    ) -> None:
        session_id, database = session.id, session.database
        self.writer.submit([statement_entry(session_id, database, d) for d in decisions], done)

    def submit_outcomes(self, session: Session, outcomes: Sequence[tuple[int, Outcome]]) -> None:
        session_id = session.id
        self.writer.submit([outcome_entry(session_id, seq, o) for seq, o in outcomes])

    async def record_event(self, session: Session | None, event: str, **data: Any) -> None:
        await self.writer.append([self._event_entry(session, event, data)])

    # -- helpers ---------------------------------------------------------------------------

    def _event_entry(
        self, session: Session | None, event: str, data: Mapping[str, Any]
    ) -> NewEntry:
        body = {"event": event, **storable(dict(data))}
        if session is not None and "principal" not in body:
            body["principal"] = session.principal.to_json()
        return NewEntry(EntryKind.SESSION, session.id if session else None, body)

    def record_refusal(self, event: str, **data: Any) -> None:
        """An audit event for a request refused before it reached the service."""
        self._event(None, event, **data)

    def _event(self, session: Session | None, event: str, **data: Any) -> None:
        self.writer.append_now([self._event_entry(session, event, data)])

    def _server_facts(self, database: str) -> ServerFacts:
        """Server version and catalog, read once per database with the held credential,
        so the gateway judges type changes and version-dependent rules as the planner
        did with --database-url. Unreadable: assume the worst, as the planner does."""
        with self._lock:
            facts = self._facts.get(database)
        if facts is not None:
            return facts
        from runner.dryrun.facts import read_facts

        url = self._admin_url(database)
        try:
            read = read_facts(url)
            facts = ServerFacts(read.server_version_num, read.columns, read.functions)
        except DatabaseError:
            facts = ServerFacts(None, {})
        with self._lock:
            self._facts[database] = facts
        return facts

    def _fresh_functions(self, database: str) -> None:
        """Functions as pg_proc holds them now, for a session about to start: another
        session may have replaced one since the facts were read (a call is judged by
        the body it runs). Unreadable: no user function is known (a call to one needs
        approval)."""
        from runner.dryrun.facts import read_function_facts
        from runner.plan.functions import FunctionFacts

        with self._lock:
            facts = self._facts.get(database)
        if facts is None or facts.functions is None:
            return  # read whole by _server_facts, or unreadable
        builtins = facts.functions.builtins
        try:
            functions = read_function_facts(
                self._admin_url(database),
                builtins=builtins,
                signatures=facts.functions.builtin_signatures,
            )
        except DatabaseError:
            functions = FunctionFacts(
                builtins=builtins, builtin_signatures=facts.functions.builtin_signatures
            )
        with self._lock:
            self._facts[database] = replace(facts, functions=functions)

    def _admin_url(self, database: str) -> str:
        """The held credential's URL for the gateway's own reads (facts, catalog)."""
        upstream = self.config.databases[database].upstream()
        auth = quote(upstream.user, safe="")
        if upstream.password is not None:
            auth += ":" + quote(upstream.password, safe="")
        return (
            f"postgresql://{auth}@{upstream.host}:{upstream.port}/"
            f"{quote(upstream.dbname, safe='')}?sslmode={upstream.sslmode}"
        )

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

    # -- review (plans and approvals: runner.gateway.review) --------------------------------

    def _plan_facts(self, database: str) -> PlanFacts:
        facts = self._server_facts(database)
        return PlanFacts(facts.server_version, facts.columns)

    def submit_plan(
        self, session: Session, plan: Any, target: ReviewTarget | None
    ) -> dict[str, Any]:
        role = self.config.roles[session.role]
        if role.review_as is not None:
            role = self.config.roles[role.review_as]
        return self.review.submit(session, role, plan, target)

    def report_plan(self, session: Session) -> dict[str, Any]:
        return self.review.report(session)

    def plan_status(
        self, session: Session, plan_hash: str, evidence: Sequence[int | str] = ()
    ) -> dict[str, Any]:
        return self.review.status(session, plan_hash, evidence=evidence)


def is_usable(session: Session | None, now: datetime | None = None) -> bool:
    return session is not None and session.usable(now or utcnow()) is None


__all__ = ["AuditDecision", "ExchangeRefused", "Exchanged", "GatewayService", "is_usable"]
