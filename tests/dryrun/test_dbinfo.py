"""runner.dryrun.facts, runner.dryrun.migrate and runner.pgurl against a real PostgreSQL server.

``pg_url`` (a server) and ``scratch_db_url`` (a fresh database on it, dropped
afterwards) come from tests/conftest.py.
"""

from __future__ import annotations

import contextlib
import socket
import struct
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote, urlsplit, urlunsplit

import psycopg
import pytest
from alembic import command

from runner.dryrun.facts import DatabaseFacts, read_facts
from runner.dryrun.migrate import upgrade
from runner.errors import DatabaseError, SourceError
from runner.pgurl import describe, redact, scrub, to_psycopg_conninfo
from runner.plan.source import alembic_config, offline_sql, preserve_logging

SAMPLE_INI = Path(__file__).resolve().parents[2] / "sample_migrations" / "alembic.ini"
REVISIONS = [
    "0d5b4ef5d34c",
    "c2b722edb006",
    "bc06db019257",
    "fc7bad4eb6f3",
    "9e68476d999a",
    "7dc6e57d7249",
    "c5289cc231f5",
    "9df3a2e08a87",
    "3213fa000745",
    "159bd3e0d7b6",
    "be942846c0a5",
]
LAST = REVISIONS[-1]
PASSWORD = "Wr0ng-Pa55word"


