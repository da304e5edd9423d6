"""The review desk: plans submitted by a session, the sticky PR/MR comment the
gateway writes for them, and approvals the gateway verifies itself.

The runner is untrusted (a pull request can change what the CI job runs), so
nothing it says about a plan is believed:

* the plan's statements are analysed again here, with the gateway's own rules
  and the session's role (the runner's findings, its ``signoff.toml`` and any
  inline ``-- signoff: allow`` are ignored), and the hash recomputed;
* the review it names must be on the repository of the session's verified OIDC
  token, and on the PR/MR the token was minted for when the token says which;
* the comment a reviewer reads is written here, with the gateway's own
  code-host credential, from this analysis;
* an approval is read back from the code host, by the gateway, with the rules
  of :mod:`runner.approval.policy`, every time the runner asks;
* the grants it then records cover exactly the plan's statements that need
  approval, each once, for this session only, and name the approvers and the
  comments' URLs, which the proxy writes into every audit record they allow.

Every decision is logged (``signoff.gateway.review``), one line per comment
that did not count, naming its rule, and recorded in the audit chain as a
session event (``plan-submitted``, ``plan-approved``, ``plan-rejected``).
"""

from __future__ import annotations

import logging
import re
import threading
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

from runner.approval.comment import approve_line, status_marker
from runner.approval.host import CodeHost, open_host, post_plan
from runner.approval.model import (
    Actor,
    ApprovalVerdict,
    CodeHostError,
    Platform,
    Review,
    ReviewState,
)
from runner.approval.policy import ApprovalPolicy, evaluate
from runner.gateway.config import GatewayConfig, RoleConfig
from runner.gateway.model import Grant, Session, Verdict
from runner.gateway.policy import role_verdict
from runner.plan.build import ServerFacts, SqlSource, build_plan
from runner.plan.model import Decision, Finding, Plan, Statement
from runner.plan.policy import Policy
from runner.plan.rules import RULESET_VERSION

_log = logging.getLogger("signoff.gateway.review")

_VERDICT_DECISION = {
    Verdict.ALLOW: Decision.ADVISORY,
    Verdict.NEEDS_APPROVAL: Decision.NEEDS_APPROVAL,
    Verdict.DENY: Decision.DENY,
}
_PR_REF = re.compile(r"refs/pull/(\d+)/(?:merge|head)")
_MR_REF = re.compile(r"refs/merge-requests/(\d+)/(?:head|merge|train)")
_SHA = re.compile(r"[0-9a-fA-F]{7,64}")
_PLANS_KEPT = 256  # plans this node keeps by hash for "what changed" (per process)
_SUBMITTED_KEPT = 4096  # (session, plan) pairs this node keeps for their approval state


class ReviewRefused(Exception):
    """A request the desk cannot take: ``status`` and ``error`` for the HTTP answer."""

    def __init__(self, status: int, error: str, detail: str) -> None:
        super().__init__(detail)
        self.status, self.error, self.detail = status, error, detail


CodeHostFactory = Callable[..., CodeHost]  # open_host(platform, api_url, token, bot_login=)


@dataclass(frozen=True)
class ReviewTarget:
    """Where the runner says its plan is reviewed; checked against the token."""

    platform: Platform
    repository: str
    number: int | None
    head_sha: str | None

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> ReviewTarget:
        platform = data.get("platform")
        repository = data.get("repository")
        number = data.get("number")
        head_sha = data.get("head_sha")
        if platform not in ("github", "gitlab"):
            raise ReviewRefused(422, "invalid-request", "review.platform: use github or gitlab")
        if not isinstance(repository, str) or not 0 < len(repository) <= 255:
            raise ReviewRefused(422, "invalid-request", "review.repository: owner/name")
        if number is not None and (
            not isinstance(number, int) or isinstance(number, bool) or number < 1
        ):
            raise ReviewRefused(422, "invalid-request", "review.number: a PR/MR number")
        if head_sha is not None and (
            not isinstance(head_sha, str) or _SHA.fullmatch(head_sha) is None
        ):
            raise ReviewRefused(422, "invalid-request", "review.head_sha: a commit sha")
        return cls(platform, repository, number, head_sha.lower() if head_sha else None)


@dataclass(frozen=True)
class Submitted:
    """A plan as the gateway analysed it, and where it is reviewed."""

    plan: Plan
    review: Review | None
    needs_approval: tuple[Statement, ...]
    denied: tuple[Statement, ...]
    comment_url: str | None


