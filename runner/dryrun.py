"""Dry-run: execute a plan against a (scratch) database the way apply will.

One connection in autocommit mode runs the planned statements in order, each
one's original text verbatim. The plan's own BEGIN / COMMIT statements (as in
alembic's offline script) are what make transactions; nothing is added. Inside
an explicit transaction the locks a statement took are read back from
``pg_locks`` on the same backend, so a reviewer sees what each statement would
hold until COMMIT. Outside one, the locks are gone by the time anyone could look
(``locks`` is None). The run stops at the first failing statement and rolls
back a transaction it leaves open.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg.pq import TransactionStatus

from runner.errors import DatabaseError
from runner.pg import describe_server
from runner.plan.model import Plan, Statement

# The backend's own locks, minus what is noise to a reviewer: its virtual and
# real transaction ids, locks on system catalogs (oid below FirstNormalObjectId
# = 16384; this includes pg_locks, which the query itself locks), TOAST
# relations (always locked together with their table), and the AccessShareLocks
# on built-in objects (schema public, ...) taken by every name lookup.
# For "object" locks ``relation`` carries PostgreSQL's description of the
# object (e.g. "type mood") instead of a relation name.
_LOCKS_QUERY = """
SELECT l.locktype,
       CASE WHEN l.relation IS NOT NULL THEN l.relation::regclass::text
            WHEN l.locktype = 'object' THEN pg_describe_object(l.classid, l.objid, l.objsubid)
       END,
       l.mode
  FROM pg_locks AS l
 WHERE l.pid = pg_backend_pid()
   AND l.granted
   AND l.locktype NOT IN ('virtualxid', 'transactionid')
   AND (l.relation IS NULL OR l.relation::oid >= 16384)
   AND (l.relation IS NULL OR l.relation::regclass::text NOT LIKE 'pg\\_toast.%')
   AND NOT (l.locktype = 'object' AND l.objid < 16384 AND l.mode = 'AccessShareLock')
"""


@dataclass(frozen=True)
class LockTaken:
    locktype: str  # pg_locks.locktype: "relation", "object", "advisory", ...
    relation: str | None  # relation name (schema-qualified when not on search_path)
    mode: str  # "AccessExclusiveLock", "ShareLock", ...


@dataclass(frozen=True)
class StatementRun:
    index: int  # Statement.index
    duration_ms: float
    # Locks new since the previous statement of the same explicit transaction;
    # None when not observable (the statement ran outside an explicit transaction).
    locks: tuple[LockTaken, ...] | None
    outcome: str  # the command tag, or "ERROR <sqlstate>"
    error: str | None


@dataclass(frozen=True)
class DryRunResult:
    runs: tuple[StatementRun, ...]
    failed: StatementRun | None

    @property
    def ok(self) -> bool:
        return self.failed is None


def execute_plan(url: str, plan: Plan, *, lock_timeout_ms: int | None = None) -> DryRunResult:
    """Run every statement of plan on url, in order, stopping at the first failure."""
    where = describe_server(url)
    try:
        conn = psycopg.connect(url, autocommit=True)
    except psycopg.Error as exc:
        raise DatabaseError(
            f"cannot connect to PostgreSQL at {where} for the dry-run: {_first_line(exc)}"
        ) from exc
    with conn:
        if lock_timeout_ms is not None:
            if lock_timeout_ms < 0:
                raise ValueError("lock_timeout_ms must be >= 0")
            conn.execute(f"SET lock_timeout = {int(lock_timeout_ms)}")
        return _run_statements(conn, plan, where)


def _run_statements(conn: psycopg.Connection[Any], plan: Plan, where: str) -> DryRunResult:
    runs: list[StatementRun] = []
    held: frozenset[LockTaken] = frozenset()
    held_in: int | None = None  # the transaction `held` belongs to
    with conn.cursor() as cur:
        for statement in plan.statements:
            started = time.perf_counter()
            try:
                # No parameters: the text goes to the server untouched
                # (psycopg interprets % only when parameters are passed).
                cur.execute(statement.text)
            except psycopg.Error as exc:
                duration_ms = (time.perf_counter() - started) * 1000.0
                if conn.broken:
                    raise DatabaseError(
                        f"lost the connection to {where} during statement {statement.index}: "
                        f"{_first_line(exc)}"
                    ) from exc
                failed = StatementRun(
                    index=statement.index,
                    duration_ms=duration_ms,
                    locks=None,
                    outcome=f"ERROR {exc.sqlstate or 'unknown'}",
                    error=_message(exc),
                )
                runs.append(failed)
                _rollback_open_transaction(conn)
                return DryRunResult(tuple(runs), failed)
            duration_ms = (time.perf_counter() - started) * 1000.0

            locks: tuple[LockTaken, ...] | None = None
            if _observable(statement, conn):
                if held_in != statement.transaction:
                    held, held_in = frozenset(), statement.transaction
                now = _locks_held(conn)
                locks = tuple(sorted(now - held, key=_lock_order))
                held = now
            else:
                held, held_in = frozenset(), None
            runs.append(
                StatementRun(
                    index=statement.index,
                    duration_ms=duration_ms,
                    locks=locks,
                    outcome=cur.statusmessage or "",
                    error=None,
                )
            )
    return DryRunResult(tuple(runs), None)


def _observable(statement: Statement, conn: psycopg.Connection[Any]) -> bool:
    """Inside an explicit transaction that is still open after the statement."""
    return (
        statement.transaction is not None
        and statement.kind not in ("commit", "rollback")
        and conn.info.transaction_status == TransactionStatus.INTRANS
    )


def _locks_held(conn: psycopg.Connection[Any]) -> frozenset[LockTaken]:
    with conn.cursor() as cur:
        cur.execute(_LOCKS_QUERY)
        return frozenset(LockTaken(str(t), r, str(m)) for t, r, m in cur.fetchall())


def _lock_order(lock: LockTaken) -> tuple[str, str, str]:
    return (lock.locktype, lock.relation or "", lock.mode)


def _rollback_open_transaction(conn: psycopg.Connection[Any]) -> None:
    if conn.info.transaction_status in (TransactionStatus.INTRANS, TransactionStatus.INERROR):
        try:
            conn.execute("ROLLBACK")
        except psycopg.Error as exc:
            raise DatabaseError(
                f"could not roll back the dry-run transaction: {_first_line(exc)}"
            ) from exc


def _message(exc: psycopg.Error) -> str:
    diag = exc.diag
    text = diag.message_primary or _first_line(exc)
    if diag.message_detail:
        text += f" ({diag.message_detail})"
    return text


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
