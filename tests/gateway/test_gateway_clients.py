"""Real clients through the gateway, as they talk: pg_dump, psql's meta-commands,
psycopg's server-side cursors and pipeline mode, and the settings drivers send."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from gateway_harness import Gateway, running_gateway


@pytest.fixture
def gateway(
    scratch_db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Gateway]:
    with running_gateway(scratch_db_url, tmp_path, monkeypatch) as running:
        yield running


def libpq_env(gateway: Gateway, session: dict[str, Any]) -> dict[str, str]:
    return {
        **os.environ,
        "PGHOST": "127.0.0.1",
        "PGPORT": str(gateway.pg_port),
        "PGUSER": session["session_id"],
        "PGPASSWORD": session["secret"],
        "PGDATABASE": "ehr",
        "PGSSLMODE": "disable",
    }


def test_pg_dump_schema_only(gateway: Gateway) -> None:
    session = gateway.session()
    dump = subprocess.run(
        ["pg_dump", "--schema-only"],
        env=libpq_env(gateway, session),
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    assert dump.returncode == 0, dump.stderr
    assert "CREATE TABLE public.patients" in dump.stdout


def test_turning_standard_conforming_strings_on_is_allowed_and_off_is_not(
    gateway: Gateway,
) -> None:
    session = gateway.session()
    with gateway.connect(session) as conn:
        conn.execute("SET standard_conforming_strings = on")
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute("SET standard_conforming_strings = off")
        assert conn.execute("SHOW standard_conforming_strings").fetchone() == ("on",)


def test_sql_prepare_is_forwarded_only_for_what_is_allowed_and_execute_is_decided_again(
    gateway: Gateway,
) -> None:
    session = gateway.session()
    with gateway.connect(session) as conn:
        conn.execute("PREPARE byid(bigint) AS SELECT mrn FROM patients WHERE id = $1")
        assert conn.execute("EXECUTE byid(3)").fetchone() == ("M3",)
        # A statement that needs approval is not prepared for later: nothing reaches
        # the server, so no EXECUTE can run it.
        with pytest.raises(psycopg.errors.InsufficientPrivilege) as refused:
            conn.execute("PREPARE wipe AS DELETE FROM patients")
        assert "PREPARE wipe" in str(refused.value)
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute("EXECUTE wipe")  # a name the gateway never forwarded
        conn.execute("DEALLOCATE byid")
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute("EXECUTE byid(3)")  # forgotten with the DEALLOCATE
    with psycopg.connect(gateway.upstream_url) as direct:
        assert direct.execute("SELECT count(*) FROM patients").fetchone() == (20,)
    records = gateway.audit(session)
    executes = [r for r in records if r.get("text") == "EXECUTE byid(3)"]
    assert [r["decision"] for r in executes] == ["allowed", "blocked"]


def test_psycopg_server_side_cursors_and_pipeline_mode(gateway: Gateway) -> None:
    session = gateway.session()
    with gateway.connect(session) as conn:
        conn.autocommit = False
        with conn.cursor(name="patients_by_id") as cursor:  # DECLARE, FETCH, CLOSE
            cursor.itersize = 7
            cursor.execute("SELECT id FROM patients ORDER BY id")
            assert [row[0] for row in cursor] == list(range(1, 21))
        conn.commit()
        with conn.pipeline():
            results = [
                conn.execute("SELECT mrn FROM patients WHERE id = %s", (n,)) for n in (1, 2, 3)
            ]
        assert [r.fetchone() for r in results] == [("M1",), ("M2",), ("M3",)]
        # FETCH of a cursor the gateway never saw declared is not a read it can vouch for.
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute("FETCH 1 FROM nowhere")


def test_psql_meta_commands(gateway: Gateway) -> None:
    session = gateway.session()
    run = subprocess.run(
        ["psql", "-X", "-v", "ON_ERROR_STOP=1", "-c", r"\dt", "-c", r"\d patients", "-c", r"\l"],
        env=libpq_env(gateway, session),
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert run.returncode == 0, run.stderr
    assert "patients" in run.stdout and "mrn" in run.stdout


def test_pgbench_select_only(gateway: Gateway, scratch_db_url: str) -> None:
    init = subprocess.run(
        ["pgbench", "-i", "-s", "1", "-q", scratch_db_url],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    assert init.returncode == 0, init.stderr
    with psycopg.connect(scratch_db_url, autocommit=True) as conn:  # the owner role's tables
        for table in ("accounts", "branches", "tellers", "history"):
            conn.execute(f"ALTER TABLE pgbench_{table} OWNER TO {gateway.role}")
    session = gateway.session()
    for protocol in ("simple", "extended"):
        run = subprocess.run(
            ["pgbench", "-S", "-n", "-t", "20", "-M", protocol],
            env=libpq_env(gateway, session),
            capture_output=True,
            text=True,
            check=False,
            timeout=120,
        )
        assert run.returncode == 0, run.stderr
        assert "number of transactions actually processed: 20/20" in run.stdout


def test_sqlalchemy(gateway: Gateway) -> None:
    import sqlalchemy

    session = gateway.session()
    engine = sqlalchemy.create_engine(
        f"postgresql+psycopg://{session['session_id']}:{session['secret']}"
        f"@127.0.0.1:{gateway.pg_port}/ehr",
        poolclass=sqlalchemy.pool.NullPool,
    )
    try:
        with engine.connect() as conn:
            rows = conn.execute(
                sqlalchemy.text("SELECT mrn FROM patients WHERE id = :id"), {"id": 5}
            ).all()
        assert rows == [("M5",)]
    finally:
        engine.dispose()