class ReviewDesk:
    def __init__(
        self,
        config: GatewayConfig,
        *,
        hosts: CodeHostFactory = open_host,
        server_facts: Callable[[str], ServerFacts],
        add_grant: Callable[..., Grant],
        record: Callable[[Session, str, Mapping[str, Any]], None],
        session_records: Callable[[str], list[dict[str, Any]]] = lambda _id: [],
    ) -> None:
        self.config = config
        self._hosts = hosts
        self._server_facts = server_facts
        self._add_grant = add_grant
        self._record = record
        self._session_records = session_records
        self._lock = threading.Lock()
        # (session id, plan hash) -> the plan it submitted, oldest first, bounded: a
        # session lives minutes, so the oldest ones go (with their granted mark).
        self._submitted: OrderedDict[tuple[str, str], Submitted] = OrderedDict()
        self._granted: set[tuple[str, str]] = set()
        self._plans: OrderedDict[str, Plan] = OrderedDict()

    # -- submit ------------------------------------------------------------------------

    def submit(
        self, session: Session, role: RoleConfig, plan_json: Any, target: ReviewTarget | None
    ) -> dict[str, Any]:
        plan = self.analyse(session, role, plan_json)
        needs = tuple(s for s in plan.statements if s.needs_approval)
        denied = tuple(
            s for s in plan.statements if any(f.decision is Decision.DENY for f in s.findings)
        )
        review: Review | None = None
        if target is not None:
            review = self._review_of(session, target)
        elif needs and not denied:
            raise ReviewRefused(
                409,
                "needs-review",
                f"{len(needs)} statement(s) need approval and the plan names no pull/merge "
                "request to be reviewed on; run the job for a PR/MR",
            )
        comment_url: str | None = None
        if review is not None and needs and not denied:
            host = self._host(review.platform)
            try:
                state = self._read(host, review, session.database)
                if state.head_sha.lower() != review.head_sha.lower():
                    raise ReviewRefused(
                        409,
                        "stale-head",
                        f"{review} is at {state.head_sha[:12]}, not {review.head_sha[:12]}; "
                        "the job for the newer commit plans again",
                    )
                comment_url = self._write_comment(host, review, session.database, plan)
            finally:
                host.close()
        submitted = Submitted(plan, review, needs, denied, comment_url)
        with self._lock:
            self._submitted[(session.id, plan.hash)] = submitted
            while len(self._submitted) > _SUBMITTED_KEPT:
                gone, _ = self._submitted.popitem(last=False)
                self._granted.discard(gone)
            self._plans[plan.hash] = plan
            while len(self._plans) > _PLANS_KEPT:
                self._plans.popitem(last=False)
        self._record(
            session,
            "plan-submitted",
            {
                "plan_hash": plan.hash,
                "review": _review_json(review) if review else None,
                "comment_url": comment_url,
                "needs_approval": [s.fingerprint for s in needs],
                "denied": [s.fingerprint for s in denied],
                "plan": plan.to_json(),
            },
        )
        _log.info(
            "plan %s submitted by session %s for %s: %d statement(s) need approval%s",
            plan.short_hash,
            session.id,
            review or "no review",
            len(needs),
            f", {len(denied)} denied" if denied else "",
        )
        return self._status_json(submitted, state="submitted")

    def analyse(self, session: Session, role: RoleConfig, plan_json: Any) -> Plan:
        """The submitted plan analysed again by the gateway, findings decided by the
        session's role. Refused when it is not a plan, is for another database,
        was made with other rules, or a statement's text is not one statement."""
        if not isinstance(plan_json, Mapping):
            raise ReviewRefused(
                422, "invalid-plan", "plan: a Signoff plan (signoff plan --format json)"
            )
        try:
            submitted = Plan.from_json(plan_json)
        except (ValueError, KeyError, TypeError) as error:
            raise ReviewRefused(422, "invalid-plan", f"plan: {error}") from None
        if submitted.target != session.database:
            raise ReviewRefused(
                422,
                "wrong-database",
                f"the plan is for {submitted.target!r}, the session for {session.database!r}; "
                f"plan with --target {session.database}",
            )
        if submitted.ruleset != RULESET_VERSION:
            raise ReviewRefused(
                422,
                "ruleset-mismatch",
                f"the plan was made with rules {submitted.ruleset}, the gateway runs "
                f"{RULESET_VERSION}; use the same signoff version as the gateway",
            )
        own = build_plan(
            [SqlSource(s.source, s.text, s.revision) for s in submitted.statements],
            policy=Policy(target=session.database),
            facts=self._server_facts(session.database),
            revisions=submitted.revisions,
            from_revisions=submitted.from_revisions,
            to_revision=submitted.to_revision,
        )
        if [s.sha256 for s in own.statements] != [s.sha256 for s in submitted.statements]:
            raise ReviewRefused(
                422,
                "invalid-plan",
                "the plan's statements do not split as the gateway splits them "
                "(a statement holding several); plan again with this signoff version",
            )
        statements = tuple(
            replace(
                mine,
                line=theirs.line,
                end_line=theirs.end_line,
                findings=_decided(role, mine.findings),
            )
            for mine, theirs in zip(own.statements, submitted.statements, strict=True)
        )
        return replace(own, statements=statements)

    # -- status and approval -----------------------------------------------------------

    def status(
        self, session: Session, plan_hash: str, *, evidence: Sequence[int | str] = ()
    ) -> dict[str, Any]:
        """The plan's approval state, read from the code host now; on approval the
        grants are recorded (once per session and plan)."""
        submitted = self._submitted_of(session, plan_hash)
        if submitted.denied:
            return self._status_json(submitted, state="denied")
        review = submitted.review
        if not submitted.needs_approval or review is None:
            return self._status_json(submitted, state="not-needed")
        host = self._host(review.platform)
        try:
            state = self._read(host, review, session.database)
        finally:
            host.close()
        policy = ApprovalPolicy(
            github_permission=self.config.approvals.github_permission,
            gitlab_access_level=self.config.approvals.gitlab_access_level,
            min_approvals=self.config.min_approvals(session.database),
        )
        try:
            verdict = evaluate(
                state, submitted.plan.hash, policy=policy, actor=_actor(session), evidence=evidence
            )
        except ValueError as error:  # an evidence value that is no comment id or URL
            raise ReviewRefused(422, "invalid-request", f"evidence: {error}") from None
        for line in verdict.log_lines():
            _log.info("session %s %s: %s", session.id, review, line)
        if verdict.rejected_by:
            self._record_once(session, submitted, "plan-rejected", verdict)
            return self._status_json(submitted, state="rejected", verdict=verdict)
        if not verdict.granted:
            return self._status_json(submitted, state="waiting", verdict=verdict)
        grants = self._grant(session, submitted, verdict)
        return self._status_json(submitted, state="approved", verdict=verdict, grants=grants)

    def _grant(self, session: Session, submitted: Submitted, verdict: ApprovalVerdict) -> list[str]:
        key = (session.id, submitted.plan.hash)
        with self._lock:
            if key in self._granted:
                return []
            self._granted.add(key)
        approver = ", ".join(a.login for a in verdict.approvers)
        evidence = " ".join(a.comment_url for a in verdict.approvers)
        made = [
            self._add_grant(
                database=session.database,
                fingerprint=statement.fingerprint,
                approver=approver,
                evidence_url=evidence,
                session_id=session.id,
                plan_hash=submitted.plan.hash,
            ).id
            for statement in submitted.needs_approval
        ]
        self._record_once(session, submitted, "plan-approved", verdict, grants=made)
        return made

    def _record_once(
        self,
        session: Session,
        submitted: Submitted,
        event: str,
        verdict: ApprovalVerdict,
        **extra: Any,
    ) -> None:
        self._record(
            session,
            event,
            {
                "plan_hash": submitted.plan.hash,
                "review": _review_json(submitted.review) if submitted.review else None,
                "approvers": [
                    {"login": a.login, "id": a.id, "comment_url": a.comment_url}
                    for a in verdict.approvers
                ],
                "rejected_by": [
                    {"login": a.login, "id": a.id, "comment_url": a.comment_url}
                    for a in verdict.rejected_by
                ],
                "reason": verdict.reason,
                **extra,
            },
        )

    # -- report ------------------------------------------------------------------------

    def report(self, session: Session) -> dict[str, Any]:
        """What this session ran of the plans it submitted, from the gateway's own
        audit records (never from the runner), written to the review as the
        gateway's status comment (not the plan comment: approvals keep their time)."""
        with self._lock:
            mine = [s for (sid, _), s in self._submitted.items() if sid == session.id]
        if not mine:
            raise ReviewRefused(
                404, "not-found", "this session submitted no plan; POST it to .../plans first"
            )
        submitted = mine[-1]
        plan = submitted.plan
        wanted = [s.fingerprint for s in plan.statements]
        ran: list[dict[str, Any]] = [
            r
            for r in self._session_records(session.id)
            if r.get("kind") == "statement" and r.get("fingerprint") in set(wanted)
        ]
        completed = [r for r in ran if r.get("status") == "completed"]
        failed = [r for r in ran if r.get("status") == "failed"]
        refused = [r for r in ran if r.get("decision") == "blocked"]
        approvers = sorted({r["grant"]["approver"] for r in ran if r.get("grant")})
        if len(completed) >= len(wanted) and not failed and not refused:
            outcome = "applied"
        elif not ran:
            outcome = "not-run"
        else:
            outcome = "failed"
        status = {
            "plan_hash": plan.hash,
            "outcome": outcome,
            "statements": len(wanted),
            "completed": len(completed),
            "failed": len(failed),
            "refused": len(refused),
            "approvers": approvers,
            "session_id": session.id,
            "comment_url": None,
        }
        review = submitted.review
        if review is not None:
            host = self._host(review.platform)
            try:
                status["comment_url"] = host.upsert_status_comment(
                    review, database=session.database, body=_status_body(session, status)
                )
            except CodeHostError as error:
                raise ReviewRefused(502, "code-host", f"{review}: {error}") from None
            finally:
                host.close()
        self._record(session, "plan-reported", status)
        return status

    # -- pieces ------------------------------------------------------------------------

    def _submitted_of(self, session: Session, plan_hash: str) -> Submitted:
        with self._lock:
            found = self._submitted.get((session.id, plan_hash))
            if found is not None:
                return found
            if len(plan_hash) >= 12:  # the short form shown to people
                for (session_id, full), submitted in self._submitted.items():
                    if session_id == session.id and full.startswith(plan_hash):
                        return submitted
        raise ReviewRefused(
            404,
            "not-found",
            "no plan with that hash was submitted in this session; POST it to "
            f"/v1/sessions/{session.id}/plans first",
        )

    def _review_of(self, session: Session, target: ReviewTarget) -> Review:
        principal = session.principal
        repository = principal.repository
        if repository is None or repository.lower() != target.repository.lower():
            raise ReviewRefused(
                403,
                "wrong-repository",
                f"review.repository {target.repository[:100]!r} is not the repository of the "
                f"session's token ({repository!r})",
            )
        host = self.config.code_hosts.get(target.platform)
        if host is None:
            raise ReviewRefused(
                409,
                "no-code-host",
                f"the gateway has no [code_hosts.{target.platform}] credential; "
                "its operator adds one to gateway.toml",
            )
        number = _number_in_token(principal.claims, target.platform)
        if number is not None and target.number is not None and number != target.number:
            raise ReviewRefused(
                403,
                "wrong-review",
                f"the session's token was minted for #{number}, not #{target.number}",
            )
        number = number or target.number
        head = target.head_sha
        if number is None:
            # Applying on the default branch after merge: the review is the PR/MR
            # that merged the token's commit, found by the gateway itself.
            sha = principal.sha
            if sha is None:
                raise ReviewRefused(
                    422, "no-review", "no review.number and no sha in the session's token"
                )
            found = self._merged(target.platform, repository, sha)
            if found is None:
                raise ReviewRefused(
                    409,
                    "no-review",
                    f"no merged pull/merge request for commit {sha[:12]} in {repository}; "
                    "a plan that needs approval is reviewed on its PR/MR first",
                )
            return found
        review = Review(target.platform, host.api_url, repository, number, head or "")
        if head is None:
            # A comment-triggered run names no commit: the PR/MR's head is read from
            # the code host; a plan made from anything else has another hash.
            client = self._host(target.platform)
            try:
                head = self._read(client, review, session.database).head_sha
            finally:
                client.close()
            review = replace(review, head_sha=head)
        return review

    def _merged(self, platform: Platform, repository: str, sha: str) -> Review | None:
        host = self._host(platform)
        try:
            return host.merged_review_of_commit(repository, sha)
        except CodeHostError as error:
            raise ReviewRefused(502, "code-host", f"{platform}: {error}") from None
        finally:
            host.close()

    def _host(self, platform: Platform) -> CodeHost:
        host = self.config.code_hosts.get(platform)
        if host is None:
            raise ReviewRefused(409, "no-code-host", f"no [code_hosts.{platform}] in gateway.toml")
        return self._hosts(platform, host.api_url, host.token(), bot_login=host.bot_login)

    def _read(self, host: CodeHost, review: Review, database: str) -> ReviewState:
        try:
            return host.read_review(review, database=database)
        except CodeHostError as error:
            raise ReviewRefused(502, "code-host", f"{review}: {error}") from None

    def _write_comment(self, host: CodeHost, review: Review, database: str, plan: Plan) -> str:
        def known(plan_hash: str) -> Plan | None:
            with self._lock:
                return self._plans.get(plan_hash)

        try:
            return post_plan(
                host,
                review,
                plan,
                database=database,
                previous_plan=known,
                who_may_approve=_who_may_approve(self.config, review.platform, database),
            ).url
        except CodeHostError as error:
            raise ReviewRefused(502, "code-host", f"{review}: {error}") from None

    def _status_json(
        self,
        submitted: Submitted,
        *,
        state: str,
        verdict: ApprovalVerdict | None = None,
        grants: Sequence[str] = (),
    ) -> dict[str, Any]:
        plan = submitted.plan
        return {
            "plan_hash": plan.hash,
            "short_hash": plan.short_hash,
            "state": state,
            "review": _review_json(submitted.review) if submitted.review else None,
            "comment_url": submitted.comment_url,
            "approve_line": approve_line(plan),
            "who_may_approve": (
                _who_may_approve(self.config, submitted.review.platform, plan.target)
                if submitted.review
                else None
            ),
            "needs_approval": [_statement_json(s) for s in submitted.needs_approval],
            "denied": [_statement_json(s) for s in submitted.denied],
            "required": verdict.required if verdict else None,
            "approvers": [
                {"login": a.login, "comment_url": a.comment_url}
                for a in (verdict.approvers if verdict else ())
            ],
            "rejected_by": [
                {"login": a.login, "comment_url": a.comment_url}
                for a in (verdict.rejected_by if verdict else ())
            ],
            "refusals": [
                {"comment_url": r.comment_url, "rule": r.rule_id, "reason": r.reason}
                for r in (verdict.refusals if verdict else ())
            ],
            "reason": verdict.reason if verdict else None,
            "grants": list(grants),
        }


