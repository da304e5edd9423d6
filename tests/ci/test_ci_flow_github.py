"""``signoff apply``'s job on GitHub, end to end over loopback HTTP: plan on the
pull request, the gateway's sticky comment, an approval verified by the gateway,
apply after merge and apply from the PR; and what gets no grant."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest
from ci_flow_harness import HEAD, MERGED, REPO, Flow, ci_flow

from runner.job import JobOutcome


@pytest.fixture
def flow(scratch_db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Flow:
    with ci_flow(scratch_db_url, tmp_path, monkeypatch) as made:
        yield made  # type: ignore[misc]


def table_exists(url: str, name: str) -> bool:
    with psycopg.connect(url) as conn:
        row = conn.execute("SELECT to_regclass(%s) IS NOT NULL", (name,)).fetchone()
        return bool(row and row[0])


def audit_records(flow: Flow, session_id: str | None = None) -> list[dict[str, Any]]:
    args = ["audit", "show"] + (["--session", session_id] if session_id else [])
    shown = flow.gateway.cli(*args)
    assert shown.returncode == 0, shown.stderr
    return [json.loads(line) for line in shown.stdout.splitlines()]


def bot_comments(flow: Flow, marker: str, number: int = 7) -> list[str]:
    review = flow.host.repo("github", REPO).reviews[number]
    bot = flow.host.user("signoff-bot").id
    return [c.body for c in review.comments if c.author == bot and c.body.startswith(marker)]


def plan_comments(flow: Flow, number: int = 7) -> list[str]:
    return bot_comments(flow, "<!-- signoff:plan db=ehr -->", number)


def test_plan_on_the_pr_then_apply_after_merge(flow: Flow, scratch_db_url: str) -> None:
    planned = flow.run(flow.pull_request_job(), plan_only=True)
    assert planned.outcome is JobOutcome.NEEDS_APPROVAL, planned.reason
    assert planned.exit_status == 3
    plan = planned.plan
    assert plan is not None
    [comment] = plan_comments(flow)
    assert f"/signoff approve {plan.short_hash}" in comment
    assert "DROP TABLE visits_old" in comment
    assert HEAD[:12] in comment
    assert table_exists(scratch_db_url, "visits_old")  # nothing ran

    flow.approve("bob", plan.hash)
    flow.host.merge("github", REPO, 7, MERGED)
    applied = flow.run(flow.push_job())
    assert applied.outcome is JobOutcome.APPLIED, (applied.reason, flow.lines)
    assert applied.exit_status == 0
    assert not table_exists(scratch_db_url, "visits_old")
    assert table_exists(scratch_db_url, "notes")
    assert applied.status is not None and applied.status["state"] == "approved"
    assert [a["login"] for a in applied.status["approvers"]] == ["bob"]

    # The grant's approver and comment are in the audit record of the DROP.
    records = audit_records(flow, applied.sessions[-1])
    drops = [r for r in records if "DROP TABLE visits_old" in str(r.get("text"))]
    assert len(drops) == 1, records
    drop = drops[0]
    assert drop["decision"] == "approved", drop
    assert drop["grant"]["approver"] == "bob"
    assert drop["grant"]["evidence_url"].startswith(flow.host.base_url)
    assert any(r.get("event") == "plan-approved" for r in records)
    # The sticky comment was not rewritten by the apply after merge; the gateway's
    # status comment, from its own audit records, says what ran and on whose approval.
    assert len(plan_comments(flow)) == 1
    [status] = bot_comments(flow, "<!-- signoff:status db=ehr -->")
    assert "applied" in status and "bob" in status
    assert "9 of 9 statement(s) completed" in status


def test_apply_from_the_pr_on_the_approval_comment(flow: Flow, scratch_db_url: str) -> None:
    planned = flow.run(flow.pull_request_job(), plan_only=True)
    assert planned.plan is not None
    comment_id = flow.approve("erin", planned.plan.hash)
    applied = flow.run(flow.comment_job(comment_id=comment_id))
    assert applied.outcome is JobOutcome.APPLIED, (applied.reason, flow.lines)
    assert not table_exists(scratch_db_url, "visits_old")


def test_waiting_times_out_with_exit_3_and_says_how_to_continue(flow: Flow) -> None:
    result = flow.run(flow.pull_request_job(), wait_s=0.3)
    assert result.outcome is JobOutcome.TIMED_OUT
    assert result.exit_status == 3
    assert "re-run this job" in result.reason
    assert any(line.startswith("waiting for approval on acme/ehr-api#7") for line in flow.lines)
    assert any("left)" in line for line in flow.lines)
    # who may approve, as the gateway's settings say
    assert any("with `write` permission who is not the author" in line for line in flow.lines)


def test_reject_stops_the_job(flow: Flow, scratch_db_url: str) -> None:
    planned = flow.run(flow.pull_request_job(), plan_only=True)
    assert planned.plan is not None
    flow.approve("bob", planned.plan.hash)
    flow.host.add_comment("github", REPO, 7, "erin", "/signoff reject not during the audit")
    result = flow.run(flow.comment_job())
    assert result.outcome is JobOutcome.REJECTED
    assert result.exit_status == 1
    assert "erin" in result.reason
    assert table_exists(scratch_db_url, "visits_old")


@pytest.mark.parametrize(
    ("who", "rule"),
    [
        ("carol", "not-author"),  # the PR's author
        ("alice", "not-actor"),  # the job's actor (the token's actor claim)
        ("dave", "permission"),  # read-only
        ("renovate[bot]", "not-bot"),
    ],
)
def test_approvals_that_do_not_count_give_no_grant_and_say_which_rule(
    flow: Flow, scratch_db_url: str, caplog: pytest.LogCaptureFixture, who: str, rule: str
) -> None:
    caplog.set_level(logging.INFO, logger="signoff.gateway.review")
    planned = flow.run(flow.pull_request_job(), plan_only=True)
    assert planned.plan is not None
    flow.approve(who, planned.plan.hash)
    result = flow.run(flow.pull_request_job(), wait_s=0.2)
    assert result.outcome is JobOutcome.TIMED_OUT
    assert result.status is not None
    assert [r["rule"] for r in result.status["refusals"]] == [rule]
    assert f"rule={rule}" in flow.gateway_log(caplog)
    assert table_exists(scratch_db_url, "visits_old")
    records = audit_records(flow)
    assert not [r for r in records if r.get("kind") == "grant" or r.get("grant")]
    assert not [r for r in records if r.get("event") == "plan-approved"]


def test_an_edited_stale_or_early_approval_gives_no_grant(flow: Flow, scratch_db_url: str) -> None:
    planned = flow.run(flow.pull_request_job(), plan_only=True)
    plan = planned.plan
    assert plan is not None
    edited = flow.approve("bob", "0" * 12)
    flow.host.edit_comment("github", REPO, 7, edited, f"/signoff approve {plan.short_hash}")
    flow.approve("erin", "f" * 12)  # another plan's hash
    result = flow.run(flow.pull_request_job(), wait_s=0.2)
    assert result.status is not None
    assert sorted(r["rule"] for r in result.status["refusals"]) == ["not-edited", "plan-hash"]

    # An approval made before the latest push: the plan comment is for the old head.
    flow.approve("erin", plan.hash)
    flow.host.push("github", REPO, 7, "f6" * 20)
    pushed = flow.run(flow.pull_request_job(head="f6" * 20), wait_s=0.2)
    assert pushed.outcome is JobOutcome.TIMED_OUT
    assert pushed.status is not None
    assert "after-plan-comment" in {r["rule"] for r in pushed.status["refusals"]}
    assert table_exists(scratch_db_url, "visits_old")


def test_an_approval_on_another_pr_does_not_count(flow: Flow) -> None:
    planned = flow.run(flow.pull_request_job(), plan_only=True)
    assert planned.plan is not None
    flow.approve("bob", planned.plan.hash, number=8)
    result = flow.run(flow.pull_request_job(), wait_s=0.2)
    assert result.outcome is JobOutcome.TIMED_OUT
    assert result.status is not None and result.status["approvers"] == []


def test_a_second_apply_waits_for_the_first_and_fails_clearly_at_lock_wait(
    flow: Flow, scratch_db_url: str
) -> None:
    from runner.apply import advisory_lock_key

    planned = flow.run(flow.pull_request_job(), plan_only=True)
    assert planned.plan is not None
    flow.approve("bob", planned.plan.hash)
    # Another pipeline's apply holds the database's apply lock (through the upstream).
    with psycopg.connect(scratch_db_url, autocommit=True) as other:
        other.execute("SELECT pg_advisory_lock(%s)", (advisory_lock_key(flow.gateway.database),))
        blocked = flow.run(flow.comment_job(), lock_wait_s=1.0)
    assert blocked.outcome is JobOutcome.FAILED
    assert blocked.apply is not None and blocked.apply.outcome.value == "lock-timeout"
    assert any("another apply holds the lock on" in line for line in flow.lines)
    assert table_exists(scratch_db_url, "visits_old")
    # Once the other apply is done, the same approval applies (the grants were never used).
    applied = flow.run(flow.comment_job())
    assert applied.outcome is JobOutcome.APPLIED, (applied.reason, flow.lines)
    assert not table_exists(scratch_db_url, "visits_old")


def test_the_pull_request_job_plans_as_the_deployer_but_can_change_nothing(
    flow: Flow, scratch_db_url: str
) -> None:
    planned = flow.run(flow.pull_request_job(), plan_only=True)
    assert planned.outcome is JobOutcome.NEEDS_APPROVAL  # not "denied": reviewed as deployer
    assert planned.plan is not None
    flow.approve("bob", planned.plan.hash)
    # Even approved, the PR's own job cannot apply: its role denies what it would run.
    result = flow.run(flow.pull_request_job())
    assert result.outcome is JobOutcome.FAILED, (result.reason, flow.lines)
    assert table_exists(scratch_db_url, "visits_old")


def test_online_apply_runs_alembic_through_the_gateway_under_the_same_grants(
    flow: Flow, scratch_db_url: str
) -> None:
    planned = flow.run(flow.pull_request_job(), plan_only=True)
    assert planned.plan is not None
    comment_id = flow.approve("bob", planned.plan.hash)
    applied = flow.run(flow.comment_job(comment_id=comment_id), online=True)
    assert applied.outcome is JobOutcome.APPLIED, (applied.reason, flow.lines)
    assert "online with alembic" in applied.reason
    assert not table_exists(scratch_db_url, "visits_old")
    records = audit_records(flow, applied.sessions[-1])
    drops = [r for r in records if "DROP TABLE visits_old" in str(r.get("text"))]
    assert [d["decision"] for d in drops] == ["approved"]
    assert drops[0]["grant"]["approver"] == "bob"


def test_online_apply_without_approval_is_stopped_by_the_gateway(
    flow: Flow, scratch_db_url: str
) -> None:
    # A runner that claims "online" cannot skip the grant: alembic's DROP is refused.
    from runner.apply import OnlineRun, apply_plan
    from runner.gatewayclient import GatewayClient

    client = GatewayClient(flow.gateway.http)
    session = client.open_session(flow.gateway.token(), "ehr")
    from runner import command
    from runner.config import Settings

    plan = command.plan(flow.ini, Settings(), database_url=session.conninfo(), target="ehr")
    report = apply_plan(session.conninfo(), plan, online=OnlineRun(flow.ini, session.conninfo()))
    assert report.outcome.value == "failed"
    assert "42501" in report.reason or "approval" in report.reason
    assert table_exists(scratch_db_url, "visits_old")


def test_every_run_leaves_a_bundle_the_gateways_key_verifies(
    flow: Flow, scratch_db_url: str
) -> None:
    from runner.audit.offline import verify_bundle

    public_key = httpx.get(f"{flow.gateway.http}/.well-known/signoff/attestation-key.pem").text
    planned = flow.run(flow.pull_request_job(), plan_only=True)
    assert planned.evidence is not None and planned.evidence.signed  # a plan-only run too
    assert planned.plan is not None
    flow.approve("bob", planned.plan.hash)
    flow.host.merge("github", REPO, 7, MERGED)
    applied = flow.run(flow.push_job())
    assert applied.outcome is JobOutcome.APPLIED
    assert applied.evidence is not None
    report = verify_bundle(applied.evidence.path, public_key)
    assert report.ok, report
    assert applied.evidence.path.name.endswith(f"{planned.plan.short_hash}.tar.gz")
    # The CLI says the same, one line per check, exit 0; a flipped byte fails.
    key_file = flow.tmp / "gateway.pub.pem"
    key_file.write_text(public_key)
    verify = [sys.executable, "-m", "runner.cli", "audit", "verify"]
    shown = subprocess.run(
        [*verify, str(applied.evidence.path), "--public-key", str(key_file)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert shown.returncode == 0, shown.stdout + shown.stderr
    tampered = flow.tmp / "tampered.tar.gz"
    data = bytearray(applied.evidence.path.read_bytes())
    data[len(data) // 2] ^= 0x01
    tampered.write_bytes(bytes(data))
    failed = subprocess.run(
        [*verify, str(tampered), "--public-key", str(key_file)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert failed.returncode != 0


def test_the_gateway_archives_each_closed_session_itself(flow: Flow, scratch_db_url: str) -> None:
    from runner.audit.offline import verify_bundle

    planned = flow.run(flow.pull_request_job(), plan_only=True)
    assert planned.plan is not None
    flow.approve("bob", planned.plan.hash)
    flow.host.merge("github", REPO, 7, MERGED)
    applied = flow.run(flow.push_job())
    assert applied.outcome is JobOutcome.APPLIED
    public_key = httpx.get(f"{flow.gateway.http}/.well-known/signoff/attestation-key.pem").text
    archived = {p.name: p for p in (flow.tmp / "gateway-archive").rglob("*.tar.gz")}
    # Both jobs closed their sessions; the gateway kept each one's bundle, signed.
    for session_id in planned.sessions + applied.sessions:
        path = archived[f"{session_id}.tar.gz"]
        report = verify_bundle(path, public_key)
        assert report.ok, report
    records = audit_records(flow, applied.sessions[-1])
    assert any(r.get("event") == "session-archived" for r in records)


def test_a_session_never_closed_is_archived_by_the_sweep_once(
    scratch_db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import time
    from datetime import UTC, datetime, timedelta

    from runner.audit.offline import verify_bundle
    from runner.gatewayclient import GatewayClient

    with ci_flow(
        scratch_db_url, tmp_path, monkeypatch, session_ttl="2s", max_session_ttl="2s"
    ) as flow:
        client = GatewayClient(flow.gateway.http)
        # A runner that opens a session, runs a statement and is killed: no DELETE.
        session = client.open_session(flow.gateway.token(), "ehr")
        with psycopg.connect(session.conninfo(), autocommit=True) as conn:
            conn.execute("SELECT count(*) FROM patients")
        time.sleep(2.5)
        service = flow.gateway.running.running.service
        assert service is not None
        window = (datetime.now(UTC) - timedelta(minutes=5), datetime.now(UTC))
        assert service.sweep_archive(*window) == [session.session_id]
        assert service.sweep_archive(*window) == []  # already in the archive: once
        public_key = httpx.get(f"{flow.gateway.http}/.well-known/signoff/attestation-key.pem").text
    [path] = list((tmp_path / "gateway-archive").rglob(f"{session.session_id}.tar.gz"))
    checks = {c.name: c for c in verify_bundle(path, public_key).checks}
    assert checks["signature"].ok and checks["chain"].ok and checks["identity"].ok
    # The evidence shows what the killed runner did: a read outside any plan.
    assert not checks["plan"].ok and "not housekeeping" in checks["plan"].detail
