"""PHI masking in the data path, end to end: the real gateway on loopback, the sample
EHR schema (examples/ehr_masking.sql) in a scratch database, psycopg and psql as
clients. Every test checks what the client received, and the database directly."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from gateway_harness import Gateway
from masking_harness import (
    BIRTH_DATES,
    EMAILS,
    FIRST_NAMES,
    PHONES,
    SSNS,
    deployer,
    leaked,
    masking_gateway,
    migrator,
)

from runner.gateway.masking.replace import pseudonym

PHI = SSNS + EMAILS + PHONES + BIRTH_DATES


@pytest.fixture
def gateway(
    scratch_db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Gateway]:
    with masking_gateway(scratch_db_url, tmp_path, monkeypatch) as running:
        yield running


def rows(conn: psycopg.Connection[Any], sql: str, **kwargs: Any) -> list[tuple[Any, ...]]:
    return conn.execute(sql, **kwargs).fetchall()


def test_plain_columns_are_masked_by_rule(gateway: Gateway) -> None:
    with gateway.connect(migrator(gateway)) as conn:
        got = rows(
            conn,
            "SELECT id, mrn, first_name, ssn, date_of_birth, email, phone, balance "
            "FROM ehr.patients ORDER BY id",
        )
    assert got[0][0] == 1 and str(got[0][7]) == "10.50"  # not masked: as they are
    assert [r[3] for r in got] == ["***-**-6789", "***-**-4321", "***-**-4444"]  # keep_last
    assert [r[4] for r in got] == [None, None, None]  # a date: NULL
    assert [r[5] for r in got] == ["***@example.org", "***@example.net", "***@example.com"]
    assert [r[6] for r in got] == [None, None, None]  # action null
    assert [r[2] for r in got] == ["[REDACTED]"] * 3
    key = b"test-masking-key-not-a-secret-anywhere"
    assert got[0][1] == pseudonym(key, "MRN00012345")  # keyed pseudonym
    assert got[0][1].startswith("ps_") and got[0][1] != got[1][1]
    assert leaked(PHI + FIRST_NAMES, got) == []
    with psycopg.connect(gateway.upstream_url) as direct:  # the data itself is untouched
        assert direct.execute("SELECT ssn FROM ehr.patients WHERE id = 1").fetchone() == (
            "123-45-6789",
        )


def test_the_audit_record_names_each_masked_column_and_rule(gateway: Gateway) -> None:
    session = migrator(gateway)
    with gateway.connect(session) as conn:
        rows(conn, "SELECT id, ssn, email, upper(ssn) AS shout FROM ehr.patients")
    record = next(r for r in gateway.audit(session) if "upper(ssn)" in str(r.get("text")))
    masked = {(c["output"], c["column"], c["rule"], c["how"]) for c in record["masked_columns"]}
    assert ("ssn", "ehr.patients.ssn", "ssn", "keep_last") in masked
    assert ("email", "ehr.patients.email", "email", "keep_domain") in masked
    assert ("shout", "ehr.patients.ssn", "ssn", "redact") in masked
    assert not any(c["output"] == "id" for c in record["masked_columns"])
    assert leaked(PHI, record) == []  # names and rules, never values


@pytest.mark.parametrize(
    "sql",
    [
        "SELECT ssn || '' FROM ehr.patients",
        "SELECT upper(ssn) FROM ehr.patients",
        "SELECT x FROM (SELECT ssn AS x FROM ehr.patients) s",
        "SELECT lower(x) FROM (SELECT ssn AS x FROM ehr.patients) s",
        "WITH c(v) AS (SELECT email FROM ehr.patients) SELECT v || '!' FROM c",
        "SELECT row_to_json(p) FROM ehr.patients p",
        "SELECT row_to_json(p.*)::text FROM ehr.patients p",
        "SELECT string_agg(ssn, ',') FROM ehr.patients",
        "SELECT (SELECT max(email) FROM ehr.patients) AS m",
        "SELECT concat(first_name, ' ', date_of_birth) FROM ehr.patients",
        "SELECT * FROM ehr.patient_contacts",
        "SELECT ssn_upper, login FROM ehr.patient_contacts",
        "SELECT ssn FROM ehr.patients UNION ALL SELECT 'x'",
        "SELECT to_char(date_of_birth, 'YYYY-MM-DD') FROM ehr.patients",
        "SELECT p.*, e.reason FROM ehr.patients p JOIN ehr.encounters e ON e.patient_id = p.id",
        "SELECT *, ssn || '' FROM ehr.patients",
        "SELECT u FROM ehr.patients, unnest(array[ssn, first_name]) u",
        "SELECT v.w FROM ehr.patients, LATERAL (SELECT first_name || '') AS v(w)",
        "SELECT (p).first_name FROM ehr.patients p",
        "SELECT to_jsonb(p) ->> 'email' FROM ehr.patients p",
    ],
)
def test_derived_columns_never_carry_phi(gateway: Gateway, sql: str) -> None:
    with gateway.connect(migrator(gateway)) as conn:
        got = rows(conn, sql)
    assert got  # a result came
    assert leaked(PHI + FIRST_NAMES, got) == []


def test_columns_without_phi_come_through(gateway: Gateway) -> None:
    with gateway.connect(migrator(gateway)) as conn:
        assert rows(conn, "SELECT count(*), max(id) FROM ehr.patients") == [(3, 3)]
        got = rows(conn, "SELECT id, reason, seen_on FROM ehr.encounters ORDER BY id")
        assert got[0][1] == "annual check-up" and str(got[0][2]) == "2026-01-05"
        # a value detector still finds an MRN in free text
        assert got[3][1] == "referral from [REDACTED]"
        assert rows(conn, "SELECT 1 + 1, 'plain text'") == [(2, "plain text")]


def test_value_detectors_mask_spans_in_free_text(gateway: Gateway) -> None:
    with gateway.connect(migrator(gateway)) as conn:
        got = [r[0] for r in rows(conn, "SELECT notes FROM ehr.patients ORDER BY id")]
    assert got == [
        "call [REDACTED] after 5pm",
        "card on file [REDACTED]",
        "born [REDACTED]",
    ]


def test_binary_results_and_server_side_cursors(gateway: Gateway) -> None:
    with gateway.connect(migrator(gateway)) as conn:
        with conn.cursor(binary=True) as cur:
            cur.execute("SELECT id, ssn, date_of_birth, email FROM ehr.patients ORDER BY id")
            got = cur.fetchall()
        assert got[0] == (1, "***-**-6789", None, "***@example.org")
        with conn.transaction(), conn.cursor(name="c1") as named:
            named.execute("SELECT id, ssn, upper(email) FROM ehr.patients ORDER BY id")
            first = named.fetchmany(2)
            rest = named.fetchall()
    assert first[0][1] == "***-**-6789" and len(first) + len(rest) == 3
    assert leaked(PHI, got + first + rest) == []


def test_pipeline_mode(gateway: Gateway) -> None:
    with gateway.connect(migrator(gateway)) as conn:
        with conn.pipeline():
            curs = [
                conn.execute("SELECT ssn FROM ehr.patients WHERE id = %s", (i,)) for i in (1, 2, 3)
            ]
            plain = conn.execute("SELECT reason FROM ehr.encounters WHERE id = %s", (1,))
        got = [c.fetchall() for c in curs]
        assert plain.fetchall() == [("annual check-up",)]
    assert got == [[("***-**-6789",)], [("***-**-4321",)], [("***-**-4444",)]]


def test_psql_shows_masked_values_for_the_migrator(gateway: Gateway) -> None:
    session = migrator(gateway)
    done = subprocess.run(
        [
            "psql",
            "-X",
            "-A",
            "-h",
            "127.0.0.1",
            "-p",
            str(gateway.pg_port),
            "-U",
            session["session_id"],
            "-d",
            "ehr",
            "-c",
            "SELECT id, ssn, email, date_of_birth, ssn || '' AS derived FROM ehr.patients "
            "ORDER BY id",
        ],
        capture_output=True,
        text=True,
        env={"PGPASSWORD": session["secret"], "PATH": "/usr/bin:/bin:/usr/local/bin"},
        check=True,
    )
    assert "1|***-**-6789|***@example.org||[REDACTED]" in done.stdout
    assert leaked(PHI, done.stdout) == []
    record = next(r for r in gateway.audit(session) if "AS derived" in str(r.get("text")))
    named = {(c["output"], c["column"], c["rule"]) for c in record["masked_columns"]}
    assert named == {
        ("ssn", "ehr.patients.ssn", "ssn"),
        ("email", "ehr.patients.email", "email"),
        ("date_of_birth", "ehr.patients.date_of_birth", "birth-date"),
        ("derived", "ehr.patients.ssn", "ssn"),
    }


def test_the_catalog_is_read_again_after_ddl_through_the_gateway(gateway: Gateway) -> None:
    with psycopg.connect(gateway.upstream_url, autocommit=True) as direct:
        direct.execute("GRANT CREATE ON SCHEMA ehr TO PUBLIC")
    with gateway.connect(migrator(gateway)) as conn:
        conn.execute("CREATE TABLE ehr.contacts (id int, email text)")
        conn.execute("INSERT INTO ehr.contacts VALUES (1, 'new@example.org')")
        for _ in range(100):  # the refresh after the CREATE runs in a thread
            got = conn.execute("SELECT id, email FROM ehr.contacts").fetchall()
            if got[0][0] == 1:
                break
            time.sleep(0.05)
    assert got == [(1, "***@example.org")]  # known by the email rule, id as it is


def test_copy_to_stdout_is_refused_by_default(gateway: Gateway) -> None:
    with gateway.connect(migrator(gateway)) as conn:
        with (
            pytest.raises(psycopg.errors.InsufficientPrivilege, match=r"masking\.copy"),
            conn.cursor().copy("COPY ehr.patients TO STDOUT") as copy,
        ):
            list(copy)
        with conn.cursor().copy("COPY ehr.encounters (id, seen_on) TO STDOUT") as copy:
            data = b"".join(bytes(chunk) for chunk in copy)
    assert data.startswith(b"1\t2026-01-05\n")


def test_errors_do_not_echo_masked_values(gateway: Gateway) -> None:
    with gateway.connect(migrator(gateway)) as conn:
        with pytest.raises(psycopg.errors.InvalidTextRepresentation) as cast:
            conn.execute("SELECT ssn::int FROM ehr.patients")
        with pytest.raises(psycopg.errors.InvalidTextRepresentation) as name:
            conn.execute("SELECT first_name::int FROM ehr.patients")
    assert leaked(PHI, str(cast.value)) == [] and "[REDACTED]" in str(cast.value)
    assert leaked(FIRST_NAMES, str(name.value)) == []


def test_a_grant_lets_the_deployer_see_one_run_unmasked(gateway: Gateway) -> None:
    session = deployer(gateway)
    sql = "SELECT ssn FROM ehr.patients WHERE id = 1"
    with gateway.connect(session) as conn:
        assert rows(conn, sql) == [("***-**-6789",)]  # masked without a grant
        fingerprint = next(r["fingerprint"] for r in gateway.audit(session) if r.get("text") == sql)
        done = gateway.cli(
            "grant",
            "--database",
            "ehr",
            "--fingerprint",
            fingerprint,
            "--approver",
            "privacy-officer",
        )
        assert done.returncode == 0, done.stderr
        assert rows(conn, sql) == [("123-45-6789",)]  # the one run the grant covers
        assert rows(conn, sql) == [("***-**-6789",)]  # used up: masked again
    records = [r for r in gateway.audit(session) if r.get("text") == sql]
    assert [r["decision"] for r in records] == ["allowed", "approved", "allowed"]
    assert records[1]["grant"] is not None and records[1]["masked_columns"] == []
    assert any(f["rule"] == "MASK001" for f in records[1]["findings"])


def test_a_grant_does_not_unmask_for_a_role_that_may_not(gateway: Gateway) -> None:
    session = migrator(gateway)
    sql = "SELECT ssn FROM ehr.patients WHERE id = 2"
    with gateway.connect(session) as conn:
        rows(conn, sql)
        fingerprint = next(r["fingerprint"] for r in gateway.audit(session) if r.get("text") == sql)
        assert (
            gateway.cli(
                "grant",
                "--database",
                "ehr",
                "--fingerprint",
                fingerprint,
                "--approver",
                "privacy-officer",
            ).returncode
            == 0
        )
        assert rows(conn, sql) == [("***-**-4321",)]
