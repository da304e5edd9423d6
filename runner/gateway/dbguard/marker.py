"""The gateway's side of the guard's marks: one admin connection per database.

``mark`` runs ``signoff_guard.mark(pid, nonce, sha256 of the text)`` before a statement
is forwarded and ``clear`` runs ``signoff_guard.unmark`` once it has answered. Calls on
one database are serialised on its connection (a mark is a few hundred microseconds,
and only statements with a destructive effect the analysis saw and allowed need one).
A mark that cannot be written is not an error for the statement: it goes unmarked, and
the guard refuses whatever destructive effect it has (fail closed).
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import secrets

import psycopg

from runner.gateway.model import Upstream

_log = logging.getLogger("signoff.gateway.guard")


class GuardMarker:
    def __init__(self, database: str, upstream: Upstream) -> None:
        self.database = database
        self._upstream = upstream
        self._conn: psycopg.AsyncConnection[tuple[object, ...]] | None = None
        self._lock = asyncio.Lock()
        self._warned = False
        self.marks = 0  # written, for tests and the log

    async def _connection(self) -> psycopg.AsyncConnection[tuple[object, ...]]:
        conn = self._conn
        if conn is None or conn.closed or conn.broken:
            up = self._upstream
            conn = self._conn = await psycopg.AsyncConnection.connect(
                host=up.host,
                port=up.port,
                dbname=up.dbname,
                user=up.user,
                password=up.password,
                sslmode=up.sslmode,
                connect_timeout=5,
                application_name="signoff-gateway-guard",
                autocommit=True,
            )
        return conn

    async def _call(self, query: str, params: tuple[object, ...]) -> object:
        async with self._lock:
            for attempt in (1, 2):  # once more on a fresh connection: it may have dropped
                try:
                    conn = await self._connection()
                    cursor = await conn.execute(query, params)
                    row = await cursor.fetchone()
                    return None if row is None else row[0]
                except psycopg.OperationalError as error:
                    if attempt == 2:
                        raise
                    _log.warning("guard marker (%s): reconnecting: %s", self.database, error)
                    self._conn = None
        return None  # pragma: no cover - the loop returns or raises

    async def mark(self, backend_pid: int, text: str) -> str | None:
        """A new mark for ``text`` on backend ``backend_pid``: its nonce, or None."""
        nonce = secrets.token_hex(16)
        digest = hashlib.sha256(text.encode("utf-8")).hexdigest()
        try:
            made = await self._call(
                "SELECT signoff_guard.mark(%s, %s, %s)", (backend_pid, nonce, digest)
            )
        except psycopg.Error as error:
            if not self._warned:  # once: the log says it, the guard refuses each one
                self._warned = True
                _log.error(
                    "guard marker (%s): cannot mark approved statements (%s); the guard, "
                    "if installed, refuses their destructive effects",
                    self.database,
                    str(error).strip().splitlines()[0] if str(error).strip() else error,
                )
            return None
        if made is not True:
            return None
        self.marks += 1
        return nonce

    async def clear(self, backend_pid: int, nonces: list[str]) -> None:
        try:
            await self._call("SELECT signoff_guard.unmark(%s, %s)", (backend_pid, nonces))
        except psycopg.Error as error:  # the mark dies with its backend (start time)
            _log.warning("guard marker (%s): cannot clear a mark: %s", self.database, error)

    async def close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            await conn.close()
