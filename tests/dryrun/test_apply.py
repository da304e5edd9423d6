"""runner.apply against the real PostgreSQL: plans of the sample project and small plans
of our own, applied over one connection, checked on the database afterwards."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

import psycopg
import pytest
from gateway_harness import running_gateway

from runner import command
from runner.apply import (
    ApplyEvent,
    ApplyOptions,
    ApplyReport,
    LockAcquired,
    LockWaiting,
    Outcome,
    StatementDone,
    StatementStarting,
    advisory_lock_key,
    apply_plan,
)
from runner.config import Settings
from runner.dryrun import migrate
from runner.errors import DatabaseError, SignoffError
from runner.plan import render
from runner.plan.build import SqlSource, build_plan
from runner.plan.model import Plan, Revision
from runner.plan.policy import Policy

FIRST = "0d5b4ef5d34c"
HEAD = "be942846c0a5"
FAST_POLL = ApplyOptions(poll_interval_s=0.05)


def revisions_plan(
    revisions: Sequence[tuple[str, str]], *, from_revisions: Sequence[str] = ()
) -> Plan:
    """A plan of (revision id, body SQL) pairs, each wrapped as alembic writes it:
    BEGIN; body; the version row; COMMIT."""
    sources = []
    previous = list(from_revisions)
    for rev, body in revisions:
        version = (
            f"UPDATE alembic_version SET version_num='{rev}'"
            if previous
            else f"INSERT INTO alembic_version (version_num) VALUES ('{rev}')"
        )
        sources.append(SqlSource(f"revision {rev}", f"BEGIN;\n{body}\n{version};\nCOMMIT;\n", rev))
        previous = [rev]
    return build_plan(
        sources,
        policy=Policy(target="scratch"),
        revisions=[
            Revision(rev, (), f"revision {rev}", f"versions/{rev}.py") for rev, _ in revisions
        ],
        from_revisions=from_revisions,
        to_revision=revisions[-1][0],
    )


@pytest.fixture
def versioned_db(scratch_db_url: str) -> str:
    """A scratch database with an empty alembic_version table (at base)."""
    with psycopg.connect(scratch_db_url, autocommit=True) as conn:
        conn.execute("CREATE TABLE alembic_version (version_num varchar(32) PRIMARY KEY)")
    return scratch_db_url


def version_of(url: str) -> list[str]:
    with psycopg.connect(url) as conn:
        return [r[0] for r in conn.execute("SELECT version_num FROM alembic_version")]


def exists(url: str, relation: str) -> bool:
    with psycopg.connect(url) as conn:
        row = conn.execute("SELECT to_regclass(%s)", (relation,)).fetchone()
    return row is not None and row[0] is not None


def indexes_of(plan: Plan, revision: str) -> list[int]:
    return [s.index for s in plan.statements_of(revision)]


def test_the_sample_project_applies_cleanly_and_as_the_dry_run_did(
    sample_migrations: Path, scratch_db_url: str, pg_url: str
) -> None:
    ini = sample_migrations / "alembic.ini"
    plan = command.plan(ini, Settings(), database_url=scratch_db_url)
    events: list[ApplyEvent] = []

    report = apply_plan(scratch_db_url, plan, progress=events.append)

    assert report.outcome is Outcome.APPLIED, report.reason
    assert report.ok and report.failure is None
    assert report.applied_revisions == tuple(r.id for r in plan.revisions)
    assert len(report.applied_revisions) == 11
    assert report.not_applied_revisions == () and report.not_run == () and report.rolled_back == ()
    assert [s.index for s in report.statements] == [s.index for s in plan.statements]
    assert all(s.committed for s in report.statements)
    assert version_of(scratch_db_url) == [HEAD]
    # the autocommit block: CREATE INDEX CONCURRENTLY ran on its own and left a valid index
    concurrent = next(
        s for s in report.statements if s.transaction is None and s.kind == "create_index"
    )
    assert concurrent.tag == "CREATE INDEX" and concurrent.rows is None
    with psycopg.connect(scratch_db_url) as conn:
        valid = conn.execute(
            "SELECT indisvalid FROM pg_index"
            " WHERE indexrelid = 'ix_encounters_patient_id_started_at'::regclass"
        ).fetchone()
    assert valid == (True,)
    version_updates = [
        s
        for s in report.statements
        if s.kind == "update" and "alembic_version" in plan.statements[s.index].text
    ]
    assert version_updates and all(s.tag == "UPDATE 1" and s.rows == 1 for s in version_updates)

    # progress: the lock first, then each statement announced before it ran and after
    assert isinstance(events[0], LockAcquired) and events[0].waited_s < 1
    starts = [e.statement.index for e in events if isinstance(e, StatementStarting)]
    dones = [e.run.index for e in events if isinstance(e, StatementDone)]
    assert starts == dones == [s.index for s in plan.statements]
    assert events.index(next(e for e in events if isinstance(e, StatementStarting))) == 1

    decoded = json.loads(json.dumps(report.to_json()))
    assert decoded["outcome"] == "applied"
    assert decoded["plan_hash"] == plan.hash
    assert decoded["found_revisions"] == []
    assert len(decoded["statements"]) == len(plan.statements)

    # The dry-run runs the same plan through the same executor: the same tags.
    dry = command.dry_run(ini, Settings(), database_url=pg_url)
    assert dry.failed is None
    assert [run.outcome for run in dry.runs] == [s.tag for s in report.statements]


def test_a_failure_in_revision_2_of_3_keeps_1_rolls_back_2_and_never_runs_3(
    versioned_db: str,
) -> None:
    plan = revisions_plan(
        [
            ("r1", "CREATE TABLE one (id int);\nINSERT INTO one VALUES (1), (2);"),
            ("r2", "CREATE TABLE two (id int);\nINSERT INTO two VALUES (1 / 0);"),
            ("r3", "CREATE TABLE three (id int);"),
        ]
    )

    report = apply_plan(versioned_db, plan)

    assert report.outcome is Outcome.FAILED
    failing = next(s for s in plan.statements if "1 / 0" in s.text)
    assert report.failure is not None
    assert report.failure.index == failing.index
    assert report.failure.revision == "r2"
    assert report.failure.sqlstate == "22012"
    assert "division by zero" in report.failure.message
    assert report.failure.text == failing.text
    assert report.applied_revisions == ("r1",)
    assert report.failed_revision == "r2"
    assert report.not_applied_revisions == ("r2", "r3")
    r2 = indexes_of(plan, "r2")
    assert report.rolled_back == tuple(i for i in r2 if i < failing.index)
    assert report.not_run == tuple(i for i in r2 if i > failing.index) + tuple(
        indexes_of(plan, "r3")
    )
    insert = next(s for s in report.statements if s.tag == "INSERT 0 2")
    assert insert.rows == 2 and insert.committed and insert.revision == "r1"
    assert "\n" not in report.reason and "22012" in report.reason
    assert "rolled back" in report.reason
    # on the database
    assert exists(versioned_db, "one")
    assert not exists(versioned_db, "two")
    assert not exists(versioned_db, "three")
    assert version_of(versioned_db) == ["r1"]
    with psycopg.connect(versioned_db) as conn:
        assert conn.execute("SELECT count(*) FROM one").fetchone() == (2,)
    assert json.loads(json.dumps(report.to_json()))["failure"]["sqlstate"] == "22012"
    text = render.apply_report(report, plan, "text")
    assert f"{failing.index:>4} " in text and "ERROR 22012" in text
    assert text.count("(rolled back)") == len(report.rolled_back)
    assert "not applied: r2, r3" in text
    assert json.loads(render.apply_report(report, plan, "json"))["outcome"] == "failed"


def test_autocommit_blocks_run_outside_the_revisions_transaction(versioned_db: str) -> None:
    plan = revisions_plan(
        [
            ("r1", "CREATE TABLE t (id int);"),
            (
                "r2",
                "COMMIT;\nCREATE INDEX CONCURRENTLY t_id ON t (id);\nBEGIN;",
            ),
            (
                "r3",
                "CREATE TABLE kept (id int);\nCOMMIT;\n"
                "CREATE INDEX CONCURRENTLY bad ON no_such_table (id);\nBEGIN;",
            ),
        ]
    )
    concurrent = [s for s in plan.statements if "CONCURRENTLY" in s.text]
    assert [s.transaction for s in concurrent] == [None, None]  # planned as autocommit

    report = apply_plan(versioned_db, plan)

    assert report.outcome is Outcome.FAILED
    assert report.failure is not None and report.failure.index == concurrent[1].index
    assert report.failure.sqlstate == "42P01"  # undefined_table
    assert report.applied_revisions == ("r1", "r2")
    by_index = {s.index: s for s in report.statements}
    assert by_index[concurrent[0].index].committed
    assert by_index[concurrent[0].index].transaction is None
    # r3's first transaction committed before its autocommit statement failed: it stays
    kept = next(s for s in plan.statements if "CREATE TABLE kept" in s.text)
    assert by_index[kept.index].committed
    assert report.rolled_back == ()
    assert "stay applied" in report.reason
    assert exists(versioned_db, "kept")
    assert exists(versioned_db, "t_id")
    assert version_of(versioned_db) == ["r2"]


def test_a_database_that_moved_since_the_plan_is_refused(
    sample_migrations: Path, scratch_db_url: str
) -> None:
    ini = sample_migrations / "alembic.ini"
    plan = command.plan(ini, Settings(), database_url=scratch_db_url)  # from base
    migrate.upgrade(ini, scratch_db_url, FIRST)  # someone else migrated meanwhile

    report = apply_plan(scratch_db_url, plan)

    assert report.outcome is Outcome.REVISION_MOVED
    assert report.expected_revisions == ()
    assert report.found_revisions == (FIRST,)
    assert FIRST in report.reason and "plan again" in report.reason
    assert "\n" not in report.reason
    assert report.statements == () and report.failure is None
    assert report.not_run == tuple(s.index for s in plan.statements)
    assert version_of(scratch_db_url) == [FIRST]
    assert not exists(scratch_db_url, "encounters")


def _holding_the_lock(url: str) -> psycopg.Connection[tuple[object, ...]]:
    """Another pipeline's session, holding the apply lock of url's database."""
    holder = psycopg.connect(url, autocommit=True)
    row = holder.execute("SELECT current_database()").fetchone()
    assert row is not None
    holder.execute("SELECT pg_advisory_lock(%s)", (advisory_lock_key(str(row[0])),))
    return holder


def test_an_apply_waits_for_the_lock_then_applies(versioned_db: str) -> None:
    plan = revisions_plan([("r1", "CREATE TABLE t (id int);")])
    holder = _holding_the_lock(versioned_db)
    holder_pid = holder.info.backend_pid
    events: list[ApplyEvent] = []
    reports: list[ApplyReport] = []
    worker = threading.Thread(
        target=lambda: reports.append(
            apply_plan(versioned_db, plan, options=FAST_POLL, progress=events.append)
        )
    )
    worker.start()
    try:
        deadline = time.monotonic() + 10
        while not any(isinstance(e, LockWaiting) for e in events):
            assert time.monotonic() < deadline, "the apply never reported waiting"
            time.sleep(0.02)
        assert not exists(versioned_db, "t")  # nothing runs while it waits
        time.sleep(0.3)
    finally:
        holder.close()  # the other pipeline finishes
        worker.join(20)
    waiting = next(e for e in events if isinstance(e, LockWaiting))
    assert waiting.holder_pid == holder_pid
    assert waiting.lock_wait_s == FAST_POLL.lock_wait_s
    [report] = reports
    assert report.outcome is Outcome.APPLIED, report.reason
    assert report.lock_waited_s >= 0.3
    acquired = next(e for e in events if isinstance(e, LockAcquired))
    assert acquired.waited_s >= 0.3
    assert events.index(acquired) < events.index(
        next(e for e in events if isinstance(e, StatementStarting))
    )
    assert exists(versioned_db, "t") and version_of(versioned_db) == ["r1"]


def test_an_apply_gives_up_at_lock_wait(versioned_db: str) -> None:
    plan = revisions_plan([("r1", "CREATE TABLE t (id int);")])
    holder = _holding_the_lock(versioned_db)
    try:
        started = time.monotonic()
        report = apply_plan(
            versioned_db, plan, options=ApplyOptions(lock_wait_s=0.5, poll_interval_s=0.05)
        )
        elapsed = time.monotonic() - started
    finally:
        holder.close()
    assert report.outcome is Outcome.LOCK_TIMEOUT
    assert 0.5 <= elapsed < 5
    assert "lock_wait" in report.reason and "\n" not in report.reason
    assert report.found_revisions is None  # never looked: the lock comes first
    assert report.not_run == tuple(s.index for s in plan.statements)
    assert not exists(versioned_db, "t")


def test_two_concurrent_applies_of_one_plan_run_it_once(versioned_db: str) -> None:
    # The first holds the lock while its revision sleeps; the second waits, then
    # finds the database moved on and refuses.
    plan = revisions_plan([("r1", "CREATE TABLE t (id int);\nSELECT pg_sleep(1);")])
    first_events: list[ApplyEvent] = []
    reports: dict[str, ApplyReport] = {}
    first = threading.Thread(
        target=lambda: reports.__setitem__(
            "first", apply_plan(versioned_db, plan, options=FAST_POLL, progress=first_events.append)
        )
    )
    first.start()
    deadline = time.monotonic() + 10
    while not any(
        isinstance(e, StatementStarting) and "pg_sleep" in e.statement.text for e in first_events
    ):
        assert time.monotonic() < deadline
        time.sleep(0.01)
    second_events: list[ApplyEvent] = []
    reports["second"] = apply_plan(
        versioned_db, plan, options=FAST_POLL, progress=second_events.append
    )
    first.join(20)
    assert reports["first"].outcome is Outcome.APPLIED, reports["first"].reason
    assert reports["second"].outcome is Outcome.REVISION_MOVED
    assert reports["second"].found_revisions == ("r1",)
    assert any(isinstance(e, LockWaiting) for e in second_events)
    assert reports["second"].lock_waited_s > 0.2
    assert version_of(versioned_db) == ["r1"]


def test_the_timeouts_are_in_force_in_the_session(versioned_db: str) -> None:
    # current_setting() is what SHOW reads; kept in a table to read it back.
    plan = revisions_plan(
        [
            (
                "r1",
                "CREATE TABLE seen AS SELECT current_setting('lock_timeout') AS lock_timeout,"
                " current_setting('statement_timeout') AS statement_timeout;",
            )
        ]
    )
    report = apply_plan(versioned_db, plan)
    assert report.outcome is Outcome.APPLIED, report.reason
    assert report.timeouts == {"lock_timeout": "5s", "statement_timeout": "15min"}
    with psycopg.connect(versioned_db) as conn:
        assert conn.execute("SELECT * FROM seen").fetchone() == ("5s", "15min")


def test_statement_timeout_stops_a_long_statement(versioned_db: str) -> None:
    plan = revisions_plan([("r1", "CREATE TABLE t (id int);\nSELECT pg_sleep(5);")])
    options = ApplyOptions(statement_timeout_ms=300)
    started = time.monotonic()
    report = apply_plan(versioned_db, plan, options=options)
    assert time.monotonic() - started < 4
    assert report.timeouts["statement_timeout"] == "300ms"
    assert report.outcome is Outcome.FAILED
    assert report.failure is not None and report.failure.sqlstate == "57014"  # query_canceled
    assert not exists(versioned_db, "t")
    assert version_of(versioned_db) == []


def test_lock_timeout_stops_a_statement_waiting_for_a_lock(versioned_db: str) -> None:
    with psycopg.connect(versioned_db, autocommit=True) as setup:
        setup.execute("CREATE TABLE busy (id int)")
    plan = revisions_plan([("r1", "ALTER TABLE busy ADD COLUMN x int;")])
    with psycopg.connect(versioned_db) as application:
        application.execute("SELECT * FROM busy")  # holds ACCESS SHARE until it ends
        report = apply_plan(versioned_db, plan, options=ApplyOptions(lock_timeout_ms=200))
        application.rollback()
    assert report.timeouts["lock_timeout"] == "200ms"
    assert report.outcome is Outcome.FAILED
    assert report.failure is not None and report.failure.sqlstate == "55P03"
    assert version_of(versioned_db) == []


def test_a_plan_that_leaves_a_transaction_open_is_rolled_back(versioned_db: str) -> None:
    plan = build_plan(
        [SqlSource("unfinished.sql", "BEGIN;\nCREATE TABLE t (id int);\n")],
        policy=Policy(target="scratch"),
    )
    report = apply_plan(versioned_db, plan)
    assert report.outcome is Outcome.FAILED
    assert "open" in report.reason
    assert report.rolled_back == tuple(s.index for s in plan.statements)
    assert not exists(versioned_db, "t")


def test_an_altered_plan_is_refused_before_connecting() -> None:
    plan = revisions_plan([("r1", "CREATE TABLE t (id int);")])
    statements = list(plan.statements)
    statements[1] = replace(statements[1], text="DROP TABLE t")  # sha256 left as reviewed
    altered = replace(plan, statements=tuple(statements))
    with pytest.raises(SignoffError, match="does not match its sha256"):
        apply_plan("postgresql://nobody@127.0.0.1:1/x", altered)


def test_an_unreachable_database_is_one_line_without_the_password() -> None:
    plan = revisions_plan([("r1", "CREATE TABLE t (id int);")])
    with pytest.raises(DatabaseError) as info:
        apply_plan("postgresql://ses_1:s3cret-pw@127.0.0.1:1/ehr", plan)
    message = str(info.value)
    assert "127.0.0.1:1/ehr" in message
    assert "s3cret-pw" not in message and "\n" not in message


def test_the_lock_key_is_the_documented_hash_of_the_database_name() -> None:
    import hashlib

    digest = hashlib.sha256(b"signoff.apply:ehr").digest()
    assert advisory_lock_key("ehr") == int.from_bytes(digest[:8], "big", signed=True)
    assert advisory_lock_key("ehr") != advisory_lock_key("ehr2")
    assert -(2**63) <= advisory_lock_key("x") < 2**63


def test_a_connection_lost_mid_plan_is_reported_as_such(versioned_db: str) -> None:
    plan = revisions_plan(
        [
            ("r1", "CREATE TABLE one (id int);"),
            ("r2", "CREATE TABLE two (id int);\nSELECT pg_sleep(30);"),
        ]
    )
    sleep = next(s for s in plan.statements if "pg_sleep" in s.text)
    killed: list[bool] = []
    killers: list[threading.Thread] = []

    def kill_when_sleeping(event: ApplyEvent) -> None:
        if isinstance(event, StatementStarting) and event.statement.index == sleep.index:
            killer = threading.Thread(target=lambda: killed.append(_terminate_apply(versioned_db)))
            killer.start()
            killers.append(killer)

    report = apply_plan(versioned_db, plan, progress=kill_when_sleeping)
    for killer in killers:
        killer.join(15)

    assert killed == [True]
    assert report.outcome is Outcome.FAILED
    assert report.failure is not None and report.failure.index == sleep.index
    assert report.failure.connection_lost
    assert "connection was lost" in report.reason
    assert report.applied_revisions == ("r1",)
    assert version_of(versioned_db) == ["r1"]
    assert not exists(versioned_db, "two")  # the server rolled the open transaction back


def _terminate_apply(url: str) -> bool:
    """Terminate the apply's backend once its sleep is running (as a failover would)."""
    deadline = time.monotonic() + 10
    with psycopg.connect(url, autocommit=True) as admin:
        while time.monotonic() < deadline:
            row = admin.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                " WHERE application_name = 'signoff apply' AND datname = current_database()"
                " AND query LIKE 'SELECT pg_sleep%'"
            ).fetchone()
            if row is not None and row[0]:
                return True
            time.sleep(0.02)
    return False


