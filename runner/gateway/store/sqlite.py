"""The state store in one SQLite file (or in memory), for a single gateway node.

Sessions, seen token ids and grants are SQLite tables in WAL mode,
``synchronous=NORMAL`` unless ``?synchronous=FULL`` is given, with a busy timeout.
One connection guarded by a lock, so every method is safe from several threads;
write transactions are ``BEGIN IMMEDIATE`` so several processes on one file are
safe too. The audit chain is the journal beside the file (runner/gateway/store/journal.py).
"""

from __future__ import annotations

import logging
import os
import sqlite3
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime
from typing import Any

from runner.audit.chain import ROW_COLUMNS, AuditEntry, Row, parse_rfc3339, rfc3339
from runner.gateway.store.base import Connection, SqlStore, closed, migrate
from runner.gateway.store.journal import JOURNAL_SUFFIX, Journal, row_line
from runner.gateway.store.tables import SQLITE, Statements, StoreError, schema_v1

SQLITE_SCHEMA_VERSION = 2

_log = logging.getLogger("runner.gateway.store")

# version -> the statements that bring the schema from version-1 to version. The
# audit chain left the file for the journal in version 2: the migration copies the
# table's rows into the journal before the table is dropped (with its index).
_MIGRATIONS: dict[int, tuple[str, ...]] = {1: schema_v1(SQLITE), 2: ("DROP TABLE audit",)}


class SqliteStore(SqlStore):
    """The state store in one SQLite file (or in memory); the audit chain in the
    journal ``journal_path`` (None for ``:memory:``: an unlinked temporary file)."""

    statements = Statements.of(SQLITE)
    duplicate = sqlite3.IntegrityError

    def __init__(
        self, path: str, *, synchronous: str = "NORMAL", busy_timeout_ms: int = 5000
    ) -> None:
        super().__init__()
        if synchronous.upper() not in {"OFF", "NORMAL", "FULL", "EXTRA"}:
            raise StoreError(
                f"sqlite synchronous must be NORMAL, FULL, EXTRA or OFF, not {synchronous!r}"
            )
        self.path = path
        in_memory = path in {"", ":memory:"}  # "": SQLite's private temporary database
        self.journal_path: str | None = None if in_memory else path + JOURNAL_SUFFIX
        self._lock = threading.RLock()
        self._journal: Journal | None = None
        try:
            conn = sqlite3.connect(
                path, isolation_level=None, check_same_thread=False, timeout=busy_timeout_ms / 1000
            )
        except sqlite3.Error as exc:
            raise StoreError(f"cannot open the state store file {path}: {exc}") from exc
        self._conn: sqlite3.Connection | None = conn
        try:
            self._journal = Journal(
                self.journal_path, sync=synchronous.upper() in {"FULL", "EXTRA"}
            )
            conn.execute(f"PRAGMA busy_timeout = {int(busy_timeout_ms)}")
            if not in_memory:
                conn.execute("PRAGMA journal_mode = WAL")
            conn.execute(f"PRAGMA synchronous = {synchronous.upper()}")
            self._migrate(conn, self._journal)
        except BaseException as exc:
            conn.close()
            self._conn = None
            if self._journal is not None:
                self._journal.close()
                self._journal = None
            if isinstance(exc, sqlite3.Error):
                raise StoreError(f"cannot open the state store file {path}: {exc}") from exc
            if isinstance(exc, OSError):
                raise StoreError(
                    f"cannot open the audit journal {self.journal_path or '(in memory)'}: "
                    f"{exc.strerror or exc}"
                ) from exc
            raise

    # plumbing

    def _migrate(self, conn: sqlite3.Connection, journal: Journal) -> None:
        def move_audit_table(conn: Connection) -> None:
            # Schema 1 kept the chain in an ``audit`` table: it moves into the journal
            # (durably) before the table is dropped, in this transaction, so a crash
            # in between leaves the table for the next open to move.
            rows = conn.execute(f"SELECT {ROW_COLUMNS} FROM audit ORDER BY seq")
            moved = journal.adopt(map(row_line, rows), self.path)
            if moved:
                _log.info("moved %d audit entries into %s", moved, journal.name)

        conn.execute("BEGIN IMMEDIATE")
        try:
            migrate(conn, _MIGRATIONS, self.statements, before={2: move_audit_table})
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise

    def _to_db(self, value: datetime) -> Any:
        return rfc3339(value)

    def _from_db(self, value: Any) -> datetime:
        return parse_rfc3339(value)

    @contextmanager
    def _read(self) -> Iterator[Connection]:
        with self._lock:
            if self._conn is None:
                raise closed()
            yield self._conn

    @contextmanager
    def _write(self) -> Iterator[Connection]:
        """One BEGIN IMMEDIATE transaction: the write lock is taken up front."""
        with self._lock:
            conn = self._conn
            if conn is None:
                raise closed()
            conn.execute("BEGIN IMMEDIATE")
            try:
                yield conn
                conn.execute("COMMIT")
            except BaseException:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise

    # audit

    def _chain(self, prepared: Sequence[Sequence[Any]]) -> list[Row]:
        with self._lock:  # threads; the journal's flock orders processes
            return self._open_journal().append(prepared)

    def append_prepared(self, items: list[Any]) -> int:
        with self._lock:
            return self._open_journal().append_prepared(items)

    def entries(self, *, session_id: str | None = None, after_seq: int = 0) -> list[AuditEntry]:
        """The journal's entries in seq order. Read from a duplicate descriptor without
        the store's lock, so a long read never holds up the appenders."""
        with self._lock:
            journal = self._open_journal()
            fd = os.dup(journal.fd)
        try:
            return journal.read(fd, session_id, after_seq)
        finally:
            os.close(fd)

    def _open_journal(self) -> Journal:
        journal = self._journal
        if journal is None:
            raise closed()
        return journal

    def close(self) -> None:
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None
            if self._journal is not None:
                self._journal.close()
                self._journal = None