@pytest.fixture(autouse=True)
def _no_database_url(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SIGNOFF_DATABASE_URL", raising=False)


def _with(url: str, *, dbname: str | None = None, password: str | None = None) -> str:
    """``url`` with another database name and/or a password."""
    parts = urlsplit(url)
    netloc = parts.netloc
    if password is not None:
        userinfo, at, hostinfo = netloc.rpartition("@")
        user = userinfo.split(":", 1)[0] if at else "postgres"
        netloc = f"{user}:{quote(password, safe='')}@{hostinfo}"
    path = f"/{dbname}" if dbname is not None else parts.path
    return urlunsplit((parts.scheme, netloc, path, parts.query, parts.fragment))


def _connect(url: str) -> psycopg.Connection[tuple[object, ...]]:
    return psycopg.connect(to_psycopg_conninfo(url), autocommit=True)


@contextlib.contextmanager
def _another_database(pg_url: str) -> Iterator[str]:
    name = f"signoff_test_{uuid.uuid4().hex[:12]}"
    with _connect(pg_url) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield _with(pg_url, dbname=name)
    finally:
        with _connect(pg_url) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _apply_offline(url: str, current: tuple[str, ...] = ()) -> None:
    """Run the planned offline SQL statement by statement, as written."""
    with _connect(url) as conn:
        for revision in offline_sql(SAMPLE_INI, current=current):
            for piece in revision.sql.split(";\n\n"):
                lines = [ln for ln in piece.splitlines() if not ln.startswith("-- Running ")]
                statement = "\n".join(lines).strip()
                if statement:
                    conn.execute(statement)


# --------------------------------------------------------------------------- read_facts


def test_read_facts_after_online_upgrade(scratch_db_url: str) -> None:
    upgrade(SAMPLE_INI, scratch_db_url, "c5289cc231f5")

    facts = read_facts(scratch_db_url)

    assert isinstance(facts, DatabaseFacts)
    assert facts.current_heads == ("c5289cc231f5",)
    with _connect(scratch_db_url) as conn:
        row = conn.execute("SHOW server_version_num").fetchone()
    assert row is not None
    assert facts.server_version_num == int(str(row[0])) >= 100000
    patients = facts.columns["public.patients"]
    assert patients["ssn"] == "character varying(11)"
    assert patients["phone_number"] == "character varying(32)"
    assert "phone" not in patients
    assert patients["date_of_birth"] == "date"
    assert patients["created_at"] == "timestamp with time zone"
    assert list(patients)[:3] == ["id", "mrn", "first_name"]  # attnum order
    assert facts.columns["patients"] == patients  # visible on the search_path
    assert facts.columns["public.encounters"]["status"] == "encounter_status"
    assert facts.columns["observations"]["value_numeric"] == "numeric(12,4)"
    assert facts.columns["observations"]["id"] == "bigint"
    assert facts.columns["alembic_version"] == {"version_num": "character varying(32)"}
    assert set(facts.populated) == set(facts.columns)
    assert all(isinstance(n, int) and n >= -1 for n in facts.populated.values())

    upgrade(SAMPLE_INI, scratch_db_url, "heads")

    after = read_facts(scratch_db_url)
    assert after.current_heads == (LAST,)
    assert "ssn" not in after.columns["patients"]


def test_read_facts_of_an_empty_database(scratch_db_url: str) -> None:
    facts = read_facts(scratch_db_url)

    assert facts.current_heads == ()
    assert facts.columns == {}
    assert facts.populated == {}
    assert facts.server_version_num >= 100000


def test_populated_is_the_planner_estimate(scratch_db_url: str) -> None:
    upgrade(SAMPLE_INI, scratch_db_url, "heads")
    with _connect(scratch_db_url) as conn:
        conn.execute(
            "INSERT INTO patients (mrn, first_name, last_name, date_of_birth) "
            "SELECT 'MRN' || g, 'Pat', 'Ient', DATE '1980-01-01' + g "
            "FROM generate_series(1, 25) AS g"
        )
        conn.execute("ANALYZE patients")

    facts = read_facts(scratch_db_url)

    assert facts.populated["patients"] == 25
    assert facts.populated["public.patients"] == 25


def test_custom_version_table_and_schema(scratch_db_url: str) -> None:
    with _connect(scratch_db_url) as conn:
        conn.execute("CREATE SCHEMA meta")
        conn.execute("CREATE TABLE meta.db_version (version_num varchar(32) PRIMARY KEY)")
        conn.execute("INSERT INTO meta.db_version VALUES ('bbbb00000002'), ('aaaa00000001')")

    facts = read_facts(scratch_db_url, version_table="db_version", version_schema="meta")

    assert facts.current_heads == ("aaaa00000001", "bbbb00000002")
    assert read_facts(scratch_db_url).current_heads == ()  # no public.alembic_version
    assert "meta.db_version" in facts.columns
    assert "db_version" not in facts.columns  # not on the search_path


def test_planning_from_the_database_heads(scratch_db_url: str) -> None:
    upgrade(SAMPLE_INI, scratch_db_url, "7dc6e57d7249")

    facts = read_facts(scratch_db_url)
    pending = offline_sql(SAMPLE_INI, current=facts.current_heads)

    assert [r.revision.id for r in pending] == REVISIONS[6:]


def test_offline_sql_runs_to_the_same_schema_as_online(pg_url: str, scratch_db_url: str) -> None:
    upgrade(SAMPLE_INI, scratch_db_url, "heads")
    online = read_facts(scratch_db_url)

    with _another_database(pg_url) as offline_url:
        _apply_offline(offline_url)
        offline = read_facts(offline_url)
        with _connect(offline_url) as conn:
            indexes = {
                str(r[0])
                for r in conn.execute(
                    "SELECT indexname FROM pg_indexes WHERE schemaname = 'public'"
                ).fetchall()
            }
            labels = conn.execute("SELECT enum_range(NULL::encounter_status)::text").fetchone()

    assert offline.current_heads == online.current_heads == (LAST,)
    assert offline.columns == online.columns
    assert "ix_encounters_patient_id_started_at" in indexes
    assert "ix_observations_encounter_id" in indexes
    assert labels is not None
    assert labels[0] == "{planned,in_progress,finished,cancelled}"


def test_sample_migrations_move_real_rows(scratch_db_url: str) -> None:
    upgrade(SAMPLE_INI, scratch_db_url, "bc06db019257")
    with _connect(scratch_db_url) as conn:
        conn.execute(
            "INSERT INTO clinicians (id, npi, first_name, last_name) "
            "VALUES (1, '1234567893', 'Ada', 'Quinn')"
        )
        conn.execute(
            "INSERT INTO patients (id, mrn, first_name, last_name, ssn, date_of_birth, email) "
            "VALUES (1, 'MRN-1', 'Jane', 'Doe', '123-45-6789', '1980-02-03', "
            "'Jane.Doe@Example.ORG')"
        )
        conn.execute(
            "INSERT INTO encounters (id, patient_id, clinician_id, started_at) "
            "VALUES (1, 1, 1, now())"
        )

    upgrade(SAMPLE_INI, scratch_db_url, "heads")

    with _connect(scratch_db_url) as conn:
        email = conn.execute("SELECT email FROM patients WHERE id = 1").fetchone()
        conn.execute("UPDATE encounters SET status = 'cancelled' WHERE id = 1")
    assert email == ("jane.doe@example.org",)

    # Every downgrade works, with data in the tables.
    config = alembic_config(SAMPLE_INI, url=scratch_db_url)
    with preserve_logging():
        command.downgrade(config, "3213fa000745")
    with _connect(scratch_db_url) as conn:
        status = conn.execute("SELECT status::text FROM encounters WHERE id = 1").fetchone()
    assert status == ("finished",)
    with preserve_logging():
        command.downgrade(config, "base")
    facts = read_facts(scratch_db_url)
    assert facts.current_heads == ()
    assert set(facts.columns) == {"alembic_version", "public.alembic_version"}


# --------------------------------------------------------------------------- migrate.upgrade


def test_failed_migration_is_a_database_error(scratch_db_url: str) -> None:
    upgrade(SAMPLE_INI, scratch_db_url, "c5289cc231f5")
    with _connect(scratch_db_url) as conn:
        conn.execute(
            "INSERT INTO patients (id, mrn, first_name, last_name, date_of_birth) "
            "VALUES (1, 'MRN-1', 'Jane', 'Doe', '1980-02-03')"
        )
        conn.execute("INSERT INTO encounters (patient_id, started_at) VALUES (1, now())")
    url = _with(scratch_db_url, password=PASSWORD)

    with pytest.raises(DatabaseError) as excinfo:
        upgrade(SAMPLE_INI, url, "heads")

    message = str(excinfo.value)
    assert "\n" not in message
    assert message.startswith("upgrade of ")
    assert "to heads failed: " in message
    assert 'column "clinician_id"' in message
    assert "contains null values" in message
    assert "ALTER TABLE encounters ALTER COLUMN clinician_id SET NOT NULL" in message
    assert PASSWORD not in message
    # One transaction per revision: the failed one left the database where it was.
    assert read_facts(scratch_db_url).current_heads == ("c5289cc231f5",)


def test_upgrade_to_an_unknown_revision(scratch_db_url: str) -> None:
    with pytest.raises(SourceError) as excinfo:
        upgrade(SAMPLE_INI, scratch_db_url, "0123456789ab")

    message = str(excinfo.value)
    assert "\n" not in message
    assert "0123456789ab" in message
    assert read_facts(scratch_db_url).current_heads == ()


def test_upgrade_with_a_broken_project_names_it(tmp_path: Path) -> None:
    with pytest.raises(SourceError, match="does not exist: pass --alembic-ini"):
        upgrade(tmp_path / "alembic.ini", "postgresql://postgres@127.0.0.1:1/x", "heads")


def test_upgrade_of_an_unreachable_database() -> None:
    port = _free_port()
    url = f"postgresql://ehr:{PASSWORD}@127.0.0.1:{port}/ehr"

    with pytest.raises(DatabaseError) as excinfo:
        upgrade(SAMPLE_INI, url, "heads")

    message = str(excinfo.value)
    assert message.startswith(f"cannot connect to database at 127.0.0.1:{port}/ehr: ")
    assert message.endswith("; check --database-url")
    assert PASSWORD not in message


# --------------------------------------------------------------------------- connection errors


def test_unreachable_port_hides_the_password() -> None:
    port = _free_port()
    url = f"postgresql+psycopg://ehr:{PASSWORD}@127.0.0.1:{port}/ehr"

    with pytest.raises(DatabaseError) as excinfo:
        read_facts(url)

    message = str(excinfo.value)
    assert "\n" not in message
    assert message.startswith(f"cannot connect to database at 127.0.0.1:{port}/ehr: ")
    assert "Connection refused" in message
    assert message.endswith("; check --database-url")
    assert PASSWORD not in message


def test_missing_database_hides_the_password(pg_url: str) -> None:
    name = f"signoff_missing_{uuid.uuid4().hex[:8]}"
    url = _with(pg_url, dbname=name, password=PASSWORD)

    with pytest.raises(DatabaseError) as excinfo:
        read_facts(url)

    message = str(excinfo.value)
    assert message.startswith("cannot connect to database at ")
    assert f"/{name}: " in message
    assert f'database "{name}" does not exist' in message
    assert PASSWORD not in message


class _PasswordRejectingServer:
    """A loopback server that speaks just enough of the PostgreSQL protocol to ask
    for a cleartext password and reject it, as a server with md5/scram auth would
    for a wrong password (the test servers themselves trust every local user)."""

    def __init__(self) -> None:
        self._sock = socket.create_server(("127.0.0.1", 0))
        self._sock.settimeout(0.1)
        self.port: int = self._sock.getsockname()[1]
        self.passwords: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)
        self._sock.close()

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._sock.accept()
            except TimeoutError:
                continue
            with conn, contextlib.suppress(OSError, ConnectionError):
                conn.settimeout(5)
                self._handle(conn)

    def _handle(self, conn: socket.socket) -> None:
        while True:
            (length,) = struct.unpack("!i", _recv(conn, 4))
            body = _recv(conn, length - 4)
            (code,) = struct.unpack("!i", body[:4])
            if code in (80877103, 80877104):  # SSLRequest, GSSENCRequest: not here
                conn.sendall(b"N")
                continue
            break  # StartupMessage
        conn.sendall(b"R" + struct.pack("!ii", 8, 3))  # AuthenticationCleartextPassword
        if _recv(conn, 1) != b"p":
            return
        (length,) = struct.unpack("!i", _recv(conn, 4))
        self.passwords.append(_recv(conn, length - 4).rstrip(b"\0").decode())
        fields = b'SFATAL\0VFATAL\0C28P01\0Mpassword authentication failed for user "ehr"\0\0'
        conn.sendall(b"E" + struct.pack("!i", len(fields) + 4) + fields)