_OUTCOME_TITLE = {
    "applied": "✅ applied",
    "failed": "❌ failed",
    "not-run": "⏸️ nothing ran",
}


def _status_body(session: Session, status: Mapping[str, Any]) -> str:
    principal = session.principal
    who = principal.actor or principal.sub
    run = f" (run {principal.run_id})" if principal.run_id else ""
    lines = [
        status_marker(session.database),
        f"### Signoff: plan `{status['plan_hash'][:12]}` {_OUTCOME_TITLE[status['outcome']]} "
        f"on **{session.database}**",
        "",
        f"{status['completed']} of {status['statements']} statement(s) completed, "
        f"{status['failed']} failed, {status['refused']} refused by the gateway; "
        f"session `{session.id}` for {who}{run}.",
    ]
    if status["approvers"]:
        lines.append(f"Approved by {', '.join(status['approvers'])} (verified by the gateway).")
    lines.append("")
    lines.append("Written by the gateway from its audit records.")
    return "\n".join(lines) + "\n"


def _decided(role: RoleConfig, findings: tuple[Finding, ...]) -> tuple[Finding, ...]:
    """Each finding's decision as the role decides it; inline allowances from the
    plan's text are not honoured here (the proxy does not honour them either)."""
    decided = []
    for finding in findings:
        verdict, _ = role_verdict(role, (finding,))
        decided.append(replace(finding, decision=_VERDICT_DECISION[verdict], allowed=None))
    return tuple(decided)


