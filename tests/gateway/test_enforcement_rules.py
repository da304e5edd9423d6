"""Through the real gateway: the rule families of issue 10 on the PostgreSQL port.

Every escape hatch is refused with 42501 naming its rule, denied (no grant can
allow it), and the database is checked directly afterwards: rows, the large
object, the other session's backend, foreign servers, extensions and the server's
configuration are as they were. A role whose ``rules`` allow one escape hatch lets
exactly that one through. A sample of the access-control and wholesale-DML families
is refused (needs approval) with the data intact, and runs once with a grant.
Simple and extended protocol alike.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path

import psycopg
import pytest
from gateway_harness import Gateway, running_gateway
from pgclient import RawClient, bind, error_of, execute

from runner.gateway import wire

ROWS = 20
LARGE_OBJECT = 424242
OPERATOR = """
[[access]]
database = "ehr"
role = "operator"
issuer = "ci"
claims = { repository = "acme/ops" }

[roles.operator]
rules = { SO610 = "allow" }
"""


@pytest.fixture
def gateway(
    scratch_db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Gateway]:
    with running_gateway(scratch_db_url, tmp_path, monkeypatch, extra_config=OPERATOR) as gw:
        with psycopg.connect(scratch_db_url, autocommit=True) as admin:
            admin.execute("SELECT lo_create(%s)", (LARGE_OBJECT,))
            admin.execute(f"ALTER LARGE OBJECT {LARGE_OBJECT} OWNER TO {gw.role}")
            admin.execute("ALTER TABLE patients ENABLE ROW LEVEL SECURITY")
        try:
            yield gw
        finally:
            with psycopg.connect(scratch_db_url, autocommit=True) as admin:
                admin.execute(
                    "SELECT lo_unlink(oid) FROM pg_largeobject_metadata WHERE oid = %s",
                    (LARGE_OBJECT,),
                )


class Session:
    """One connection through the gateway, speaking the simple or extended protocol."""

    def __init__(self, gateway: Gateway, protocol: str, **claims: str) -> None:
        self.protocol = protocol
        session = gateway.session(**claims)
        self.client = RawClient(gateway.pg_port)
        started = self.client.startup(session["session_id"], "ehr", session["secret"])
        assert started[-1][0] == "Z", started

    def run(self, text: str, params: Sequence[bytes] = ()) -> list[tuple[str, bytes]]:
        if self.protocol == "simple":
            assert not params
            self.client.send(wire.query(text))
        else:
            self.client.send(wire.parse(b"", text), bind(b"", b"", params), execute(), wire.sync())
        return self.client.until("Z")

    def allowed(self, text: str) -> list[tuple[str, bytes]]:
        answer = self.run(text)
        assert "E" not in [kind for kind, _ in answer], (text, error_of(answer))
        return answer

    def refused(self, text: str, rule: str, params: Sequence[bytes] = ()) -> str:
        fields = error_of(self.run(text, params))
        assert fields["C"] == "42501", (text, fields)
        assert rule in fields["M"], (text, fields)
        return fields["M"]

    def close(self) -> None:
        self.client.close()


def direct(gateway: Gateway, sql: str) -> list[tuple[object, ...]]:
    with psycopg.connect(gateway.upstream_url, autocommit=True) as conn:
        return list(conn.execute(sql).fetchall())


def assert_patients_intact(gateway: Gateway) -> None:
    assert direct(
        gateway, "SELECT count(*), count(*) FILTER (WHERE mrn = 'M' || id) FROM patients"
    ) == [(ROWS, ROWS)]


def escape_hatches(victim_pid: int) -> list[tuple[str, str]]:
    return [
        ("COPY patients TO PROGRAM 'cat > /dev/null'", "SO601"),
        ("COPY (SELECT mrn FROM patients) TO PROGRAM 'cat > /dev/null'", "SO601"),
        ("COPY patients FROM '/etc/hostname'", "SO602"),
        ("COPY patients TO '/tmp/signoff_never_written.csv'", "SO602"),
        ("SELECT pg_read_file('/etc/passwd')", "SO603"),
        ("SELECT pg_catalog.pg_read_binary_file('global/pg_control')", "SO603"),
        ("SELECT * FROM pg_ls_dir('.') AS f", "SO603"),
        ("SELECT pg_stat_file('postgresql.conf')", "SO603"),
        ("SELECT lo_import('/etc/hostname')", "SO603"),
        (f"SELECT lo_export({LARGE_OBJECT}, '/tmp/signoff_never_written')", "SO603"),
        (f"SELECT lo_unlink({LARGE_OBJECT})", "SO604"),
        (f"SELECT lo_truncate(lo_open({LARGE_OBJECT}, 131072), 0)", "SO604"),
        (f"SELECT lo_put({LARGE_OBJECT}, 0, '\\x00')", "SO604"),
        ("SELECT dblink_exec('dbname=ehr', 'TRUNCATE patients')", "SO605"),
        ("SELECT dblink_connect('c', 'dbname=ehr')", "SO605"),
        ("CREATE SERVER leak FOREIGN DATA WRAPPER postgres_fdw OPTIONS (host '10.9.9.9')", "SO606"),
        ("CREATE FOREIGN TABLE remote (a int) SERVER leak", "SO606"),
        ("IMPORT FOREIGN SCHEMA public FROM SERVER leak INTO public", "SO606"),
        ("CREATE USER MAPPING FOR PUBLIC SERVER leak OPTIONS (user 'postgres')", "SO606"),
        ("CREATE EXTENSION IF NOT EXISTS dblink", "SO607"),
        ("ALTER SYSTEM SET work_mem = '77MB'", "SO608"),
        ("LOAD 'auto_explain'", "SO609"),
        (f"SELECT pg_terminate_backend({victim_pid})", "SO610"),
        ("SELECT pg_cancel_backend(pid) FROM pg_stat_activity", "SO610"),
        ("SELECT pg_reload_conf()", "SO611"),
        ("SELECT set_config('session_replication_role', 'replica', false)", "SO612"),
        (
            "CREATE FUNCTION rd(text) RETURNS text LANGUAGE internal AS 'pg_read_file_off_len'",
            "SO613",
        ),
        ("SET session_replication_role = replica", "SO612"),
        # Hidden in a subquery, a CTE, a DEFAULT, a DO block:
        ("SELECT id FROM patients WHERE mrn = (SELECT pg_read_file('/etc/hostname'))", "SO603"),
        ("WITH f AS (SELECT pg_ls_dir('/') AS n) SELECT count(*) FROM f", "SO603"),
        ("CREATE TABLE leak (t text DEFAULT pg_read_file('/etc/hostname'))", "SO603"),
        ("DO $$ BEGIN PERFORM pg_reload_conf(); END $$", "SO611"),
        # Spelt with Unicode escapes: the name PostgreSQL reads is the one judged.
        ('SELECT U&"pg\\005fread_file"(\'/etc/passwd\')', "SO603"),
    ]


@pytest.mark.parametrize("protocol", ["simple", "extended"])
def test_every_escape_hatch_is_denied_and_changes_nothing(gateway: Gateway, protocol: str) -> None:
    extensions = direct(gateway, "SELECT extname FROM pg_extension ORDER BY 1")
    with psycopg.connect(gateway.upstream_url, autocommit=True) as victim:
        pid = victim.info.backend_pid
        session = Session(gateway, protocol)
        try:
            for sql, rule in escape_hatches(pid):
                message = session.refused(sql, rule)
                assert "denied by role deployer" in message and "no grant" in message, message
            # A grant cannot open a denied statement.
            granted = gateway.cli(
                "grant", "--database", "ehr", "--sql", "SELECT pg_reload_conf()", "--approver", "bo"
            )
            assert granted.returncode == 0, granted.stderr
            session.refused("SELECT pg_reload_conf()", "SO611")
            # The session still works, and the setting it asked for never came.
            answer = session.allowed("SHOW session_replication_role")
            assert b"origin" in b"".join(body for kind, body in answer if kind == "D")
        finally:
            session.close()
        # The other session's backend was not touched.
        assert victim.execute("SELECT 1").fetchone() == (1,)
        assert victim.info.backend_pid == pid
    assert_patients_intact(gateway)
    assert direct(
        gateway, f"SELECT count(*) FROM pg_largeobject_metadata WHERE oid = {LARGE_OBJECT}"
    ) == [(1,)]
    assert direct(gateway, f"SELECT length(lo_get({LARGE_OBJECT}))") == [(0,)]
    assert direct(gateway, "SELECT count(*) FROM pg_foreign_server") == [(0,)]
    assert direct(gateway, "SELECT extname FROM pg_extension ORDER BY 1") == extensions
    assert direct(gateway, "SELECT to_regclass('leak'), to_regclass('remote')") == [(None, None)]
    assert direct(gateway, "SELECT count(*) FROM pg_proc WHERE proname = 'rd'") == [(0,)]
    assert direct(
        gateway,
        "SELECT count(*) FROM pg_file_settings WHERE name = 'work_mem' AND setting = '77MB'",
    ) == [(0,)]


@pytest.mark.parametrize("protocol", ["simple", "extended"])
def test_a_role_that_allows_one_escape_hatch_by_rule_id_gets_only_that_one(
    gateway: Gateway, protocol: str
) -> None:
    # PID 0 is no backend: the server answers false with a warning, signalling no one.
    sql = "SELECT pg_cancel_backend(0)"
    operator = Session(gateway, protocol, repository="acme/ops")
    deployer = Session(gateway, protocol)
    try:
        answer = operator.allowed(sql)
        assert [body for kind, body in answer if kind == "D"], answer
        operator.refused("SELECT pg_reload_conf()", "SO611")
        operator.refused("SELECT pg_read_file('/etc/hostname')", "SO603")
        deployer.refused(sql, "SO610")
    finally:
        operator.close()
        deployer.close()


FAMILIES = [
    ("GRANT SELECT ON patients TO PUBLIC", "SO501"),
    ("GRANT SELECT ON ALL TABLES IN SCHEMA public TO PUBLIC", "SO501"),
    ("GRANT SELECT ON patients TO CURRENT_USER WITH GRANT OPTION", "SO502"),
    ("ALTER TABLE patients DISABLE ROW LEVEL SECURITY", "SO504"),
    ("ALTER TABLE patients NO FORCE ROW LEVEL SECURITY", "SO504"),
    ("CREATE POLICY open_all ON patients USING (true)", "SO505"),
    ("ALTER TABLE patients DISABLE TRIGGER ALL", "SO506"),
    ("ALTER TABLE patients OWNER TO PUBLIC", "SO508"),
    ("SET log_statement = 'none'", "SO513"),
    ("DROP SCHEMA IF EXISTS signoff_guard CASCADE", "SO512"),
    ("DELETE FROM patients WHERE id = id", "SO121"),
    ("UPDATE patients SET mrn = 'x' WHERE mrn IS NULL OR mrn IS NOT NULL", "SO121"),
    ("DELETE FROM patients WHERE 1 = 1", "SO111"),
    ("WITH d AS (DELETE FROM patients RETURNING *) SELECT count(*) FROM d", "SO111"),
    ("DELETE FROM patients p USING visits_old v WHERE v.id IS NULL", "SO121"),
    (
        "INSERT INTO patients SELECT id, 'x' FROM patients"
        " ON CONFLICT (id) DO UPDATE SET mrn = excluded.mrn",
        "SO122",
    ),
    (
        "MERGE INTO patients p USING patients s ON true WHEN MATCHED THEN UPDATE SET mrn = 'x'",
        "SO123",
    ),
    ("ALTER TABLE patients ALTER COLUMN mrn TYPE text USING left(mrn, 1)", "SO124"),
]


def assert_controls_intact(gateway: Gateway) -> None:
    assert_patients_intact(gateway)
    assert direct(
        gateway, "SELECT relrowsecurity FROM pg_class WHERE oid = 'patients'::regclass"
    ) == [(True,)]
    assert direct(gateway, "SELECT count(*) FROM pg_policy") == [(0,)]
    assert direct(
        gateway,
        "SELECT count(*) FROM information_schema.role_table_grants"
        " WHERE table_name = 'patients' AND grantee = 'PUBLIC'",
    ) == [(0,)]


@pytest.mark.parametrize("protocol", ["simple", "extended"])
def test_families_need_approval_and_a_grant_runs_once(gateway: Gateway, protocol: str) -> None:
    session = Session(gateway, protocol)
    try:
        for sql, rule in FAMILIES:
            message = session.refused(sql, rule)
            assert "needs approval" in message, message
        if protocol == "extended":
            # A parameter that could make the WHERE true for every row: the gateway
            # defers the decision to the Bind and judges the values bound, so true
            # is refused as always true (SO111, SO112)...
            for sql, params in (
                ("DELETE FROM patients WHERE id = $1 OR $2", [b"1", b"true"]),
                ("DELETE FROM patients WHERE $1", [b"true"]),
                ("UPDATE patients SET mrn = 'x' WHERE $1::boolean", [b"t"]),
            ):
                fields = error_of(session.run(sql, params))
                assert fields["C"] == "42501", (sql, fields)
                assert any(r in fields["M"] for r in ("SO111", "SO112", "SO121")), (sql, fields)
            # ... and a value that narrows it runs (here it matches no row).
            answer = session.run("DELETE FROM patients WHERE id = $1 OR $2", [b"999", b"false"])
            assert "E" not in [kind for kind, _ in answer], error_of(answer)
        assert_controls_intact(gateway)

        for sql in (
            "GRANT SELECT ON patients TO PUBLIC",
            "UPDATE patients SET mrn = mrn WHERE id = id",
        ):
            granted = gateway.cli("grant", "--database", "ehr", "--sql", sql, "--approver", "alice")
            assert granted.returncode == 0, granted.stderr
            session.allowed(sql)
            session.refused(sql, "SO501" if sql.startswith("GRANT") else "SO121")
    finally:
        session.close()
    assert_patients_intact(gateway)
    assert direct(
        gateway,
        "SELECT count(*) FROM information_schema.role_table_grants"
        " WHERE table_name = 'patients' AND grantee = 'PUBLIC'",
    ) == [(1,)]
