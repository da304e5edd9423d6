"""The gateway's shared vocabulary: principals, sessions, grants, audit entries.

Every part of the gateway (OIDC validation, the state store, the PostgreSQL
proxy, the HTTP API) speaks in these types; none of them knows how another is
implemented.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, NamedTuple, Protocol

from runner.audit.chain import GENESIS_HASH as GENESIS_HASH
from runner.audit.chain import AuditEntry as AuditEntry
from runner.audit.chain import CanonicalJson as CanonicalJson
from runner.audit.chain import EntryKind as EntryKind
from runner.audit.chain import NewEntry as NewEntry
from runner.audit.chain import entry_hash as entry_hash

# -- identity -----------------------------------------------------------------------


@dataclass(frozen=True)
class Principal:
    """Who a session acts for, exactly as the verified OIDC token says.

    The named fields are the audit record's ``principal`` (DESIGN.md); ``claims``
    keeps every verified claim for access matching and ``identity.json``.
    """

    iss: str
    sub: str
    actor: str | None = None
    repository: str | None = None
    ref: str | None = None
    sha: str | None = None
    run_id: str | None = None
    workflow: str | None = None
    claims: Mapping[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {
            "iss": self.iss,
            "sub": self.sub,
            "actor": self.actor,
            "repository": self.repository,
            "ref": self.ref,
            "sha": self.sha,
            "run_id": self.run_id,
            "workflow": self.workflow,
        }

    @classmethod
    def from_claims(cls, claims: Mapping[str, Any]) -> Principal:
        """GitHub and GitLab claim names; any OIDC issuer gives at least iss/sub."""

        def pick(*names: str) -> str | None:
            for name in names:
                value = claims.get(name)
                if value not in (None, ""):
                    return str(value)
            return None

        return cls(
            iss=str(claims["iss"]),
            sub=str(claims["sub"]),
            actor=pick("actor", "user_login"),
            repository=pick("repository", "project_path"),
            ref=pick("ref", "ref_path"),
            sha=pick("sha"),
            run_id=pick("run_id", "pipeline_id"),
            workflow=pick("workflow_ref", "workflow", "ci_config_ref_uri", "job_id"),
            claims=dict(claims),
        )


# -- sessions -----------------------------------------------------------------------

SCRAM_ITERATIONS = 4096


@dataclass(frozen=True)
class ScramVerifier:
    """What is stored for a session secret: the SCRAM-SHA-256 verifier, never the secret.

    The same verifier authenticates the PostgreSQL client (SCRAM) and the HTTP
    API (the secret as a bearer token, checked by recomputing StoredKey).
    """

    salt: bytes
    iterations: int
    stored_key: bytes
    server_key: bytes

    @classmethod
    def create(cls, secret: str, *, iterations: int = SCRAM_ITERATIONS) -> ScramVerifier:
        salt = secrets.token_bytes(16)
        stored_key, server_key = _scram_keys(secret, salt, iterations)
        return cls(salt, iterations, stored_key, server_key)

    def matches(self, secret: str) -> bool:
        stored_key, _ = _scram_keys(secret, self.salt, self.iterations)
        return hmac.compare_digest(stored_key, self.stored_key)


def _scram_keys(secret: str, salt: bytes, iterations: int) -> tuple[bytes, bytes]:
    salted = hashlib.pbkdf2_hmac("sha256", secret.encode("utf-8"), salt, iterations)
    client_key = hmac.new(salted, b"Client Key", "sha256").digest()
    server_key = hmac.new(salted, b"Server Key", "sha256").digest()
    return hashlib.sha256(client_key).digest(), server_key


@dataclass(frozen=True)
class Session:
    id: str  # also the PostgreSQL user name the client connects with
    verifier: ScramVerifier
    principal: Principal
    database: str  # the configured database name (not the upstream dbname)
    role: str
    created_at: datetime
    expires_at: datetime
    revoked_at: datetime | None = None

    def usable(self, now: datetime) -> str | None:
        """None when the session may be used at ``now``, else why not."""
        if self.revoked_at is not None:
            return "session revoked"
        if now >= self.expires_at:
            return "session expired"
        return None


def new_session_id() -> str:
    return "so_" + secrets.token_hex(12)


def new_secret() -> str:
    return secrets.token_urlsafe(32)  # 256 bits


def utcnow() -> datetime:
    return datetime.now(UTC)


# -- decisions and grants -------------------------------------------------------------


class Verdict(StrEnum):
    ALLOW = "allow"
    NEEDS_APPROVAL = "needs-approval"
    DENY = "deny"


class AuditDecision(StrEnum):
    ALLOWED = "allowed"
    BLOCKED = "blocked"
    APPROVED = "approved"


@dataclass(frozen=True)
class Grant:
    """Permission to run one statement (by fingerprint) once, in one database."""

    id: str
    database: str
    fingerprint: str
    approver: str
    evidence_url: str | None
    created_at: datetime
    session_id: str | None = None  # None: any session on the database
    plan_hash: str | None = None
    used_at: datetime | None = None
    used_by_session: str | None = None


# -- audit ------------------------------------------------------------------------------
# The entry types are the audit format's (runner/audit/chain.py), named here too
# because every part of the gateway speaks in them.


class StateStore(Protocol):
    """Sessions, seen token ids, grants and the audit chain (SQLite or PostgreSQL).

    Every method is safe to call from several threads and, for PostgreSQL, from
    several gateway processes at once. The audit writer (runner/audit/writer.py)
    uses ``append_seqs`` and ``append_prepared``.
    """

    def create_session(self, session: Session) -> None: ...

    def get_session(self, session_id: str) -> Session | None: ...

    def revoke_session(self, session_id: str, at: datetime) -> bool: ...

    def expired_sessions(self, after: datetime, until: datetime) -> list[Session]: ...

    def remember_jti(self, issuer: str, jti: str, expires_at: datetime) -> bool:
        """True the first time (issuer, jti) is seen; False for a replay."""
        ...

    def add_grant(self, grant: Grant) -> None: ...

    def consume_grant(
        self, database: str, fingerprint: str, session_id: str, at: datetime
    ) -> Grant | None:
        """Atomically mark one unused matching grant used and return it, else None."""
        ...

    def list_grants(self, database: str | None = None) -> Sequence[Grant]: ...

    def append(self, entries: Sequence[NewEntry]) -> list[AuditEntry]:
        """Append entries to the chain atomically, in order; return them with seq and hash."""
        ...

    def append_seqs(self, entries: Sequence[NewEntry]) -> list[int]:
        """``append`` returning only the seqs (the same rows; no entry objects built)."""
        ...

    def append_prepared(self, items: list[Any]) -> int:
        """Append entries already prepared as tuples whose first four fields are (kind,
        session_id, ref, canonical data text), as the proxy's C lanes queue them
        (runner/_native/_lane.c); the first new seq."""
        ...

    def entries(self, *, session_id: str | None = None, after_seq: int = 0) -> list[AuditEntry]: ...

    def close(self) -> None: ...


# -- what the PostgreSQL proxy asks of the rest of the gateway ---------------------------


@dataclass(frozen=True)
class Upstream:
    """Where and as whom the gateway connects for a database (the held credential)."""

    host: str
    port: int
    dbname: str
    user: str
    password: str | None = field(repr=False, default=None)
    sslmode: str = "prefer"  # disable | prefer | require
    # Settings the gateway puts in force for the session's role (lock_timeout,
    # statement_timeout), sent in the startup packet after the client's own.
    settings: tuple[tuple[str, str], ...] = ()


class StatementDecision(NamedTuple):  # a tuple: made per statement on the proxy's hot path
    """The gateway's decision on one statement, before it is forwarded."""

    text: str
    sha256: str
    fingerprint: str
    findings: tuple[Mapping[str, Any], ...]  # Finding.to_json() of each finding
    decision: AuditDecision  # allowed / approved (a grant was used) / blocked
    reason: str | None = None  # why blocked: rule ids and what would allow it
    grant: Grant | None = None

    @property
    def blocked(self) -> bool:
        return self.decision is AuditDecision.BLOCKED