def _recv(conn: socket.socket, n: int) -> bytes:
    data = b""
    while len(data) < n:
        chunk = conn.recv(n - len(data))
        if not chunk:
            raise ConnectionError("peer closed")
        data += chunk
    return data


def test_wrong_password_hides_the_password() -> None:
    server = _PasswordRejectingServer()
    try:
        url = f"postgresql://ehr:{PASSWORD}@127.0.0.1:{server.port}/ehr?sslmode=disable"
        with pytest.raises(DatabaseError) as excinfo:
            read_facts(url)
        with pytest.raises(DatabaseError) as excinfo_query:
            read_facts(f"postgresql://ehr@127.0.0.1:{server.port}/ehr?password={PASSWORD}")
    finally:
        server.close()

    assert server.passwords[:1] == [PASSWORD]  # the client really sent it
    for info in (excinfo, excinfo_query):
        message = str(info.value)
        assert message.startswith(f"cannot connect to database at 127.0.0.1:{server.port}/ehr: ")
        assert 'password authentication failed for user "ehr"' in message
        assert PASSWORD not in message


# --------------------------------------------------------------------------- URLs


@pytest.mark.parametrize(
    "scheme", ["postgresql", "postgres", "postgresql+psycopg", "postgresql+psycopg2"]
)
def test_to_psycopg_conninfo_accepts_sqlalchemy_and_libpq_urls(scheme: str, pg_url: str) -> None:
    rest = pg_url.split("://", 1)[1]

    conninfo = to_psycopg_conninfo(f"{scheme}://{rest}")

    assert conninfo == f"postgresql://{rest}"
    with psycopg.connect(conninfo) as conn:
        assert conn.execute("SELECT 1").fetchone() == (1,)
    assert read_facts(f"{scheme}://{rest}").server_version_num >= 100000


