"""The code-host interface the gateway calls, and the two steps it takes with it.

``post_plan`` writes (or rewrites in place) the sticky plan comment;
``check_approvals`` re-reads the review from the code host and applies the
rules. Both take a ``CodeHost``: ``GitHubHost`` or ``GitLabHost`` (or anything
with the same methods).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Protocol

from runner.approval.comment import parse_marker, plan_comment
from runner.approval.model import (
    Actor,
    ApprovalVerdict,
    PlanComment,
    Platform,
    Review,
    ReviewState,
)
from runner.approval.policy import ApprovalPolicy, evaluate
from runner.plan.model import Plan


class CodeHost(Protocol):
    platform: str
    api_url: str

    def read_review(self, review: Review, *, database: str) -> ReviewState: ...

    def find_plan_comment(self, review: Review, *, database: str) -> PlanComment | None: ...

    def upsert_plan_comment(self, review: Review, *, database: str, body: str) -> PlanComment: ...

    def upsert_status_comment(self, review: Review, *, database: str, body: str) -> str: ...

    def merged_review_of_commit(self, repository: str, sha: str) -> Review | None: ...

    def close(self) -> None: ...


def open_host(
    platform: Platform, api_url: str, token: str, *, bot_login: str | None = None
) -> CodeHost:
    """The client for ``platform`` with the gateway's own token. ``bot_login`` is the
    login the token acts as (required for a GitHub App installation token, which
    cannot read ``/user``; else read from the host)."""
    if platform == "github":
        from runner.approval.github import GitHubHost

        return GitHubHost(token, api_url, bot_login=bot_login)
    if platform == "gitlab":
        from runner.approval.gitlab import GitLabHost

        return GitLabHost(token, api_url, bot_username=bot_login)
    raise ValueError(f"code host platform {platform!r}: use github or gitlab")


def post_plan(
    host: CodeHost,
    review: Review,
    plan: Plan,
    *,
    database: str,
    previous_plan: Callable[[str], Plan | None] = lambda _hash: None,
    previous_approvers: Sequence[str] = (),
    who_may_approve: str = "a reviewer with write access who is not the author",
) -> PlanComment:
    """Write the sticky plan comment for ``plan`` at ``review.head_sha``.

    ``previous_plan`` looks a plan up by its hash (the gateway's plan store): the
    hash the comment showed before is read from the comment itself, and when it
    differs the comment says what changed and that its approvals no longer count.
    """
    existing = host.find_plan_comment(review, database=database)
    previous: Plan | None = None
    if existing is not None:
        shown = parse_marker(existing.body)
        if shown is not None and shown.plan_hash and shown.plan_hash != plan.hash:
            previous = previous_plan(shown.plan_hash)
    body = plan_comment(
        plan,
        database=database,
        head_sha=review.head_sha,
        previous=previous,
        previous_approvers=previous_approvers,
        who_may_approve=who_may_approve,
    )
    return host.upsert_plan_comment(review, database=database, body=body)


def check_approvals(
    host: CodeHost,
    review: Review,
    plan_hash: str,
    *,
    database: str,
    policy: ApprovalPolicy,
    actor: Actor | None,
    evidence: Sequence[int | str] = (),
) -> ApprovalVerdict:
    """Re-read the review on the code host and decide whether ``plan_hash`` is approved."""
    state = host.read_review(review, database=database)
    return evaluate(state, plan_hash, policy=policy, actor=actor, evidence=evidence)
