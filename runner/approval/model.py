"""What the approval rules read and what they answer.

Every value here is what the code host itself said (fetched with the
gateway's own credential); nothing comes from the runner except the
``Review`` it claims to be working on, which the host snapshot checks.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Literal

Platform = Literal["github", "gitlab"]
_SEGMENT = re.compile(r"[A-Za-z0-9_.\-]+")
_SHA = re.compile(r"[0-9a-fA-F]{40}|[0-9a-fA-F]{64}")
PLATFORMS: tuple[Platform, ...] = ("github", "gitlab")


class CodeHostError(Exception):
    """The code host could not be read or written; the answer is "no approval"."""


@dataclass(frozen=True)
class Review:
    """A pull request (GitHub) or merge request (GitLab) a plan is reviewed on.

    ``head_sha`` is the commit the plan was made for; ``api_url`` the code host's
    API base (``https://api.github.com``, ``https://ghe.example/api/v3``,
    ``https://gitlab.example``).
    """

    platform: Platform
    api_url: str
    repository: str  # "owner/name" or a GitLab "group/sub/project" path
    number: int  # PR number or MR iid
    head_sha: str

    def __post_init__(self) -> None:
        # These come from the (untrusted) runner and end up in API paths.
        if self.platform not in PLATFORMS:
            raise ValueError(f"review platform {self.platform!r}: use github or gitlab")
        segments = self.repository.split("/")
        depth_ok = len(segments) == 2 if self.platform == "github" else len(segments) >= 2
        if not depth_ok or not all(
            _SEGMENT.fullmatch(s) and s not in (".", "..") for s in segments
        ):
            raise ValueError(
                f"review repository {self.repository!r}: give owner/name (GitLab: group/…/project)"
            )
        if self.number < 1:
            raise ValueError(f"review number {self.number}: give the PR number or MR iid")
        # "" is "not known yet" (read it from the host); it never matches a head.
        if self.head_sha and _SHA.fullmatch(self.head_sha) is None:
            raise ValueError(f"review head_sha {self.head_sha!r}: give the full commit sha")

    def __str__(self) -> str:
        sign = "#" if self.platform == "github" else "!"
        return f"{self.repository}{sign}{self.number}"


@dataclass(frozen=True)
class User:
    login: str
    id: int
    bot: bool = False

    def same_as(self, other: User) -> bool:
        # Ids are the identity; logins can be renamed, but a login match is
        # still treated as the same person (fail closed for "not the author").
        return self.id == other.id or self.login.lower() == other.login.lower()


@dataclass(frozen=True)
class Actor:
    """The person the CI job ran for, from the gateway's verified OIDC claims
    (GitHub ``actor``/``actor_id``, GitLab ``user_login``/``user_id``)."""

    login: str
    id: int | None = None

    def is_user(self, user: User) -> bool:
        if self.id is not None and self.id == user.id:
            return True
        return self.login.lower() == user.login.lower()


@dataclass(frozen=True)
class ApprovalComment:
    """A comment (GitHub issue comment, GitLab MR note) as the code host returns it."""

    id: int
    url: str
    author: User
    created_at: datetime
    updated_at: datetime
    body: str

    @property
    def edited(self) -> bool:
        # Both hosts move updated_at on an edit of the body; anything else that
        # moves it makes the comment not count, which is the safe side.
        return self.updated_at != self.created_at


@dataclass(frozen=True)
class PlanComment:
    """The sticky plan comment the gateway wrote, as the code host returns it.

    ``written_at`` is when its current text was last written (``updated_at``):
    an approval counts only if it came after the plan for the current head was
    shown there.
    """

    id: int
    url: str
    author: User
    created_at: datetime
    updated_at: datetime
    body: str
    database: str
    head_sha: str | None
    plan_hash: str | None

    @property
    def written_at(self) -> datetime:
        return self.updated_at


@dataclass(frozen=True)
class Permission:
    """A user's permission on the repository/project: the host's own name and a
    level on one scale (GitLab's access levels; GitHub roles mapped onto them)."""

    name: str
    level: int


NO_PERMISSION = Permission("none", 0)


@dataclass(frozen=True)
class ReviewState:
    """One reading of a review on the code host: everything the rules need."""

    review: Review
    author: User
    head_sha: str  # the PR/MR's head on the host now, not what the runner said
    state: str  # "open", "closed", "merged"
    comments: tuple[ApprovalComment, ...]
    plan_comment: PlanComment | None
    # Permission and bot-ness of every user who posted a /signoff command,
    # by user id. A missing entry means "no permission" (fail closed).
    permissions: Mapping[int, Permission] = field(default_factory=dict)
    bots: frozenset[int] = frozenset()

    def permission_of(self, user: User) -> Permission:
        return self.permissions.get(user.id, NO_PERMISSION)

    def is_bot(self, user: User) -> bool:
        return user.bot or user.id in self.bots


@dataclass(frozen=True)
class Refusal:
    """One comment that did not count, the rule that refused it and why."""

    comment_url: str
    rule_id: str
    reason: str

    def log_line(self) -> str:
        return f"approval refused rule={self.rule_id} comment={self.comment_url}: {self.reason}"


@dataclass(frozen=True)
class Approver:
    login: str
    id: int
    comment_url: str


@dataclass(frozen=True)
class ApprovalVerdict:
    plan_hash: str
    granted: bool
    approvers: tuple[Approver, ...]
    rejected_by: tuple[Approver, ...]
    refusals: tuple[Refusal, ...]
    required: int
    reason: str  # one line: why granted or not

    def log_lines(self) -> list[str]:
        head = "granted" if self.granted else "not granted"
        lines = [f"approval {head} plan={self.plan_hash[:12]}: {self.reason}"]
        lines += [
            f"approval counted approver={a.login} comment={a.comment_url}" for a in self.approvers
        ]
        lines += [
            f"approval rejected by={r.login} comment={r.comment_url}" for r in self.rejected_by
        ]
        lines += [r.log_line() for r in self.refusals]
        return lines