def test_to_psycopg_conninfo_rejects_other_databases() -> None:
    with pytest.raises(DatabaseError) as excinfo:
        to_psycopg_conninfo("mysql+pymysql://root:hunter2@db/app")

    message = str(excinfo.value)
    assert message.startswith("unsupported database URL scheme 'mysql+pymysql'")
    assert "hunter2" not in message
    with pytest.raises(DatabaseError, match="is not a URL"):
        to_psycopg_conninfo("host=db password=hunter2")


def test_redact() -> None:
    assert redact("postgresql://ehr:s3cret@db:5432/ehr") == "postgresql://ehr:***@db:5432/ehr"
    assert redact("postgresql+psycopg://ehr:p%40ss@db/ehr") == (
        "postgresql+psycopg://ehr:***@db/ehr"
    )
    assert redact("postgresql://ehr@db/ehr") == "postgresql://ehr@db/ehr"
    assert redact("postgresql://db/ehr") == "postgresql://db/ehr"
    assert redact("postgresql://ehr@db/ehr?sslmode=require&password=s3cret") == (
        "postgresql://ehr@db/ehr?sslmode=require&password=***"
    )
    assert redact("postgresql://ehr:a@b@db/ehr") == "postgresql://ehr:***@db/ehr"
    assert redact("postgresql://ehr:@db/ehr") == "postgresql://ehr:***@db/ehr"


