"""GitLab (gitlab.com or self-managed) through python-gitlab, with the gateway's own token.

What is read: the merge request (author, head sha, state), every note of it
(every page, oldest first, system notes skipped: "added 1 commit" is not a
person), for each person who posted a /signoff command their access level
from ``members/all`` (a member through a group is not in ``members``) and
their ``bot`` flag from the full user record (a note's author and a member
entry do not carry it). What is written: the one sticky plan note per MR and
database, created once, then edited in place.

Retries, deliberately: reads retry transient errors (500-504, connection
errors) and 429s three times; writes never retry (a retried POST after a lost
answer would post the plan comment twice).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

import gitlab
import requests
from gitlab.exceptions import GitlabError, GitlabGetError
from gitlab.v4.objects import Project, ProjectMergeRequest

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
from runner.approval.policy import GITLAB_LEVELS, has_command

DEFAULT_API_URL = "https://gitlab.com"
_READ: dict[str, Any] = {"retry_transient_errors": True, "max_retries": 3}
_WRITE: dict[str, Any] = {"retry_transient_errors": False, "max_retries": 0}
_LEVEL_NAMES = {level: name for name, level in GITLAB_LEVELS.items()}


def gitlab_permission(access_level: int | None) -> Permission:
    level = int(access_level or 0)
    return Permission(_LEVEL_NAMES.get(level, f"access level {level}"), level)


def _time(value: str) -> datetime:
    parsed = datetime.fromisoformat(value)
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)


def _author(data: dict[str, Any]) -> User:
    # bot is absent from a note's author; read_review fills it in from /users/:id.
    return User(login=str(data["username"]), id=int(data["id"]), bot=bool(data.get("bot", False)))


class GitLabHost:
    """The ``CodeHost`` for GitLab. ``api_url`` is the instance URL (python-gitlab
    adds ``/api/v4``); ``bot_username`` the user the token acts as (else ``/user``)."""

    platform = "gitlab"

    def __init__(
        self,
        token: str,
        api_url: str = DEFAULT_API_URL,
        *,
        bot_username: str | None = None,
        timeout: float = 15.0,
    ) -> None:
        self.api_url = api_url.rstrip("/")
        self._bot_username = bot_username
        self._gl = gitlab.Gitlab(
            self.api_url,
            private_token=token,
            timeout=timeout,
            per_page=100,
            retry_transient_errors=False,
        )

    def close(self) -> None:
        self._gl.session.close()

    def _project(self, repository: str) -> Project:
        return self._gl.projects.get(repository, lazy=True)

    def _merge_request(self, review: Review) -> ProjectMergeRequest:
        return self._project(review.repository).mergerequests.get(review.number, **_READ)

    # --- reading ---------------------------------------------------------------------------------

    def read_review(self, review: Review, *, database: str) -> ReviewState:
        with _errors(f"GitLab {review}"):
            mr = self._merge_request(review)
            author = _author(mr.author)
            notes = self._notes(mr)
            plan_comment = self._plan_comment(notes, database)
            commenters = {c.author.id: c.author for c in notes if has_command(c.body)}
            project = self._project(review.repository)
            permissions = {uid: self._permission(project, uid) for uid in commenters}
            bots = frozenset(uid for uid in commenters if self._is_bot(uid))
        return ReviewState(
            review=review,
            author=author,
            head_sha=str(mr.sha).lower(),
            state="open" if mr.state == "opened" else str(mr.state),
            comments=tuple(c for c in notes if plan_comment is None or c.id != plan_comment.id),
            plan_comment=plan_comment,
            permissions=permissions,
            bots=bots,
        )

    def find_plan_comment(self, review: Review, *, database: str) -> PlanComment | None:
        with _errors(f"GitLab {review}"):
            return self._plan_comment(self._notes(self._merge_request(review)), database)

    def _raw_notes(self, mr: ProjectMergeRequest) -> list[Any]:
        notes = mr.notes.list(get_all=True, sort="asc", order_by="created_at", **_READ)
        return [n for n in notes if not n.attributes.get("system", False)]

    def _notes(self, mr: ProjectMergeRequest) -> list[ApprovalComment]:
        return [_note(n.attributes, str(mr.web_url)) for n in self._raw_notes(mr)]

    def _me(self) -> str:
        if self._bot_username is None:
            self._gl.auth()
            assert self._gl.user is not None
            self._bot_username = str(self._gl.user.username)
        return self._bot_username

    def _plan_comment(self, notes: list[ApprovalComment], database: str) -> PlanComment | None:
        return find_plan_comment(notes, database, self._me())

    def _permission(self, project: Project, user_id: int) -> Permission:
        try:
            member = project.members_all.get(user_id, **_READ)
        except GitlabGetError as error:
            if error.response_code == 404:  # no access, directly or through a group
                return Permission("none", 0)
            raise
        return gitlab_permission(member.attributes.get("access_level"))

    def _is_bot(self, user_id: int) -> bool:
        user = self._gl.users.get(user_id, **_READ)
        return bool(user.attributes.get("bot", False))

    # --- writing ---------------------------------------------------------------------------------

    def upsert_plan_comment(self, review: Review, *, database: str, body: str) -> PlanComment:
        """Create the sticky note, or edit it in place; an identical body is not
        rewritten (its time is when the plan for this head was first shown)."""
        found = parse_marker(body)
        if found is None or found.database != database:
            raise ValueError(f"the plan comment body must start with the marker of {database!r}")
        with _errors(f"GitLab {review}"):
            mr = self._merge_request(review)
            web_url = str(mr.web_url)
            raw = self._raw_notes(mr)
            existing = self._plan_comment([_note(n.attributes, web_url) for n in raw], database)
            if existing is None:
                created = mr.notes.create({"body": body}, **_WRITE)
                return as_plan_comment(_note(created.attributes, web_url), database)
            if existing.body == body:
                return existing
            target = next(n for n in raw if int(n.id) == existing.id)
            target.body = body
            target.save(**_WRITE)
            return as_plan_comment(_note(target.attributes, web_url), database)

    def upsert_status_comment(self, review: Review, *, database: str, body: str) -> str:
        """The gateway's status note (what ran, on whose approval), created or edited
        in place; its URL. Never the plan note: its marker differs."""
        marker = require_status_marker(body, database)
        with _errors(f"GitLab {review}"):
            mr = self._merge_request(review)
            web_url = str(mr.web_url)
            me = self._me().lower()
            for raw in self._raw_notes(mr):
                note = _note(raw.attributes, web_url)
                if (
                    note.body.split("\n", 1)[0].strip() == marker
                    and note.author.login.lower() == me
                ):
                    if note.body != body:
                        raw.body = body
                        raw.save(**_WRITE)
                    return note.url
            created = mr.notes.create({"body": body}, **_WRITE)
            return _note(created.attributes, web_url).url

    # --- after merge -----------------------------------------------------------------------------

    def merged_review_of_commit(self, repository: str, sha: str) -> Review | None:
        """The merged MR whose merge commit (or squash commit, or head when it was
        fast-forwarded) is ``sha``."""
        with _errors(f"GitLab {repository}@{sha[:12]}"):
            commit = self._project(repository).commits.get(sha, lazy=True)
            found = commit.merge_requests(get_all=True, **_READ)
            wanted = sha.lower()
            matches = [
                mr
                for mr in found
                if isinstance(mr, dict) and mr.get("state") == "merged" and _merged_as(mr, wanted)
            ]
            if not matches:
                return None
            if len(matches) > 1:
                numbers = ", ".join(f"!{mr['iid']}" for mr in matches)
                raise CodeHostError(
                    f"GitLab {repository}@{sha[:12]}: merged by several MRs ({numbers})"
                )
            mr = matches[0]
            return Review(
                "gitlab", self.api_url, repository, int(mr["iid"]), str(mr["sha"]).lower()
            )


def _merged_as(mr: dict[str, Any], sha: str) -> bool:
    merge, squash = mr.get("merge_commit_sha"), mr.get("squash_commit_sha")
    if sha in {str(merge).lower(), str(squash).lower()}:
        return True
    # A fast-forward merge has no merge commit: the MR's head is on the branch.
    return merge is None and squash is None and str(mr.get("sha", "")).lower() == sha


def _note(data: dict[str, Any], mr_web_url: str) -> ApprovalComment:
    return ApprovalComment(
        id=int(data["id"]),
        url=f"{mr_web_url}#note_{data['id']}",
        author=_author(data["author"]),
        created_at=_time(str(data["created_at"])),
        updated_at=_time(str(data.get("updated_at") or data["created_at"])),
        body=str(data.get("body") or ""),
    )


@contextmanager
def _errors(what: str) -> Iterator[None]:
    """Library errors as one line naming the review; never the token."""
    try:
        yield
    except GitlabError as error:
        status = f"HTTP {error.response_code} " if error.response_code else ""
        raise CodeHostError(f"{what}: {status}{error.error_message}".rstrip()) from error
    except requests.RequestException as error:
        raise CodeHostError(f"{what}: {type(error).__name__}: {error}") from error
