"""The CI job: what ``signoff apply`` does in a GitHub Actions or GitLab CI job.

1. mint the job's OIDC token (right before each exchange, never before a wait)
   and exchange it for a gateway session;
2. plan the pending alembic migrations, reading the target's revision, server
   version and column types *through the gateway* (the session is the only
   path to the database);
3. submit the plan to the gateway, which analyses it again with its own rules,
   writes the sticky PR/MR comment with its own credential, and answers which
   statements need approval;
4. wait for the gateway to verify an approval on the PR/MR (polling with
   backoff; a session that ends during a long wait is replaced by a fresh one,
   with a freshly minted token, and the plan submitted again);
5. apply the plan through the gateway's PostgreSQL port (runner.apply).

This module knows nothing of the command line: options in, a :class:`JobResult`
out, progress lines through ``say``. Rendering (job summary, step outputs,
annotations) is runner.jobreport's.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any

from runner.apply import ApplyOptions, ApplyReport, LockWaiting, OnlineRun, Outcome, apply_plan
from runner.config import Settings
from runner.dryrun.executor import StatementDone
from runner.errors import SignoffError
from runner.evidence import Evidence, EvidenceOptions, collect
from runner.gatewayclient import GatewayClient, GatewayError, GatewaySession
from runner.identity import CiContext, TokenSource, ci_context, token_source
from runner.plan.model import Plan
from runner.plan.render import first_line

Say = Callable[[str], None]


class JobOutcome(StrEnum):
    APPLIED = "applied"  # the plan ran through the gateway and is committed
    NOTHING_PENDING = "nothing-pending"  # no pending revision
    PLANNED = "planned"  # --plan-only: submitted; nothing needs approval
    NEEDS_APPROVAL = "needs-approval"  # --plan-only: submitted; waits for a reviewer
    TIMED_OUT = "timed-out"  # no approval within --wait
    REJECTED = "rejected"  # a reviewer posted /signoff reject
    DENIED = "denied"  # a statement the gateway's policy never allows
    FAILED = "failed"  # apply stopped at a failing statement or could not start


_EXIT = {
    JobOutcome.APPLIED: 0,
    JobOutcome.NOTHING_PENDING: 0,
    JobOutcome.PLANNED: 0,
    JobOutcome.NEEDS_APPROVAL: 3,
    JobOutcome.TIMED_OUT: 3,
    JobOutcome.REJECTED: 1,
    JobOutcome.DENIED: 1,
    JobOutcome.FAILED: 1,
}


@dataclass(frozen=True)
class JobOptions:
    gateway_url: str
    database: str
    alembic_ini: Path
    settings: Settings = field(default_factory=Settings)
    audience: str = "signoff"
    check_audience: bool = False
    id_token_file: Path | None = None
    plan_only: bool = False
    wait_s: float = 30 * 60
    lock_wait_s: float = 10 * 60
    lock_timeout_ms: int | None = 5_000
    statement_timeout_ms: int | None = 15 * 60 * 1000
    online: bool = False  # alembic online through the gateway instead of the planned SQL
    poll_min_s: float = 5.0
    poll_max_s: float = 30.0
    # The session's audit bundle, written and stored at the end of every run
    # (None: not collected, e.g. in tests of the flow itself).
    evidence: EvidenceOptions | None = None


@dataclass
class JobResult:
    outcome: JobOutcome
    reason: str
    context: CiContext
    plan: Plan | None = None
    status: Mapping[str, Any] | None = None  # the gateway's last answer on the plan
    apply: ApplyReport | None = None
    sessions: list[str] = field(default_factory=list)
    evidence: Evidence | None = None
    evidence_error: str | None = None  # the bundle could not be stored (it is spooled)

    @property
    def exit_status(self) -> int:
        status = _EXIT[self.outcome]
        return 1 if status == 0 and self.evidence_error else status

    def to_json(self) -> dict[str, Any]:
        return {
            "outcome": self.outcome.value,
            "reason": self.reason,
            "plan_hash": self.plan.hash if self.plan else None,
            "status": dict(self.status) if self.status else None,
            "apply": self.apply.to_json() if self.apply else None,
            "sessions": list(self.sessions),
            "context": self.context.as_dict(),
            "bundle": str(self.evidence.path) if self.evidence else None,
            "bundle_uri": self.evidence.uri if self.evidence else None,
            "evidence_error": self.evidence_error,
        }


class _Job:
    """One run: the session it holds now, re-opened when the gateway ends it."""

    def __init__(
        self, options: JobOptions, env: Mapping[str, str], say: Say, sleep: Callable[[float], None]
    ) -> None:
        self.options = options
        self.say = say
        self.sleep = sleep
        self.context = ci_context(env)
        self.tokens: TokenSource = token_source(
            env,
            audience=options.audience,
            id_token_file=options.id_token_file,
            check_audience=options.check_audience,
        )
        self.client = GatewayClient(options.gateway_url)
        self.sessions: list[GatewaySession] = []
        self.plan: Plan | None = None

    @property
    def session(self) -> GatewaySession:
        return self.sessions[-1]

    def open(self) -> GatewaySession:
        token = self.tokens.token()  # minted now: a token from before a wait may have expired
        # Long enough for the wait and the apply, where the gateway allows it (a GitLab
        # job has one ID token, which the gateway takes once: it cannot renew).
        options = self.options
        ttl = 0.0 if options.plan_only else options.wait_s + options.lock_wait_s + 15 * 60
        session = self.client.open_session(token, options.database, ttl_s=ttl or None)
        self.sessions.append(session)
        actor = session.principal.get("actor") or "?"
        self.say(
            f"gateway session {session.session_id} on {session.dbname} as role {session.role} "
            f"(token from {self.tokens.describe()}, actor {actor}, expires {session.expires_at})"
        )
        return session

    def result(self, outcome: JobOutcome, reason: str, **parts: Any) -> JobResult:
        return JobResult(
            outcome, reason, self.context, sessions=[s.session_id for s in self.sessions], **parts
        )

    def close(self) -> None:
        for session in self.sessions:
            # Best effort: a session ends at its expiry anyway, and nothing of the
            # run depends on closing it early.
            with contextlib.suppress(GatewayError):
                self.client.close_session(session)


def run_job(
    options: JobOptions,
    *,
    env: Mapping[str, str],
    say: Say,
    sleep: Callable[[float], None] = time.sleep,
) -> JobResult:
    """Run the CI job; raises :class:`SignoffError` (one line) for what cannot start
    (no token, gateway unreachable or refusing the session, unreadable project).
    Once a session is open, its audit bundle is left whatever happens next."""
    if options.evidence is not None:
        options.evidence.check()  # a destination that would refuse: before anything runs
    job = _Job(options, env, say, sleep)
    result: JobResult | None = None
    try:
        result = _run(job)
        return result
    finally:
        if options.evidence is not None and job.sessions:
            _leave_evidence(job, options.evidence, result)
        job.close()


def _run(job: _Job) -> JobResult:
    options = job.options
    job.open()
    plan = _plan(job)
    job.plan = plan
    if not plan.statements:
        return job.result(JobOutcome.NOTHING_PENDING, "no pending revision", plan=plan)
    status = _submit(job, plan)
    state = status.get("state")
    if state == "denied":
        return job.result(JobOutcome.DENIED, _denied_reason(status), plan=plan, status=status)
    if state == "waiting" and options.plan_only:
        return job.result(
            JobOutcome.NEEDS_APPROVAL,
            f"waits for approval on {_where(status)}: {status.get('approve_line')}",
            plan=plan,
            status=status,
        )
    if options.plan_only:
        return job.result(JobOutcome.PLANNED, _state_reason(status), plan=plan, status=status)
    if state == "waiting":
        status = _wait(job, plan, status)
        state = status.get("state")
    if state == "rejected":
        names = ", ".join(a["login"] for a in status.get("rejected_by", []))
        return job.result(JobOutcome.REJECTED, f"rejected by {names}", plan=plan, status=status)
    if state == "waiting":
        return job.result(
            JobOutcome.TIMED_OUT,
            f"no approval within {_duration(options.wait_s)}; once {_where(status)} has "
            f"'{status.get('approve_line')}', re-run this job",
            plan=plan,
            status=status,
        )
    if state not in ("approved", "not-needed"):
        raise SignoffError(f"the gateway answered plan state {state!r}; upgrade signoff")
    report = _apply(job, plan)
    _report_on_review(job)
    outcome = JobOutcome.APPLIED if report.ok else JobOutcome.FAILED
    return job.result(outcome, report.reason, plan=plan, status=status, apply=report)


def _leave_evidence(job: _Job, options: EvidenceOptions, result: JobResult | None) -> None:
    """The last session's bundle; a job that failed with an error still leaves it."""
    try:
        evidence = collect(job.client, job.session, job.plan, job.context, options)
    except SignoffError as error:
        job.say(f"audit bundle: {error}")
        if result is not None:
            result.evidence_error = str(error)
        return
    where = f", stored at {evidence.uri}" if evidence.uri else ""
    signed = "signed by the gateway" if evidence.signed else "UNSIGNED"
    job.say(f"audit bundle ({signed}): {evidence.path}{where}")
    if result is not None:
        result.evidence = evidence


