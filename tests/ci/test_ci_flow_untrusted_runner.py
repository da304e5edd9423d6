"""A runner that lies to the gateway gets nothing: the review desk checks what it is
told against the session's verified token and the code host, and the proxy refuses
what no grant covers. Each case talks to the gateway's real HTTP API and PG port."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from ci_flow_harness import HEAD, REPO, Flow, ci_flow

from runner import command
from runner.config import Settings
from runner.gatewayclient import GatewayClient, GatewayError, GatewaySession
from runner.job import JobOutcome
from runner.plan.model import Plan, plan_hash, sha256_hex


@pytest.fixture
def flow(scratch_db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Flow]:
    with ci_flow(scratch_db_url, tmp_path, monkeypatch) as made:
        yield made


def pr_session(flow: Flow, number: int = 7) -> tuple[GatewayClient, GatewaySession]:
    client = GatewayClient(flow.gateway.http)
    token = flow.gateway.token(ref=f"refs/pull/{number}/merge", environment=None)
    return client, client.open_session(token, "ehr")


def make_plan(flow: Flow, session: GatewaySession) -> Plan:
    return command.plan(flow.ini, Settings(), database_url=session.conninfo(), target="ehr")


def review(number: int = 7, head: str = HEAD) -> dict[str, Any]:
    return {"platform": "github", "repository": REPO, "number": number, "head_sha": head}


def test_a_runner_that_skips_approval_is_refused_by_the_gateway(
    flow: Flow, scratch_db_url: str
) -> None:
    _client, session = pr_session(flow)
    with psycopg.connect(session.conninfo(), autocommit=True) as conn:
        with pytest.raises(psycopg.errors.InsufficientPrivilege) as refused:
            conn.execute("DROP TABLE visits_old")
        assert "SO101" in str(refused.value) or "approval" in str(refused.value)
    with psycopg.connect(scratch_db_url) as conn:
        assert conn.execute("SELECT to_regclass('visits_old')").fetchone() == ("visits_old",)


def test_another_prs_number_than_the_token_was_minted_for_is_refused(flow: Flow) -> None:
    client, session = pr_session(flow, number=7)
    plan = make_plan(flow, session)
    with pytest.raises(GatewayError) as refused:
        client.submit_plan(session, plan.to_json(), review(number=8, head="e5" * 20))
    assert refused.value.status == 403
    assert refused.value.error == "wrong-review"
    # and nothing was written on PR 8
    assert flow.host.repo("github", REPO).reviews[8].comments == []


def test_another_repository_than_the_tokens_is_refused(flow: Flow) -> None:
    client, session = pr_session(flow)
    plan = make_plan(flow, session)
    with pytest.raises(GatewayError) as refused:
        client.submit_plan(session, plan.to_json(), {**review(), "repository": "acme/other"})
    assert (refused.value.status, refused.value.error) == (403, "wrong-repository")


def test_a_fake_comment_id_as_evidence_is_not_an_approval(flow: Flow) -> None:
    client, session = pr_session(flow)
    plan = make_plan(flow, session)
    client.submit_plan(session, plan.to_json(), review())
    other = flow.host.add_comment("github", REPO, 8, "bob", f"/signoff approve {plan.short_hash}")
    status = client.approve(session, plan.hash, [str(other)])
    assert status["state"] == "waiting"
    assert [r["rule"] for r in status["refusals"]] == ["this-review"]
    assert status["grants"] == []


def test_approval_of_a_plan_that_is_not_the_one_commented_is_refused(flow: Flow) -> None:
    client, session = pr_session(flow)
    plan = make_plan(flow, session)
    client.submit_plan(session, plan.to_json(), review())
    flow.approve("bob", plan.hash)
    # The runner now asks about a plan it never submitted (say, one with more DROPs).
    with pytest.raises(GatewayError) as refused:
        client.plan_status(session, "ab" * 32)
    assert refused.value.status == 404


def test_a_plan_whose_findings_were_stripped_is_analysed_again(flow: Flow) -> None:
    client, session = pr_session(flow)
    plan = make_plan(flow, session)
    data = plan.to_json()
    for statement in data["statements"]:
        statement["findings"] = []  # the runner claims nothing needs approval
    data["needs_approval"] = False
    client.submit_plan(session, data, review())
    status = client.plan_status(session, plan.hash)
    assert status["state"] == "waiting"
    assert [s["rules"] for s in status["needs_approval"]] == [["SO101"]]


def test_a_statement_that_hides_a_second_one_is_refused(flow: Flow) -> None:
    client, session = pr_session(flow)
    plan = make_plan(flow, session)
    data = json.loads(plan.dumps())
    first = data["statements"][0]
    text = first["text"] + ";\nDROP TABLE patients"
    first["text"] = text
    first["sha256"] = sha256_hex(text)
    data["hash"] = _rehash(data)  # a consistent plan: only the split gives it away
    with pytest.raises(GatewayError) as refused:
        client.submit_plan(session, data, review())
    assert refused.value.status == 422
    assert "do not split" in str(refused.value)


def _rehash(data: dict[str, Any]) -> str:
    return plan_hash(
        data["target"],
        [r["id"] for r in data["revisions"]],
        [s["sha256"] for s in data["statements"]],
        data["ruleset"],
    )


def test_a_session_that_ends_during_the_wait_is_renewed_with_a_fresh_token(
    scratch_db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with ci_flow(
        scratch_db_url, tmp_path, monkeypatch, session_ttl="3s", max_session_ttl="3s"
    ) as flow:
        planned = flow.run(flow.pull_request_job(), plan_only=True)
        assert planned.plan is not None
        plan_hash_ = planned.plan.hash
        minted = flow.tokens.minted
        # The approval comes after the job's first session has ended.
        approver = threading.Timer(4.0, lambda: flow.approve("bob", plan_hash_))
        approver.start()
        try:
            result = flow.run(flow.comment_job(), wait_s=15.0)
        finally:
            approver.cancel()
        assert result.outcome is JobOutcome.APPLIED, (result.reason, flow.lines)
        assert len(result.sessions) >= 2
        assert flow.tokens.minted - minted == len(result.sessions)  # one fresh token each
        assert any("ended (session-ended); opening a new one" in line for line in flow.lines)
        with psycopg.connect(scratch_db_url) as conn:
            assert conn.execute("SELECT to_regclass('visits_old')").fetchone() == (None,)
