"""The HTTP API under hostile input: every input gets a 4xx JSON error that the
OpenAPI document lists, every refusal is recorded, and no answer repeats more
than a bounded piece of what it was sent."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from gateway_harness import Gateway, running_gateway


@pytest.fixture
def gateway(
    scratch_db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Gateway]:
    with running_gateway(scratch_db_url, tmp_path, monkeypatch) as running:
        yield running


def refusals(gateway: Gateway) -> list[dict[str, Any]]:
    shown = gateway.cli("audit", "show")
    assert shown.returncode == 0, shown.stderr
    records = [json.loads(line) for line in shown.stdout.splitlines()]
    return [r for r in records if r.get("event") == "exchange-refused"]


def test_a_nul_in_a_session_id_is_401_not_500(gateway: Gateway) -> None:
    for path in ("/v1/sessions/so_%00/audit", "/v1/sessions/" + "a" * 5000 + "/audit"):
        response = httpx.get(gateway.http + path, headers={"Authorization": "Bearer x"})
        assert response.status_code == 401, response.text
        assert response.json()["error"] == "unauthenticated"


def test_a_lone_surrogate_in_the_database_is_refused_and_recorded(gateway: Gateway) -> None:
    body = '{"token": "' + gateway.token() + '", "database": "ehr\\ud800"}'
    response = httpx.post(
        gateway.http + "/v1/sessions",
        content=body.encode(),
        headers={"Content-Type": "application/json"},
    )
    assert response.status_code == 422, response.text
    assert response.json()["error"] == "invalid-request"
    [refused] = refusals(gateway)
    assert refused["reason"] == "invalid-request"
    assert "database" in refused["detail"]


def test_a_signed_token_with_a_lone_surrogate_claim_is_refused_and_recorded(
    gateway: Gateway,
) -> None:
    response = gateway.exchange(gateway.token(actor="mallory\ud800"))
    assert response.status_code == 401, response.text
    assert response.json()["error"] == "malformed"
    assert "claims.actor" in response.json()["detail"]
    assert [r["reason"] for r in refusals(gateway)] == ["malformed"]


def test_a_megabyte_database_name_is_not_echoed(gateway: Gateway) -> None:
    response = gateway.exchange(gateway.token(), database="x" * (1 << 20))
    assert response.status_code == 422
    assert len(response.text) < 1000


def test_wrong_methods_say_what_is_allowed(gateway: Gateway) -> None:
    response = httpx.put(gateway.http + "/v1/sessions", json={})
    assert response.status_code == 405
    assert response.headers["allow"] == "POST"
    assert response.json()["error"] == "method-not-allowed"


def test_bodies_that_are_not_json_text_are_400s_the_schema_lists(gateway: Gateway) -> None:
    openapi = httpx.get(gateway.http + "/openapi.json").json()
    assert "400" in openapi["paths"]["/v1/sessions"]["post"]["responses"]
    for body in (b'{"token": "\xff\xfe", "database": "ehr"}', b"[" * 20_000 + b"]" * 20_000):
        response = httpx.post(
            gateway.http + "/v1/sessions",
            content=body,
            headers={"Content-Type": "application/json"},
        )
        assert response.status_code in (400, 422), response.text
        assert str(response.status_code) in openapi["paths"]["/v1/sessions"]["post"]["responses"]
        assert response.json()["error"] in ("bad-request", "invalid-request")
        assert len(response.text) < 1000


def test_no_redirect_copies_the_host_header(gateway: Gateway) -> None:
    response = httpx.get(
        gateway.http + "/healthz/", headers={"Host": "evil.example"}, follow_redirects=False
    )
    assert response.status_code == 404
    assert "location" not in response.headers
