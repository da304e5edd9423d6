"""The loopback code host's state: users, repositories, reviews (PRs/MRs) and
their comments, as runner.demo.codehost keeps them and its REST routes show them."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime

START = datetime(2026, 12, 4, 0, 0, 0, tzinfo=UTC)
GITLAB_ACCESS = {"guest": 10, "reporter": 20, "developer": 30, "maintainer": 40, "owner": 50}
# GitHub's legacy ``permission`` for each role: maintain reads as write, triage as read.
GITHUB_LEGACY = {
    "read": "read",
    "triage": "read",
    "write": "write",
    "maintain": "write",
    "admin": "admin",
}


@dataclass
class UserRecord:
    id: int
    login: str
    bot: bool
    token: str


@dataclass
class CommentRecord:
    id: int
    author: int
    body: str
    created_at: datetime
    updated_at: datetime
    system: bool = False


@dataclass
class ReviewRecord:
    number: int
    id: int
    author: int
    head_sha: str
    state: str = "open"  # open, closed, merged
    merge_commit_sha: str | None = None
    squash_commit_sha: str | None = None
    merged_at: datetime | None = None
    comments: list[CommentRecord] = field(default_factory=list)


@dataclass
class RepoRecord:
    platform: str
    path: str
    id: int
    # GitHub: login -> role name; GitLab: user id -> (access level, via group)
    roles: dict[str, str] = field(default_factory=dict)
    members: dict[int, tuple[int, bool]] = field(default_factory=dict)
    reviews: dict[int, ReviewRecord] = field(default_factory=dict)
    commits: set[str] = field(default_factory=set)


class HttpError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