def test_describe_names_host_port_and_database_never_the_password(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("PGHOST", raising=False)
    monkeypatch.delenv("PGPORT", raising=False)
    assert describe("postgresql+psycopg://ehr:s3cret@db:6543/ehr") == "db:6543/ehr"
    assert describe("postgresql://ehr:s3cret@db/ehr", database=False) == "db:5432"
    assert describe("host=db port=6000 dbname=app user=u password=s3cret") == "db:6000/app"
    assert describe("postgresql://ses_1@gw:6432") == "gw:6432/ses_1"  # libpq's default dbname
    unparsable = describe("host='unterminated password=s3cret")
    assert "s3cret" not in unparsable and "unparsable" in unparsable
    monkeypatch.setenv("PGHOST", "/run/postgresql")
    assert describe("postgresql:///ehr", database=False) == "/run/postgresql:5432"


def test_redact_and_scrub_key_value_connection_strings() -> None:
    assert "hunter2" not in redact("host=db password=hunter2 user=u")
    assert "password=***" in redact("host=db password=hunter2 user=u")
    assert scrub("auth failed for hunter2", "host=db password=hunter2") == "auth failed for ***"


def test_the_server_side_guards_functions_are_not_read_as_the_databases_own(
    scratch_db_url: str,
) -> None:
    from runner.gateway.dbguard.install import install

    with psycopg.connect(scratch_db_url, autocommit=True) as conn:
        conn.execute("CREATE FUNCTION tidy() RETURNS int LANGUAGE sql AS $$ SELECT 1 $$")
    install(scratch_db_url)
    with psycopg.connect(scratch_db_url) as conn:
        guard_functions = conn.execute(
            "SELECT count(*) FROM pg_proc WHERE pronamespace = 'signoff_guard'::regnamespace"
        ).fetchone()
    assert guard_functions is not None and guard_functions[0] > 0
    functions = read_facts(scratch_db_url).functions
    assert functions is not None
    assert {(f.schema, f.name) for f in functions.functions} == {("public", "tidy")}