class Outcome(NamedTuple):  # a tuple: made per statement on the proxy's hot path
    """What happened to a forwarded statement."""

    tag: str | None = None  # CommandComplete tag, e.g. "DELETE 3"
    sqlstate: str | None = None  # ErrorResponse code
    rows: int | None = None
    duration_ms: float = 0.0
    status: str = "completed"  # completed | failed | not-run | connection-lost
    # What the server-side guard saw inside a marked statement (runner.gateway.dbguard):
    # {"tag", "type", "identity"} of each nested command or dropped object.
    nested: tuple[Mapping[str, str], ...] = ()
    # The columns masking changed in the result (runner.gateway.masking), never values.
    masked: tuple[Mapping[str, Any], ...] = ()


class FastLane(NamedTuple):
    """What a proxy connection's C lane (runner/_lane.c) reads: the audit writer's
    lane queue, and the session's caches of allowed plain reads, by literal mask
    (simple Query: mask -> statement data up to its sha256) and by exact text
    (Parse: text -> (statement data, decision)). Filled by the policy only
    (runner/gateway/policy/caches.py), changed in place, never rebound."""

    queue: Any
    shapes: dict[str, str]
    texts: dict[str, tuple[str, StatementDecision]]
    # The statement entry's data of a decision of this session (for a Query the relay
    # decided itself and gives the lane to carry).
    entry_data: Callable[[StatementDecision], str]


class ProxyBackend(Protocol):
    """The proxy's view of sessions, policy and the audit log."""

    async def session(self, session_id: str) -> Session | None:
        """The session for a PostgreSQL user name, or None (unknown id)."""
        ...

    def upstream(self, session: Session) -> Upstream: ...

    def decide(
        self, session: Session, sql: str, *, in_transaction: bool
    ) -> list[StatementDecision]:
        """Split ``sql`` (a simple-query string may hold several statements) and decide
        each; consumes grants for statements that need one."""
        ...

    def submit_statements(
        self,
        session: Session,
        decisions: Sequence[StatementDecision],
        done: Callable[[list[int] | None], None],
    ) -> None:
        """Durably append one statement entry per decision, then call ``done(seqs)`` on
        the event loop (``done(None)`` if the audit log failed). The proxy forwards
        nothing of the statement before ``done``."""
        ...

    def submit_outcomes(self, session: Session, outcomes: Sequence[tuple[int, Outcome]]) -> None:
        """Append the outcome entries of statements (by their seq); not waited for."""
        ...

    async def record_event(self, session: Session | None, event: str, **data: Any) -> None:
        """A session event (authenticated, auth failed, closed, cancel...)."""
        ...

    def fast_lane(self, session: Session) -> FastLane | None:
        """For the proxy's C fast lane (runner/_lane.c): the audit writer's lane queue
        and the session's lane caches; None when this backend has none."""
        ...
