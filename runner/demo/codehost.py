"""A loopback GitHub and GitLab for the demo and the tests: the real REST paths
and JSON shapes PyGithub and python-gitlab call, from one stdlib HTTP server in
a thread on 127.0.0.1 (never beyond loopback).

::

    with CodeHostServer() as host:
        host.add_user("signoff-bot"); host.add_user("alice"); host.add_user("carol")
        host.add_repo("github", "acme/ehr")
        host.grant("github", "acme/ehr", "alice", "write")
        host.add_review("github", "acme/ehr", 7, author="carol", head_sha="a" * 40)
        host.add_comment("github", "acme/ehr", 7, "alice", "/signoff approve 0123456789ab")
        GitHubHost(host.token_of("signoff-bot"), host.github_url)   # .../api/v3
        GitLabHost(host.token_of("signoff-bot"), host.gitlab_url)   # python-gitlab adds /api/v4

GitHub answers under ``/api/v3`` (an Enterprise-style base URL), GitLab under
``/api/v4``. Every URL in a response is built from the request's ``Host``
(PyGithub follows them and checks their host and port). Lists paginate with
``Link`` headers (GitHub's ``per_page`` default 30, GitLab's 20, both at most
100; GitLab adds its ``X-Page``/``X-Total`` headers); every GET carries an ETag
and answers 304 to a matching ``If-None-Match``. A request without a known
token is a 401. The server's clock starts at ``START`` and moves one second
on every write, so comment times are distinct and ordered; ``advance()``
moves it further. ``requests`` lists ``(method, path)`` of every request;
``fail()`` makes the next matching requests answer an error status.
"""

from __future__ import annotations

import hashlib
import json
import secrets
import threading
import urllib.parse
from datetime import datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any

from runner.demo.codehost_state import (
    GITHUB_LEGACY,
    GITLAB_ACCESS,
    START,
    CommentRecord,
    HttpError,
    RepoRecord,
    ReviewRecord,
    UserRecord,
)

__all__ = [
    "GITHUB_LEGACY",
    "GITLAB_ACCESS",
    "START",
    "CodeHostServer",
    "CommentRecord",
    "HttpError",
    "RepoRecord",
    "ReviewRecord",
    "UserRecord",
]


def _gh_time(value: datetime) -> str:
    return value.strftime("%Y-%m-%dT%H:%M:%SZ")


def _gl_time(value: datetime) -> str:
    return value.strftime("%Y-%m-%dT%H:%M:%S.000Z")


