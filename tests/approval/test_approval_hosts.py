"""Approvals read from GitHub and GitLab: real PyGithub / python-gitlab clients
against the loopback code host (tests/codehost.py), every case on both platforms."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from codehost import CodeHostServer
from github import Auth, Github

from runner.approval.github import GitHubHost
from runner.approval.gitlab import GitLabHost
from runner.approval.host import CodeHost, check_approvals, post_plan
from runner.approval.model import Actor, ApprovalVerdict, CodeHostError, PlanComment, Review
from runner.approval.policy import ApprovalPolicy
from runner.plan.build import lint_text
from runner.plan.model import Plan

REPO = "acme/ehr"
DB = "ehr"
HEAD = "a" * 40
PLAN = lint_text("DROP TABLE patients;", "drop.sql")
OTHER_PLAN = lint_text("DROP TABLE encounters;", "drop.sql")
ROLES = {
    "github": {"write": "write", "read": "read"},
    "gitlab": {"write": "developer", "read": "reporter"},
}


class World:
    """One repository with PR/MR 7 by carol; alice and bob may approve, dave only
    reads, erin is the job's actor, the bot account has write access too."""

    def __init__(self, server: CodeHostServer, platform: str) -> None:
        self.server, self.platform = server, platform
        server.add_user("signoff-gateway")
        for login in ("carol", "alice", "bob", "dave", "erin"):
            server.add_user(login)
        self.bot_login = "renovate[bot]" if platform == "github" else "project_7_bot_1f2e"
        server.add_user(self.bot_login, bot=True)
        server.add_repo(platform, REPO)
        for login in ("carol", "alice", "bob", "erin", self.bot_login):
            self.grant(login, "write")
        self.grant("dave", "read")
        server.add_review(platform, REPO, 7, author="carol", head_sha=HEAD)
        server.add_review(platform, REPO, 8, author="carol", head_sha="b" * 40)
        token = server.token_of("signoff-gateway")
        self.host: CodeHost = (
            GitHubHost(token, server.github_url, retry=None)
            if platform == "github"
            else GitLabHost(token, server.gitlab_url)
        )
        self.head = HEAD
        self.plans: dict[str, Plan] = {}

    def grant(self, login: str, role: str, *, via_group: bool = False) -> None:
        self.server.grant(
            self.platform, REPO, login, ROLES[self.platform][role], via_group=via_group
        )

    @property
    def review(self) -> Review:
        return Review(self.platform, self.host.api_url, REPO, 7, self.head)  # type: ignore[arg-type]

    def post(self, plan: Plan) -> PlanComment:
        self.plans[plan.hash] = plan
        return post_plan(self.host, self.review, plan, database=DB, previous_plan=self.plans.get)

    def comment(self, login: str, body: str, number: int = 7) -> int:
        return self.server.add_comment(self.platform, REPO, number, login, body)

    def approve(self, login: str, plan: Plan = PLAN, number: int = 7) -> int:
        return self.comment(login, f"LGTM\n\n/signoff approve {plan.short_hash}\n", number)

    def verdict(
        self, plan: Plan = PLAN, *, min_approvals: int = 1, evidence: tuple[int, ...] = ()
    ) -> ApprovalVerdict:
        return check_approvals(
            self.host,
            self.review,
            plan.hash,
            database=DB,
            policy=ApprovalPolicy(min_approvals=min_approvals),
            actor=Actor("erin"),
            evidence=evidence,
        )

    def requests(self, method: str, suffix: str) -> int:
        return sum(1 for m, p in self.server.requests if m == method and p.endswith(suffix))


@pytest.fixture(params=["github", "gitlab"])
def world(request: pytest.FixtureRequest) -> Iterator[World]:
    with CodeHostServer() as server:
        built = World(server, request.param)
        yield built
        built.host.close()


def refusal_rules(verdict: ApprovalVerdict, comment_id: int) -> list[str]:
    return [r.rule_id for r in verdict.refusals if r.comment_url.endswith(str(comment_id))]


def test_a_valid_approval_grants(world: World) -> None:
    world.post(PLAN)
    comment_id = world.approve("alice")
    verdict = world.verdict()
    assert verdict.granted, verdict.log_lines()
    assert [a.login for a in verdict.approvers] == ["alice"]
    anchor = "#issuecomment-" if world.platform == "github" else "#note_"
    assert verdict.approvers[0].comment_url.endswith(f"{anchor}{comment_id}")
    assert verdict.refusals == ()


def test_no_approval_before_any_plan_comment(world: World) -> None:
    comment_id = world.approve("alice")
    verdict = world.verdict()
    assert not verdict.granted
    assert refusal_rules(verdict, comment_id) == ["plan-comment-current"]


