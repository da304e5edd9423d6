"""The approval rules: pure functions of a ``ReviewState`` read from the code host.

``/signoff approve <plan-hash prefix, at least 12 hex>`` counts only if every
rule below lets it through; the first rule that refuses a comment is reported
with its stable id (the log line and the API answer name it). The author's
association field on a comment (``author_association``) is never read: it says
nothing reliable about write access (a member of the organisation is MEMBER
without any right on the repository); the permission API answer is used.

``/signoff reject`` by a user with the required permission who is not a bot,
made while the current plan is shown, rejects: a rejection always wins over any
number of approvals. An edited rejection still counts (rejecting is the safe
direction); the author and the job's actor may reject their own change.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Literal

from runner.approval.model import (
    Actor,
    ApprovalComment,
    ApprovalVerdict,
    Approver,
    Platform,
    Refusal,
    ReviewState,
)

MIN_PREFIX = 12

# Stable rule ids: they appear in log lines and API answers; never renamed.
RULE_COMMAND = "command-format"
RULE_STATE = "review-state"
RULE_HEAD = "head-current"
RULE_PLAN_COMMENT = "plan-comment-current"
RULE_HASH = "plan-hash"
RULE_AFTER_PLAN = "after-plan-comment"
RULE_NOT_EDITED = "not-edited"
RULE_NOT_BOT = "not-bot"
RULE_NOT_AUTHOR = "not-author"
RULE_NOT_ACTOR = "not-actor"
RULE_PERMISSION = "permission"
RULE_THIS_REVIEW = "this-review"
RULE_DISTINCT = "distinct-approver"

# GitHub roles on GitLab's access-level scale, so one comparison serves both.
GITHUB_LEVELS = {"none": 0, "read": 20, "triage": 25, "write": 30, "maintain": 40, "admin": 50}
GITLAB_LEVELS = {
    "none": 0,
    "minimal": 5,
    "guest": 10,
    "planner": 15,
    "reporter": 20,
    "developer": 30,
    "maintainer": 40,
    "owner": 50,
}


@dataclass(frozen=True)
class ApprovalPolicy:
    """Who may approve: at least ``github_permission`` (a GitHub role) or GitLab
    ``gitlab_access_level`` (30 = Developer), and how many distinct people."""

    github_permission: str = "write"
    gitlab_access_level: int = 30
    min_approvals: int = 1

    def __post_init__(self) -> None:
        if self.github_permission not in GITHUB_LEVELS or self.github_permission == "none":
            raise ValueError(
                f"approval github_permission {self.github_permission!r}: "
                "use one of read, triage, write, maintain, admin"
            )
        if self.gitlab_access_level < GITLAB_LEVELS["guest"]:
            raise ValueError(
                f"approval gitlab_access_level {self.gitlab_access_level}: use 10 (guest) or more"
            )
        if self.min_approvals < 1:
            raise ValueError(f"min_approvals {self.min_approvals}: use 1 or more")

    def required_level(self, platform: Platform) -> int:
        if platform == "github":
            return GITHUB_LEVELS[self.github_permission]
        return self.gitlab_access_level

    def required_name(self, platform: Platform) -> str:
        if platform == "github":
            return self.github_permission
        names = {level: name for name, level in GITLAB_LEVELS.items()}
        return names.get(self.gitlab_access_level, f"access level {self.gitlab_access_level}")


# --- parsing -------------------------------------------------------------------------------------

Verb = Literal["approve", "reject", "malformed"]


@dataclass(frozen=True)
class Command:
    verb: Verb
    argument: str  # the hash prefix (approve), the reason (reject), the line (malformed)


_COMMAND = re.compile(r"/signoff[ \t]+(approve|reject)(?:[ \t]+(.*?))?[ \t]*")
_HEX_PREFIX = re.compile(rf"[0-9a-fA-F]{{{MIN_PREFIX},64}}")
_FENCE = re.compile(r" {0,3}(`{3,}|~{3,})")


def parse_commands(body: str) -> list[Command]:
    """Every ``/signoff`` command of a comment, strictly.

    A command is a line of its own starting at the first column with
    ``/signoff``. Lines inside fenced code blocks and HTML comments (invisible
    to a reader) never count; quoted (``> ...``), indented and inline-code text
    does not start with ``/signoff`` and so does not count either. A line that
    starts with ``/signoff`` but is not exactly a command is ``malformed``.
    """
    commands: list[Command] = []
    fence: str | None = None
    in_html_comment = False
    for raw in body.splitlines():
        line = raw.rstrip()
        if in_html_comment:
            if "-->" in line:
                in_html_comment = False
            continue
        fence_match = _FENCE.match(line)
        if fence is not None:
            if (
                fence_match
                and fence_match.group(1)[0] == fence[0]
                and len(fence_match.group(1)) >= len(fence)
            ):
                fence = None
            continue
        if fence_match:
            fence = fence_match.group(1)
            continue
        if line.startswith("<!--"):
            in_html_comment = "-->" not in line[4:]
            continue
        if not line.startswith("/signoff"):
            continue
        match = _COMMAND.fullmatch(line)
        if match is None:
            commands.append(Command("malformed", line))
            continue
        verb, argument = match.group(1), match.group(2) or ""
        if verb == "approve":
            if _HEX_PREFIX.fullmatch(argument) is None:
                commands.append(Command("malformed", line))
            else:
                commands.append(Command("approve", argument.lower()))
        else:
            commands.append(Command("reject", argument))
    return commands


def has_command(body: str) -> bool:
    """Whether a comment holds any /signoff command line (the hosts look up
    permissions only for the people who posted one)."""
    return bool(parse_commands(body))


def evidence_comment_id(value: int | str) -> int:
    """A comment id from evidence given as an id or a comment URL
    (``...#issuecomment-123``, ``.../issues/comments/123``, ``...#note_123``)."""
    if isinstance(value, int):
        return value
    text = value.strip()
    if re.fullmatch(r"[0-9]{1,19}", text):
        return int(text)
    match = re.search(r"(?:#issuecomment-|/issues/comments/|#note_|/notes/)(\d+)$", text)
    if match is None:
        raise ValueError(
            f"approval evidence {value!r}: give the comment id or the comment's URL "
            "(…#issuecomment-<id> on GitHub, …#note_<id> on GitLab)"
        )
    return int(match.group(1))


# --- the rules, one function each ----------------------------------------------------------------


@dataclass(frozen=True)
class Context:
    state: ReviewState
    plan_hash: str
    policy: ApprovalPolicy
    actor: Actor | None


CommentRule = Callable[[Context, ApprovalComment, Command], "str | None"]


def review_state(ctx: Context, comment: ApprovalComment, command: Command) -> str | None:
    """Open, or merged (apply on the default branch after merge); a review closed
    without merging approves nothing."""
    if ctx.state.state not in ("open", "merged"):
        return f"{ctx.state.review} is {ctx.state.state}"
    return None


def head_current(ctx: Context, comment: ApprovalComment, command: Command) -> str | None:
    """The plan is for the head the PR/MR has now (a push since voids it)."""
    claimed, actual = ctx.state.review.head_sha, ctx.state.head_sha
    if claimed.lower() != actual.lower():
        return (
            f"the plan is for commit {claimed[:12]} but {ctx.state.review} is at {actual[:12]} now"
        )
    return None


def plan_comment_current(ctx: Context, comment: ApprovalComment, command: Command) -> str | None:
    """The sticky plan comment shows this plan for the current head."""
    shown = ctx.state.plan_comment
    if shown is None:
        return "no plan comment from the gateway on this review yet"
    if (shown.head_sha or "").lower() != ctx.state.head_sha.lower():
        return (
            f"the plan comment shows commit {(shown.head_sha or '?')[:12]}, "
            f"not the current head {ctx.state.head_sha[:12]}"
        )
    if shown.plan_hash != ctx.plan_hash:
        return (
            f"the plan comment shows plan {(shown.plan_hash or '?')[:12]}, not {ctx.plan_hash[:12]}"
        )
    return None


def plan_hash_matches(ctx: Context, comment: ApprovalComment, command: Command) -> str | None:
    if not ctx.plan_hash.startswith(command.argument):
        return (
            f"approves {command.argument[:12]}, the current plan is {ctx.plan_hash[:12]}; "
            "a changed plan needs a new approval"
        )
    return None


def after_plan_comment(ctx: Context, comment: ApprovalComment, command: Command) -> str | None:
    """Made after the plan for the current head was written (so after the last
    push the plan was made for): an approval cannot be of a plan not yet shown."""
    shown = ctx.state.plan_comment
    if shown is None:  # plan_comment_current refuses first; kept for safety
        return "no plan comment to come after"
    if comment.created_at <= shown.written_at:
        return (
            f"made at {comment.created_at.isoformat()}, before the plan for the current head "
            f"was posted at {shown.written_at.isoformat()}"
        )
    return None


def not_edited(ctx: Context, comment: ApprovalComment, command: Command) -> str | None:
    if comment.edited:
        return f"edited at {comment.updated_at.isoformat()}; post a new comment instead of editing"
    return None


def not_bot(ctx: Context, comment: ApprovalComment, command: Command) -> str | None:
    shown = ctx.state.plan_comment
    if ctx.state.is_bot(comment.author):
        return f"{comment.author.login} is a bot"
    if shown is not None and shown.author.same_as(comment.author):
        return f"{comment.author.login} is the gateway's own account"
    return None


def not_author(ctx: Context, comment: ApprovalComment, command: Command) -> str | None:
    if ctx.state.author.same_as(comment.author):
        return f"{comment.author.login} wrote the change under review"
    return None


def not_actor(ctx: Context, comment: ApprovalComment, command: Command) -> str | None:
    if ctx.actor is not None and ctx.actor.is_user(comment.author):
        return f"{comment.author.login} is the actor of the job that asks for approval"
    return None


def has_permission(ctx: Context, comment: ApprovalComment, command: Command) -> str | None:
    platform = ctx.state.review.platform
    permission = ctx.state.permission_of(comment.author)
    if permission.level < ctx.policy.required_level(platform):
        return (
            f"{comment.author.login} has {permission.name} on {ctx.state.review.repository}; "
            f"at least {ctx.policy.required_name(platform)} is required"
        )
    return None


# In this order: the first refusal is the one reported.
APPROVAL_RULES: tuple[tuple[str, CommentRule], ...] = (
    (RULE_STATE, review_state),
    (RULE_HEAD, head_current),
    (RULE_PLAN_COMMENT, plan_comment_current),
    (RULE_HASH, plan_hash_matches),
    (RULE_AFTER_PLAN, after_plan_comment),
    (RULE_NOT_EDITED, not_edited),
    (RULE_NOT_BOT, not_bot),
    (RULE_NOT_AUTHOR, not_author),
    (RULE_NOT_ACTOR, not_actor),
    (RULE_PERMISSION, has_permission),
)

REJECT_RULES: tuple[tuple[str, CommentRule], ...] = (
    (RULE_PLAN_COMMENT, plan_comment_current),
    (RULE_AFTER_PLAN, after_plan_comment),
    (RULE_NOT_BOT, not_bot),
    (RULE_PERMISSION, has_permission),
)


def first_refusal(
    rules: Iterable[tuple[str, CommentRule]],
    ctx: Context,
    comment: ApprovalComment,
    command: Command,
) -> Refusal | None:
    for rule_id, rule in rules:
        reason = rule(ctx, comment, command)
        if reason is not None:
            return Refusal(comment.url, rule_id, reason)
    return None


# --- the verdict ---------------------------------------------------------------------------------


def evaluate(
    state: ReviewState,
    plan_hash: str,
    *,
    policy: ApprovalPolicy,
    actor: Actor | None,
    evidence: Sequence[int | str] = (),
) -> ApprovalVerdict:
    """Whether the review's comments approve ``plan_hash`` (the full 64-hex hash).

    Without ``evidence`` every approval on the review is considered; with it only
    the comments it names (ids or URLs), each of which must be on this review.
    Rejections are read from every comment either way.
    """
    ctx = Context(state, plan_hash.lower(), policy, actor)
    refusals: list[Refusal] = []
    wanted: set[int] | None = None
    if evidence:
        wanted = set()
        on_review = {c.id for c in state.comments}
        for item in evidence:
            comment_id = evidence_comment_id(item)
            wanted.add(comment_id)
            if comment_id not in on_review:
                named_by_url = isinstance(item, str) and not item.strip().isdigit()
                where = item if named_by_url else f"comment {comment_id}"
                refusals.append(
                    Refusal(
                        str(where),
                        RULE_THIS_REVIEW,
                        f"comment {comment_id} is not a comment on {state.review}",
                    )
                )

    approvers: list[Approver] = []
    rejected_by: list[Approver] = []
    for comment in sorted(state.comments, key=lambda c: (c.created_at, c.id)):
        commands = parse_commands(comment.body)
        if not commands:
            if wanted is not None and comment.id in wanted:
                refusals.append(
                    Refusal(comment.url, RULE_COMMAND, "the comment holds no /signoff command")
                )
            continue
        rejects = [c for c in commands if c.verb == "reject"]
        if rejects:
            refusal = first_refusal(REJECT_RULES, ctx, comment, rejects[0])
            if refusal is None:
                rejected_by.append(Approver(comment.author.login, comment.author.id, comment.url))
            else:
                refusals.append(refusal)
            continue
        if wanted is not None and comment.id not in wanted:
            continue
        refusal = _approval_refusal(ctx, comment, commands)
        if refusal is not None:
            refusals.append(refusal)
            continue
        if any(a.id == comment.author.id for a in approvers):
            refusals.append(
                Refusal(
                    comment.url,
                    RULE_DISTINCT,
                    f"{comment.author.login} already approved; approvals count per person",
                )
            )
            continue
        approvers.append(Approver(comment.author.login, comment.author.id, comment.url))

    required = policy.min_approvals
    if rejected_by:
        granted = False
        reason = "rejected by " + ", ".join(r.login for r in rejected_by)
    elif len(approvers) >= required:
        granted = True
        reason = f"{len(approvers)} of {required} required approval(s)"
    else:
        granted = False
        reason = f"{len(approvers)} of {required} required approval(s)"
        if refusals:
            reason += f"; {len(refusals)} comment(s) did not count"
    return ApprovalVerdict(
        plan_hash=ctx.plan_hash,
        granted=granted,
        approvers=tuple(approvers),
        rejected_by=tuple(rejected_by),
        refusals=tuple(refusals),
        required=required,
        reason=reason,
    )


def _approval_refusal(
    ctx: Context, comment: ApprovalComment, commands: list[Command]
) -> Refusal | None:
    malformed = [c for c in commands if c.verb == "malformed"]
    if malformed:
        return Refusal(
            comment.url,
            RULE_COMMAND,
            f"{malformed[0].argument!r} is not a command; "
            f"post exactly: /signoff approve <the plan's {MIN_PREFIX}-hex hash>",
        )
    if len(commands) > 1:
        return Refusal(comment.url, RULE_COMMAND, "more than one /signoff command in one comment")
    return first_refusal(APPROVAL_RULES, ctx, comment, commands[0])
