"""What ``signoff apply`` leaves for the people watching the CI job: the job summary
(markdown for ``$GITHUB_STEP_SUMMARY``), the step outputs (``$GITHUB_OUTPUT``),
workflow annotations on the migration files, and the log's closing lines.

Renderers only: a :class:`runner.job.JobResult` in, text out. Writing the files
the CI platform names is :func:`write_github_files`, the one function here that
touches the file system.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from runner.job import JobOutcome, JobResult
from runner.plan.render import apply_report, github_annotations, markdown

_TITLE = {
    JobOutcome.APPLIED: "✅ applied",
    JobOutcome.NOTHING_PENDING: "✅ nothing pending",
    JobOutcome.PLANNED: "✅ planned, nothing needs approval",
    JobOutcome.NEEDS_APPROVAL: "⏸️ waiting for approval",
    JobOutcome.TIMED_OUT: "⏸️ no approval in time",
    JobOutcome.REJECTED: "🛑 rejected",
    JobOutcome.DENIED: "🛑 denied by the gateway's policy",
    JobOutcome.FAILED: "❌ apply failed",
}


def outputs(result: JobResult, *, bundle_uri: str = "") -> dict[str, str]:
    """The step outputs the GitHub Action and the GitLab template expose."""
    plan = result.plan
    applied = len(result.apply.statements) if result.apply else 0
    needs = (
        bool((result.status or {}).get("needs_approval"))
        if result.status
        else bool(plan and plan.needs_approval)
    )
    return {
        "outcome": result.outcome.value,
        "plan-hash": plan.hash if plan else "",
        "needs-approval": "true" if needs else "false",
        "applied-count": str(applied),
        "bundle-uri": bundle_uri,
    }


def summary(result: JobResult) -> str:
    """The job summary: the outcome, the gateway's view of the approval, what ran."""
    plan = result.plan
    status: Mapping[str, Any] = result.status or {}
    out = [f"## Signoff: {_TITLE[result.outcome]}", "", result.reason, ""]
    if status.get("comment_url"):
        out += [f"Plan comment (written by the gateway): {status['comment_url']}", ""]
    approvers = status.get("approvers") or []
    if approvers:
        links = ", ".join(f"[{a['login']}]({a['comment_url']})" for a in approvers)
        out += [f"Approved by {links}, verified by the gateway.", ""]
    refusals = status.get("refusals") or []
    if refusals:
        out += ["Comments that did not count:", ""]
        out += [f"- `{r['rule']}` {r['comment_url']}: {r['reason']}" for r in refusals]
        out.append("")
    if result.apply is not None and plan is not None:
        out += ["```text", apply_report(result.apply, plan, "text").rstrip("\n"), "```", ""]
    if plan is not None:
        out += [markdown(plan)]
    if result.sessions:
        out += [f"Gateway session(s): {', '.join(f'`{s}`' for s in result.sessions)}", ""]
    return "\n".join(out)


def workflow_annotations(result: JobResult) -> str:
    """``::error``/``::warning`` workflow commands on the migration files."""
    return github_annotations(result.plan) if result.plan is not None else ""


def write_github_files(result: JobResult, env: Mapping[str, str], *, bundle_uri: str = "") -> None:
    """Append the outputs and the summary to the files GitHub Actions names, when set."""
    output_path = env.get("GITHUB_OUTPUT")
    if output_path:
        with Path(output_path).open("a", encoding="utf-8") as handle:
            for name, value in outputs(result, bundle_uri=bundle_uri).items():
                handle.write(_output_line(name, value))
    summary_path = env.get("GITHUB_STEP_SUMMARY")
    if summary_path:
        with Path(summary_path).open("a", encoding="utf-8") as handle:
            handle.write(summary(result) + os.linesep)


def _output_line(name: str, value: str) -> str:
    if "\n" not in value:
        return f"{name}={value}\n"
    delimiter = "signoff_" + secrets.token_hex(8)  # GitHub's multiline form
    return f"{name}<<{delimiter}\n{value}\n{delimiter}\n"