class CodeHostServer:
    """A context manager serving both code hosts on ``127.0.0.1:<free port>``."""

    def __init__(self) -> None:
        self.lock = threading.RLock()
        self.now = START
        self.users: dict[int, UserRecord] = {}
        self.repos: dict[tuple[str, str], RepoRecord] = {}
        self.requests: list[tuple[str, str]] = []
        self.faults: list[tuple[str, str, int]] = []
        self._ids = 1000
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # --- lifecycle -------------------------------------------------------------------------------

    def __enter__(self) -> CodeHostServer:
        owner = self

        class Handler(_Handler):
            host = owner

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        # A short poll: shutdown() waits for the loop to notice (0.5 s by default).
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
        )
        self._thread.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        assert self._server is not None and self._thread is not None
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(5)

    @property
    def base_url(self) -> str:
        assert self._server is not None
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    @property
    def github_url(self) -> str:
        return f"{self.base_url}/api/v3"

    @property
    def gitlab_url(self) -> str:
        return self.base_url

    # --- state the tests drive -------------------------------------------------------------------

    def _next_id(self) -> int:
        self._ids += 1
        return self._ids

    def tick(self) -> datetime:
        with self.lock:
            self.now += timedelta(seconds=1)
            return self.now

    def advance(self, seconds: float) -> None:
        with self.lock:
            self.now += timedelta(seconds=seconds)

    def add_user(self, login: str, *, bot: bool = False) -> UserRecord:
        with self.lock:
            user = UserRecord(self._next_id(), login, bot, "tok-" + secrets.token_hex(8))
            self.users[user.id] = user
            return user

    def user(self, login: str) -> UserRecord:
        for user in self.users.values():
            if user.login == login:
                return user
        raise KeyError(login)

    def token_of(self, login: str) -> str:
        return self.user(login).token

    def add_repo(self, platform: str, path: str) -> RepoRecord:
        with self.lock:
            repo = RepoRecord(platform, path, self._next_id())
            self.repos[(platform, path)] = repo
            return repo

    def repo(self, platform: str, path: str) -> RepoRecord:
        return self.repos[(platform, path)]

    def grant(
        self, platform: str, path: str, login: str, role: str, *, via_group: bool = False
    ) -> None:
        """GitHub: a role (read, triage, write, maintain, admin). GitLab: an access
        level name (guest .. owner), directly or through a group."""
        with self.lock:
            repo = self.repo(platform, path)
            if platform == "github":
                repo.roles[login] = role
            else:
                repo.members[self.user(login).id] = (GITLAB_ACCESS[role], via_group)

    def add_review(
        self, platform: str, path: str, number: int, *, author: str, head_sha: str
    ) -> ReviewRecord:
        with self.lock:
            repo = self.repo(platform, path)
            review = ReviewRecord(number, self._next_id(), self.user(author).id, head_sha)
            repo.reviews[number] = review
            repo.commits.add(head_sha)
            return review

    def push(self, platform: str, path: str, number: int, head_sha: str) -> None:
        with self.lock:
            repo = self.repo(platform, path)
            repo.reviews[number].head_sha = head_sha
            repo.commits.add(head_sha)
            self.tick()

    def merge(
        self, platform: str, path: str, number: int, commit_sha: str, *, squash: bool = False
    ) -> None:
        with self.lock:
            repo = self.repo(platform, path)
            review = repo.reviews[number]
            review.state = "merged"
            review.merged_at = self.tick()
            if squash:
                review.squash_commit_sha = commit_sha
            else:
                review.merge_commit_sha = commit_sha
            repo.commits.add(commit_sha)

    def add_comment(
        self, platform: str, path: str, number: int, login: str, body: str, *, system: bool = False
    ) -> int:
        with self.lock:
            review = self.repo(platform, path).reviews[number]
            at = self.tick()
            comment = CommentRecord(self._next_id(), self.user(login).id, body, at, at, system)
            review.comments.append(comment)
            return comment.id

    def edit_comment(
        self, platform: str, path: str, number: int, comment_id: int, body: str
    ) -> None:
        with self.lock:
            comment = self._comment(self.repo(platform, path).reviews[number], comment_id)
            comment.body = body
            comment.updated_at = self.tick()

    @staticmethod
    def _comment(review: ReviewRecord, comment_id: int) -> CommentRecord:
        for comment in review.comments:
            if comment.id == comment_id:
                return comment
        raise HttpError(404, "Not Found")

    def fail(self, method: str, path_suffix: str, status: int, *, times: int = 1) -> None:
        """The next ``times`` requests of ``method`` on a path ending so answer ``status``."""
        with self.lock:
            self.faults += [(method, path_suffix, status)] * times

    def take_fault(self, method: str, path: str) -> None:
        for n, (verb, suffix, status) in enumerate(self.faults):
            if verb == method and path.endswith(suffix):
                del self.faults[n]
                raise HttpError(status, "injected fault")

    def authenticate(self, headers: Any) -> UserRecord:
        value = headers.get("PRIVATE-TOKEN") or ""
        if not value:
            scheme, _, rest = (headers.get("Authorization") or "").partition(" ")
            value = rest if scheme.lower() in ("token", "bearer") else ""
        for user in self.users.values():
            if value and secrets.compare_digest(user.token, value):
                return user
        raise HttpError(401, "Bad credentials")