@pytest.mark.parametrize(
    ("who", "rule"),
    [("carol", "not-author"), ("erin", "not-actor"), ("dave", "permission"), ("bot", "not-bot")],
)
def test_who_may_not_approve(world: World, who: str, rule: str) -> None:
    world.post(PLAN)
    comment_id = world.approve(world.bot_login if who == "bot" else who)
    verdict = world.verdict()
    assert not verdict.granted
    assert refusal_rules(verdict, comment_id) == [rule], verdict.log_lines()


def test_a_non_member_has_no_permission(world: World) -> None:
    world.server.add_user("mallory")
    world.post(PLAN)
    comment_id = world.approve("mallory")
    verdict = world.verdict()
    assert refusal_rules(verdict, comment_id) == ["permission"]
    assert "none" in verdict.refusals[0].reason


def test_an_edited_approval_does_not_count(world: World) -> None:
    world.post(PLAN)
    comment_id = world.comment("alice", "/signoff approve 000000000000")
    world.server.edit_comment(
        world.platform, REPO, 7, comment_id, f"/signoff approve {PLAN.short_hash}"
    )
    verdict = world.verdict()
    assert not verdict.granted
    assert refusal_rules(verdict, comment_id) == ["not-edited"]


def test_a_stale_hash_does_not_count(world: World) -> None:
    world.post(OTHER_PLAN)
    world.post(PLAN)  # the plan changed: the sticky comment now shows PLAN
    comment_id = world.approve("alice", OTHER_PLAN)
    verdict = world.verdict(PLAN)
    assert not verdict.granted
    assert refusal_rules(verdict, comment_id) == ["plan-hash"]


def test_an_approval_older_than_the_last_push_does_not_count(world: World) -> None:
    world.post(PLAN)
    comment_id = world.approve("alice")
    world.server.push(world.platform, REPO, 7, "c" * 40)
    # A plan for the old head does not count once the PR/MR has moved on ...
    assert refusal_rules(world.verdict(), comment_id) == ["head-current"]
    world.head = "c" * 40
    # ... and for the new head nothing counts until its plan is shown.
    assert refusal_rules(world.verdict(), comment_id) == ["plan-comment-current"]
    world.post(PLAN)  # same plan, new head: the comment is rewritten for it
    verdict = world.verdict()
    assert not verdict.granted
    assert refusal_rules(verdict, comment_id) == ["after-plan-comment"]
    world.approve("bob")
    assert world.verdict().granted


def test_an_approval_on_another_review_does_not_count(world: World) -> None:
    world.post(PLAN)
    elsewhere = world.approve("alice", number=8)
    verdict = world.verdict(evidence=(elsewhere,))
    assert not verdict.granted
    assert refusal_rules(verdict, elsewhere) == ["this-review"]


def test_two_approvals_need_two_people(world: World) -> None:
    world.post(PLAN)
    world.approve("alice")
    again = world.approve("alice")
    verdict = world.verdict(min_approvals=2)
    assert not verdict.granted
    assert refusal_rules(verdict, again) == ["distinct-approver"]
    world.approve("bob")
    verdict = world.verdict(min_approvals=2)
    assert verdict.granted
    assert [a.login for a in verdict.approvers] == ["alice", "bob"]


def test_a_rejection_wins(world: World) -> None:
    world.post(PLAN)
    world.approve("alice")
    world.approve("bob")
    ignored = world.comment("dave", "/signoff reject")  # read-only: not authorised
    assert world.verdict().granted
    assert refusal_rules(world.verdict(), ignored) == ["permission"]
    world.comment("erin", "Not on a Friday.\n/signoff reject")
    verdict = world.verdict()
    assert not verdict.granted
    assert [r.login for r in verdict.rejected_by] == ["erin"]


def test_a_group_member_with_developer_access_may_approve() -> None:
    with CodeHostServer() as server:
        world = World(server, "gitlab")
        server.add_user("gina")
        world.grant("gina", "write", via_group=True)
        world.post(PLAN)
        world.approve("gina")
        assert world.verdict().granted
        assert world.requests("GET", f"/members/all/{server.user('gina').id}") == 1


def test_250_comments_are_all_read(world: World) -> None:
    world.post(PLAN)
    for n in range(248):
        world.comment("bob" if n % 2 else "dave", f"comment {n}")
    if world.platform == "gitlab":
        world.server.add_comment("gitlab", REPO, 7, "alice", "added 1 commit", system=True)
    else:
        world.comment("bob", "one more")
    world.approve("alice")  # the 251st comment, on the last page
    before = world.requests("GET", "/7/comments") + world.requests("GET", "/7/notes")
    verdict = world.verdict()
    assert verdict.granted, verdict.log_lines()
    pages = world.requests("GET", "/7/comments") + world.requests("GET", "/7/notes") - before
    assert pages == 3  # 251 at 100 a page, full objects: no lazy fetch per comment
    state = world.host.read_review(world.review, database=DB)
    assert len(state.comments) == (249 if world.platform == "gitlab" else 250)
    assert all(c.body != "added 1 commit" for c in state.comments)


