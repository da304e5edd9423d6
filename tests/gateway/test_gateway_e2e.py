"""The gateway end to end: a loopback OIDC issuer, curl, psql, the real proxy and
PostgreSQL, `signoff gateway grant` and `signoff gateway audit verify`."""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest
from audit_journal import edit_entry, journal_path, read_entries, read_lines
from gateway_harness import EXPIRED, PASSWORD, Gateway, running_gateway


@pytest.fixture
def gateway(
    scratch_db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Gateway]:
    with running_gateway(scratch_db_url, tmp_path, monkeypatch) as running:
        yield running


def test_curl_psql_refused_drop_then_grant_runs_it_once(gateway: Gateway) -> None:
    curl = shutil.which("curl")
    if curl is None:
        pytest.skip("curl is not installed")
    token = gateway.token()
    done = subprocess.run(
        [
            curl,
            "-sS",
            "-X",
            "POST",
            "-H",
            "content-type: application/json",
            "--data",
            json.dumps({"token": token, "database": "ehr"}),
            f"{gateway.http}/v1/sessions",
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    session = json.loads(done.stdout)
    assert session["pg"]["user"] == session["session_id"]
    assert session["principal"]["repository"] == "acme/ehr-api"

    def psql(sql: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [
                "psql",
                "-X",
                "-v",
                "ON_ERROR_STOP=1",
                f"host=127.0.0.1 port={gateway.pg_port} user={session['session_id']} dbname=ehr",
                "-c",
                sql,
            ],
            capture_output=True,
            text=True,
            check=False,
            env={**os.environ, "PGPASSWORD": session["secret"], "PGSSLMODE": "disable"},
        )

    shown = psql("SELECT count(*) FROM patients")
    assert shown.returncode == 0, shown.stderr
    assert "20" in shown.stdout

    refused = psql("DROP TABLE visits_old")
    assert refused.returncode != 0
    assert "SO101" in refused.stderr
    with psycopg.connect(gateway.upstream_url) as direct:
        assert direct.execute("SELECT to_regclass('visits_old')").fetchone() == ("visits_old",)

    granted = gateway.cli(
        "grant", "--database", "ehr", "--sql", "DROP TABLE visits_old", "--approver", "bob"
    )
    assert granted.returncode == 0, granted.stderr
    ran = psql("DROP TABLE visits_old")
    assert ran.returncode == 0, ran.stderr
    with psycopg.connect(gateway.upstream_url) as direct:
        assert direct.execute("SELECT to_regclass('visits_old')").fetchone() == (None,)
        direct.execute("CREATE TABLE visits_old (id int)")
        direct.commit()
    again = psql("DROP TABLE visits_old")  # the grant was for one run
    assert again.returncode != 0 and "SO101" in again.stderr

    records = [r for r in gateway.audit(session) if r.get("text")]
    drops = [r for r in records if r["text"] == "DROP TABLE visits_old"]
    assert [r["decision"] for r in drops] == ["blocked", "approved", "blocked"]
    assert drops[1]["grant"]["approver"] == "bob"
    assert all(r["principal"]["repository"] == "acme/ehr-api" for r in records)


def test_every_statement_that_ran_has_one_record_and_the_chain_verifies(
    gateway: Gateway,
) -> None:
    session = gateway.session()
    with gateway.connect(session) as conn:
        conn.execute("SELECT 1")
        conn.execute("SELECT mrn FROM patients WHERE id = %s", (3,))
        conn.execute("UPDATE patients SET mrn = 'X' WHERE id = 1")
        with pytest.raises(psycopg.errors.InsufficientPrivilege) as refused:
            conn.execute("DELETE FROM patients")
        assert "SO111" in str(refused.value)
        conn.execute("SELECT 2")  # still usable
    records = [r for r in gateway.audit(session) if r.get("text")]
    texts = [r["text"] for r in records]
    assert texts.count("SELECT 1") == 1
    assert texts.count("UPDATE patients SET mrn = 'X' WHERE id = 1") == 1
    update = next(r for r in records if r["text"].startswith("UPDATE"))
    assert update["outcome"] == "UPDATE 1" and update["status"] == "completed"
    delete = next(r for r in records if r["text"] == "DELETE FROM patients")
    assert delete["decision"] == "blocked"

    verified = gateway.cli("audit", "verify")
    assert verified.returncode == 0, verified.stdout + verified.stderr
    assert "audit chain ok" in verified.stdout

    journal = journal_path(gateway.state_path)
    seq = next(
        e["seq"] for e in read_entries(journal) if "UPDATE patients" in e["data"].get("text", "")
    )

    def to_y(entry: dict[str, Any]) -> None:
        entry["data"]["text"] = entry["data"]["text"].replace("'X'", "'Y'")

    edit_entry(journal, seq, to_y)
    broken = gateway.cli("audit", "verify")
    assert broken.returncode == 1
    assert str(seq) in broken.stdout


@pytest.mark.parametrize(
    ("make", "status"),
    [
        ("unsigned", 401),
        ("hs256-with-public-key", 401),
        ("expired", 401),
        ("not-yet-valid", 401),
        ("wrong-audience", 401),
        ("wrong-issuer", 401),
        ("unknown-kid", 401),
        ("tampered", 401),
        ("replayed", 401),
        ("other-repository", 403),
        ("other-branch", 403),
    ],
)
def test_token_attack_matrix_is_refused_and_recorded(
    gateway: Gateway, make: str, status: int
) -> None:
    issuer = gateway.issuer
    if make == "unsigned":
        token = issuer.unsigned_token()
    elif make == "hs256-with-public-key":
        token = issuer.forge_hs256_with_public_key()
    elif make == "expired":
        token = issuer.token(lifetime_s=-120)
    elif make == "not-yet-valid":
        token = issuer.token(nbf=int(__import__("time").time()) + 600)
    elif make == "wrong-audience":
        token = issuer.token(audience="someone-else")
    elif make == "wrong-issuer":
        token = issuer.token(iss="https://evil.example")
    elif make == "unknown-kid":
        token = issuer.token(kid="never-published")
    elif make == "tampered":
        header, payload, signature = issuer.token().split(".")
        import base64

        claims = json.loads(base64.urlsafe_b64decode(payload + "=="))
        claims["repository"] = "acme/other"
        forged = base64.urlsafe_b64encode(json.dumps(claims).encode()).decode().rstrip("=")
        token = f"{header}.{forged}.{signature}"
    elif make == "replayed":
        token = issuer.token()
        assert gateway.exchange(token).status_code == 201
    elif make == "other-repository":
        token = issuer.token(repository="mallory/fork")
    else:
        token = issuer.token(ref="refs/heads/feature")
    response = gateway.exchange(token)
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error", "detail"}
    assert token not in response.text
    events = [entry["data"] for entry in read_entries(journal_path(gateway.state_path))]
    assert any(e.get("event") == "exchange-refused" for e in events)


def test_revoked_and_expired_sessions_cannot_connect(gateway: Gateway) -> None:
    session = gateway.session()
    with gateway.connect(session) as conn:
        conn.execute("SELECT 1")
    response = httpx.delete(
        f"{gateway.http}/v1/sessions/{session['session_id']}",
        headers={"Authorization": f"Bearer {session['secret']}"},
        timeout=10,
    )
    assert response.status_code == 204
    with pytest.raises(psycopg.OperationalError) as refused:
        gateway.connect(session)
    assert "28P01" in str(refused.value.sqlstate) or "revoked" in str(refused.value)

    expiring = gateway.session()
    with sqlite3.connect(gateway.state_path) as db:
        db.execute(
            "UPDATE sessions SET expires_at = ? WHERE id = ?",
            (EXPIRED, expiring["session_id"]),
        )
    with pytest.raises(psycopg.OperationalError):
        gateway.connect(expiring)


def test_http_errors_are_json_and_auth_is_required(gateway: Gateway) -> None:
    session = gateway.session()
    no_auth = httpx.get(f"{gateway.http}/v1/sessions/{session['session_id']}/audit", timeout=10)
    assert no_auth.status_code == 401 and set(no_auth.json()) == {"error", "detail"}
    wrong = httpx.get(
        f"{gateway.http}/v1/sessions/{session['session_id']}/audit",
        headers={"Authorization": "Bearer nope"},
        timeout=10,
    )
    assert wrong.status_code == 401
    bad_body = httpx.post(f"{gateway.http}/v1/sessions", json={"token": 1}, timeout=10)
    assert bad_body.status_code == 422 and bad_body.json()["error"] == "invalid-request"
    unknown_db = gateway.exchange(gateway.token(), database="billing")
    assert unknown_db.status_code == 404
    openapi = httpx.get(f"{gateway.http}/openapi.json", timeout=10).json()
    assert "/v1/sessions" in openapi["paths"]
    assert httpx.get(f"{gateway.http}/healthz", timeout=10).json()["status"] == "ok"


def test_the_database_password_never_leaks(gateway: Gateway) -> None:
    session = gateway.session()
    seen: list[str] = []
    with gateway.connect(session) as conn:
        conn.add_notice_handler(lambda d: seen.append(str(d.message_primary)))
        for row in conn.execute("SHOW ALL").fetchall():
            seen.append(" ".join(map(str, row)))
        with pytest.raises(psycopg.Error) as error:
            conn.execute("SELECT * FROM no_such_table")
        seen.append(str(error.value))
    seen.append(json.dumps(gateway.audit(session)))
    seen.append(gateway.cli("audit", "show").stdout)
    seen.append(gateway.cli("check-config").stdout)
    seen.extend(line.decode() for line in read_lines(journal_path(gateway.state_path)))
    with sqlite3.connect(gateway.state_path) as db:
        seen.extend(str(row) for row in db.execute("SELECT * FROM sessions"))
    assert not any(PASSWORD in text for text in seen)
    assert not any(session["secret"] in text for text in seen[-2:])


def test_the_roles_lock_timeout_is_in_force_on_its_upstream_connections(
    gateway: Gateway,
) -> None:
    session = gateway.session()
    with gateway.connect(session) as conn:
        row = conn.execute("SHOW lock_timeout").fetchone()
    assert row == ("30s",)  # the harness's deployer role: lock_timeout = "30s"
