"""``signoff apply``'s job on GitLab, end to end over loopback HTTP: the merge
request pipeline plans and the gateway writes its sticky MR note; a Developer's
approval note is verified by the gateway; the default branch applies after merge."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import psycopg
import pytest
from ci_flow_harness import MERGED, REPO, Flow, ci_flow

from runner.gatewayclient import GatewayClient, GatewayError
from runner.job import JobOutcome


@pytest.fixture
def flow(scratch_db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Flow]:
    with ci_flow(scratch_db_url, tmp_path, monkeypatch) as made:
        yield made


def regclass(url: str, name: str) -> object:
    with psycopg.connect(url) as conn:
        row = conn.execute("SELECT to_regclass(%s)::text", (name,)).fetchone()
        return row[0] if row else None


def approve(flow: Flow, login: str, plan_hash: str, iid: int = 7) -> int:
    return flow.host.add_comment("gitlab", REPO, iid, login, f"/signoff approve {plan_hash[:12]}")


def test_mr_pipeline_plans_then_the_default_branch_applies(flow: Flow, scratch_db_url: str) -> None:
    planned = flow.run(flow.merge_request_job(), plan_only=True)
    assert planned.outcome is JobOutcome.NEEDS_APPROVAL, (planned.reason, flow.lines)
    assert planned.plan is not None
    mr = flow.host.repo("gitlab", REPO).reviews[7]
    bot = flow.host.user("signoff-bot").id
    notes = [c.body for c in mr.comments if c.author == bot]
    assert len(notes) == 1 and f"/signoff approve {planned.plan.short_hash}" in notes[0]

    # A system note and a Reporter's approval do not count; a Developer's does.
    flow.host.add_comment("gitlab", REPO, 7, "bob", "approved this merge request", system=True)
    approve(flow, "dave", planned.plan.hash)
    waited = flow.run(flow.merge_request_job(), wait_s=0.2)
    assert waited.outcome is JobOutcome.TIMED_OUT
    assert waited.status is not None
    assert [r["rule"] for r in waited.status["refusals"]] == ["permission"]

    approve(flow, "bob", planned.plan.hash)
    flow.host.merge("gitlab", REPO, 7, MERGED)
    applied = flow.run(flow.default_branch_job())
    assert applied.outcome is JobOutcome.APPLIED, (applied.reason, flow.lines)
    assert regclass(scratch_db_url, "visits_old") is None
    assert regclass(scratch_db_url, "notes") == "notes"
    assert applied.status is not None
    assert [a["login"] for a in applied.status["approvers"]] == ["bob"]


def test_a_merge_with_another_plan_in_between_asks_again(flow: Flow, scratch_db_url: str) -> None:
    planned = flow.run(flow.merge_request_job(), plan_only=True)
    assert planned.plan is not None
    approve(flow, "bob", planned.plan.hash)
    flow.host.merge("gitlab", REPO, 7, MERGED)
    # Another migration landed on main before the apply: the plan (and its hash) differ.
    versions = flow.ini.parent / "versions"
    (versions / "99_0a0a0a0a0a0a.py").write_text(
        (versions / "01_6f5e4d3c2b1a.py")
        .read_text()
        .replace('revision = "6f5e4d3c2b1a"', 'revision = "0a0a0a0a0a0a"')
        .replace("down_revision = '1a2b3c4d5e6f'", "down_revision = '6f5e4d3c2b1a'")
        .replace("DROP TABLE visits_old", "DROP TABLE patients")
    )
    result = flow.run(flow.default_branch_job(), wait_s=0.2)
    assert result.outcome is JobOutcome.TIMED_OUT, (result.reason, flow.lines)
    assert result.plan is not None and result.plan.hash != planned.plan.hash
    assert regclass(scratch_db_url, "visits_old") == "visits_old"
    assert regclass(scratch_db_url, "patients") == "patients"


def test_a_gitlab_job_whose_session_ends_in_the_wait_says_what_to_change(
    scratch_db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # GitLab gives a job one ID token and the gateway takes a token once: no renewal.
    with ci_flow(
        scratch_db_url, tmp_path, monkeypatch, session_ttl="2s", max_session_ttl="2s"
    ) as flow:
        with pytest.raises(GatewayError) as refused:
            flow.run(flow.merge_request_job(), wait_s=10.0)
        assert "max_session_ttl" in str(refused.value)
        assert "\n" not in str(refused.value)


def test_a_session_lasts_as_long_as_the_job_asks_within_the_gateways_maximum(
    flow: Flow,
) -> None:
    client = GatewayClient(flow.gateway.http)
    env = flow.merge_request_job()
    session = client.open_session(env["SIGNOFF_ID_TOKEN"], "ehr", ttl_s=7200)
    expires = datetime.fromisoformat(session.expires_at)
    left = (expires - datetime.now(UTC)).total_seconds()
    assert 3500 < left <= 3600  # asked for 2 h; the harness's max_session_ttl is 1 h
