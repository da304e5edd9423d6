"""The gateway's analysis assumes the lock_timeout actually in force: the one the
session's role puts on its upstream connections (roles.*.lock_timeout), none
when the role sets none (a client's startup setting or the server's default may
be 0)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from gateway_harness import Gateway, running_gateway

# A second role, without lock_timeout, for the jobs of another repository.
NO_LOCK_TIMEOUT_ROLE = """
    [[access]]
    database = "ehr"
    role = "reporter"
    issuer = "ci"
    claims = { repository = "acme/reports" }

    [roles.reporter]
    destructive = "needs-approval"
    locking = "allow"
    incompatible = "allow"
"""


@pytest.fixture
def gateway(
    scratch_db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Gateway]:
    with running_gateway(
        scratch_db_url, tmp_path, monkeypatch, extra_config=NO_LOCK_TIMEOUT_ROLE
    ) as running:
        yield running


def rules_of(gateway: Gateway, session: dict[str, Any], text: str) -> list[str]:
    (record,) = [r for r in gateway.audit(session) if r.get("text") == text]
    assert record["decision"] == "allowed"
    return [finding["rule"] for finding in record["findings"]]


def test_lock_timeout_finding_follows_the_roles_setting(gateway: Gateway) -> None:
    alter = "ALTER TABLE visits_old ADD COLUMN note text"
    deployer = gateway.session()  # roles.deployer: lock_timeout = "30s"
    with gateway.connect(deployer) as conn:
        assert conn.execute("SHOW lock_timeout").fetchone() == ("30s",)
        conn.execute(alter)
    assert "SO401" not in rules_of(gateway, deployer, alter)

    reporter = gateway.session(repository="acme/reports")  # no lock_timeout
    again = "ALTER TABLE visits_old ADD COLUMN memo text"
    with gateway.connect(reporter) as conn:
        assert conn.execute("SHOW lock_timeout").fetchone() == ("0",)
        conn.execute(again)
    assert "SO401" in rules_of(gateway, reporter, again)
