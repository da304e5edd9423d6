"""The state store in a PostgreSQL database, shared by several gateway processes.

psycopg 3 with a ``psycopg_pool.ConnectionPool`` of autocommit connections, made
on demand up to ``pool_size``. Several gateway processes share sessions, grants,
seen token ids and ONE audit chain (the ``audit`` table): appenders are
serialised with a transaction-scoped advisory lock, so the chain never forks.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from datetime import datetime
from typing import Any

import psycopg
import psycopg_pool
from psycopg import errors as pg_errors

from runner.audit.chain import (
    GENESIS_HASH,
    AuditEntry,
    Row,
    chain_rows,
    entry_from_row,
    now_rfc3339,
    utc,
)
from runner.gateway.store.base import Connection, SqlStore, closed, first_line, migrate
from runner.gateway.store.tables import POSTGRES, Statements, StoreError, schema_v1
from runner.pgurl import describe

POSTGRES_SCHEMA_VERSION = 1

# pg_advisory_xact_lock keys (advisory locks are scoped to the current database).
_AUDIT_LOCK_KEY = 0x5169_0FF0_A0D1_7001
_SCHEMA_LOCK_KEY = 0x5169_0FF0_A0D1_7002

_MIGRATIONS: dict[int, tuple[str, ...]] = {1: schema_v1(POSTGRES)}

PgConnection = psycopg.Connection[tuple[Any, ...]]

# How long a caller waits for a pooled connection (all in use, or the server gone).
_POOL_TIMEOUT_S = 30.0


class PostgresStore(SqlStore):
    """The state store in a PostgreSQL database, shared by several gateway processes."""

    statements = Statements.of(POSTGRES)
    duplicate = pg_errors.UniqueViolation

    def __init__(self, conninfo: str, *, pool_size: int = 10, connect_timeout: int = 10) -> None:
        super().__init__()
        self.where = describe(conninfo, database=False)
        options: dict[str, Any] = {"autocommit": True, "connect_timeout": connect_timeout}
        # The schema is brought up to date on a connection of its own, so a server that
        # cannot be reached fails here, at once, with libpq's reason (the pool would
        # retry in the background until its timeout and say only that it timed out).
        try:
            first = psycopg.connect(conninfo, **options)
        except psycopg.Error as exc:
            raise StoreError(
                f"cannot connect to the state store on PostgreSQL at {self.where}: "
                f"{first_line(exc)}"
            ) from exc
        with first:
            self._migrate(first)
        self._pool: psycopg_pool.ConnectionPool[PgConnection] = psycopg_pool.ConnectionPool(
            conninfo,
            kwargs=options,
            min_size=0,
            max_size=max(1, pool_size),
            timeout=_POOL_TIMEOUT_S,
            name="signoff-state-store",
            open=True,
        )

    @staticmethod
    def _migrate(conn: PgConnection) -> None:
        with conn.transaction():
            # Concurrent CREATE TABLE IF NOT EXISTS can still collide: serialise openers.
            conn.execute("SELECT pg_advisory_xact_lock(%s)", (_SCHEMA_LOCK_KEY,))
            migrate(conn, _MIGRATIONS, PostgresStore.statements)

    @contextmanager
    def _connection(self) -> Iterator[PgConnection]:
        try:
            with self._pool.connection() as conn:
                yield conn
        except psycopg_pool.PoolClosed as exc:
            raise closed() from exc
        except psycopg_pool.PoolTimeout as exc:
            raise StoreError(
                f"no connection to the state store on PostgreSQL at {self.where} "
                f"within {_POOL_TIMEOUT_S:g} s"
            ) from exc

    def _to_db(self, value: datetime) -> Any:
        return utc(value)

    def _from_db(self, value: Any) -> datetime:
        return utc(value)

    def _read(self) -> AbstractContextManager[Connection]:
        return self._connection()

    def _write(self) -> AbstractContextManager[Connection]:
        return self._connection()  # autocommit: each statement commits on its own

    # audit

    def _chain(self, prepared: Sequence[Sequence[Any]]) -> list[Row]:
        with self._connection() as conn, conn.pipeline(), conn.transaction():
            # One appender at a time across every process: the chain never forks.
            # The SELECT runs after the lock is held, so its snapshot sees the last
            # appender's committed rows (READ COMMITTED: a snapshot per statement).
            # Pipelined: BEGIN, lock and SELECT go in one round trip, the INSERTs
            # and COMMIT in another.
            conn.execute("SELECT pg_advisory_xact_lock(%s)", (_AUDIT_LOCK_KEY,))
            last = conn.execute("SELECT seq, hash FROM audit ORDER BY seq DESC LIMIT 1").fetchone()
            last_seq, last_hash = (0, GENESIS_HASH) if last is None else (int(last[0]), last[1])
            rows = chain_rows(prepared, last_seq, last_hash, now_rfc3339())
            with conn.cursor() as cur:
                cur.executemany(self.statements.insert_audit, rows)
        return rows

    def entries(self, *, session_id: str | None = None, after_seq: int = 0) -> list[AuditEntry]:
        with self._connection() as conn:
            if session_id is None:
                rows = conn.execute(self.statements.audit_after, (after_seq,)).fetchall()
            else:
                rows = conn.execute(
                    self.statements.session_audit_after, (session_id, after_seq)
                ).fetchall()
        return [entry_from_row(row) for row in rows]

    def close(self) -> None:
        self._pool.close()
