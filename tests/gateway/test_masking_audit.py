"""What masking leaves in the evidence: the attestation carries the policy's digest,
replay shows what was masked (never a value), and COPY masked row by row when the
policy says so."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from datetime import date
from pathlib import Path

import httpx
import psycopg
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from gateway_harness import Gateway
from masking_harness import BIRTH_DATES, EMAILS, PHONES, SSNS, leaked, masking_gateway, migrator

from runner.audit.replay import masked_label, outcome_text
from runner.gateway.config import load_gateway_config

PHI = SSNS + EMAILS + PHONES + BIRTH_DATES


@pytest.fixture
def gateway(
    scratch_db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Gateway]:
    key = tmp_path / "gateway-ed25519.pem"
    key.write_bytes(
        Ed25519PrivateKey.generate().private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    with masking_gateway(
        scratch_db_url, tmp_path, monkeypatch, copy="mask", non_text="constant", signing_key=key
    ) as running:
        yield running


def test_the_attestation_carries_the_masking_policy_digest(gateway: Gateway) -> None:
    session = migrator(gateway)
    with gateway.connect(session) as conn:
        conn.execute("SELECT ssn FROM ehr.patients").fetchall()
    response = httpx.get(
        f"{gateway.http}/v1/sessions/{session['session_id']}/attestation",
        headers={"Authorization": f"Bearer {session['secret']}"},
        timeout=10,
    )
    assert response.status_code == 200, response.text
    envelope = response.json()
    statement = json.loads(base64.b64decode(envelope["payload"]))
    digest = load_gateway_config(gateway.config_path).masking.digest()
    assert digest is not None and len(digest) == 64
    assert statement["predicate"]["masking_policy_digest"] == digest


def test_replay_shows_what_was_masked(gateway: Gateway) -> None:
    session = migrator(gateway)
    with gateway.connect(session) as conn:
        conn.execute("SELECT id, ssn, upper(email) AS e FROM ehr.patients").fetchall()
    record = next(r for r in gateway.audit(session) if "upper(email)" in str(r.get("text")))
    shown = outcome_text(record)
    assert "masked ehr.patients.ssn (ssn: keep_last)" in shown
    assert "e <- ehr.patients.email (email: redact)" in shown
    assert masked_label("legacy") == "legacy"
    assert leaked(PHI, shown) == []


def test_copy_out_is_masked_row_by_row_when_the_policy_says_so(gateway: Gateway) -> None:
    session = migrator(gateway)
    with gateway.connect(session) as conn:
        with conn.cursor().copy("COPY ehr.patients (id, ssn, email, notes) TO STDOUT") as copy:
            text = b"".join(bytes(c) for c in copy).decode()
        with conn.cursor().copy(
            "COPY (SELECT id, upper(ssn) FROM ehr.patients) TO STDOUT WITH (FORMAT csv)"
        ) as copy:
            csv = b"".join(bytes(c) for c in copy).decode()
    assert text.splitlines()[0] == "1\t***-**-6789\t***@example.org\tcall [REDACTED] after 5pm"
    assert csv.splitlines()[0] == "1,"  # a computed column of a COPY (type unknown): NULL
    assert leaked(PHI, text + csv) == []
    record = next(r for r in gateway.audit(session) if "(id, ssn" in str(r.get("text")))
    assert {c["column"] for c in record["masked_columns"]} == {
        "ehr.patients.ssn",
        "ehr.patients.email",
    }
    with psycopg.connect(gateway.upstream_url) as direct:
        assert direct.execute("SELECT count(*) FROM ehr.patients").fetchone() == (3,)


def test_non_text_values_become_a_constant_of_their_type_by_policy(gateway: Gateway) -> None:
    with gateway.connect(migrator(gateway)) as conn:
        text = conn.execute("SELECT date_of_birth FROM ehr.patients WHERE id = 1").fetchone()
        with conn.cursor(binary=True) as cur:  # binary: no constant is written, NULL
            binary = cur.execute("SELECT date_of_birth FROM ehr.patients WHERE id = 1").fetchone()
    assert text == (date(1900, 1, 1),)
    assert binary == (None,)
