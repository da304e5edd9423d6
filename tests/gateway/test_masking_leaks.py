"""The other ways a value could leave a masked session, and the catalog kept true:
errors that echo a value, notices raised by a function, tables made after the
catalog was read, rows with no description, and what the audit says of a detector's
match."""

from __future__ import annotations

import struct
import time
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from gateway_harness import Gateway
from masking_harness import EMAILS, SSNS, grant_reads, leaked, masking_gateway, migrator
from pgclient import RawClient

from runner.gateway import wire


@pytest.fixture
def gateway(
    scratch_db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Gateway]:
    with psycopg.connect(scratch_db_url, autocommit=True) as conn:
        conn.execute(
            "CREATE SCHEMA tools; CREATE FUNCTION tools.shout(v text) RETURNS int "
            "LANGUAGE plpgsql AS $$BEGIN RAISE NOTICE 'value %', v; RETURN 1; END$$"
        )
    with masking_gateway(scratch_db_url, tmp_path, monkeypatch) as running:
        with psycopg.connect(scratch_db_url, autocommit=True) as conn:
            conn.execute("GRANT USAGE ON SCHEMA tools TO PUBLIC")
        yield running


def test_a_unique_violation_does_not_echo_the_key(gateway: Gateway) -> None:
    with psycopg.connect(gateway.upstream_url, autocommit=True) as conn:
        conn.execute("CREATE UNIQUE INDEX ON ehr.patients (ssn)")
        conn.execute("CREATE TABLE ehr.copies (ssn text UNIQUE)")
        conn.execute("INSERT INTO ehr.copies VALUES ('123-45-6789')")
        grant_reads(conn, "ehr")
        conn.execute("GRANT INSERT ON ehr.copies TO PUBLIC")
    with (
        gateway.connect(migrator(gateway)) as conn,
        pytest.raises(psycopg.errors.UniqueViolation) as raised,
    ):
        conn.execute("INSERT INTO ehr.copies VALUES ('123-45-6789')")
    detail = raised.value.diag.message_detail or ""
    assert "Key (ssn)=([REDACTED])" in detail
    assert leaked(SSNS, str(raised.value) + detail) == []


@pytest.mark.parametrize(
    "sql",
    [
        "INSERT INTO ehr.scratch SELECT ssn FROM ehr.patients",
        "INSERT INTO ehr.scratch SELECT upper(first_name) FROM ehr.patients",
        "CREATE TABLE ehr.stash AS SELECT email AS x FROM ehr.patients",
        "UPDATE ehr.scratch SET note = (SELECT max(email) FROM ehr.patients) WHERE note = 'x'",
        "PREPARE w AS INSERT INTO ehr.scratch SELECT ssn FROM ehr.patients",
    ],
)
def test_a_write_that_copies_masked_data_needs_approval(gateway: Gateway, sql: str) -> None:
    with psycopg.connect(gateway.upstream_url, autocommit=True) as conn:
        conn.execute("CREATE TABLE ehr.scratch (note text)")
        conn.execute("INSERT INTO ehr.scratch VALUES ('x')")
        grant_reads(conn, "ehr")
        conn.execute("GRANT INSERT, UPDATE ON ehr.scratch TO PUBLIC")
        conn.execute("GRANT CREATE ON SCHEMA ehr TO PUBLIC")
    session = migrator(gateway)
    with (
        gateway.connect(session) as conn,
        pytest.raises(psycopg.errors.InsufficientPrivilege, match="MASK002"),
    ):
        conn.execute(sql)
    with psycopg.connect(gateway.upstream_url) as direct:  # nothing was copied
        assert direct.execute("SELECT note FROM ehr.scratch").fetchall() == [("x",)]
        assert direct.execute("SELECT to_regclass('ehr.stash')").fetchone() == (None,)
    with gateway.connect(session) as conn:  # a write that reads no masked column runs
        conn.execute("INSERT INTO ehr.scratch SELECT reason FROM ehr.encounters WHERE id = 1")


def test_a_notice_raised_by_a_function_is_scrubbed(gateway: Gateway) -> None:
    notices: list[str] = []
    with gateway.connect(migrator(gateway)) as conn:
        conn.add_notice_handler(lambda d: notices.append(d.message_primary or ""))
        conn.execute("SELECT tools.shout(email) FROM ehr.patients").fetchall()
    assert notices and all(n == "value [REDACTED]" for n in notices)
    assert leaked(EMAILS, notices) == []


def test_a_table_made_after_the_catalog_was_read(gateway: Gateway) -> None:
    with gateway.connect(migrator(gateway)) as conn:
        conn.execute("SELECT 1").fetchall()  # the catalog is read
        with psycopg.connect(gateway.upstream_url, autocommit=True) as direct:
            direct.execute("CREATE TABLE ehr.later AS SELECT id, ssn AS code FROM ehr.patients")
            grant_reads(direct, "ehr")
        first = conn.execute("SELECT id, code FROM ehr.later ORDER BY id").fetchall()
        assert first[0] == (None, "[REDACTED]")  # unknown table: all masked (bigint: NULL)
        assert leaked(SSNS, first) == []
        # Read again meanwhile: the table is known, its columns are what the rules say.
        deadline = time.monotonic() + 10
        while True:
            again = conn.execute("SELECT id, code FROM ehr.later ORDER BY id").fetchall()
            if again[0][0] == 1 or time.monotonic() > deadline:
                break
            time.sleep(0.1)
    assert again[0] == (1, "[REDACTED]")  # code holds an SSN: the detector still masks it


@pytest.mark.parametrize("describe", [b"", b"S"])
def test_rows_without_a_portal_description_are_all_null(gateway: Gateway, describe: bytes) -> None:
    """An Execute with no Describe of its portal (none, or only of the statement, as
    asyncpg does): the gateway cannot tell the rows' formats, they come all NULL."""
    session = migrator(gateway)
    client = RawClient(gateway.pg_port)
    try:
        assert client.startup(session["session_id"], "ehr", session["secret"])[-1][0] == "Z"
        bind = wire.message(wire.BIND, b"\x00s1\x00" + struct.pack("!hhh", 0, 0, 0))
        described = [wire.message(wire.DESCRIBE, b"Ss1\x00")] if describe else []
        client.send(
            wire.parse(b"s1", "SELECT ssn, id FROM ehr.patients ORDER BY id"),
            *described,
            bind,
            wire.message(wire.EXECUTE, b"\x00" + struct.pack("!i", 0)),  # no Describe
            wire.sync(),
        )
        got = client.until("Z")
    finally:
        client.close()
    rows = [body for kind, body in got if kind == "D"]
    assert len(rows) == 3
    assert all(body == b"\x00\x02" + b"\xff\xff\xff\xff" * 2 for body in rows)
    assert leaked(SSNS, bytes(client.received)) == []


def test_a_detectors_match_is_named_in_the_audit_record(gateway: Gateway) -> None:
    session = migrator(gateway)
    with gateway.connect(session) as conn:
        conn.execute("SELECT id, notes FROM ehr.patients").fetchall()
        conn.execute("SELECT id, reason FROM ehr.encounters WHERE id < 3").fetchall()
    records = gateway.audit(session)
    notes = next(r for r in records if "notes" in str(r.get("text")))
    assert notes["masked_columns"] == [
        {
            "position": 1,
            "output": "notes",
            "column": "(values)",
            "rule": "phi-values",
            "how": "detected",
        }
    ]
    plain = next(r for r in records if "reason" in str(r.get("text")))
    assert plain["masked_columns"] == []  # nothing in it matched