def _plan(job: _Job) -> Plan:
    from runner import command

    options = job.options
    plan = command.plan(
        options.alembic_ini,
        options.settings,
        database_url=job.session.conninfo(application_name="signoff plan"),
        target=options.database,
    )
    job.say(
        f"plan {plan.short_hash}: {len(plan.revisions)} revision(s), "
        f"{len(plan.statements)} statement(s) from {', '.join(plan.from_revisions) or 'base'}"
    )
    return plan


def _review(job: _Job) -> dict[str, Any] | None:
    ctx = job.context
    review = ctx.review()
    if review is None and ctx.platform != "local" and ctx.repository is not None:
        # On the default branch after merge: the gateway finds the merged PR/MR itself.
        review = {
            "platform": ctx.platform,
            "repository": ctx.repository,
            "number": None,
            "head_sha": ctx.head_sha,
        }
    return review


def _submit(job: _Job, plan: Plan) -> dict[str, Any]:
    review = _review(job)
    job.client.submit_plan(job.session, plan.to_json(), review or {})
    status = job.client.plan_status(job.session, plan.hash)
    needs = status.get("needs_approval") or []
    job.say(
        f"gateway: plan {plan.short_hash} {status.get('state')}; "
        f"{len(needs)} statement(s) need approval"
        + (f"; plan comment {status['comment_url']}" if status.get("comment_url") else "")
    )
    return status