def test_an_apply_through_the_gateway_runs_each_statement_verbatim_as_the_session(
    versioned_db: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The production path: the gateway's PostgreSQL port, user = session id,
    password = session secret; the gateway records every statement it forwarded."""
    plan = revisions_plan(
        [
            ("r1", "CREATE TABLE one (id int);\nCOMMENT ON TABLE one IS '100% new';"),
            ("r2", "COMMIT;\nCREATE INDEX CONCURRENTLY one_id ON one (id);\nBEGIN;"),
        ]
    )
    with running_gateway(versioned_db, tmp_path, monkeypatch) as gateway:
        with psycopg.connect(versioned_db, autocommit=True) as conn:  # the owner role's
            conn.execute(f"ALTER TABLE alembic_version OWNER TO {gateway.role}")
        session = gateway.session()
        conninfo = (
            f"host=127.0.0.1 port={gateway.pg_port} dbname=ehr "
            f"user={session['session_id']} password={session['secret']}"
        )
        events: list[ApplyEvent] = []
        report = apply_plan(conninfo, plan, progress=events.append)
        records = gateway.audit(session)

    assert report.outcome is Outcome.APPLIED, report.reason
    assert session["secret"] not in json.dumps(report.to_json())
    assert report.applied_revisions == ("r1", "r2")
    assert version_of(versioned_db) == ["r2"]
    assert exists(versioned_db, "one_id")
    forwarded = [r["text"] for r in records if r.get("text")]
    planned = [s.text for s in plan.statements]
    # the plan's statements in order and byte for byte, among the apply's own queries
    assert [t for t in forwarded if t in planned] == planned
