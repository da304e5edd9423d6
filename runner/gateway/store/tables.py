"""The tables both backends share, written once: schema, statements, row mappers.

SQLite and PostgreSQL differ here only in how a statement marks its parameters
(``?`` / ``%s``), in column type names, in whether a row can be locked and
skipped (``FOR UPDATE SKIP LOCKED``, PostgreSQL only), and in how a timestamp is
stored (RFC 3339 text in SQLite, ``timestamptz`` in PostgreSQL): a ``Dialect``
says which, and ``Statements`` are the SQL texts made from it.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from runner.audit.chain import ROW_COLUMNS, plain_json
from runner.gateway.model import Grant, Principal, ScramVerifier, Session

SESSION_COLUMNS = (
    "id, salt, iterations, stored_key, server_key, principal, claims, database, role, "
    "created_at, expires_at, revoked_at"
)
GRANT_COLUMNS = (
    "id, database, fingerprint, approver, evidence_url, session_id, plan_hash, created_at, "
    "used_at, used_by_session"
)


class StoreError(Exception):
    """The state store cannot do what was asked; the message names what and why."""


@dataclass(frozen=True)
class Dialect:
    placeholder: str  # how a statement marks a parameter
    text: str  # column type names
    blob: str
    integer: str
    bigint: str
    time: str
    skip_locked: str  # what makes a subquery skip rows another transaction holds


SQLITE = Dialect("?", "TEXT", "BLOB", "INTEGER", "INTEGER", "TEXT", "")
POSTGRES = Dialect(
    "%s", "text", "bytea", "integer", "bigint", "timestamptz", " FOR UPDATE SKIP LOCKED"
)


def schema_v1(d: Dialect) -> tuple[str, ...]:
    """Schema version 1 of both backends (SQLite's version 2 drops its ``audit`` table)."""
    return (
        f"""CREATE TABLE sessions (
        id {d.text} PRIMARY KEY,
        salt {d.blob} NOT NULL,
        iterations {d.integer} NOT NULL,
        stored_key {d.blob} NOT NULL,
        server_key {d.blob} NOT NULL,
        principal {d.text} NOT NULL,
        claims {d.text} NOT NULL,
        database {d.text} NOT NULL,
        role {d.text} NOT NULL,
        created_at {d.time} NOT NULL,
        expires_at {d.time} NOT NULL,
        revoked_at {d.time}
    )""",
        f"""CREATE TABLE seen_jti (
        issuer {d.text} NOT NULL,
        jti {d.text} NOT NULL,
        expires_at {d.time} NOT NULL,
        PRIMARY KEY (issuer, jti)
    )""",
        "CREATE INDEX seen_jti_expires ON seen_jti (expires_at)",
        f"""CREATE TABLE grants (
        id {d.text} PRIMARY KEY,
        database {d.text} NOT NULL,
        fingerprint {d.text} NOT NULL,
        approver {d.text} NOT NULL,
        evidence_url {d.text},
        session_id {d.text},
        plan_hash {d.text},
        created_at {d.time} NOT NULL,
        used_at {d.time},
        used_by_session {d.text}
    )""",
        "CREATE INDEX grants_unused ON grants (database, fingerprint) WHERE used_at IS NULL",
        # The chain's rows exactly as chained: ts and data as the text the hash was
        # taken over (text, not timestamptz or jsonb), so a row read back verifies.
        f"""CREATE TABLE audit (
        seq {d.bigint} PRIMARY KEY,
        ts {d.text} NOT NULL,
        kind {d.text} NOT NULL,
        session_id {d.text},
        ref {d.bigint},
        data {d.text} NOT NULL,
        prev_hash {d.text} NOT NULL,
        hash {d.text} NOT NULL
    )""",
        "CREATE INDEX audit_session ON audit (session_id, seq)",
    )


@dataclass(frozen=True)
class Statements:
    """Every statement on sessions, seen token ids, grants and the audit table."""

    insert_session: str
    select_session: str
    expired_sessions: str
    revoke_session: str
    purge_jti: str
    remember_jti: str
    insert_grant: str
    consume_grant: str
    all_grants: str
    database_grants: str
    insert_audit: str
    audit_after: str
    session_audit_after: str
    set_version: str

    @classmethod
    def of(cls, d: Dialect) -> Statements:
        p = d.placeholder

        def marks(count: int) -> str:
            return ", ".join([p] * count)

        return cls(
            insert_session=f"INSERT INTO sessions ({SESSION_COLUMNS}) VALUES ({marks(12)})",
            select_session=f"SELECT {SESSION_COLUMNS} FROM sessions WHERE id = {p}",
            expired_sessions=(
                f"SELECT {SESSION_COLUMNS} FROM sessions WHERE revoked_at IS NULL "
                f"AND expires_at > {p} AND expires_at <= {p} ORDER BY expires_at, id"
            ),
            revoke_session=(
                f"UPDATE sessions SET revoked_at = {p} WHERE id = {p} AND revoked_at IS NULL"
            ),
            purge_jti=f"DELETE FROM seen_jti WHERE expires_at < {p}",
            remember_jti=(
                f"INSERT INTO seen_jti (issuer, jti, expires_at) VALUES ({marks(3)}) "
                "ON CONFLICT (issuer, jti) DO NOTHING"
            ),
            insert_grant=f"INSERT INTO grants ({GRANT_COLUMNS}) VALUES ({marks(10)})",
            # One statement: atomic on its own in both backends. The subquery picks
            # a session's own grant before one for any session, the oldest first; in
            # PostgreSQL it skips a row a concurrent consumer holds, and the outer
            # ``used_at IS NULL`` makes a lost race use nothing rather than twice.
            consume_grant=(
                f"UPDATE grants SET used_at = {p}, used_by_session = {p} "
                "WHERE id = ("
                f"  SELECT id FROM grants WHERE database = {p} AND fingerprint = {p} "
                f"  AND used_at IS NULL AND (session_id IS NULL OR session_id = {p}) "
                f"  ORDER BY session_id IS NULL, created_at, id LIMIT 1{d.skip_locked}"
                f") AND used_at IS NULL RETURNING {GRANT_COLUMNS}"
            ),
            all_grants=f"SELECT {GRANT_COLUMNS} FROM grants ORDER BY created_at, id",
            database_grants=(
                f"SELECT {GRANT_COLUMNS} FROM grants WHERE database = {p} ORDER BY created_at, id"
            ),
            insert_audit=f"INSERT INTO audit ({ROW_COLUMNS}) VALUES ({marks(8)})",
            audit_after=f"SELECT {ROW_COLUMNS} FROM audit WHERE seq > {p} ORDER BY seq",
            session_audit_after=(
                f"SELECT {ROW_COLUMNS} FROM audit WHERE session_id = {p} AND seq > {p} ORDER BY seq"
            ),
            set_version=f"INSERT INTO schema_version (version) VALUES ({p})",
        )


# -- rows ---------------------------------------------------------------------------------
# ``write``/``read`` turn a datetime into the backend's stored form and back.


def _optional(value: datetime | None, write: Callable[[datetime], Any]) -> Any:
    return None if value is None else write(value)


def session_row(session: Session, write: Callable[[datetime], Any]) -> tuple[Any, ...]:
    v = session.verifier
    return (
        session.id,
        v.salt,
        v.iterations,
        v.stored_key,
        v.server_key,
        plain_json(session.principal.to_json()),
        plain_json(session.principal.claims),
        session.database,
        session.role,
        write(session.created_at),
        write(session.expires_at),
        _optional(session.revoked_at, write),
    )


def session_from(row: Sequence[Any], read: Callable[[Any], datetime]) -> Session:
    return Session(
        id=row[0],
        verifier=ScramVerifier(bytes(row[1]), int(row[2]), bytes(row[3]), bytes(row[4])),
        principal=_principal_from(row[5], row[6]),
        database=row[7],
        role=row[8],
        created_at=read(row[9]),
        expires_at=read(row[10]),
        revoked_at=None if row[11] is None else read(row[11]),
    )


def grant_row(grant: Grant, write: Callable[[datetime], Any]) -> tuple[Any, ...]:
    return (
        grant.id,
        grant.database,
        grant.fingerprint,
        grant.approver,
        grant.evidence_url,
        grant.session_id,
        grant.plan_hash,
        write(grant.created_at),
        _optional(grant.used_at, write),
        grant.used_by_session,
    )


def grant_from(row: Sequence[Any], read: Callable[[Any], datetime]) -> Grant:
    return Grant(
        id=row[0],
        database=row[1],
        fingerprint=row[2],
        approver=row[3],
        evidence_url=row[4],
        session_id=row[5],
        plan_hash=row[6],
        created_at=read(row[7]),
        used_at=None if row[8] is None else read(row[8]),
        used_by_session=row[9],
    )


def _principal_from(principal_json: str, claims_json: str) -> Principal:
    fields: Mapping[str, Any] = json.loads(principal_json)
    return Principal(
        iss=fields["iss"],
        sub=fields["sub"],
        actor=fields.get("actor"),
        repository=fields.get("repository"),
        ref=fields.get("ref"),
        sha=fields.get("sha"),
        run_id=fields.get("run_id"),
        workflow=fields.get("workflow"),
        claims=json.loads(claims_json),
    )


def newer_schema(found: int, supported: int) -> StoreError:
    return StoreError(
        f"the state store's schema is version {found}, newer than this gateway supports "
        f"({supported}); upgrade the gateway"
    )
