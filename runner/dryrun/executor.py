"""The executor: a plan's statements run on one connection exactly as planned.

One executor serves both dry-run (on a scratch database) and apply (on the
target, through the gateway): :func:`run_statements` is the only code that
sends a planned statement to a server.

One connection in autocommit mode runs the planned statements in order, each
one's original text verbatim. The plan's own BEGIN / COMMIT statements (as in
alembic's offline script) are what make transactions; nothing is added. When
asked (dry-run), the locks a statement took inside an explicit transaction are
read back from ``pg_locks`` on the same backend, so a reviewer sees what each
statement would hold until COMMIT. Outside one, the locks are gone by the time
anyone could look (``locks`` is None). The run stops at the first failing
statement and rolls back a transaction it leaves open.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg.pq import TransactionStatus

from runner.errors import DatabaseError
from runner.pgurl import describe
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
    # None when not observed (not asked for, or the statement ran outside an
    # explicit transaction).
    locks: tuple[LockTaken, ...] | None
    outcome: str  # the command tag, or "ERROR <sqlstate>"
    error: str | None
    # Rows returned or affected as the server counts them; None when the
    # command has no row count (DDL, BEGIN, ...).
    rows: int | None = None
    sqlstate: str | None = None  # of the error; None when the statement succeeded


@dataclass(frozen=True)
class StatementStarting:
    """Progress: the statement is about to be sent."""

    statement: Statement


@dataclass(frozen=True)
class StatementDone:
    """Progress: the statement finished (``run.error`` set when it failed)."""

    statement: Statement
    run: StatementRun


ExecutionEvent = StatementStarting | StatementDone


@dataclass(frozen=True)
class Execution:
    runs: tuple[StatementRun, ...]
    failed: StatementRun | None
    # One line when the connection broke during ``failed``: whether that
    # statement (or the COMMIT it was) took effect is then unknown.
    lost_connection: str | None = None

    @property
    def ok(self) -> bool:
        return self.failed is None


def set_timeouts(
    conn: psycopg.Connection[Any],
    *,
    lock_timeout_ms: int | None = None,
    statement_timeout_ms: int | None = None,
) -> None:
    """SET the session's lock_timeout / statement_timeout (milliseconds); None leaves one as is."""
    for name, value in (
        ("lock_timeout", lock_timeout_ms),
        ("statement_timeout", statement_timeout_ms),
    ):
        if value is None:
            continue
        if value < 0:
            raise ValueError(f"{name}_ms must be >= 0")
        # An int formatted by us, never text from elsewhere: safe to inline.
        conn.execute(f"SET {name} = {int(value)}")


def execute_plan(url: str, plan: Plan, *, lock_timeout_ms: int | None = None) -> Execution:
    """Dry-run: run every statement of plan on url, in order, stopping at the first
    failure, with the locks each statement took inside a transaction."""
    where = describe(url, database=False)
    try:
        conn = psycopg.connect(url, autocommit=True)
    except psycopg.Error as exc:
        raise DatabaseError(
            f"cannot connect to PostgreSQL at {where} for the dry-run: {_first_line(exc)}"
        ) from exc
    with conn:
        set_timeouts(conn, lock_timeout_ms=lock_timeout_ms)
        execution = run_statements(conn, plan.statements, where=where, observe_locks=True)
    if execution.lost_connection is not None:
        raise DatabaseError(execution.lost_connection)
    return execution


def run_statements(
    conn: psycopg.Connection[Any],
    statements: Sequence[Statement],
    *,
    where: str,
    observe_locks: bool = False,
    progress: Callable[[ExecutionEvent], None] | None = None,
) -> Execution:
    """Run statements in order on conn (autocommit), each text verbatim.

    Stops at the first failure and rolls back the transaction it leaves open.
    ``where`` names the server in messages.
    """
    runs: list[StatementRun] = []
    held: frozenset[LockTaken] = frozenset()
    held_in: int | None = None  # the transaction `held` belongs to
    with conn.cursor() as cur:
        for statement in statements:
            if progress is not None:
                progress(StatementStarting(statement))
            started = time.perf_counter()
            try:
                # No parameters: the text goes to the server untouched
                # (psycopg interprets % only when parameters are passed).
                cur.execute(statement.text)
            except psycopg.Error as exc:
                failed = StatementRun(
                    index=statement.index,
                    duration_ms=(time.perf_counter() - started) * 1000.0,
                    locks=None,
                    outcome=f"ERROR {exc.sqlstate or 'unknown'}",
                    error=_message(exc),
                    sqlstate=exc.sqlstate,
                )
                runs.append(failed)
                lost = None
                if conn.broken:
                    lost = (
                        f"lost the connection to {where} during statement {statement.index}: "
                        f"{_first_line(exc)}"
                    )
                else:
                    _rollback_open_transaction(conn)
                if progress is not None:
                    progress(StatementDone(statement, failed))
                return Execution(tuple(runs), failed, lost)
            duration_ms = (time.perf_counter() - started) * 1000.0

            locks: tuple[LockTaken, ...] | None = None
            if observe_locks and _observable(statement, conn):
                if held_in != statement.transaction:
                    held, held_in = frozenset(), statement.transaction
                now = _locks_held(conn)
                locks = tuple(sorted(now - held, key=_lock_order))
                held = now
            else:
                held, held_in = frozenset(), None
            run = StatementRun(
                index=statement.index,
                duration_ms=duration_ms,
                locks=locks,
                outcome=cur.statusmessage or "",
                error=None,
                rows=cur.rowcount if cur.rowcount >= 0 else None,
            )
            runs.append(run)
            if progress is not None:
                progress(StatementDone(statement, run))
    return Execution(tuple(runs), None)


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
                f"could not roll back the transaction of the failed statement: {_first_line(exc)}"
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