def _wait(job: _Job, plan: Plan, status: dict[str, Any]) -> dict[str, Any]:
    options = job.options
    deadline = time.monotonic() + options.wait_s
    interval = options.poll_min_s
    while status.get("state") == "waiting":
        left = deadline - time.monotonic()
        if left <= 0:
            return status
        job.say(_progress(status, left))
        job.sleep(min(interval, left))
        interval = min(interval * 1.5, options.poll_max_s)
        try:
            status = job.client.plan_status(job.session, plan.hash)
        except GatewayError as error:
            if error.status not in (401, 403) or error.error not in (
                "session-ended",
                "unauthenticated",
            ):
                raise
            job.say(
                f"gateway session {job.session.session_id} ended ({error.error}); opening a new one"
            )
            _reopen(job)
            status = _submit(job, plan)
        for refusal in status.get("refusals") or []:
            job.say(
                f"  did not count: {refusal.get('comment_url')} "
                f"[{refusal.get('rule')}] {refusal.get('reason')}"
            )
    return status


def _report_on_review(job: _Job) -> None:
    """Ask the gateway to write what ran on the PR/MR (from its own records). The
    apply's outcome does not depend on it: a failure here is a line in the log."""
    try:
        status = job.client.report(job.session)
    except GatewayError as error:
        job.say(f"the gateway could not report on the review: {error}")
        return
    if status.get("comment_url"):
        job.say(f"gateway status on the review: {status['comment_url']}")


def _reopen(job: _Job) -> None:
    try:
        job.open()
    except GatewayError as error:
        if error.error != "replayed":
            raise
        raise GatewayError(
            "the gateway session ended during the wait and this job's ID token was already "
            "used (GitLab mints one per job): raise the gateway's max_session_ttl to cover "
            "--wait, or lower --wait",
            status=error.status,
            error=error.error,
        ) from None


def _apply(job: _Job, plan: Plan) -> ApplyReport:
    options = job.options

    def progress(event: object) -> None:
        if isinstance(event, LockWaiting):
            job.say(
                f"another apply holds the lock on {event.database}; waited "
                f"{event.waited_s:.0f}s of {event.lock_wait_s:.0f}s"
            )
        elif isinstance(event, StatementDone):
            statement = event.statement
            mark = "failed" if event.run.error else "ok"
            first = first_line(statement)
            job.say(f"  [{statement.index + 1}/{len(plan.statements)}] {mark}: {first}")

    online = None
    if options.online:
        # alembic connects through the gateway too; each statement it sends is
        # matched to the plan's grants by fingerprint.
        online = OnlineRun(options.alembic_ini, job.session.conninfo(application_name="alembic"))
    how = "online with alembic" if online else "as planned"
    job.say(f"applying plan {plan.short_hash} through the gateway, {how}")
    report = apply_plan(
        job.session.conninfo(application_name="signoff apply"),
        plan,
        options=ApplyOptions(
            lock_timeout_ms=options.lock_timeout_ms,
            statement_timeout_ms=options.statement_timeout_ms,
            lock_wait_s=options.lock_wait_s,
        ),
        progress=progress,
        online=online,
    )
    if report.outcome is not Outcome.APPLIED:
        job.say(f"apply {report.outcome.value}: {report.reason}")
    return report


def _progress(status: Mapping[str, Any], left: float) -> str:
    approvers = status.get("approvers") or []
    required = status.get("required") or 1
    who = status.get("who_may_approve") or "a reviewer"
    return (
        f"waiting for approval on {_where(status)}: {len(approvers)} of {required}; "
        f"{who} posts '{status.get('approve_line')}' ({_duration(left)} left)"
    )


def _where(status: Mapping[str, Any]) -> str:
    review = status.get("review") or {}
    sign = "#" if review.get("platform") == "github" else "!"
    where = f"{review.get('repository')}{sign}{review.get('number')}"
    url = status.get("comment_url")
    return f"{where} ({url})" if url else where


def _state_reason(status: Mapping[str, Any]) -> str:
    needs = status.get("needs_approval") or []
    if not needs:
        return "nothing in the plan needs approval"
    return f"{len(needs)} statement(s) need approval"


def _denied_reason(status: Mapping[str, Any]) -> str:
    denied = status.get("denied") or []
    rules = sorted({r for s in denied for r in s.get("rules", [])})
    return (
        f"{len(denied)} statement(s) are denied by the gateway's policy ({', '.join(rules)}); "
        "change the migration"
    )


def _duration(seconds: float) -> str:
    seconds = max(0, int(seconds))
    if seconds >= 60:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds}s"
