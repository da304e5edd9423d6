"""Apply: a plan applied to its target over one libpq connection.

In production the connection is the gateway's PostgreSQL port (user = the
session id, password = the session secret), so the gateway sees, decides and
records every statement; nothing here holds a database credential of its own.

On that one connection, in this order:

1. ``SET lock_timeout`` and ``SET statement_timeout`` (:class:`ApplyOptions`;
   defaults 5 s and 15 min), read back with ``SHOW`` into the report;
2. the apply lock: a session-level advisory lock whose key is the first eight
   bytes of ``sha256("signoff.apply:" + current_database())`` read as a signed
   big-endian bigint (:func:`advisory_lock_key`). Every Signoff apply to one
   database computes the same key, whatever its connection string says, so two
   pipelines never apply to it at once. It is taken with
   ``pg_try_advisory_lock`` polled every ``poll_interval_s``, so the wait is
   bounded (``lock_wait_s``) and reported as it happens; the server drops the
   lock by itself if the connection goes;
3. the revision check: the rows of the alembic version table must be the
   plan's ``from_revisions`` (where it was planned from), or nothing runs;
4. the plan's statements, verbatim, through the dry-run's executor
   (:func:`runner.dryrun.executor.run_statements`): the plan's own BEGIN /
   COMMIT make one transaction per revision, its autocommit blocks run on
   their own, and the first failure stops the run and rolls back the
   transaction it was in.

The result is an :class:`ApplyReport` whose :class:`Outcome` the CLI maps to
an exit status: what was applied (and committed), the failing statement with
its SQLSTATE, what was rolled back and what never ran.
"""

from __future__ import annotations

import contextlib
import hashlib
import time
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any

import psycopg
from psycopg.conninfo import conninfo_to_dict, make_conninfo
from psycopg.pq import TransactionStatus

from runner.dryrun.executor import (
    Execution,
    StatementDone,
    StatementRun,
    StatementStarting,
    run_statements,
    set_timeouts,
)
from runner.dryrun.facts import current_heads
from runner.errors import DatabaseError, SignoffError
from runner.pgurl import describe, libpq_conninfo, scrub
from runner.plan.model import Plan, Statement, sha256_hex

__all__ = [
    "AppliedStatement",
    "ApplyEvent",
    "ApplyOptions",
    "ApplyReport",
    "FailedStatement",
    "LockAcquired",
    "LockWaiting",
    "Outcome",
    "StatementDone",
    "StatementStarting",
    "advisory_lock_key",
    "apply_plan",
]

LOCK_KEY_PREFIX = "signoff.apply:"
_CONNECT_TIMEOUT_S = 10
# A waiting apply says so at once, then this often: a CI log shows it is alive
# without a line per poll.
_WAIT_REPORT_EVERY_S = 15.0


class Outcome(StrEnum):
    APPLIED = "applied"  # every statement ran and is committed
    FAILED = "failed"  # a statement failed: its transaction rolled back, the rest not run
    REVISION_MOVED = "revision-moved"  # the database is not where the plan starts: nothing ran
    LOCK_TIMEOUT = "lock-timeout"  # another apply held the lock for all of lock_wait: nothing ran


@dataclass(frozen=True)
class ApplyOptions:
    lock_timeout_ms: int | None = 5_000  # None: leave the server's setting
    statement_timeout_ms: int | None = 15 * 60 * 1000  # None: leave the server's setting
    lock_wait_s: float = 600.0  # how long to wait for another apply to finish
    poll_interval_s: float = 1.0
    version_table: str = "alembic_version"
    version_schema: str | None = None
    application_name: str | None = "signoff apply"


@dataclass(frozen=True)
class LockWaiting:
    """Progress: another session holds the apply lock; still waiting."""

    database: str
    waited_s: float
    lock_wait_s: float
    holder_pid: int | None  # the holder's backend pid, when pg_locks shows it


@dataclass(frozen=True)
class LockAcquired:
    """Progress: the apply lock is ours (``waited_s`` 0 when it was free)."""

    database: str
    waited_s: float