def test_the_plan_comment_is_created_once_then_updated_in_place(world: World) -> None:
    # Anyone can post the marker; only the gateway's own comment is the plan comment.
    world.comment("alice", "<!-- signoff:plan db=ehr -->\nnot the real one")
    first = world.post(OTHER_PLAN)
    assert OTHER_PLAN.hash in first.body
    same = world.post(OTHER_PLAN)
    assert (same.id, same.updated_at) == (first.id, first.updated_at)  # not rewritten
    second = world.post(PLAN)
    assert second.id == first.id and second.url == first.url
    assert second.updated_at > first.updated_at
    assert f"/signoff approve {PLAN.short_hash}" in second.body
    assert f"The plan changed since `{OTHER_PLAN.short_hash}`" in second.body
    assert "no longer count" in second.body
    created = world.requests("POST", "/7/comments") + world.requests("POST", "/7/notes")
    assert created == 1
    bodies = [c.body for c in world.server.repo(world.platform, REPO).reviews[7].comments]
    assert sum(1 for b in bodies if PLAN.hash in b) == 1
    found = world.host.find_plan_comment(world.review, database=DB)
    assert found is not None and found.id == first.id and found.plan_hash == PLAN.hash
    assert world.host.find_plan_comment(world.review, database="billing") is None


def test_the_merged_review_of_a_commit_is_found(world: World) -> None:
    merge = "d" * 40
    assert world.host.merged_review_of_commit(REPO, HEAD) is None  # open, not merged
    world.server.merge(world.platform, REPO, 7, merge, squash=world.platform == "gitlab")
    found = world.host.merged_review_of_commit(REPO, merge)
    assert found is not None
    assert (found.platform, found.repository, found.number, found.head_sha) == (
        world.platform,
        REPO,
        7,
        HEAD,
    )


def test_an_unknown_commit_is_an_error_naming_it(world: World) -> None:
    with pytest.raises(CodeHostError, match=r"acme/ehr@eeeeeeeeeeee"):
        world.host.merged_review_of_commit(REPO, "e" * 40)


def test_a_bad_token_is_one_line_without_the_token(world: World) -> None:
    bad: CodeHost = (
        GitHubHost("wrong-token", world.server.github_url, retry=None)
        if world.platform == "github"
        else GitLabHost("wrong-token", world.server.gitlab_url)
    )
    with pytest.raises(CodeHostError) as raised:
        bad.read_review(world.review, database=DB)
    assert "401" in str(raised.value) and "wrong-token" not in str(raised.value)
    assert "\n" not in str(raised.value)


def test_conditional_requests_answer_304() -> None:
    with CodeHostServer() as server:
        World(server, "github").host.close()
        gh = Github(
            base_url=server.github_url,
            auth=Auth.Token(server.token_of("signoff-gateway")),
            seconds_between_requests=None,
            seconds_between_writes=None,
            retry=None,
            lazy=True,
        )
        pull = gh.get_repo(REPO).get_pull(7)
        assert pull.head.sha == HEAD
        assert pull.update() is False  # If-None-Match matched: 304
        server.push("github", REPO, 7, "f" * 40)
        assert pull.update() is True
        assert pull.head.sha == "f" * 40
        gh.close()


def _retrying_host(world: World) -> CodeHost:
    token = world.server.token_of("signoff-gateway")
    if world.platform == "github":
        return GitHubHost(token, world.server.github_url)  # the default retry policy
    return GitLabHost(token, world.server.gitlab_url)


def test_reads_are_retried_and_writes_are_not(world: World) -> None:
    host = _retrying_host(world)
    comments = "/7/comments" if world.platform == "github" else "/7/notes"
    world.server.fail("GET", comments, 502)
    assert host.find_plan_comment(world.review, database=DB) is None  # read again: fine
    assert world.requests("GET", comments) == 2
    # A lost answer to a POST may have created the comment: never sent twice.
    world.server.fail("POST", comments, 502)
    with pytest.raises(CodeHostError, match="502"):
        post_plan(host, world.review, PLAN, database=DB)
    assert world.requests("POST", comments) == 1
    post_plan(host, world.review, PLAN, database=DB)
    assert world.requests("POST", comments) == 2
    assert len(world.server.repo(world.platform, REPO).reviews[7].comments) == 1
    host.close()
