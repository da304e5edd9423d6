"""The HTTP API against its own OpenAPI document: schemathesis generates valid and
invalid requests for every operation (bounded examples), sends them over real HTTP
to a running gateway, and runs every check; session endpoints are called with a
real session's secret as well as without one."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import schemathesis
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from gateway_harness import Gateway, running_gateway
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import CHECKS
from schemathesis.core.failures import FailureGroup

from runner.dryrun.scratch import scratch_database


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory, pg_url: str) -> Iterator[Gateway]:
    monkeypatch = pytest.MonkeyPatch()
    where = tmp_path_factory.mktemp("gw")
    key = where / "gateway-ed25519.pem"
    key.write_bytes(
        Ed25519PrivateKey.generate().private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    try:
        with (
            scratch_database(pg_url, prefix="signoff_test") as url,
            running_gateway(url, where, monkeypatch, signing_key=key) as gateway,
        ):
            yield gateway
    finally:
        monkeypatch.undo()


@pytest.fixture(scope="module")
def session(live: Gateway) -> dict[str, Any]:
    return live.session()


def test_every_operation_keeps_its_contract(live: Gateway, session: dict[str, Any]) -> None:
    api = schemathesis.openapi.from_url(f"{live.http}/openapi.json")
    checks = list(CHECKS.get_all())
    operations = [result.ok() for result in api.get_all_operations()]
    assert len(operations) >= 8
    failures: list[str] = []
    for operation in operations:

        @given(case=operation.as_strategy())
        @settings(
            max_examples=25,
            deadline=None,
            suppress_health_check=list(HealthCheck),
            derandomize=True,
            database=None,
        )
        def run(case: Any) -> None:
            headers: dict[str, str] = {}
            parameters = case.path_parameters or {}
            # Half the cases with the real session (past authentication), half as generated.
            if "session_id" in parameters and hash(str(parameters)) % 2 == 0:
                parameters["session_id"] = session["session_id"]
                headers["Authorization"] = f"Bearer {session['secret']}"
            case.call_and_validate(headers=headers, checks=checks)

        try:
            run()
        except (Exception, FailureGroup) as failure:  # run every operation, report all
            failures.append(f"{operation.method.upper()} {operation.path}: {failure!r}")
    assert not failures, "\n\n".join(failures)


def test_the_document_is_served(live: Gateway) -> None:
    document = httpx.get(f"{live.http}/openapi.json").json()
    assert "/v1/sessions/{session_id}/plans" in document["paths"]