def _number_in_token(claims: Mapping[str, Any], platform: str) -> int | None:
    """The PR/MR number the OIDC token was minted for, when its ref says so."""
    pattern = _PR_REF if platform == "github" else _MR_REF
    for name in ("ref", "ref_path"):
        value = claims.get(name)
        if isinstance(value, str):
            found = pattern.fullmatch(value)
            if found:
                return int(found.group(1))
    return None


def _actor(session: Session) -> Actor | None:
    claims = session.principal.claims
    login = claims.get("actor") or claims.get("user_login")
    if not isinstance(login, str) or not login:
        return None
    raw_id = claims.get("actor_id") or claims.get("user_id")
    try:
        actor_id = int(raw_id) if raw_id is not None else None
    except (TypeError, ValueError):
        actor_id = None
    return Actor(login, actor_id)


def _who_may_approve(config: GatewayConfig, platform: Platform, database: str) -> str:
    count = config.min_approvals(database)
    level = (
        f"`{config.approvals.github_permission}` permission"
        if platform == "github"
        else f"{config.approvals.gitlab_access.capitalize()} access"
    )
    people = "a reviewer" if count == 1 else f"{count} reviewers, each"
    return f"{people} with {level} who is not the author and not the job's actor"


def _review_json(review: Review) -> dict[str, Any]:
    return {
        "platform": review.platform,
        "repository": review.repository,
        "number": review.number,
        "head_sha": review.head_sha,
    }


def _statement_json(statement: Statement) -> dict[str, Any]:
    return {
        "index": statement.index,
        "revision": statement.revision,
        "fingerprint": statement.fingerprint,
        "line": statement.line,
        "source": statement.source,
        "rules": sorted({f.rule for f in statement.findings if f.decision.rank >= 2}),
    }
