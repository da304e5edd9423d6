"""The server-side guard (runner.gateway.dbguard) through the real gateway.

Most tests run the gateway with its analysis switched off (SIGNOFF_TESTING=1 and
SIGNOFF_TEST_GUARD_ONLY=1, the test-only switch): every statement is forwarded, so
what stops a destructive effect hidden in a SQL function, a PL/pgSQL function, a DO
block or a trigger is the database itself. After each attempt the table, its rows
and its columns are read directly from PostgreSQL, not through the gateway.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from gateway_harness import Gateway, running_gateway

from runner.gateway.dbguard.install import install

ACTIONS = {
    "drop-table": "DROP TABLE victim",
    "truncate": "TRUNCATE victim",
    "drop-column": "ALTER TABLE victim DROP COLUMN note",
}

# How each vehicle hides the action, and the statement a session sends to set it off.
VEHICLES: dict[str, tuple[str, str]] = {
    "sql-function": (
        "CREATE FUNCTION hidden() RETURNS void LANGUAGE sql AS $f$ {action} $f$",
        "SELECT hidden()",
    ),
    "plpgsql-function": (
        "CREATE FUNCTION hidden() RETURNS void LANGUAGE plpgsql AS $f$BEGIN {action}; END$f$",
        "SELECT hidden()",
    ),
    "do-block": ("SELECT 1", "DO $d$BEGIN {action}; END$d$"),
    "trigger": (
        "CREATE TABLE events (id int);"
        "CREATE FUNCTION hidden() RETURNS trigger LANGUAGE plpgsql AS "
        "$f$BEGIN {action}; RETURN NEW; END$f$;"
        "CREATE TRIGGER hidden AFTER INSERT ON events FOR EACH ROW EXECUTE FUNCTION hidden()",
        "INSERT INTO events VALUES (1)",
    ),
}


def _admin(gateway: Gateway) -> psycopg.Connection[Any]:
    """A direct superuser connection that the guard does not stop (replica mode turns
    event triggers and ordinary triggers off: why the upstream role must not be a
    superuser)."""
    conn = psycopg.connect(gateway.upstream_url, autocommit=True)
    conn.execute("SET session_replication_role = replica")
    return conn


def _victim(gateway: Gateway) -> tuple[bool, int, list[str]]:
    """Whether the victim table is there, its rows, its columns (read directly)."""
    with psycopg.connect(gateway.upstream_url, autocommit=True) as conn:
        exists = conn.execute("SELECT to_regclass('public.victim') IS NOT NULL").fetchone()
        if not exists or not exists[0]:
            return False, 0, []
        rows = conn.execute("SELECT count(*) FROM victim").fetchone()
        columns = conn.execute(
            "SELECT attname FROM pg_attribute WHERE attrelid = 'victim'::regclass "
            "AND attnum > 0 AND NOT attisdropped ORDER BY attnum"
        ).fetchall()
    return True, int(rows[0]) if rows else 0, [c[0] for c in columns]


def _restore_victim(gateway: Gateway) -> None:
    with _admin(gateway) as conn:
        conn.execute("DROP TABLE IF EXISTS victim")
        conn.execute("CREATE TABLE victim (id int, note text)")
        conn.execute(f"ALTER TABLE victim OWNER TO {gateway.role}")
        conn.execute("INSERT INTO victim SELECT g, 'n' || g FROM generate_series(1, 3) g")
        # Made in replica mode, so the guard's CREATE TABLE hook did not run: add the
        # TRUNCATE trigger as a DBA's re-install would.
        conn.execute("SET session_replication_role = origin")
        conn.execute("SELECT signoff_guard.protect('victim'::regclass)")


def _install(gateway: Gateway) -> str:
    done = gateway.guard_cli("install-guard", "--database", "ehr")
    assert done.returncode == 0, done.stderr
    return done.stdout


def _grant(gateway: Gateway, sql: str) -> None:
    done = gateway.cli("grant", "--database", "ehr", "--sql", sql, "--approver", "alice")
    assert done.returncode == 0, done.stderr


def _as_owner(gateway: Gateway, sql: str) -> None:
    """Set up as the owner role, directly (what existed before the gateway)."""
    with psycopg.connect(gateway.upstream_url, autocommit=True) as conn:
        conn.execute(f"SET ROLE {gateway.role}")
        conn.execute(sql)


@pytest.fixture
def guarded(
    scratch_db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Gateway]:
    """The gateway with its analysis off, the guard installed, a victim table."""
    monkeypatch.setenv("SIGNOFF_TESTING", "1")
    monkeypatch.setenv("SIGNOFF_TEST_GUARD_ONLY", "1")
    with psycopg.connect(scratch_db_url, autocommit=True) as conn:
        conn.execute("CREATE TABLE victim (id int, note text)")
        conn.execute("INSERT INTO victim SELECT g, 'n' || g FROM generate_series(1, 3) g")
    with running_gateway(scratch_db_url, tmp_path, monkeypatch, guard=True) as gateway:
        with psycopg.connect(scratch_db_url, autocommit=True) as conn:
            conn.execute(f"ALTER TABLE victim OWNER TO {gateway.role}")
        _install(gateway)  # after the table: install adds the TRUNCATE trigger to it
        yield gateway


def _run(gateway: Gateway, sql: str) -> tuple[str | None, str, list[str]]:
    """(SQLSTATE or None, error message, notices the client saw) of ``sql``."""
    notices: list[str] = []
    with gateway.connect(gateway.session()) as conn:
        conn.add_notice_handler(lambda d: notices.append(d.message_primary or ""))
        try:
            conn.execute(sql)
        except psycopg.Error as error:
            return error.sqlstate, str(error), notices
    return None, "", notices


Check = Callable[[tuple[bool, int, list[str]]], bool]
UNTOUCHED: tuple[bool, int, list[str]] = (True, 3, ["id", "note"])
DONE: dict[str, tuple[bool, int, list[str]]] = {
    "drop-table": (False, 0, []),
    "truncate": (True, 0, ["id", "note"]),
    "drop-column": (True, 3, ["id"]),
}


@pytest.mark.parametrize("vehicle", sorted(VEHICLES))
@pytest.mark.parametrize("action", sorted(ACTIONS))
def test_the_database_refuses_a_hidden_destructive_effect_and_a_grant_runs_it_once(
    guarded: Gateway, vehicle: str, action: str
) -> None:
    setup, statement = VEHICLES[vehicle]
    _as_owner(guarded, setup.format(action=ACTIONS[action]))
    sql = statement.format(action=ACTIONS[action])

    sqlstate, message, _ = _run(guarded, sql)
    assert sqlstate == "42501", message
    assert "signoff guard refused" in message and "victim" in message
    assert _victim(guarded) == UNTOUCHED

    _grant(guarded, sql)
    sqlstate, message, notices = _run(guarded, sql)
    assert sqlstate is None, message
    assert _victim(guarded) == DONE[action]
    assert not [n for n in notices if n.startswith("signoff-guard")]  # taken out

    _restore_victim(guarded)  # the grant covered one run: the next is refused again
    sqlstate, message, _ = _run(guarded, sql)
    assert sqlstate == "42501", message
    assert _victim(guarded) == UNTOUCHED


def test_the_audit_record_lists_what_the_guard_saw(guarded: Gateway) -> None:
    _as_owner(
        guarded,
        "CREATE FUNCTION hidden() RETURNS void LANGUAGE plpgsql AS "
        "$f$BEGIN CREATE TABLE side (a int); DROP TABLE victim; END$f$",
    )
    _grant(guarded, "SELECT hidden()")
    session = guarded.session()
    with guarded.connect(session) as conn:
        conn.execute("SELECT 1")
        conn.execute("SELECT hidden()")
    records = guarded.audit(session)
    record = next(r for r in records if r.get("text") == "SELECT hidden()")
    assert record["decision"] == "approved" and record["status"] == "completed"
    nested = record["nested"]
    assert {"tag": "CREATE TABLE", "type": "table", "identity": "public.side"} in nested
    assert {"tag": "DROP TABLE", "type": "table", "identity": "public.victim"} in nested
    plain = next(r for r in records if r.get("text") == "SELECT 1")
    assert plain["nested"] == []  # unmarked: nothing joined in
    verified = guarded.cli("audit", "verify")
    assert verified.returncode == 0, verified.stdout + verified.stderr


def test_a_session_cannot_read_or_set_the_marks(guarded: Gateway) -> None:
    """The analysis is off here: only the privileges stand between a session and the
    guard's tables and functions."""
    attempts = [
        "SELECT * FROM signoff_guard.granted",
        "INSERT INTO signoff_guard.granted VALUES (pg_backend_pid(), now(), 'n', 'h')",
        "SELECT signoff_guard.mark(pg_backend_pid(), 'n', 'h')",
        "SELECT signoff_guard.current_nonce()",
        "DELETE FROM signoff_guard.created",
        "DROP EVENT TRIGGER signoff_guard_sql_drop",
        "ALTER TABLE victim DISABLE TRIGGER signoff_guard_truncate",
        "DROP TRIGGER signoff_guard_truncate ON victim",
        "SET session_replication_role = replica",
    ]
    for sql in attempts:
        sqlstate, message, _ = _run(guarded, sql)
        assert sqlstate == "42501", (sql, message)
    with psycopg.connect(guarded.upstream_url, autocommit=True) as conn:
        assert conn.execute("SELECT count(*) FROM signoff_guard.granted").fetchone() == (0,)
        triggers = conn.execute(
            "SELECT count(*) FROM pg_event_trigger WHERE evtname LIKE 'signoff_guard%' "
            "AND evtenabled = 'O'"
        ).fetchone()
        assert triggers == (3,)
    sqlstate, message, _ = _run(guarded, "TRUNCATE victim")
    assert sqlstate == "42501", message
    assert _victim(guarded) == UNTOUCHED


