"""GitHub (github.com or Enterprise) through PyGithub, with the gateway's own token.

What is read: the pull request (author, head sha, state), every issue comment
of it (every page, 100 a page), and for each person who posted a /signoff
command their permission from the permission API (``permission`` and
``role_name``; never the comment's ``author_association``). What is written:
the one sticky plan comment per PR and database, created once, then edited in
place.

Client settings, deliberately: no client-side throttling (PyGithub sleeps
0.25 s between requests and 1 s between writes by default, which would hold a
gateway request for a minute on a long PR); retries only for reads (a retried
POST after a lost answer would post the plan comment twice), three at most,
and a rate-limit wait capped at 30 s rather than PyGithub's unbounded wait.
"""

from __future__ import annotations

import urllib.parse
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime

import requests
from github import Auth, Github, GithubException, GithubRetry
from github.IssueComment import IssueComment
from github.NamedUser import NamedUser
from github.Organization import Organization
from urllib3.util.retry import Retry

from runner.approval.comment import (
    as_plan_comment,
    find_plan_comment,
    parse_marker,
    require_status_marker,
)
from runner.approval.model import (
    ApprovalComment,
    CodeHostError,
    Permission,
    PlanComment,
    Review,
    ReviewState,
    User,
)
from runner.approval.policy import GITHUB_LEVELS, has_command

DEFAULT_API_URL = "https://api.github.com"
# Shared like PyGithub's own default: urllib3 copies a Retry for every request.
DEFAULT_RETRY: Retry = GithubRetry(
    total=3,
    backoff_factor=0.5,
    allowed_methods=frozenset({"GET", "HEAD"}),
    max_rate_limit_wait=30,
)


def github_permission(permission: str | None, role_name: str | None) -> Permission:
    """The permission API's answer on one scale. ``role_name`` is the real role
    (``maintain``, ``triage``); ``permission`` the legacy level (maintain reads as
    write, triage as read), used when the role is a custom one."""
    if role_name in GITHUB_LEVELS:
        assert role_name is not None
        return Permission(role_name, GITHUB_LEVELS[role_name])
    if permission in GITHUB_LEVELS:
        assert permission is not None
        return Permission(permission, GITHUB_LEVELS[permission])
    return Permission(permission or "none", 0)


def _user(named: NamedUser | Organization) -> User:
    login = named.login
    return User(login=login, id=named.id, bot=named.type == "Bot" or login.endswith("[bot]"))


def _aware(value: datetime) -> datetime:
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


