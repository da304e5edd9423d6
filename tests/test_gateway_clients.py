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