def test_what_the_session_created_itself_it_may_drop_under_the_guard(guarded: Gateway) -> None:
    with guarded.connect(guarded.session()) as conn:
        conn.execute("CREATE TABLE mine (id int, note text)")
        conn.execute("INSERT INTO mine VALUES (1, 'a')")
        conn.execute("TRUNCATE mine")
        conn.execute("ALTER TABLE mine ALTER COLUMN id TYPE bigint")
        conn.execute("ALTER TABLE mine DROP COLUMN note")
        conn.execute("DROP TABLE mine")
        conn.execute("CREATE TABLE kept (id int)")
    # Another connection (another backend) did not create it: refused, and the new
    # table got the TRUNCATE trigger from the guard's CREATE TABLE hook.
    sqlstate, message, _ = _run(guarded, "TRUNCATE kept")
    assert sqlstate == "42501" and "kept" in message, message
    sqlstate, message, _ = _run(guarded, "ALTER TABLE victim ALTER COLUMN id TYPE bigint")
    assert sqlstate == "42501" and "rewriting table public.victim" in message, message


def test_with_the_analysis_on_the_guard_lets_through_what_the_gateway_allowed(
    scratch_db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The gateway as it runs: an approved DROP runs (marked), a session's own table
    is dropped (the guard knows its backend made it), a read stays unmarked."""
    with running_gateway(scratch_db_url, tmp_path, monkeypatch, guard=True) as gateway:
        _install(gateway)
        with gateway.connect(gateway.session()) as conn:
            # The analysis allows it (the table is new), unmarked: the guard knows this
            # backend made it.
            conn.execute("CREATE TABLE scratch (a int); DROP TABLE scratch")
            with pytest.raises(psycopg.Error) as refused:
                conn.execute("DROP TABLE visits_old")
            assert refused.value.sqlstate == "42501"
        _grant(gateway, "DROP TABLE visits_old")
        with gateway.connect(gateway.session()) as conn:
            conn.execute("DROP TABLE visits_old")
            assert conn.execute("SELECT count(*) FROM patients").fetchone() == (20,)
        with psycopg.connect(scratch_db_url, autocommit=True) as conn:
            assert conn.execute("SELECT to_regclass('visits_old')").fetchone() == (None,)


def test_check_config_reports_the_guard_and_the_upstream_role(
    scratch_db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with running_gateway(scratch_db_url, tmp_path, monkeypatch, guard=True) as gateway:
        before = gateway.guard_cli("check-config")
        assert before.returncode == 0, before.stderr
        assert "guard not installed" in before.stdout
        assert "guard not installed" in before.stderr  # and a warning: what it cannot stop
        assert "superuser" not in before.stderr  # the harness's owner role is not one
        _install(gateway)
        after = gateway.guard_cli("check-config")
        assert after.returncode == 0, after.stderr
        assert "guard installed and current (version 1)" in after.stdout
        assert "warning" not in after.stderr


def test_check_config_warns_of_a_superuser_upstream_role(
    scratch_db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with running_gateway(scratch_db_url, tmp_path, monkeypatch, superuser=True) as gateway:
        done = gateway.cli("check-config")
    assert done.returncode == 0, done.stderr
    assert f"the upstream role {gateway.role} is a superuser" in done.stderr


def test_the_test_switch_alone_stops_the_gateway(
    scratch_db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("SIGNOFF_TESTING", raising=False)
    with running_gateway(scratch_db_url, tmp_path, monkeypatch) as gateway:
        monkeypatch.setenv("SIGNOFF_TEST_GUARD_ONLY", "1")
        done = gateway.cli("check-config")
    assert done.returncode == 2
    assert "SIGNOFF_TEST_GUARD_ONLY is set" in done.stderr


@pytest.mark.parametrize("installed", [False, True])
def test_serve_logs_each_databases_guard_at_start(
    scratch_db_url: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    installed: bool,
) -> None:
    if installed:
        install(scratch_db_url)  # as the tests' superuser, directly
    with (
        caplog.at_level("INFO", logger="signoff.gateway"),
        running_gateway(scratch_db_url, tmp_path, monkeypatch, guard=True),
    ):
        pass
    if installed:
        assert "database ehr: guard installed and current (version 1)" in caplog.text
    else:
        assert "database ehr: guard not installed" in caplog.text
        assert "is not stopped" in caplog.text  # what it cannot stop, said