ApplyEvent = StatementStarting | StatementDone | LockWaiting | LockAcquired


@dataclass(frozen=True)
class AppliedStatement:
    """A statement that ran without error."""

    index: int
    revision: str | None
    kind: str
    transaction: int | None
    duration_ms: float
    tag: str  # the command tag, e.g. "CREATE INDEX", "UPDATE 1"
    rows: int | None
    # True when its effect is in the database: it ran outside an explicit
    # transaction, or its transaction's COMMIT ran. False: rolled back.
    committed: bool

    def to_json(self) -> dict[str, Any]:
        return {
            "index": self.index,
            "revision": self.revision,
            "kind": self.kind,
            "transaction": self.transaction,
            "duration_ms": round(self.duration_ms, 3),
            "tag": self.tag,
            "rows": self.rows,
            "committed": self.committed,
        }


@dataclass(frozen=True)
class FailedStatement:
    index: int
    revision: str | None
    text: str
    duration_ms: float
    sqlstate: str | None
    message: str
    # The connection broke during the statement: if it was a COMMIT, whether
    # the transaction committed is unknown; read the database to find out.
    connection_lost: bool = False

    def to_json(self) -> dict[str, Any]:
        return {
            "index": self.index,
            "revision": self.revision,
            "text": self.text,
            "duration_ms": round(self.duration_ms, 3),
            "sqlstate": self.sqlstate,
            "message": self.message,
            "connection_lost": self.connection_lost,
        }


@dataclass(frozen=True)
class ApplyReport:
    outcome: Outcome
    reason: str  # one line: what happened, and for a refusal why and what to do
    plan_hash: str
    database: str  # host:port/dbname, never a password
    lock_key: int | None  # None when the lock was never asked for
    lock_waited_s: float
    timeouts: dict[str, str]  # SHOW lock_timeout / statement_timeout as in force
    expected_revisions: tuple[str, ...]  # the plan's from_revisions
    found_revisions: tuple[str, ...] | None  # the version table before apply; None: not read
    applied_revisions: tuple[str, ...]  # every statement ran and is committed
    failed_revision: str | None
    not_applied_revisions: tuple[str, ...]  # the failed one and every one after it
    statements: tuple[AppliedStatement, ...]  # ran without error, in order
    failure: FailedStatement | None
    rolled_back: tuple[int, ...]  # statements that ran, undone by the rollback
    not_run: tuple[int, ...]  # statements never sent
    duration_ms: float = 0.0

    @property
    def ok(self) -> bool:
        return self.outcome is Outcome.APPLIED

    def to_json(self) -> dict[str, Any]:
        return {
            "outcome": self.outcome.value,
            "reason": self.reason,
            "plan_hash": self.plan_hash,
            "database": self.database,
            "lock_key": self.lock_key,
            "lock_waited_s": round(self.lock_waited_s, 3),
            "timeouts": dict(self.timeouts),
            "expected_revisions": list(self.expected_revisions),
            "found_revisions": (
                None if self.found_revisions is None else list(self.found_revisions)
            ),
            "applied_revisions": list(self.applied_revisions),
            "failed_revision": self.failed_revision,
            "not_applied_revisions": list(self.not_applied_revisions),
            "statements": [s.to_json() for s in self.statements],
            "failure": None if self.failure is None else self.failure.to_json(),
            "rolled_back": list(self.rolled_back),
            "not_run": list(self.not_run),
            "duration_ms": round(self.duration_ms, 3),
        }


