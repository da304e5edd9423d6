"""What both backends do the same way, written once: sessions, seen token ids,
grants, schema migrations and the audit append (``runner.audit.chain`` chains the
entries; a backend only says where the chained rows go)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from datetime import UTC, datetime
from typing import Any, ClassVar, Protocol

from runner.audit.chain import AuditEntry, NewEntry, Prepared, Row, prepare, row_entries
from runner.gateway.model import Grant, Session
from runner.gateway.store.tables import (
    Statements,
    StoreError,
    grant_from,
    grant_row,
    newer_schema,
    session_from,
    session_row,
)

# Expired seen_jti rows are purged at most this often per store, and only once
# they are well past expiry (a validator may allow some clock-skew leeway).
JTI_PURGE_INTERVAL_S = 60.0
JTI_PURGE_GRACE_S = 300.0


class Connection(Protocol):
    """What the shared code asks of a sqlite3 or psycopg connection: ``execute``,
    whose cursor it reads with ``fetchone``, ``fetchall`` and ``rowcount``."""

    def execute(self, sql: Any, parameters: Any = ..., /) -> Any: ...


def migrate(
    conn: Connection,
    migrations: dict[int, tuple[str, ...]],
    statements: Statements,
    *,
    before: dict[int, Callable[[Connection], None]] | None = None,
) -> None:
    """Bring the schema to ``max(migrations)``, inside the caller's transaction:
    ``migrations[v]`` are the statements from version v-1 to v; ``before[v](conn)``
    runs ahead of them."""
    supported = max(migrations)
    conn.execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")
    row = conn.execute("SELECT max(version) FROM schema_version").fetchone()
    current = int(row[0]) if row and row[0] is not None else 0
    if current > supported:
        raise newer_schema(current, supported)
    for version in range(current + 1, supported + 1):
        if before and version in before:
            before[version](conn)
        for statement in migrations[version]:
            conn.execute(statement)
        conn.execute(statements.set_version, (version,))


class SqlStore:
    """Sessions, seen token ids, grants and ``append`` over a backend's connections.

    A backend gives its ``statements``, ``duplicate`` (the error a primary key
    violation raises), ``_to_db``/``_from_db`` (a timestamp's stored form),
    ``_read``/``_write`` (a connection; for ``_write`` each statement commits
    atomically, SQLite wraps them in one ``BEGIN IMMEDIATE``) and ``_chain``
    (append chained rows after the chain's last entry, atomically; their rows).
    """

    statements: ClassVar[Statements]
    duplicate: ClassVar[type[Exception]]

    def __init__(self) -> None:
        self._last_purge = 0.0
        self._purge_lock = threading.Lock()

    # the backend's part

    def _to_db(self, value: datetime) -> Any:
        raise NotImplementedError

    def _from_db(self, value: Any) -> datetime:
        raise NotImplementedError

    def _read(self) -> AbstractContextManager[Connection]:
        raise NotImplementedError

    def _write(self) -> AbstractContextManager[Connection]:
        raise NotImplementedError

    def _chain(self, prepared: Sequence[Sequence[Any]]) -> list[Row]:
        raise NotImplementedError

    # sessions

    def _insert_new(self, statement: str, row: tuple[Any, ...], what: str) -> None:
        try:
            with self._write() as conn:
                conn.execute(statement, row)
        except self.duplicate as exc:
            raise StoreError(f"{what} already exists") from exc

    def create_session(self, session: Session) -> None:
        row = session_row(session, self._to_db)
        self._insert_new(self.statements.insert_session, row, f"session {session.id}")

    def get_session(self, session_id: str) -> Session | None:
        with self._read() as conn:
            row = conn.execute(self.statements.select_session, (session_id,)).fetchone()
        return None if row is None else session_from(row, self._from_db)

    def expired_sessions(self, after: datetime, until: datetime) -> list[Session]:
        """Sessions that expired in (after, until] without being revoked (closed)."""
        with self._read() as conn:
            rows = conn.execute(
                self.statements.expired_sessions, (self._to_db(after), self._to_db(until))
            ).fetchall()
        return [session_from(row, self._from_db) for row in rows]

    def revoke_session(self, session_id: str, at: datetime) -> bool:
        with self._write() as conn:
            cur = conn.execute(self.statements.revoke_session, (self._to_db(at), session_id))
            return bool(cur.rowcount == 1)

    # token ids

    def _purge_due(self) -> bool:
        with self._purge_lock:
            now = time.monotonic()
            if now - self._last_purge < JTI_PURGE_INTERVAL_S:
                return False
            self._last_purge = now
            return True

    def remember_jti(self, issuer: str, jti: str, expires_at: datetime) -> bool:
        with self._write() as conn:
            if self._purge_due():
                cutoff = datetime.fromtimestamp(time.time() - JTI_PURGE_GRACE_S, UTC)
                conn.execute(self.statements.purge_jti, (self._to_db(cutoff),))
            cur = conn.execute(self.statements.remember_jti, (issuer, jti, self._to_db(expires_at)))
            return bool(cur.rowcount == 1)

    # grants

    def add_grant(self, grant: Grant) -> None:
        row = grant_row(grant, self._to_db)
        self._insert_new(self.statements.insert_grant, row, f"grant {grant.id}")

    def consume_grant(
        self, database: str, fingerprint: str, session_id: str, at: datetime
    ) -> Grant | None:
        with self._write() as conn:
            rows = conn.execute(
                self.statements.consume_grant,
                (self._to_db(at), session_id, database, fingerprint, session_id),
            ).fetchall()  # all: SQLite finishes the statement before COMMIT
        return grant_from(rows[0], self._from_db) if rows else None

    def list_grants(self, database: str | None = None) -> Sequence[Grant]:
        with self._read() as conn:
            if database is None:
                rows = conn.execute(self.statements.all_grants).fetchall()
            else:
                rows = conn.execute(self.statements.database_grants, (database,)).fetchall()
        return [grant_from(row, self._from_db) for row in rows]

    # audit

    def append(self, entries: Sequence[NewEntry]) -> list[AuditEntry]:
        if not entries:
            return []
        prepared: list[Prepared] = prepare(entries)
        return row_entries(prepared, self._chain(prepared))

    def append_seqs(self, entries: Sequence[NewEntry]) -> list[int]:
        """``append`` for a caller that needs only the seqs: the same rows and chain,
        no entry objects built, the data not read back (the audit writer's path)."""
        if not entries:
            return []
        first = self.append_prepared(prepare(entries, decode=False))
        return list(range(first, first + len(entries)))

    def append_prepared(self, items: list[Any]) -> int:
        """Append entries already prepared: tuples whose first four fields are (kind,
        session_id, ref, canonical data text), as ``prepare`` and the C lanes make
        them; the first new seq."""
        return self._chain(items)[0][0]


def first_line(exc: BaseException) -> str:
    """An exception's first line, for a one-line message."""
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def closed() -> StoreError:
    return StoreError("the state store is closed")
