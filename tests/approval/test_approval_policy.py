"""The approval rules as pure functions: command parsing, permission scales, verdicts."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from runner.approval.github import github_permission
from runner.approval.gitlab import gitlab_permission
from runner.approval.model import (
    Actor,
    ApprovalComment,
    Permission,
    PlanComment,
    Review,
    ReviewState,
    User,
)
from runner.approval.policy import (
    ApprovalPolicy,
    Command,
    evaluate,
    evidence_comment_id,
    parse_commands,
)

HASH = "0123456789abcdef" * 4
T0 = datetime(2026, 12, 4, tzinfo=UTC)
HEAD = "a" * 40
AUTHOR = User("carol", 1)
GATEWAY = User("signoff-gateway", 2)
ALICE = User("alice", 3)
BOB = User("bob", 4)


def test_a_command_is_a_line_of_its_own() -> None:
    body = "\n".join(
        [
            "Looks fine. /signoff approve 0123456789ab",  # not at the start of a line
            "> /signoff approve 0123456789ab",  # quoted
            "    /signoff approve 0123456789ab",  # indented code
            "`/signoff approve 0123456789ab`",  # inline code
            "```",
            "/signoff approve 0123456789ab",  # fenced code
            "```",
            "~~~text",
            "/signoff reject",
            "~~~",
            "<!--",
            "/signoff approve 0123456789ab",  # invisible to a reader
            "-->",
            "/signoff approve 0123456789AB  ",
        ]
    )
    assert parse_commands(body) == [Command("approve", "0123456789ab")]


@pytest.mark.parametrize(
    "line",
    [
        "/signoff approve",
        "/signoff approve 0123456789a",  # 11 hex: too short
        "/signoff approve 0123456789ag",
        "/signoff approve 0123456789ab please",
        "/signoff approved 0123456789ab",
        "/signoff lgtm",
    ],
)
def test_a_near_miss_is_malformed_not_an_approval(line: str) -> None:
    assert [c.verb for c in parse_commands(line)] == ["malformed"]


def test_reject_takes_a_reason() -> None:
    assert parse_commands("/signoff reject not on a Friday") == [
        Command("reject", "not on a Friday")
    ]


def test_evidence_is_an_id_or_a_comment_url() -> None:
    assert evidence_comment_id(12) == 12
    assert evidence_comment_id("https://github.com/acme/ehr/pull/7#issuecomment-991") == 991
    assert evidence_comment_id("https://gl.example/acme/ehr/-/merge_requests/7#note_55") == 55
    with pytest.raises(ValueError, match="comment id or the comment's URL"):
        evidence_comment_id("https://github.com/acme/ehr/pull/7")


def test_permission_scales() -> None:
    # role_name is the real role; permission the legacy level (maintain reads as write).
    assert github_permission("write", "maintain") == Permission("maintain", 40)
    assert github_permission("read", "triage").level < ApprovalPolicy().required_level("github")
    assert github_permission("write", "custom-deployer") == Permission("write", 30)
    assert github_permission("none", "").level == 0
    assert gitlab_permission(30) == Permission("developer", 30)
    assert gitlab_permission(None).level == 0


def test_policy_settings_are_checked() -> None:
    with pytest.raises(ValueError, match="github_permission 'writ'"):
        ApprovalPolicy(github_permission="writ")
    with pytest.raises(ValueError, match="min_approvals 0"):
        ApprovalPolicy(min_approvals=0)
    assert ApprovalPolicy(gitlab_access_level=40).required_name("gitlab") == "maintainer"


def _state(*comments: ApprovalComment, plan_hash: str = HASH, state: str = "open") -> ReviewState:
    plan = PlanComment(
        id=10,
        url="u/10",
        author=GATEWAY,
        created_at=T0,
        updated_at=T0,
        body="",
        database="ehr",
        head_sha=HEAD,
        plan_hash=plan_hash,
    )
    writers = {ALICE.id: Permission("write", 30), BOB.id: Permission("write", 30)}
    return ReviewState(
        review=Review("github", "https://api.github.com", "acme/ehr", 7, HEAD),
        author=AUTHOR,
        head_sha=HEAD,
        state=state,
        comments=comments,
        plan_comment=plan,
        permissions=writers,
    )


def _comment(
    cid: int, user: User, body: str, *, minutes: int = 1, edited: bool = False
) -> ApprovalComment:
    at = T0 + timedelta(minutes=minutes)
    return ApprovalComment(cid, f"u/{cid}", user, at, at + timedelta(seconds=int(edited)), body)


def _verdict(state: ReviewState, **kwargs: object) -> list[tuple[str, str]]:
    verdict = evaluate(state, HASH, policy=ApprovalPolicy(), actor=Actor("erin"), **kwargs)  # type: ignore[arg-type]
    return [(r.comment_url, r.rule_id) for r in verdict.refusals]


def test_a_malformed_or_doubled_command_is_refused_by_name() -> None:
    state = _state(
        _comment(20, ALICE, "/signoff approve 0123"),
        _comment(21, BOB, f"/signoff approve {HASH[:12]}\n/signoff approve {HASH[:16]}"),
    )
    assert _verdict(state) == [("u/20", "command-format"), ("u/21", "command-format")]
    assert not evaluate(state, HASH, policy=ApprovalPolicy(), actor=None).granted


def test_the_plan_comment_must_show_this_plan() -> None:
    state = _state(_comment(20, ALICE, f"/signoff approve {HASH[:12]}"), plan_hash="f" * 64)
    assert _verdict(state) == [("u/20", "plan-comment-current")]


def test_an_approval_in_the_same_second_as_the_plan_comment_does_not_count() -> None:
    state = _state(_comment(20, ALICE, f"/signoff approve {HASH[:12]}", minutes=0))
    assert _verdict(state) == [("u/20", "after-plan-comment")]


def test_an_edited_rejection_still_rejects() -> None:
    state = _state(
        _comment(20, ALICE, f"/signoff approve {HASH}"),
        _comment(21, BOB, "/signoff reject", edited=True),
    )
    verdict = evaluate(state, HASH, policy=ApprovalPolicy(), actor=None)
    assert not verdict.granted
    assert [r.login for r in verdict.rejected_by] == ["bob"]
    assert verdict.reason == "rejected by bob"


def test_with_evidence_only_the_named_comments_count() -> None:
    state = _state(_comment(20, ALICE, f"/signoff approve {HASH[:12]}"))
    verdict = evaluate(state, HASH, policy=ApprovalPolicy(), actor=None, evidence=["u#note_99"])
    assert not verdict.granted
    assert [(r.comment_url, r.rule_id) for r in verdict.refusals] == [("u#note_99", "this-review")]
    assert evaluate(state, HASH, policy=ApprovalPolicy(), actor=None, evidence=[20]).granted
    chatter = _state(_comment(21, BOB, "looks good to me"))
    verdict = evaluate(chatter, HASH, policy=ApprovalPolicy(), actor=None, evidence=["21"])
    assert [(r.comment_url, r.rule_id) for r in verdict.refusals] == [("u/21", "command-format")]


def test_log_lines_name_each_rule() -> None:
    state = _state(_comment(20, AUTHOR, f"/signoff approve {HASH[:12]}"))
    lines = evaluate(state, HASH, policy=ApprovalPolicy(), actor=None).log_lines()
    assert lines[0].startswith("approval not granted plan=0123456789ab")
    assert (
        lines[1]
        == "approval refused rule=not-author comment=u/20: carol wrote the change under review"
    )


def test_a_review_closed_without_merging_approves_nothing() -> None:
    approval = _comment(20, ALICE, f"/signoff approve {HASH[:12]}")
    assert _verdict(_state(approval, state="closed")) == [("u/20", "review-state")]
    assert _verdict(_state(approval, state="merged")) == []