class _Handler(BaseHTTPRequestHandler):
    host: CodeHostServer
    protocol_version = "HTTP/1.1"
    # http.server writes headers and body apart; with keep-alive Nagle holds the
    # body for the client's delayed ACK (40 ms a request).
    disable_nagle_algorithm = True

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _handle(self) -> None:
        self._dispatch(self.command)

    do_GET = do_POST = do_PATCH = do_PUT = _handle

    def _origin(self) -> str:
        return f"http://{self.headers.get('Host') or '127.0.0.1'}"

    def _dispatch(self, method: str) -> None:
        split = urllib.parse.urlsplit(self.path)
        raw_path, query = split.path, urllib.parse.parse_qs(split.query)
        length = int(self.headers.get("Content-Length") or 0)
        payload: Any = json.loads(self.rfile.read(length) or b"{}") if length else {}
        with self.host.lock:
            self.host.requests.append((method, raw_path))
        headers: dict[str, str] = {}
        try:
            with self.host.lock:
                self.host.take_fault(method, raw_path)
                me = self.host.authenticate(self.headers)
                api: _GitHubApi | _GitLabApi
                if raw_path.startswith("/api/v3/"):
                    api = _GitHubApi(self.host, self._origin(), me)
                elif raw_path.startswith("/api/v4/"):
                    api = _GitLabApi(self.host, self._origin(), me)
                else:
                    raise HttpError(404, "Not Found")
                status, body = api.route(method, raw_path, query, payload, headers)
        except HttpError as error:
            status, body = error.status, {"message": error.message}
        data = json.dumps(body).encode("utf-8")
        if method == "GET" and status == 200:
            etag = '"' + hashlib.sha256(data).hexdigest()[:32] + '"'
            headers["ETag"] = etag
            if self.headers.get("If-None-Match") == etag:
                status, data = 304, b""
        self.send_response(status)
        self.send_header("Content-Type", "application/json; charset=utf-8")
        self.send_header("Content-Length", str(len(data)))
        for name, value in headers.items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(data)


