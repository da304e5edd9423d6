"""``signoff apply`` as a CI step runs it: a subprocess with the environment GitHub
Actions sets, against the gateway and the loopback GitHub; its exit statuses, step
outputs, job summary and annotations."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from ci_flow_harness import MERGED, REPO, Flow, ci_flow

REPO_ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def flow(scratch_db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Flow]:
    with ci_flow(scratch_db_url, tmp_path, monkeypatch) as made:
        yield made


def step(
    flow: Flow, env: dict[str, str], *args: str
) -> tuple[subprocess.CompletedProcess[str], dict[str, str], str]:
    outputs = flow.tmp / f"output-{len(flow.lines)}"
    summary = flow.tmp / f"summary-{len(flow.lines)}"
    flow.lines.append("step")
    run = subprocess.run(
        [sys.executable, "-m", "runner.cli", "apply", *args],
        env={
            **{k: v for k, v in os.environ.items() if not k.startswith(("GITHUB_", "CI_"))},
            **env,
            "SIGNOFF_GATEWAY_URL": flow.gateway.http,
            "SIGNOFF_DATABASE": "ehr",
            "SIGNOFF_AUDIENCE": "signoff-gateway",
            "SIGNOFF_ALEMBIC_INI": str(flow.ini),
            "GITHUB_OUTPUT": str(outputs),
            "GITHUB_STEP_SUMMARY": str(summary),
        },
        capture_output=True,
        text=True,
        check=False,
        cwd=REPO_ROOT,
        timeout=120,
    )
    values = {}
    if outputs.exists():
        for line in outputs.read_text().splitlines():
            name, _, value = line.partition("=")
            values[name] = value
    return run, values, summary.read_text() if summary.exists() else ""


def test_the_pr_step_then_the_main_step(flow: Flow) -> None:
    planned, outputs, summary = step(flow, flow.pull_request_job(), "--plan-only")
    assert planned.returncode == 3, planned.stderr
    assert outputs["needs-approval"] == "true"
    plan_hash = outputs["plan-hash"]
    assert len(plan_hash) == 64
    assert "waiting for approval" in summary
    assert "::error file=" in planned.stdout and "SO101" in planned.stdout
    assert "Traceback" not in planned.stderr

    flow.approve("bob", plan_hash)
    flow.host.merge("github", REPO, 7, MERGED)
    applied, outputs, summary = step(flow, flow.push_job(), "--wait", "10s")
    assert applied.returncode == 0, applied.stderr
    assert outputs["applied-count"] != "0"
    assert outputs["plan-hash"] == plan_hash
    assert "Approved by [bob]" in summary
    assert "signoff: applied" in applied.stderr
    # the session secret and the gateway's code-host token never reach the log
    assert os.environ["SIGNOFF_TEST_GITHUB_TOKEN"] not in applied.stderr + applied.stdout


def test_a_job_without_id_token_permission_says_what_to_add(flow: Flow) -> None:
    env = flow.pull_request_job()
    del env["ACTIONS_ID_TOKEN_REQUEST_URL"], env["ACTIONS_ID_TOKEN_REQUEST_TOKEN"]
    run, _, _ = step(flow, env, "--plan-only")
    assert run.returncode == 2
    assert "permissions: id-token: write" in run.stderr
    assert len(run.stderr.strip().splitlines()) == 1


def test_an_unreachable_gateway_is_one_line(flow: Flow) -> None:
    env = {**flow.pull_request_job(), "SIGNOFF_GATEWAY_URL": "http://127.0.0.1:9"}
    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "runner.cli",
            "apply",
            "--gateway-url",
            "http://127.0.0.1:9",
            "--database",
            "ehr",
            "--alembic-ini",
            str(flow.ini),
            "--plan-only",
        ],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        check=False,
        cwd=REPO_ROOT,
    )
    assert run.returncode == 2
    assert "cannot reach the gateway" in run.stderr
    assert "Traceback" not in run.stderr