def advisory_lock_key(dbname: str) -> int:
    """The apply lock's key for a database: sha256("signoff.apply:" + name), first 8 bytes,
    as a signed big-endian 64-bit integer (pg_advisory_lock's bigint)."""
    digest = hashlib.sha256((LOCK_KEY_PREFIX + dbname).encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


def apply_plan(
    conninfo: str,
    plan: Plan,
    *,
    options: ApplyOptions | None = None,
    progress: Callable[[ApplyEvent], None] | None = None,
    online: OnlineRun | None = None,
) -> ApplyReport:
    """Apply ``plan`` on the database ``conninfo`` (a URL or key=value string) names.

    Returns the report for every outcome of the plan itself; raises
    :class:`DatabaseError` (one line, no password) when the database cannot be
    reached or the apply's own queries fail before anything of the plan ran.
    """
    options = options or ApplyOptions()
    _check_texts(plan)
    where = describe(conninfo)
    started = time.perf_counter()
    conn = _connect(conninfo, where, options)
    with conn:
        try:
            return _apply_on(conn, plan, options, where, started, progress, online)
        except psycopg.Error as exc:
            # Only the apply's own queries get here (timeouts, lock, version
            # check, the rollback of an unfinished plan): the executor turns the
            # plan's statements' errors into the report.
            raise DatabaseError(
                f"apply on {where}: a query of the apply itself failed: "
                f"{scrub(_first_line(exc), conninfo)}"
            ) from None


@dataclass(frozen=True)
class OnlineRun:
    """Run the migrations with alembic online (``alembic upgrade``) instead of the
    planned statements, for migrations that need a live connection. ``url`` is
    where alembic connects (the gateway's PG port: it matches each statement it
    sees to the plan's grants by fingerprint); the apply lock and the revision
    check are held and made on the apply's own connection."""

    alembic_ini: Path
    url: str


def _apply_online(
    conn: psycopg.Connection[Any],
    online: OnlineRun,
    plan: Plan,
    report: _Reporter,
    waited: float,
    found: tuple[str, ...],
    options: ApplyOptions,
) -> ApplyReport:
    from runner.dryrun.migrate import upgrade

    error: str | None = None
    try:
        upgrade(online.alembic_ini, online.url, plan.to_revision or "heads")
    except SignoffError as failed:
        error = str(failed)
    with conn.cursor() as cur:
        now = current_heads(cur, options.version_table, options.version_schema)
    return report.online(waited, found, now, error)


def _apply_on(
    conn: psycopg.Connection[Any],
    plan: Plan,
    options: ApplyOptions,
    where: str,
    started: float,
    progress: Callable[[ApplyEvent], None] | None,
    online: OnlineRun | None = None,
) -> ApplyReport:
    set_timeouts(
        conn,
        lock_timeout_ms=options.lock_timeout_ms,
        statement_timeout_ms=options.statement_timeout_ms,
    )
    timeouts = {name: _show(conn, name) for name in ("lock_timeout", "statement_timeout")}
    dbname = str(_fetch_one(conn, "SELECT current_database()"))
    key = advisory_lock_key(dbname)
    report = _Reporter(plan, where, key, timeouts, started)

    waited = _take_lock(conn, key, dbname, options, progress)
    if waited is None:
        return report.refused(
            Outcome.LOCK_TIMEOUT,
            f"another apply holds the apply lock on {where} and did not finish within "
            f"{options.lock_wait_s:g} s (lock_wait); nothing was applied; run again when it "
            "has finished",
            waited_s=options.lock_wait_s,
            found=None,
        )
    try:
        with conn.cursor() as cur:
            found = current_heads(cur, options.version_table, options.version_schema)
        expected = tuple(sorted(plan.from_revisions))
        if found != expected:
            return report.refused(
                Outcome.REVISION_MOVED,
                f"{where} is at revision {_revisions(found)} but the plan starts at "
                f"{_revisions(expected)}: the database moved since it was planned; nothing "
                "was applied; plan again",
                waited_s=waited,
                found=found,
            )
        if online is not None:
            return _apply_online(conn, online, plan, report, waited, found, options)
        execution = run_statements(conn, plan.statements, where=where, progress=progress)
        left_open = _close_open_transaction(conn, plan, execution)
        return report.ran(execution, waited, found, left_open)
    finally:
        # Closing the connection releases the lock too; unlocking first lets
        # a waiting apply go on at once. Its failure must not cost the report.
        if not conn.broken:
            with contextlib.suppress(psycopg.Error):
                conn.execute("SELECT pg_advisory_unlock(%s)", (key,))


@dataclass(frozen=True)
class _Reporter:
    """What every report of one apply shares."""

    plan: Plan
    where: str
    key: int
    timeouts: dict[str, str]
    started: float

    def _elapsed_ms(self) -> float:
        return (time.perf_counter() - self.started) * 1000.0

    def _report(
        self,
        outcome: Outcome,
        reason: str,
        *,
        waited_s: float,
        found: tuple[str, ...] | None,
        applied_revisions: tuple[str, ...] = (),
        failed_revision: str | None = None,
        not_applied_revisions: tuple[str, ...] | None = None,
        statements: tuple[AppliedStatement, ...] = (),
        failure: FailedStatement | None = None,
        rolled_back: tuple[int, ...] = (),
        not_run: tuple[int, ...] = (),
    ) -> ApplyReport:
        """What every report of this apply shares, and what this one found."""
        plan = self.plan
        return ApplyReport(
            outcome=outcome,
            reason=reason,
            plan_hash=plan.hash,
            database=self.where,
            lock_key=self.key,
            lock_waited_s=waited_s,
            timeouts=self.timeouts,
            expected_revisions=tuple(sorted(plan.from_revisions)),
            found_revisions=found,
            applied_revisions=applied_revisions,
            failed_revision=failed_revision,
            not_applied_revisions=(
                tuple(r.id for r in plan.revisions)
                if not_applied_revisions is None
                else not_applied_revisions
            ),
            statements=statements,
            failure=failure,
            rolled_back=rolled_back,
            not_run=not_run,
            duration_ms=self._elapsed_ms(),
        )

    def refused(
        self,
        outcome: Outcome,
        reason: str,
        *,
        waited_s: float,
        found: tuple[str, ...] | None,
    ) -> ApplyReport:
        return self._report(
            outcome,
            reason,
            waited_s=waited_s,
            found=found,
            not_run=tuple(s.index for s in self.plan.statements),
        )

    def online(
        self, waited_s: float, found: tuple[str, ...], now: tuple[str, ...], error: str | None
    ) -> ApplyReport:
        """The report of an online run (alembic on its own connection): what the
        version table says was applied, and the error that stopped it."""
        plan = self.plan
        ids = [r.id for r in plan.revisions]
        reached = max((ids.index(r) for r in now if r in ids), default=-1)
        applied = tuple(ids[: reached + 1])
        not_applied = tuple(ids[reached + 1 :])
        if error is None and not not_applied:
            outcome = Outcome.APPLIED
            reason = f"applied {len(applied)} revision(s) online with alembic to {self.where}"
        else:
            outcome = Outcome.FAILED
            reason = error or f"alembic stopped at revision {_revisions(now)}"
        return self._report(
            outcome,
            reason,
            waited_s=waited_s,
            found=found,
            applied_revisions=applied,
            failed_revision=not_applied[0] if outcome is Outcome.FAILED and not_applied else None,
            not_applied_revisions=not_applied,
        )

    def ran(
        self,
        execution: Execution,
        waited_s: float,
        found: tuple[str, ...],
        left_open: int | None,
    ) -> ApplyReport:
        plan = self.plan
        by_index = {s.index: s for s in plan.statements}
        applied = _settle(execution, by_index)
        committed = {a.index for a in applied if a.committed}
        ran = {run.index for run in execution.runs}
        failure = _failure(execution, by_index)
        failed_revision = by_index[failure.index].revision if failure is not None else None
        applied_revisions = tuple(
            r.id
            for r in plan.revisions
            if all(s.index in committed for s in plan.statements_of(r.id))
        )
        not_applied = tuple(r.id for r in plan.revisions if r.id not in applied_revisions)
        rolled_back = tuple(a.index for a in applied if not a.committed)
        if failure is not None:
            outcome, reason = Outcome.FAILED, self._failure_reason(failure, by_index, applied)
        elif left_open is not None:
            outcome = Outcome.FAILED
            reason = (
                f"the plan left a transaction open (no COMMIT after statement #{left_open}); "
                "it was rolled back; fix the plan"
            )
        else:
            outcome = Outcome.APPLIED
            reason = (
                f"applied {len(applied_revisions)} revision(s), {len(applied)} statement(s) "
                f"to {self.where}"
            )
        return self._report(
            outcome,
            reason,
            waited_s=waited_s,
            found=found,
            applied_revisions=applied_revisions,
            failed_revision=failed_revision,
            not_applied_revisions=not_applied,
            statements=applied,
            failure=failure,
            rolled_back=rolled_back,
            not_run=tuple(s.index for s in plan.statements if s.index not in ran),
        )

    def _failure_reason(
        self,
        failure: FailedStatement,
        by_index: dict[int, Statement],
        applied: tuple[AppliedStatement, ...],
    ) -> str:
        statement = by_index[failure.index]
        where = f"revision {statement.revision}" if statement.revision else f"{statement.source}"
        kept = [a.index for a in applied if a.committed and a.revision == statement.revision]
        reason = (
            f"statement #{failure.index} of {where} (line {statement.line}) failed"
            f" [{failure.sqlstate or 'no SQLSTATE'}]: {failure.message}"
        )
        if failure.connection_lost:
            reason += "; the connection was lost, so whether it took effect is unknown"
        elif statement.transaction is None:
            reason += "; it ran outside a transaction, so nothing else was undone"
        else:
            reason += "; its transaction was rolled back"
        if statement.revision and kept:
            reason += (
                f"; statements {', '.join(f'#{i}' for i in kept)} of that revision were "
                "committed before it and stay applied"
            )
        return reason + "; later statements were not run"


def _settle(execution: Execution, by_index: dict[int, Statement]) -> tuple[AppliedStatement, ...]:
    """The successful runs, each marked committed or rolled back.

    A statement outside an explicit transaction commits as it runs; one inside
    commits with its transaction's COMMIT and is undone by a ROLLBACK, by the
    executor's rollback after a failure, or by the rollback of a transaction
    the plan left open.
    """
    settled: dict[int, bool] = {}
    pending: list[int] = []
    for run in execution.runs:
        if run.error is not None:
            break
        statement = by_index[run.index]
        if statement.transaction is None:
            settled[run.index] = True
            continue
        pending.append(run.index)
        if statement.kind in ("commit", "rollback"):
            # COMMIT of a failed transaction answers ROLLBACK; the executor
            # stops before one could run, but the tag is the truth.
            keep = statement.kind == "commit" and run.outcome != "ROLLBACK"
            settled.update(dict.fromkeys(pending, keep))
            pending.clear()
    # Still pending: the failure's transaction, or one the plan left open.
    settled.update(dict.fromkeys(pending, False))
    return tuple(
        AppliedStatement(
            index=run.index,
            revision=by_index[run.index].revision,
            kind=by_index[run.index].kind,
            transaction=by_index[run.index].transaction,
            duration_ms=run.duration_ms,
            tag=run.outcome,
            rows=run.rows,
            committed=settled[run.index],
        )
        for run in execution.runs
        if run.error is None
    )


def _failure(execution: Execution, by_index: dict[int, Statement]) -> FailedStatement | None:
    run: StatementRun | None = execution.failed
    if run is None:
        return None
    return FailedStatement(
        index=run.index,
        revision=by_index[run.index].revision,
        text=by_index[run.index].text,
        duration_ms=run.duration_ms,
        sqlstate=run.sqlstate,
        message=run.error or run.outcome,
        connection_lost=execution.lost_connection is not None,
    )


def _close_open_transaction(
    conn: psycopg.Connection[Any], plan: Plan, execution: Execution
) -> int | None:
    """Roll back a transaction the plan began and never ended: the index of the plan's
    last statement when there was one, else None. (Fail closed: never commit what the
    plan did not.)"""
    if execution.failed is not None or conn.broken:
        return None
    if conn.info.transaction_status not in (
        TransactionStatus.INTRANS,
        TransactionStatus.INERROR,
    ):
        return None
    conn.execute("ROLLBACK")
    return plan.statements[-1].index


def _take_lock(
    conn: psycopg.Connection[Any],
    key: int,
    dbname: str,
    options: ApplyOptions,
    progress: Callable[[ApplyEvent], None] | None,
) -> float | None:
    """Seconds waited for the apply lock, or None when lock_wait ran out."""
    started = time.monotonic()
    last_report: float | None = None
    while True:
        if _fetch_one(conn, "SELECT pg_try_advisory_lock(%s)", (key,)) is True:
            waited = time.monotonic() - started
            if progress is not None:
                progress(LockAcquired(dbname, waited))
            return waited
        waited = time.monotonic() - started
        if waited >= options.lock_wait_s:
            return None
        if progress is not None and (
            last_report is None or waited - last_report >= _WAIT_REPORT_EVERY_S
        ):
            last_report = waited
            progress(LockWaiting(dbname, waited, options.lock_wait_s, _holder(conn, key)))
        time.sleep(max(0.0, min(options.poll_interval_s, options.lock_wait_s - waited)))


def _holder(conn: psycopg.Connection[Any], key: int) -> int | None:
    """The pid holding the advisory lock ``key`` in this database, if pg_locks shows it.

    A bigint advisory key is pg_locks' classid (high 32 bits) and objid (low 32
    bits), with objsubid 1.
    """
    unsigned = key & 0xFFFF_FFFF_FFFF_FFFF
    try:
        row = conn.execute(
            "SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND granted"
            " AND database = (SELECT oid FROM pg_database WHERE datname = current_database())"
            " AND classid = %s::bigint::oid AND objid = %s::bigint::oid AND objsubid = 1",
            (unsigned >> 32, unsigned & 0xFFFF_FFFF),
        ).fetchone()
    except psycopg.Error:
        if conn.broken:
            raise
        return None  # pg_locks may be refused (the gateway, a restricted role): not needed
    return int(row[0]) if row and row[0] is not None else None


def _check_texts(plan: Plan) -> None:
    for statement in plan.statements:
        if sha256_hex(statement.text) != statement.sha256:
            raise SignoffError(
                f"plan statement #{statement.index}: its text does not match its sha256; "
                "the plan was altered; plan again"
            )


def _connect(conninfo: str, where: str, options: ApplyOptions) -> psycopg.Connection[Any]:
    libpq = libpq_conninfo(conninfo)
    try:
        params = conninfo_to_dict(libpq)
    except psycopg.Error:
        raise DatabaseError(
            "the apply connection string cannot be parsed; pass a postgresql:// URL or "
            "libpq key=value string"
        ) from None
    extra: dict[str, Any] = {}
    if "connect_timeout" not in params:
        extra["connect_timeout"] = _CONNECT_TIMEOUT_S
    if options.application_name and "application_name" not in params:
        extra["application_name"] = options.application_name
    try:
        return psycopg.connect(make_conninfo(libpq, **extra), autocommit=True)
    except psycopg.Error as exc:
        raise DatabaseError(
            f"cannot connect to {where} to apply: {scrub(_first_line(exc), conninfo)}; "
            "check the connection string and that the server answers"
        ) from None


def _show(conn: psycopg.Connection[Any], setting: str) -> str:
    # setting is one of our own constants, never input.
    return str(_fetch_one(conn, f"SHOW {setting}"))


def _fetch_one(conn: psycopg.Connection[Any], query: str, params: tuple[Any, ...] = ()) -> Any:
    """The first column of the first row (None when there is no row)."""
    row = conn.execute(query, params or None).fetchone()
    return row[0] if row else None


def _revisions(revisions: tuple[str, ...]) -> str:
    return ", ".join(revisions) if revisions else "base (no alembic version)"


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