def _page(
    items: list[Any],
    query: dict[str, list[str]],
    url: str,
    headers: dict[str, str],
    *,
    default_per_page: int,
    gitlab_headers: bool = False,
) -> list[Any]:
    """One page of ``items`` and its ``Link`` header (``, ``-joined ``<url>; rel="x"``)."""
    per_page = min(int(query.get("per_page", [default_per_page])[0]), 100)
    page = max(int(query.get("page", ["1"])[0]), 1)
    last = max((len(items) + per_page - 1) // per_page, 1)

    def link(number: int) -> str:
        params = {k: v[0] for k, v in query.items()}
        params.update(page=str(number), per_page=str(per_page))
        return f"{url}?{urllib.parse.urlencode(params)}"

    rels = []
    if page < last:
        rels.append(f'<{link(page + 1)}>; rel="next"')
    if page > 1:
        rels.append(f'<{link(page - 1)}>; rel="prev"')
    rels.append(f'<{link(1)}>; rel="first"')
    rels.append(f'<{link(last)}>; rel="last"')
    headers["Link"] = ", ".join(rels)
    if gitlab_headers:
        headers.update(
            {
                "X-Page": str(page),
                "X-Per-Page": str(per_page),
                "X-Total": str(len(items)),
                "X-Total-Pages": str(last),
                "X-Next-Page": str(page + 1) if page < last else "",
                "X-Prev-Page": str(page - 1) if page > 1 else "",
            }
        )
    return items[(page - 1) * per_page : page * per_page]


class _GitHubApi:
    def __init__(self, host: CodeHostServer, origin: str, me: UserRecord) -> None:
        self.host, self.origin, self.me = host, origin, me
        self.api = f"{origin}/api/v3"

    def route(
        self,
        method: str,
        path: str,
        query: dict[str, list[str]],
        payload: Any,
        headers: dict[str, str],
    ) -> tuple[int, Any]:
        parts = [urllib.parse.unquote(p) for p in path.removeprefix("/api/v3/").split("/")]
        if parts == ["user"] and method == "GET":
            return 200, self.user(self.me)
        if len(parts) < 3 or parts[0] != "repos":
            raise HttpError(404, "Not Found")
        repo = self._repo(f"{parts[1]}/{parts[2]}")
        match parts[3:], method:
            case ["pulls", number], "GET":
                return 200, self.pull(repo, self._review(repo, number))
            case ["issues", number, "comments"], "GET":
                review = self._review(repo, number)
                url = f"{self.api}/repos/{repo.path}/issues/{review.number}/comments"
                shown = [self.comment(repo, review, c) for c in review.comments]
                return 200, _page(shown, query, url, headers, default_per_page=30)
            case ["issues", number, "comments"], "POST":
                review = self._review(repo, number)
                at = self.host.tick()
                comment = CommentRecord(
                    self.host._next_id(), self.me.id, str(payload["body"]), at, at
                )
                review.comments.append(comment)
                return 201, self.comment(repo, review, comment)
            case ["issues", "comments", comment_id], "GET" | "PATCH":
                for review in repo.reviews.values():
                    for comment in review.comments:
                        if str(comment.id) != comment_id:
                            continue
                        if method == "PATCH":
                            if comment.author != self.me.id:
                                raise HttpError(403, "Must have admin rights to Repository.")
                            comment.body = str(payload["body"])
                            comment.updated_at = self.host.tick()
                        return 200, self.comment(repo, review, comment)
                raise HttpError(404, "Not Found")
            case ["collaborators", login, "permission"], "GET":
                return 200, self.permission(repo, login)
            case ["commits", sha], "GET":
                return 200, self.commit(repo, self._sha(repo, sha))
            case ["commits", sha, "pulls"], "GET":
                sha = self._sha(repo, sha)
                pulls = [
                    self.pull(repo, r)
                    for r in repo.reviews.values()
                    if sha in (r.head_sha, r.merge_commit_sha, r.squash_commit_sha)
                ]
                url = f"{self.api}/repos/{repo.path}/commits/{sha}/pulls"
                return 200, _page(pulls, query, url, headers, default_per_page=30)
        raise HttpError(404, "Not Found")

    def _repo(self, path: str) -> RepoRecord:
        repo = self.host.repos.get(("github", path))
        if repo is None:
            raise HttpError(404, "Not Found")
        return repo

    @staticmethod
    def _review(repo: RepoRecord, number: str) -> ReviewRecord:
        review = repo.reviews.get(int(number)) if number.isdigit() else None
        if review is None:
            raise HttpError(404, "Not Found")
        return review

    @staticmethod
    def _sha(repo: RepoRecord, sha: str) -> str:
        if sha not in repo.commits:
            raise HttpError(422, f"No commit found for SHA: {sha}")
        return sha

    def user(self, user: UserRecord) -> dict[str, Any]:
        return {
            "login": user.login,
            "id": user.id,
            "node_id": f"U_{user.id}",
            "type": "Bot" if user.bot else "User",
            "site_admin": False,
            "url": f"{self.api}/users/{urllib.parse.quote(user.login)}",
            "html_url": f"{self.origin}/{user.login}",
        }

    def pull(self, repo: RepoRecord, review: ReviewRecord) -> dict[str, Any]:
        base = f"{self.api}/repos/{repo.path}"
        return {
            "id": review.id,
            "number": review.number,
            "state": "closed" if review.state in ("closed", "merged") else "open",
            "title": f"Change {review.number}",
            "user": self.user(self.host.users[review.author]),
            "head": {"sha": review.head_sha, "ref": f"change-{review.number}", "label": "x"},
            "base": {"sha": "0" * 40, "ref": "main", "label": "main"},
            "merged": review.state == "merged",
            "merged_at": _gh_time(review.merged_at) if review.merged_at else None,
            "merge_commit_sha": review.merge_commit_sha or review.squash_commit_sha,
            "url": f"{base}/pulls/{review.number}",
            "html_url": f"{self.origin}/{repo.path}/pull/{review.number}",
            "issue_url": f"{base}/issues/{review.number}",
            "comments_url": f"{base}/issues/{review.number}/comments",
        }

    def comment(
        self, repo: RepoRecord, review: ReviewRecord, comment: CommentRecord
    ) -> dict[str, Any]:
        base = f"{self.api}/repos/{repo.path}"
        return {
            "id": comment.id,
            "node_id": f"IC_{comment.id}",
            "url": f"{base}/issues/comments/{comment.id}",
            "html_url": f"{self.origin}/{repo.path}/pull/{review.number}#issuecomment-{comment.id}",
            "issue_url": f"{base}/issues/{review.number}",
            "user": self.user(self.host.users[comment.author]),
            "created_at": _gh_time(comment.created_at),
            "updated_at": _gh_time(comment.updated_at),
            # Deliberately misleading: the rules must not read it.
            "author_association": "OWNER",
            "body": comment.body,
        }

    def permission(self, repo: RepoRecord, login: str) -> dict[str, Any]:
        try:
            user = self.host.user(login)
        except KeyError:
            raise HttpError(404, "Not Found") from None
        role = repo.roles.get(login)
        return {
            "permission": GITHUB_LEGACY[role] if role else "none",
            "role_name": role or "",
            "user": self.user(user),
        }

    def commit(self, repo: RepoRecord, sha: str) -> dict[str, Any]:
        return {
            "sha": sha,
            "url": f"{self.api}/repos/{repo.path}/commits/{sha}",
            "html_url": f"{self.origin}/{repo.path}/commit/{sha}",
            "commit": {"message": "a commit", "tree": {"sha": "1" * 40}},
            "parents": [],
        }


class _GitLabApi:
    def __init__(self, host: CodeHostServer, origin: str, me: UserRecord) -> None:
        self.host, self.origin, self.me = host, origin, me
        self.api = f"{origin}/api/v4"

    def route(
        self,
        method: str,
        path: str,
        query: dict[str, list[str]],
        payload: Any,
        headers: dict[str, str],
    ) -> tuple[int, Any]:
        # Split before unquoting: a project path arrives as acme%2Fehr.
        parts = [urllib.parse.unquote(p) for p in path.removeprefix("/api/v4/").split("/")]
        if parts == ["user"] and method == "GET":
            return 200, self.full_user(self.me)
        if len(parts) == 2 and parts[0] == "users" and method == "GET":
            user = self.host.users.get(int(parts[1])) if parts[1].isdigit() else None
            if user is None:
                raise HttpError(404, "404 User Not Found")
            return 200, self.full_user(user)
        if len(parts) < 2 or parts[0] != "projects":
            raise HttpError(404, "404 Not Found")
        project = self._project(parts[1])
        ref = urllib.parse.quote(project.path, safe="")
        match parts[2:], method:
            case [], "GET":
                return 200, self.project(project)
            case ["merge_requests", iid], "GET":
                return 200, self.merge_request(project, self._mr(project, iid))
            case ["merge_requests", iid, "notes"], "GET":
                mr = self._mr(project, iid)
                order = query.get("order_by", ["created_at"])[0]
                notes = sorted(mr.comments, key=lambda c: (getattr(c, order), c.id))
                if query.get("sort", ["desc"])[0] == "desc":
                    notes.reverse()
                url = f"{self.api}/projects/{ref}/merge_requests/{mr.number}/notes"
                shown = [self.note(mr, n) for n in notes]
                return 200, _page(
                    shown, query, url, headers, default_per_page=20, gitlab_headers=True
                )
            case ["merge_requests", iid, "notes"], "POST":
                mr = self._mr(project, iid)
                at = self.host.tick()
                note = CommentRecord(self.host._next_id(), self.me.id, str(payload["body"]), at, at)
                mr.comments.append(note)
                return 201, self.note(mr, note)
            case ["merge_requests", iid, "notes", note_id], "GET" | "PUT":
                mr = self._mr(project, iid)
                note = CodeHostServer._comment(mr, int(note_id) if note_id.isdigit() else -1)
                if method == "PUT":
                    if note.author != self.me.id:
                        raise HttpError(403, "403 Forbidden")
                    note.body = str(payload["body"])
                    note.updated_at = self.host.tick()
                return 200, self.note(mr, note)
            case ["members", user_id], "GET":
                return 200, self.member(project, user_id, include_groups=False)
            case ["members", "all", user_id], "GET":
                return 200, self.member(project, user_id, include_groups=True)
            case ["repository", "commits", sha], "GET":
                return 200, {
                    "id": self._sha(project, sha),
                    "short_id": sha[:8],
                    "title": "a commit",
                }
            case ["repository", "commits", sha, "merge_requests"], "GET":
                sha = self._sha(project, sha)
                found = [
                    self.merge_request(project, mr)
                    for mr in project.reviews.values()
                    if sha in (mr.head_sha, mr.merge_commit_sha, mr.squash_commit_sha)
                ]
                url = f"{self.api}/projects/{ref}/repository/commits/{sha}/merge_requests"
                return 200, _page(
                    found, query, url, headers, default_per_page=20, gitlab_headers=True
                )
        raise HttpError(404, "404 Not Found")

    def _project(self, key: str) -> RepoRecord:
        for repo in self.host.repos.values():
            if repo.platform == "gitlab" and (repo.path == key or str(repo.id) == key):
                return repo
        raise HttpError(404, "404 Project Not Found")

    @staticmethod
    def _mr(project: RepoRecord, iid: str) -> ReviewRecord:
        mr = project.reviews.get(int(iid)) if iid.isdigit() else None
        if mr is None:
            raise HttpError(404, "404 Not found")
        return mr

    @staticmethod
    def _sha(project: RepoRecord, sha: str) -> str:
        if sha not in project.commits:
            raise HttpError(404, "404 Commit Not Found")
        return sha

    def basic_user(self, user: UserRecord) -> dict[str, Any]:
        # No "bot" here: GitLab has it only in the full user record.
        return {
            "id": user.id,
            "username": user.login,
            "name": user.login.title(),
            "state": "active",
            "web_url": f"{self.origin}/{user.login}",
        }

    def full_user(self, user: UserRecord) -> dict[str, Any]:
        return {**self.basic_user(user), "bot": user.bot, "created_at": _gl_time(START)}

    def project(self, project: RepoRecord) -> dict[str, Any]:
        return {
            "id": project.id,
            "path_with_namespace": project.path,
            "web_url": f"{self.origin}/{project.path}",
            "default_branch": "main",
        }

    def merge_request(self, project: RepoRecord, mr: ReviewRecord) -> dict[str, Any]:
        return {
            "id": mr.id,
            "iid": mr.number,
            "project_id": project.id,
            "title": f"Change {mr.number}",
            "state": "opened" if mr.state == "open" else mr.state,
            "author": self.basic_user(self.host.users[mr.author]),
            "sha": mr.head_sha,
            "merge_commit_sha": mr.merge_commit_sha,
            "squash_commit_sha": mr.squash_commit_sha,
            "merged_at": _gl_time(mr.merged_at) if mr.merged_at else None,
            "web_url": f"{self.origin}/{project.path}/-/merge_requests/{mr.number}",
        }

    def note(self, mr: ReviewRecord, note: CommentRecord) -> dict[str, Any]:
        return {
            "id": note.id,
            "type": None,
            "body": note.body,
            "author": self.basic_user(self.host.users[note.author]),
            "created_at": _gl_time(note.created_at),
            "updated_at": _gl_time(note.updated_at),
            "system": note.system,
            "noteable_id": mr.id,
            "noteable_type": "MergeRequest",
            "noteable_iid": mr.number,
            "resolvable": False,
            "confidential": False,
            "internal": False,
        }

    def member(self, project: RepoRecord, user_id: str, *, include_groups: bool) -> dict[str, Any]:
        entry = project.members.get(int(user_id)) if user_id.isdigit() else None
        if entry is None or (entry[1] and not include_groups):
            raise HttpError(404, "404 Not found")
        return {**self.basic_user(self.host.users[int(user_id)]), "access_level": entry[0]}
