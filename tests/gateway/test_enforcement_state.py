"""The session's analysis state believes only the server (issue 10).

A table counts as "created in this session" (so dropping it loses nothing) only when
the server reported it created by this session and nothing undid that since: a
CREATE that failed, a transaction rolled back, a savepoint rolled back to, an
implicit transaction that failed after it. Names are the schema-qualified objects
the session's search_path resolves them to. A prepared statement is decided again
when what it was decided under changed, and a statement whose parameters decide
whether it is allowed is decided at Bind, on the values bound.

Every test goes through a real gateway to the real server and checks the rows on
the database directly afterwards.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

import psycopg
import pytest
from gateway_harness import Gateway, running_gateway
from pgclient import RawClient, bind, error_of, execute

from runner.gateway import wire

Refused = psycopg.errors.InsufficientPrivilege


@pytest.fixture
def gateway(
    scratch_db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Gateway]:
    with running_gateway(scratch_db_url, tmp_path, monkeypatch) as running:
        # The upstream role owns what it may lose: the server itself would drop it,
        # so only the gateway's refusal keeps the rows.
        direct(running, f"ALTER TABLE patients OWNER TO {running.role}")
        yield running


def refused() -> AbstractContextManager[Any]:
    """The gateway's own refusal (42501 with its message), not the server's."""
    return pytest.raises(Refused, match="signoff blocked")


def blocked(messages: list[tuple[str, bytes]]) -> bool:
    error = error_of(messages)
    return error["C"] == "42501" and error["M"].startswith("signoff blocked")


def direct(gateway: Gateway, sql: str) -> list[tuple[Any, ...]]:
    """``sql`` on the database itself, not through the gateway."""
    with psycopg.connect(gateway.upstream_url, autocommit=True) as conn:
        cur = conn.execute(sql)
        return cur.fetchall() if cur.description else []


def someone_elses(gateway: Gateway, table: str, rows: int = 5) -> None:
    """A table made outside the session, with rows in it (owned by the upstream role:
    nothing but the gateway stops a DROP of it)."""
    direct(gateway, f"CREATE TABLE {table} (id int)")
    direct(gateway, f"INSERT INTO {table} SELECT generate_series(1, {rows})")
    direct(gateway, f"ALTER TABLE {table} OWNER TO {gateway.role}")


def rows(gateway: Gateway, table: str) -> int:
    return int(direct(gateway, f"SELECT count(*) FROM {table}")[0][0])


def raw_client(gateway: Gateway, session: dict[str, Any]) -> RawClient:
    client = RawClient(gateway.pg_port)
    assert client.startup(session["session_id"], "ehr", session["secret"])[-1][0] == "Z"
    return client


def parse(name: bytes, sql: str) -> bytes:
    return wire.parse(name, sql)


def kinds(messages: list[tuple[str, bytes]]) -> list[str]:
    return [kind for kind, _ in messages]


# -- a CREATE the server refused -------------------------------------------------------------


def test_a_create_that_failed_does_not_make_the_table_the_sessions(gateway: Gateway) -> None:
    session = gateway.session()
    with gateway.connect(session) as conn:
        with pytest.raises(psycopg.errors.DuplicateTable):
            conn.execute("CREATE TABLE patients (id int)")
        with refused():
            conn.execute("DROP TABLE patients")
        # A table made outside once the gateway had read the catalog: the same.
        someone_elses(gateway, "late")
        with pytest.raises(psycopg.errors.DuplicateTable):
            conn.execute("CREATE TABLE late (id int)")
        with refused():
            conn.execute("DROP TABLE late")
    assert rows(gateway, "patients") == 20
    assert rows(gateway, "late") == 5


def test_a_create_that_failed_over_the_extended_protocol(gateway: Gateway) -> None:
    session = gateway.session()
    with gateway.connect(session) as conn:
        with pytest.raises(psycopg.errors.DuplicateTable):
            conn.execute("CREATE TABLE patients (id int)", prepare=True)
        with refused():
            conn.execute("DROP TABLE patients", prepare=True)
    assert rows(gateway, "patients") == 20


def test_create_if_not_exists_that_found_a_table_is_not_the_sessions(gateway: Gateway) -> None:
    session = gateway.session()
    with gateway.connect(session) as conn:
        conn.execute("SELECT 1")  # the gateway has read the catalog: late is not in it
        someone_elses(gateway, "late_ine")
        conn.execute("CREATE TABLE IF NOT EXISTS late_ine (id int)")  # a notice: skipped
        with refused():
            conn.execute("DROP TABLE late_ine")
    assert rows(gateway, "late_ine") == 5


def test_discard_forgets_the_temporary_tables(gateway: Gateway) -> None:
    session = gateway.session()
    with gateway.connect(session) as conn:
        conn.execute("CREATE TEMP TABLE patients (id int)")
        conn.execute("DISCARD TEMP")
        with refused():  # patients is public.patients again
            conn.execute("DROP TABLE patients")
    assert rows(gateway, "patients") == 20


def test_a_table_the_session_did_create_may_still_be_dropped(gateway: Gateway) -> None:
    # The exemption itself still holds, by either protocol (the control for the rest).
    session = gateway.session()
    with gateway.connect(session) as conn:
        conn.execute("CREATE TABLE mine (id int)")
        conn.execute("DROP TABLE mine")
        conn.execute("CREATE TABLE mine2 (id int)", prepare=True)
        conn.execute("DROP TABLE mine2", prepare=True)
        conn.execute("CREATE TABLE mine3 (id int); DROP TABLE mine3")  # one text
    assert direct(gateway, "SELECT to_regclass('mine'), to_regclass('mine3')") == [(None, None)]


def test_statements_after_a_failed_create_in_one_text_never_run(gateway: Gateway) -> None:
    session = gateway.session()
    with gateway.connect(session) as conn:
        with pytest.raises(psycopg.errors.DuplicateTable):
            conn.execute("CREATE TABLE patients (id int); DROP TABLE patients")
        with refused():
            conn.execute("DROP TABLE patients")
    assert rows(gateway, "patients") == 20


def test_an_implicit_transaction_that_failed_takes_the_create_with_it(gateway: Gateway) -> None:
    # The CREATE completed (its CommandComplete came), then the text failed: the
    # server rolled the CREATE back with it.
    session = gateway.session()
    with gateway.connect(session) as conn:
        with pytest.raises(psycopg.errors.DivisionByZero):
            conn.execute("CREATE TABLE gone (id int); SELECT 1/0")
        someone_elses(gateway, "gone")
        with refused():
            conn.execute("DROP TABLE gone")
    assert rows(gateway, "gone") == 5


def test_pipelined_queries_are_decided_on_what_the_server_did(gateway: Gateway) -> None:
    # Two Query messages sent together: the DROP is decided only once the CREATE
    # ahead of it has answered (it failed), not on what it would have made.
    session = gateway.session()
    client = raw_client(gateway, session)
    try:
        client.send(wire.query("CREATE TABLE patients (id int)"), wire.query("DROP TABLE patients"))
        first = client.until("Z")
        second = client.until("Z")
    finally:
        client.close()
    assert error_of(first)["C"] == "42P07"
    assert blocked(second)
    assert rows(gateway, "patients") == 20


def test_pipelined_extended_batch_waits_for_the_create(gateway: Gateway) -> None:
    # In one batch (no Sync between): the gateway flushes the server's answers to the
    # CREATE before it decides the DROP.
    session = gateway.session()
    client = raw_client(gateway, session)
    try:
        client.send(
            parse(b"", "CREATE TABLE batch_new (id int)"),
            bind(b"", b""),
            execute(),
            parse(b"", "DROP TABLE batch_new"),
            bind(b"", b""),
            execute(),
            wire.sync(),
        )
        got = client.until("Z")
    finally:
        client.close()
    assert "E" not in kinds(got), error_of(got)
    assert kinds(got).count("C") == 2
    assert direct(gateway, "SELECT to_regclass('batch_new')") == [(None,)]


# -- rollbacks --------------------------------------------------------------------------------


def test_a_rolled_back_create_is_not_the_sessions(gateway: Gateway) -> None:
    session = gateway.session()
    with gateway.connect(session) as conn:
        conn.execute("BEGIN; CREATE TABLE x (id int); ROLLBACK")
        someone_elses(gateway, "x")
        with refused():
            conn.execute("DROP TABLE x")
        # Statement by statement, and ROLLBACK through the extended protocol.
        conn.execute("BEGIN")
        conn.execute("CREATE TABLE x2 (id int)")
        conn.execute("ROLLBACK", prepare=True)
        someone_elses(gateway, "x2")
        with refused():
            conn.execute("DROP TABLE x2", prepare=True)
    assert rows(gateway, "x") == 5
    assert rows(gateway, "x2") == 5


def test_a_commit_of_a_failed_transaction_rolls_back(gateway: Gateway) -> None:
    session = gateway.session()
    with gateway.connect(session) as conn:
        conn.execute("BEGIN")
        conn.execute("CREATE TABLE y (id int)")
        with pytest.raises(psycopg.errors.DivisionByZero):
            conn.execute("SELECT 1/0")
        conn.execute("COMMIT")  # the server answers ROLLBACK
        someone_elses(gateway, "y")
        with refused():
            conn.execute("DROP TABLE y")
    assert rows(gateway, "y") == 5


def test_a_create_in_an_aborted_transaction_is_not_the_sessions(gateway: Gateway) -> None:
    session = gateway.session()
    with gateway.connect(session) as conn:
        conn.execute("BEGIN")
        with refused():
            conn.execute("DROP TABLE patients")
        with pytest.raises(psycopg.errors.InFailedSqlTransaction):
            conn.execute("CREATE TABLE patients (id int)")
        conn.execute("ROLLBACK")
        with refused():
            conn.execute("DROP TABLE patients")
    assert rows(gateway, "patients") == 20


def test_a_rolled_back_drop_leaves_the_table_as_it_was(gateway: Gateway) -> None:
    # The session's own table, dropped in a transaction rolled back: still its own
    # (the exemption is not lost, nor anything else learnt in the transaction kept).
    session = gateway.session()
    with gateway.connect(session) as conn:
        conn.execute("CREATE TABLE kept (id int)")
        conn.execute("BEGIN; DROP TABLE kept; CREATE TABLE inside (id int); ROLLBACK")
        someone_elses(gateway, "inside")
        with refused():
            conn.execute("DROP TABLE inside")
        conn.execute("DROP TABLE kept")
    assert rows(gateway, "inside") == 5
    assert direct(gateway, "SELECT to_regclass('kept')") == [(None,)]


def test_rollback_to_savepoint_undoes_the_create(gateway: Gateway) -> None:
    session = gateway.session()
    with gateway.connect(session) as conn:
        conn.execute("BEGIN")
        conn.execute("CREATE TABLE before_sp (id int)")
        conn.execute("SAVEPOINT a")
        conn.execute("CREATE TABLE sp_new (id int)")
        conn.execute("ROLLBACK TO SAVEPOINT a")
        conn.execute("SAVEPOINT b")
        conn.execute("CREATE TABLE released (id int)")
        conn.execute("RELEASE SAVEPOINT b")
        conn.execute("COMMIT")
        someone_elses(gateway, "sp_new")
        with refused():
            conn.execute("DROP TABLE sp_new")
        # What was made before the savepoint, and under a released one, stays the
        # session's.
        conn.execute("DROP TABLE before_sp")
        conn.execute("DROP TABLE released")
    assert rows(gateway, "sp_new") == 5


def test_rollback_to_savepoint_in_one_text(gateway: Gateway) -> None:
    session = gateway.session()
    with gateway.connect(session) as conn:
        with refused():
            # Judged as one text: the DROP comes after the rollback to the savepoint.
            conn.execute(
                "BEGIN; SAVEPOINT a; CREATE TABLE sp1 (id int); ROLLBACK TO SAVEPOINT a; "
                "DROP TABLE sp1; COMMIT"
            )
        conn.execute("ROLLBACK")
    assert direct(gateway, "SELECT to_regclass('sp1')") == [(None,)]


# -- search_path ------------------------------------------------------------------------------


def test_names_resolve_through_the_search_path(gateway: Gateway) -> None:
    someone_elses(gateway, "public.t")
    direct(gateway, "CREATE SCHEMA other")
    direct(gateway, "GRANT ALL ON SCHEMA other TO PUBLIC")
    session = gateway.session()
    with gateway.connect(session) as conn:
        conn.execute("SET search_path = other, public")
        conn.execute("CREATE TABLE t (id int)")  # other.t
        with refused():
            conn.execute("DROP TABLE public.t")
        with refused():
            conn.execute("DROP TABLE public.t", prepare=True)
        conn.execute("DROP TABLE t")  # other.t: the session's own
        # other.t gone, t is public.t again: not the session's.
        with refused():
            conn.execute("DROP TABLE t")
    assert rows(gateway, "public.t") == 5
    assert direct(gateway, "SELECT to_regclass('other.t')") == [(None,)]


def test_a_pipelined_search_path_change_is_in_force_for_what_follows(gateway: Gateway) -> None:
    # SET search_path and a DROP sent together: the DROP is decided once the SET has
    # answered, under the search_path the server will run it with (public.t, not the
    # session's other.t).
    someone_elses(gateway, "public.t")
    direct(gateway, "CREATE SCHEMA other")
    direct(gateway, "GRANT ALL ON SCHEMA other TO PUBLIC")
    session = gateway.session()
    client = raw_client(gateway, session)
    try:
        made = client.query("SET search_path = other, public; CREATE TABLE t (id int)")
        assert "E" not in kinds(made)
        client.send(wire.query("SET search_path = public"), wire.query("DROP TABLE t"))
        first = client.until("Z")
        second = client.until("Z")
    finally:
        client.close()
    assert "E" not in kinds(first)
    assert blocked(second)
    assert rows(gateway, "public.t") == 5


def test_a_table_moved_to_another_schema_goes_with_its_name(gateway: Gateway) -> None:
    direct(gateway, "CREATE SCHEMA other")
    direct(gateway, "GRANT ALL ON SCHEMA other TO PUBLIC")
    session = gateway.session()
    with gateway.connect(session) as conn:
        conn.execute("CREATE TABLE moving (id int)")
        conn.execute("ALTER TABLE moving SET SCHEMA other")
        someone_elses(gateway, "public.moving")
        with refused():
            conn.execute("DROP TABLE moving")  # public.moving: someone else's
        conn.execute("DROP TABLE other.moving")  # the session's own, where it went
    assert rows(gateway, "public.moving") == 5


def test_a_dropped_schema_takes_the_sessions_tables_with_it(gateway: Gateway) -> None:
    drop = "DROP SCHEMA scratch CASCADE"
    granted = gateway.cli("grant", "--database", "ehr", "--sql", drop, "--approver", "alice")
    assert granted.returncode == 0, granted.stderr
    direct(gateway, f"CREATE SCHEMA scratch AUTHORIZATION {gateway.role}")
    session = gateway.session()
    with gateway.connect(session) as conn:
        conn.execute("CREATE TABLE scratch.t (id int)")
        conn.execute(drop)  # approved: its one run
        # Someone else makes the schema again, with a table of that name.
        direct(gateway, f"CREATE SCHEMA scratch AUTHORIZATION {gateway.role}")
        someone_elses(gateway, "scratch.t")
        with refused():
            conn.execute("DROP TABLE scratch.t")
    assert rows(gateway, "scratch.t") == 5


def test_a_temporary_table_is_not_the_table_it_shadows(gateway: Gateway) -> None:
    session = gateway.session()
    with gateway.connect(session) as conn:
        conn.execute("CREATE TEMP TABLE patients (id int)")
        with refused():
            conn.execute("DROP TABLE public.patients")
        conn.execute("DROP TABLE patients")  # the temporary one
        with refused():
            conn.execute("DROP TABLE patients")
    assert rows(gateway, "patients") == 20


# -- prepared statements ----------------------------------------------------------------------


def test_a_prepared_drop_is_decided_again_once_the_table_changed(gateway: Gateway) -> None:
    session = gateway.session()
    client = raw_client(gateway, session)
    try:
        assert "E" not in kinds(client.query("CREATE TABLE s_new (id int)"))
        # Parsed while s_new is the session's: allowed then.
        client.send(parse(b"wipe", "DROP TABLE s_new"), wire.sync())
        assert "E" not in kinds(client.until("Z"))
        # The session drops it; someone else makes one of that name, with rows.
        assert "E" not in kinds(client.query("DROP TABLE s_new"))
        someone_elses(gateway, "s_new")
        client.send(bind(b"", b"wipe"), execute(), wire.sync())
        got = client.until("Z")
    finally:
        client.close()
    assert blocked(got)
    assert rows(gateway, "s_new") == 5


def test_a_prepared_drop_after_a_rollback_is_decided_again(gateway: Gateway) -> None:
    session = gateway.session()
    client = raw_client(gateway, session)
    try:
        assert "E" not in kinds(client.query("BEGIN; CREATE TABLE s_tx (id int)"))
        client.send(parse(b"wipe", "DROP TABLE s_tx"), wire.sync())
        assert "E" not in kinds(client.until("Z"))
        assert "E" not in kinds(client.query("ROLLBACK"))
        someone_elses(gateway, "s_tx")
        client.send(bind(b"", b"wipe"), execute(), wire.sync())
        got = client.until("Z")
    finally:
        client.close()
    assert blocked(got)
    assert rows(gateway, "s_tx") == 5


def test_sql_level_execute_is_decided_again(gateway: Gateway) -> None:
    session = gateway.session()
    with gateway.connect(session) as conn:
        conn.execute("CREATE TABLE s_sql (id int)")
        # Every row of the session's own table: allowed as it stands, so prepared.
        conn.execute("PREPARE wipe AS DELETE FROM s_sql")
        conn.execute("DROP TABLE s_sql")
        someone_elses(gateway, "s_sql")
        with refused():
            conn.execute("EXECUTE wipe")
    assert rows(gateway, "s_sql") == 5


# -- parameters a rule must read (issue 9) ----------------------------------------------------


def test_set_config_is_decided_on_its_bound_values(gateway: Gateway) -> None:
    session = gateway.session()
    with gateway.connect(session) as conn:
        row = conn.execute(
            "select set_config(%s, %s, false)", ["application_name", "via-bind"]
        ).fetchone()
        assert row == ("via-bind",)
        assert conn.execute("SHOW application_name").fetchone() == ("via-bind",)
        with refused():
            conn.execute("select set_config(%s, %s, false)", ["standard_conforming_strings", "off"])
        # Named and reused, with other values each time.
        for value in ("one", "two"):
            got = conn.execute(
                "select set_config(%s, %s, false)", ["application_name", value], prepare=True
            ).fetchone()
            assert got == (value,)
        with refused():
            conn.execute(
                "select set_config(%s, %s, false)",
                ["standard_conforming_strings", "off"],
                prepare=True,
            )
        assert conn.execute("SHOW standard_conforming_strings").fetchone() == ("on",)


def test_binary_values_a_rule_needs_fail_closed(gateway: Gateway) -> None:
    session = gateway.session()
    with gateway.connect(session) as conn:
        with pytest.raises(Refused, match=r"signoff blocked.*text format"):
            conn.execute("select set_config(%b, %b, false)", ["application_name", "x"])
        assert conn.execute("SHOW standard_conforming_strings").fetchone() == ("on",)


def test_an_analysis_that_cannot_follow_the_server_ends_the_connection(
    gateway: Gateway, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Fail closed: a session whose state could not take in what the server did
    # decides nothing more on that connection.
    from runner.gateway.policy.analysis import SessionAnalysis

    def broken(self: SessionAnalysis, judged: object, tag: str | None) -> None:
        raise RuntimeError("cannot follow")

    session = gateway.session()
    with gateway.connect(session) as conn:
        monkeypatch.setattr(SessionAnalysis, "confirm", broken)
        # The CREATE's own answer may reach the client before the close does.
        with pytest.raises(psycopg.Error):
            conn.execute("CREATE TABLE unfollowed (id int)")
            conn.execute("SELECT 1")