class GitHubHost:
    """The ``CodeHost`` for GitHub. ``bot_login`` is the login the gateway's token
    acts as; given, it saves a request, and it is required for a GitHub App
    installation token (which cannot read ``/user``)."""

    platform = "github"

    def __init__(
        self,
        token: str,
        api_url: str = DEFAULT_API_URL,
        *,
        bot_login: str | None = None,
        timeout: int = 15,
        retry: Retry | None = DEFAULT_RETRY,
    ) -> None:
        self.api_url = api_url.rstrip("/")
        self._bot_login = bot_login
        self._gh = Github(
            base_url=self.api_url,
            auth=Auth.Token(token),
            timeout=timeout,
            per_page=100,
            retry=retry,
            seconds_between_requests=None,
            seconds_between_writes=None,
            lazy=True,
        )

    def close(self) -> None:
        self._gh.close()

    # --- reading ---------------------------------------------------------------------------------

    def read_review(self, review: Review, *, database: str) -> ReviewState:
        with _errors(f"GitHub {review}"):
            pull = self._gh.get_repo(review.repository).get_pull(review.number)
            author = _user(pull.user)
            head_sha = pull.head.sha
            state = "merged" if pull.merged_at is not None else pull.state
            comments = self._comments(review)
            plan_comment = self._plan_comment(comments, database)
            commenters = {c.author.id: c.author for c in comments if has_command(c.body)}
            permissions = {
                user_id: self._permission(review.repository, user.login)
                for user_id, user in commenters.items()
            }
        return ReviewState(
            review=review,
            author=author,
            head_sha=head_sha.lower(),
            state=state,
            comments=tuple(c for c in comments if plan_comment is None or c.id != plan_comment.id),
            plan_comment=plan_comment,
            permissions=permissions,
            bots=frozenset(u.id for u in commenters.values() if u.bot),
        )

    def find_plan_comment(self, review: Review, *, database: str) -> PlanComment | None:
        with _errors(f"GitHub {review}"):
            return self._plan_comment(self._comments(review), database)

    def _raw_comments(self, review: Review) -> list[IssueComment]:
        issue = self._gh.get_repo(review.repository).get_issue(review.number)
        return list(issue.get_comments())

    def _comments(self, review: Review) -> list[ApprovalComment]:
        return [_comment(raw) for raw in self._raw_comments(review)]

    def _me(self) -> str:
        if self._bot_login is None:
            self._bot_login = self._gh.get_user().login
        return self._bot_login

    def _plan_comment(self, comments: list[ApprovalComment], database: str) -> PlanComment | None:
        return find_plan_comment(comments, database, self._me())

    def _permission(self, repository: str, login: str) -> Permission:
        url = f"/repos/{repository}/collaborators/{urllib.parse.quote(login, safe='')}/permission"
        try:
            _, data = self._gh.requester.requestJsonAndCheck("GET", url)
        except GithubException as error:
            if error.status == 404:  # not a collaborator (or no such user)
                return Permission("none", 0)
            raise
        return github_permission(data.get("permission"), data.get("role_name"))

    # --- writing ---------------------------------------------------------------------------------

    def upsert_plan_comment(self, review: Review, *, database: str, body: str) -> PlanComment:
        """Create the sticky comment, or edit it in place; an identical body is not
        rewritten (its time is when the plan for this head was first shown)."""
        found = parse_marker(body)
        if found is None or found.database != database:
            raise ValueError(f"the plan comment body must start with the marker of {database!r}")
        with _errors(f"GitHub {review}"):
            raw = self._raw_comments(review)
            existing = self._plan_comment([_comment(r) for r in raw], database)
            if existing is None:
                issue = self._gh.get_repo(review.repository).get_issue(review.number)
                created = issue.create_comment(body)
                return as_plan_comment(_comment(created), database)
            if existing.body == body:
                return existing
            target = next(r for r in raw if r.id == existing.id)
            target.edit(body)
            return as_plan_comment(_comment(target), database)

    def upsert_status_comment(self, review: Review, *, database: str, body: str) -> str:
        """The gateway's status comment (what ran, on whose approval), created or
        edited in place; its URL. Never the plan comment: its marker differs."""
        marker = require_status_marker(body, database)
        with _errors(f"GitHub {review}"):
            me = self._me().lower()
            for raw in self._raw_comments(review):
                text = raw.body or ""
                if text.split("\n", 1)[0].strip() == marker and raw.user.login.lower() == me:
                    if text != body:
                        raw.edit(body)
                    return str(raw.html_url)
            issue = self._gh.get_repo(review.repository).get_issue(review.number)
            return str(issue.create_comment(body).html_url)

    # --- after merge -----------------------------------------------------------------------------

    def merged_review_of_commit(self, repository: str, sha: str) -> Review | None:
        """The merged PR whose merge (or squash/rebase result) is ``sha``: on the
        default branch after a merge, the approvals live there."""
        with _errors(f"GitHub {repository}@{sha[:12]}"):
            commit = self._gh.get_repo(repository).get_commit(sha)
            matches = [
                pull
                for pull in commit.get_pulls()
                if pull.merged_at is not None
                and (pull.merge_commit_sha or "").lower() == sha.lower()
            ]
            if not matches:
                return None
            if len(matches) > 1:
                numbers = ", ".join(f"#{p.number}" for p in matches)
                raise CodeHostError(
                    f"GitHub {repository}@{sha[:12]}: merged by several PRs ({numbers})"
                )
            pull = matches[0]
            return Review("github", self.api_url, repository, pull.number, pull.head.sha.lower())


def _comment(raw: IssueComment) -> ApprovalComment:
    return ApprovalComment(
        id=raw.id,
        url=raw.html_url,
        author=_user(raw.user),
        created_at=_aware(raw.created_at),
        updated_at=_aware(raw.updated_at),
        body=raw.body or "",
    )


@contextmanager
def _errors(what: str) -> Iterator[None]:
    """Library errors as one line naming the review; never the token."""
    try:
        yield
    except GithubException as error:
        message = error.message or (
            error.data.get("message") if isinstance(error.data, dict) else None
        )
        raise CodeHostError(f"{what}: HTTP {error.status} {message or ''}".rstrip()) from error
    except requests.RequestException as error:
        raise CodeHostError(f"{what}: {type(error).__name__}: {error}") from error
