"""runner.dryrun.executor (the dry-run) against real PostgreSQL, with plans built by hand."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import psycopg
import pytest
from psycopg.pq import TransactionStatus

from runner.dryrun import executor
from runner.dryrun.executor import LockTaken, execute_plan
from runner.errors import DatabaseError
from runner.plan.model import AnalysisBasis, Plan, Statement, sha256_hex

# (text, kind, explicit transaction number or None)
Step = tuple[str, str, int | None]


def make_plan(steps: Sequence[Step]) -> Plan:
    statements = tuple(
        Statement(
            index=i,
            revision="r1",
            source="test.sql",
            line=i + 1,
            end_line=i + 1,
            text=text,
            sha256=sha256_hex(text),
            fingerprint=sha256_hex(text.lower()),
            kind=kind,
            transaction=transaction,
        )
        for i, (text, kind, transaction) in enumerate(steps)
    )
    return Plan(
        target="scratch",
        ruleset="test",
        revisions=(),
        statements=statements,
        basis=AnalysisBasis(None, "assumed-worst", "plan"),
    )


def relation_exists(url: str, name: str) -> bool:
    with psycopg.connect(url) as conn:
        row = conn.execute("SELECT to_regclass(%s)", (name,)).fetchone()
    return row is not None and row[0] is not None


SCRIPT: list[Step] = [
    ("BEGIN", "begin", 1),
    ("CREATE TABLE t(id int)", "create_table", 1),
    ("CREATE INDEX i ON t(id)", "create_index", 1),
    ("COMMIT", "commit", 1),
    ("CREATE INDEX CONCURRENTLY j ON t(id)", "create_index", None),
]


def test_locks_durations_and_tags(scratch_db_url: str) -> None:
    result = execute_plan(scratch_db_url, make_plan(SCRIPT))

    assert result.failed is None
    assert [r.index for r in result.runs] == [0, 1, 2, 3, 4]
    assert [r.outcome for r in result.runs] == [
        "BEGIN",
        "CREATE TABLE",
        "CREATE INDEX",
        "COMMIT",
        "CREATE INDEX",
    ]
    assert all(r.duration_ms >= 0 for r in result.runs)
    assert all(r.error is None for r in result.runs)

    begin, create_table, create_index, commit, concurrent = result.runs
    assert begin.locks == ()
    assert create_table.locks is not None
    assert LockTaken("relation", "t", "AccessExclusiveLock") in create_table.locks
    assert create_index.locks is not None
    assert LockTaken("relation", "t", "ShareLock") in create_index.locks
    # Held since CREATE TABLE: not new, not reported again.
    assert LockTaken("relation", "t", "AccessExclusiveLock") not in create_index.locks
    assert commit.locks is None
    assert concurrent.locks is None  # outside an explicit transaction: not observable

    for run in (create_table, create_index):
        assert run.locks is not None
        for lock in run.locks:
            assert lock.locktype not in ("virtualxid", "transactionid")
            assert lock.relation != "pg_locks"
            assert not (lock.relation or "").startswith("pg_toast.")

    assert relation_exists(scratch_db_url, "j")


def test_new_locks_only_within_the_same_transaction(scratch_db_url: str) -> None:
    plan = make_plan(
        [
            ("CREATE TABLE t(id int)", "create_table", None),
            ("BEGIN", "begin", 1),
            ("ALTER TABLE t ADD COLUMN a int", "add_column", 1),
            ("COMMIT", "commit", 1),
            ("BEGIN", "begin", 2),
            ("ALTER TABLE t ADD COLUMN b int", "add_column", 2),
            ("COMMIT", "commit", 2),
        ]
    )
    result = execute_plan(scratch_db_url, plan)
    assert result.failed is None
    first, second = result.runs[2], result.runs[5]
    expected = LockTaken("relation", "t", "AccessExclusiveLock")
    assert first.locks is not None and expected in first.locks
    assert second.locks is not None and expected in second.locks  # a new transaction
    assert result.runs[0].locks is None


def test_failure_stops_the_run_and_rolls_back(
    scratch_db_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    after_rollback: list[TransactionStatus] = []
    real_rollback = executor._rollback_open_transaction

    def spy(conn: psycopg.Connection[Any]) -> None:
        real_rollback(conn)
        after_rollback.append(conn.info.transaction_status)

    monkeypatch.setattr(executor, "_rollback_open_transaction", spy)
    plan = make_plan(
        [
            ("BEGIN", "begin", 1),
            ("CREATE TABLE a(id int)", "create_table", 1),
            ("INSERT INTO a VALUES (1 / 0)", "insert", 1),
            ("COMMIT", "commit", 1),
            ("CREATE TABLE b(id int)", "create_table", None),
        ]
    )
    result = execute_plan(scratch_db_url, plan)

    assert result.failed is not None
    assert result.failed.index == 2
    assert result.failed.outcome == "ERROR 22012"
    assert result.failed.error is not None and "division by zero" in result.failed.error
    assert result.failed.locks is None
    assert result.failed.duration_ms >= 0
    assert result.runs[-1] is result.failed
    assert len(result.runs) == 3
    assert after_rollback == [TransactionStatus.IDLE]
    assert not relation_exists(scratch_db_url, "a")  # rolled back
    assert not relation_exists(scratch_db_url, "b")  # never ran


def test_failure_outside_a_transaction(scratch_db_url: str) -> None:
    plan = make_plan(
        [
            ("CREATE TABLE t(id int)", "create_table", None),
            ("CREATE TABLE t(id int)", "create_table", None),
        ]
    )
    result = execute_plan(scratch_db_url, plan)
    assert result.failed is not None
    assert result.failed.index == 1
    assert result.failed.outcome == "ERROR 42P07"  # duplicate_table
    assert relation_exists(scratch_db_url, "t")


def test_percent_signs_reach_the_server_verbatim(scratch_db_url: str) -> None:
    plan = make_plan(
        [
            ("BEGIN", "begin", 1),
            ("CREATE TABLE p(name text)", "create_table", 1),
            ("INSERT INTO p VALUES ('100%'), ('a%s'), ('b%%')", "insert", 1),
            ("COMMENT ON TABLE p IS '50% done'", "comment", 1),
            ("COMMIT", "commit", 1),
            ("UPDATE p SET name = name || '%' WHERE name LIKE 'a%'", "update", None),
        ]
    )
    result = execute_plan(scratch_db_url, plan)
    assert result.failed is None
    assert result.runs[2].outcome == "INSERT 0 3"
    assert result.runs[5].outcome == "UPDATE 1"
    with psycopg.connect(scratch_db_url) as conn:
        names = {r[0] for r in conn.execute("SELECT name FROM p").fetchall()}
        comment = conn.execute("SELECT obj_description('p'::regclass)").fetchone()
    assert names == {"100%", "a%s%", "b%%"}
    assert comment == ("50% done",)


def test_lock_timeout_applies(scratch_db_url: str) -> None:
    with psycopg.connect(scratch_db_url, autocommit=True) as setup:
        setup.execute("CREATE TABLE busy(id int)")
    with psycopg.connect(scratch_db_url) as holder:
        holder.execute("LOCK TABLE busy IN ACCESS SHARE MODE")  # held until rollback
        plan = make_plan(
            [
                ("BEGIN", "begin", 1),
                ("ALTER TABLE busy ADD COLUMN x int", "add_column", 1),
                ("COMMIT", "commit", 1),
            ]
        )
        result = execute_plan(scratch_db_url, plan, lock_timeout_ms=200)
        holder.rollback()
    assert result.failed is not None
    assert result.failed.index == 1
    assert result.failed.outcome == "ERROR 55P03"  # lock_not_available


def test_unreachable_database_is_a_database_error() -> None:
    with pytest.raises(DatabaseError) as info:
        execute_plan("postgresql://postgres:pw@127.0.0.1:1/x", make_plan(SCRIPT))
    assert "127.0.0.1:1" in str(info.value)
    assert "pw@" not in str(info.value)
