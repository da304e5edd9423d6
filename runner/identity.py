"""The CI job's identity: its OIDC ID token and the context the runner reports.

A token is obtained right before each exchange for a gateway session and is
never kept by this module: :meth:`TokenSource.token` asks again every time, so
a job that waited half an hour for an approval presents a token minted after
the wait, not one that expired during it.

Where the token comes from, first match wins:

1. ``--id-token-file`` / ``SIGNOFF_ID_TOKEN_FILE``: a file, read on every call
   (a sidecar or a projected service-account token may rewrite it).
2. GitHub Actions (``GITHUB_ACTIONS=true``) with ``ACTIONS_ID_TOKEN_REQUEST_URL``
   and ``ACTIONS_ID_TOKEN_REQUEST_TOKEN``: a new token from GitHub's endpoint
   per call, for the requested audience.
3. GitLab CI (``GITLAB_CI=true``): the job's ``id_tokens:`` variable (default
   ``SIGNOFF_ID_TOKEN``; another name in ``SIGNOFF_ID_TOKEN_VARIABLE``). GitLab
   mints it once per job, valid until the job's timeout: it cannot be renewed.
4. ``SIGNOFF_ID_TOKEN`` anywhere else.

Anything missing is one :class:`IdentityError` line saying what to add to the
job. No message ever holds a token, the request token or the request URL's
query (only its scheme and host).
"""

from __future__ import annotations

import base64
import binascii
import json
import os
import time
import urllib.error
import urllib.parse
import urllib.request
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

from runner.errors import SignoffError

DEFAULT_AUDIENCE = "signoff"
DEFAULT_GITLAB_VARIABLE = "SIGNOFF_ID_TOKEN"

# GitHub's token endpoint is a service of its own and answers 5xx now and then;
# three tries over about three seconds ride that out without hiding an outage.
_GITHUB_ATTEMPTS = 3
_GITHUB_BACKOFF_S = 1.0
_HTTP_TIMEOUT_S = 15.0

_PULL_REQUEST_EVENTS = frozenset(
    {"pull_request", "pull_request_target", "pull_request_review", "pull_request_review_comment"}
)

Platform = Literal["github", "gitlab", "local"]


class IdentityError(SignoffError):
    """The job's OIDC token cannot be obtained, or its CI context cannot be read."""


def _truthy(value: str | None) -> bool:
    return (value or "").strip().lower() == "true"


def _value(env: Mapping[str, str], name: str) -> str | None:
    """``env[name]`` stripped, or None when unset or empty (CI systems set empty vars)."""
    raw = env.get(name)
    if raw is None or not raw.strip():
        return None
    return raw.strip()


# -- token checks --------------------------------------------------------------------


def _b64_json(segment: str) -> Any:
    padded = segment + "=" * (-len(segment) % 4)
    return json.loads(base64.urlsafe_b64decode(padded.encode("ascii")))


def _checked_jwt(token: str, where: str, audience: str | None, now: float) -> str:
    """``token`` when it has a JWT's shape and has not expired, else a one-line error.

    This is a diagnosis, not a verification: the gateway verifies the signature
    and every claim. It exists so that a wrong file, an expired GitLab token or a
    token for another audience is named here rather than as a bare 401.
    """
    parts = token.split(".")
    if len(parts) != 3 or not parts[0] or not parts[1]:
        raise IdentityError(f"the ID token from {where} is not a JWT (header.payload.signature)")
    try:
        header = _b64_json(parts[0])
        claims = _b64_json(parts[1])
    except (ValueError, binascii.Error, UnicodeError):
        raise IdentityError(
            f"the ID token from {where} is not a JWT (undecodable segment)"
        ) from None
    if not isinstance(header, dict) or not isinstance(claims, dict):
        raise IdentityError(f"the ID token from {where} is not a JWT (no JSON object)")
    exp = claims.get("exp")
    if isinstance(exp, int | float) and not isinstance(exp, bool) and exp <= now:
        stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(exp))
        raise IdentityError(
            f"the ID token from {where} expired at {stamp}; give a fresh one (GitLab's "
            "id_tokens last until the job's timeout: set the job's `timeout:` above --wait)"
        )
    if audience is not None:
        aud = claims.get("aud")
        auds = aud if isinstance(aud, list) else [aud]
        if audience not in auds:
            shown = ", ".join(repr(a) for a in auds if isinstance(a, str))[:120] or "none"
            raise IdentityError(
                f"the ID token from {where} is for audience {shown}, not {audience!r}: "
                f"set `aud: {audience}` for it in the job's id_tokens (or pass --audience)"
            )
    return token


# -- token sources -------------------------------------------------------------------


class TokenSource(ABC):
    """Where this job's ID token comes from; :meth:`token` reads or mints it anew."""

    kind: str
    # True when each call mints a new token (GitHub), so a token exchanged after a
    # long wait is fresh; False when the token is fixed for the job (GitLab, env).
    mints_per_call: bool = False

    @abstractmethod
    def token(self) -> str:
        """A token for the next exchange; never a cached one."""

    @abstractmethod
    def describe(self) -> str:
        """Where the token comes from, for logs (never the token)."""


class GitHubTokenSource(TokenSource):
    """GitHub Actions' OIDC endpoint: one request per :meth:`token` call."""

    kind = "github"
    mints_per_call = True

    def __init__(
        self,
        request_url: str,
        request_token: str,
        audience: str,
        *,
        timeout_s: float = _HTTP_TIMEOUT_S,
        attempts: int = _GITHUB_ATTEMPTS,
        backoff_s: float = _GITHUB_BACKOFF_S,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if not audience.strip():
            raise IdentityError("--audience is empty: give the gateway's audience, e.g. signoff")
        self._request_url = request_url
        self._request_token = request_token
        self.audience = audience
        self._timeout_s = timeout_s
        self._attempts = max(1, attempts)
        self._backoff_s = backoff_s
        self._sleep = sleep

    def describe(self) -> str:
        return f"GitHub Actions OIDC ({self._endpoint_host()}, audience {self.audience!r})"

    def _endpoint_host(self) -> str:
        # Only scheme and host: the URL's path and query identify the run.
        parts = urllib.parse.urlsplit(self._request_url)
        return f"{parts.scheme}://{parts.hostname or '?'}"

    def _url(self) -> str:
        joiner = "&" if "?" in self._request_url else "?"
        return f"{self._request_url}{joiner}audience={urllib.parse.quote(self.audience, safe='')}"

    def token(self) -> str:
        where = f"GitHub's OIDC token endpoint ({self._endpoint_host()})"
        request = urllib.request.Request(
            self._url(),
            headers={
                "Authorization": f"bearer {self._request_token}",
                "Accept": "application/json; api-version=2.0",
                "User-Agent": "signoff-runner",
            },
        )
        problem = ""
        for attempt in range(self._attempts):
            if attempt:
                self._sleep(self._backoff_s * attempt)
            try:
                with urllib.request.urlopen(request, timeout=self._timeout_s) as response:
                    body = response.read(1 << 20)
            except urllib.error.HTTPError as error:
                error.close()
                problem = f"{where} answered HTTP {error.code}"
                if error.code < 500 and error.code != 429:
                    raise IdentityError(
                        f"{problem}: check the job's `permissions: id-token: write` and --audience"
                    ) from None
                continue
            except (urllib.error.URLError, OSError) as error:
                reason = getattr(error, "reason", error)
                problem = f"{where} cannot be reached ({type(reason).__name__})"
                continue
            return self._value_of(body, where)
        raise IdentityError(f"{problem} after {self._attempts} tries; re-run the job")

    def _value_of(self, body: bytes, where: str) -> str:
        try:
            document = json.loads(body)
        except (ValueError, UnicodeError):
            raise IdentityError(f"{where} answered something that is not JSON") from None
        value = document.get("value") if isinstance(document, dict) else None
        if not isinstance(value, str) or not value.strip():
            raise IdentityError(f"{where} answered JSON without a token in `value`")
        return _checked_jwt(value.strip(), where, None, time.time())


class FileTokenSource(TokenSource):
    """A file holding the token, read on every call."""

    kind = "file"

    def __init__(self, path: Path, *, audience: str | None = None) -> None:
        self.path = path
        self.audience = audience

    def describe(self) -> str:
        return f"ID token file {self.path}"

    def token(self) -> str:
        where = f"the ID token file {self.path}"
        try:
            text = self.path.read_text(encoding="utf-8")
        except FileNotFoundError:
            raise IdentityError(
                f"{where} does not exist; fix --id-token-file / SIGNOFF_ID_TOKEN_FILE"
            ) from None
        except (OSError, UnicodeError) as error:
            detail = (
                error.strerror if isinstance(error, OSError) and error.strerror else "unreadable"
            )
            raise IdentityError(
                f"cannot read {where} ({detail}); fix --id-token-file / SIGNOFF_ID_TOKEN_FILE"
            ) from None
        if not text.strip():
            raise IdentityError(f"{where} is empty; write the job's OIDC token into it")
        return _checked_jwt(text.strip(), where, self.audience, time.time())


class EnvTokenSource(TokenSource):
    """A variable of the job's environment (GitLab's ``id_tokens:``, or set by hand)."""

    def __init__(
        self,
        env: Mapping[str, str],
        variable: str,
        *,
        kind: str = "env",
        audience: str | None = None,
    ) -> None:
        self._env = env
        self.variable = variable
        self.kind = kind
        self.audience = audience

    def describe(self) -> str:
        prefix = "GitLab id_tokens variable" if self.kind == "gitlab" else "environment variable"
        return f"{prefix} {self.variable}"

    def token(self) -> str:
        value = _value(self._env, self.variable)
        if value is None:
            raise (
                _missing_gitlab(self.variable)
                if self.kind == "gitlab"
                else IdentityError(f"{self.variable} is empty; set it to the job's OIDC token")
            )
        return _checked_jwt(value, self.variable, self.audience, time.time())


def _missing_gitlab(variable: str) -> IdentityError:
    return IdentityError(
        f"GitLab CI gave this job no {variable}: add to the job "
        f"`id_tokens: {{{variable}: {{aud: <the gateway's audience>}}}}` "
        "(the signoff component and include do)"
    )


def _fork_of_pull_request(env: Mapping[str, str]) -> str | None:
    """The fork's ``owner/name`` when this run is for a pull request from a fork."""
    if _value(env, "GITHUB_EVENT_NAME") not in _PULL_REQUEST_EVENTS:
        return None
    event = _github_event(env, required=False)
    pull = event.get("pull_request")
    if not isinstance(pull, dict):
        return None
    head_repo = _dig(pull, "head", "repo")
    base_name = _dig(pull, "base", "repo", "full_name") or _value(env, "GITHUB_REPOSITORY")
    head_name = head_repo.get("full_name") if isinstance(head_repo, dict) else None
    if isinstance(head_name, str) and head_name != base_name:
        return head_name
    if isinstance(head_repo, dict) and head_repo.get("fork") is True:
        return head_name if isinstance(head_name, str) else "a fork"
    return None


def token_source(
    env: Mapping[str, str] | None = None,
    *,
    audience: str = DEFAULT_AUDIENCE,
    id_token_file: Path | None = None,
    check_audience: bool = False,
) -> TokenSource:
    """The token source for this job, or an :class:`IdentityError` saying what to add.

    ``audience`` is requested from GitHub. GitLab's and a file's token carry the
    audience their issuer put in; with ``check_audience`` (give it when the user
    set ``--audience`` explicitly) a token for another audience is named here.
    """
    env = os.environ if env is None else env
    expected = audience if check_audience else None
    file_value = id_token_file or (
        Path(path) if (path := _value(env, "SIGNOFF_ID_TOKEN_FILE")) else None
    )
    if file_value is not None:
        return FileTokenSource(file_value, audience=expected)
    if _truthy(env.get("GITHUB_ACTIONS")):
        url = _value(env, "ACTIONS_ID_TOKEN_REQUEST_URL")
        request_token = _value(env, "ACTIONS_ID_TOKEN_REQUEST_TOKEN")
        if url is not None and request_token is not None:
            return GitHubTokenSource(url, request_token, audience)
        if _value(env, "SIGNOFF_ID_TOKEN") is not None:
            return EnvTokenSource(env, "SIGNOFF_ID_TOKEN", audience=expected)
        fork = _fork_of_pull_request(env)
        if fork is not None:
            raise IdentityError(
                f"this is a pull_request run from the fork {fork}, and GitHub gives such runs "
                "no OIDC token: plan it without the gateway (`signoff plan`) and apply after merge"
            )
        raise IdentityError(
            "GitHub Actions gave this job no OIDC token (ACTIONS_ID_TOKEN_REQUEST_URL is unset): "
            "add `permissions: id-token: write` to the job"
        )
    if _truthy(env.get("GITLAB_CI")):
        variable = _value(env, "SIGNOFF_ID_TOKEN_VARIABLE") or DEFAULT_GITLAB_VARIABLE
        if _value(env, variable) is None:
            raise _missing_gitlab(variable)
        return EnvTokenSource(env, variable, kind="gitlab", audience=expected)
    if _value(env, "SIGNOFF_ID_TOKEN") is not None:
        return EnvTokenSource(env, "SIGNOFF_ID_TOKEN", audience=expected)
    raise IdentityError(
        "no OIDC token for the gateway: run in GitHub Actions or GitLab CI, or give "
        "--id-token-file / SIGNOFF_ID_TOKEN_FILE or SIGNOFF_ID_TOKEN"
    )


# -- CI context ----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class CiContext:
    """What the runner reports about the job it runs in (None where unknown)."""

    platform: Platform
    repository: str | None = None  # owner/name (GitHub), group/project (GitLab)
    number: int | None = None  # the PR number / MR iid this run is for
    head_sha: str | None = None  # the PR/MR head (not a merge commit), else the pushed sha
    actor: str | None = None
    run_id: str | None = None  # workflow run id / pipeline id
    attempt: int | None = None  # GitHub's run attempt; GitLab retries are new jobs
    event: str | None = None  # GITHUB_EVENT_NAME / CI_PIPELINE_SOURCE
    ref: str | None = None
    api_url: str | None = None  # GITHUB_API_URL / CI_API_V4_URL
    server_url: str | None = None
    run_url: str | None = None
    job_id: str | None = None
    comment_id: int | None = None  # the PR comment that triggered an issue_comment run
    fork: str | None = None  # the fork a PR/MR comes from

    def review(self) -> dict[str, Any] | None:
        """``{platform, repository, number, head_sha}`` for ``POST .../plans``, when known."""
        if self.platform == "local" or self.repository is None or self.number is None:
            return None
        return {
            "platform": self.platform,
            "repository": self.repository,
            "number": self.number,
            "head_sha": self.head_sha,
        }

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _int(env: Mapping[str, str], name: str) -> int | None:
    raw = _value(env, name)
    if raw is None:
        return None
    if not raw.isdigit():
        raise IdentityError(f"{name} is {raw[:40]!r}, not a number; unset it or fix it")
    return int(raw)


def _dig(document: Any, *keys: str) -> Any:
    for key in keys:
        if not isinstance(document, dict):
            return None
        document = document.get(key)
    return document


def _github_event(env: Mapping[str, str], *, required: bool = True) -> dict[str, Any]:
    """The event payload GitHub wrote to ``GITHUB_EVENT_PATH`` ({} when there is none)."""
    path = _value(env, "GITHUB_EVENT_PATH")
    if path is None:
        return {}
    try:
        document = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError, UnicodeError) as error:
        if not required:
            return {}
        kind = "unreadable" if isinstance(error, OSError) else "not JSON"
        raise IdentityError(
            f"GITHUB_EVENT_PATH {path} is {kind}; it is written by GitHub Actions: "
            "unset it outside a workflow run"
        ) from None
    return document if isinstance(document, dict) else {}


def _positive_int(value: Any) -> int | None:
    if isinstance(value, int) and not isinstance(value, bool) and value > 0:
        return value
    return None


def _github_context(env: Mapping[str, str]) -> CiContext:
    event_name = _value(env, "GITHUB_EVENT_NAME")
    event = _github_event(env)
    number: int | None = None
    head_sha = _value(env, "GITHUB_SHA")
    comment_id: int | None = None
    pull = event.get("pull_request")
    if event_name in _PULL_REQUEST_EVENTS and isinstance(pull, dict):
        number = _positive_int(pull.get("number"))
        # GITHUB_SHA of a pull_request run is the merge commit GitHub made;
        # reviewers approve the head they saw.
        sha = _dig(pull, "head", "sha")
        head_sha = sha if isinstance(sha, str) else None
    elif event_name == "issue_comment" and isinstance(_dig(event, "issue", "pull_request"), dict):
        number = _positive_int(_dig(event, "issue", "number"))
        comment_id = _positive_int(_dig(event, "comment", "id"))
        # The comment event names no commit (GITHUB_SHA is the default branch's):
        # the PR's head is read from the code host.
        head_sha = None
    repository = _value(env, "GITHUB_REPOSITORY")
    server = _value(env, "GITHUB_SERVER_URL") or "https://github.com"
    run_id = _value(env, "GITHUB_RUN_ID")
    attempt = _int(env, "GITHUB_RUN_ATTEMPT")
    run_url = None
    if repository and run_id:
        run_url = f"{server}/{repository}/actions/runs/{run_id}"
        if attempt is not None:
            run_url += f"/attempts/{attempt}"
    return CiContext(
        platform="github",
        repository=repository,
        number=number,
        head_sha=head_sha,
        actor=_value(env, "GITHUB_ACTOR"),
        run_id=run_id,
        attempt=attempt,
        event=event_name,
        ref=_value(env, "GITHUB_REF"),
        api_url=_value(env, "GITHUB_API_URL") or "https://api.github.com",
        server_url=server,
        run_url=run_url,
        job_id=_value(env, "GITHUB_JOB"),
        comment_id=comment_id,
        fork=_fork_of_pull_request(env),
    )


def _gitlab_context(env: Mapping[str, str]) -> CiContext:
    source_project = _value(env, "CI_MERGE_REQUEST_SOURCE_PROJECT_PATH")
    target_project = _value(env, "CI_MERGE_REQUEST_PROJECT_PATH")
    fork = source_project if source_project and source_project != target_project else None
    # In a merged-results pipeline CI_COMMIT_SHA is GitLab's merge commit; the
    # MR's head is CI_MERGE_REQUEST_SOURCE_BRANCH_SHA (empty in other pipelines).
    head_sha = _value(env, "CI_MERGE_REQUEST_SOURCE_BRANCH_SHA") or _value(env, "CI_COMMIT_SHA")
    _int(env, "CI_PIPELINE_ID")  # a malformed id is named here, not at the gateway
    return CiContext(
        platform="gitlab",
        repository=_value(env, "CI_PROJECT_PATH"),
        number=_int(env, "CI_MERGE_REQUEST_IID"),
        head_sha=head_sha,
        actor=_value(env, "GITLAB_USER_LOGIN"),
        run_id=_value(env, "CI_PIPELINE_ID"),
        attempt=None,
        event=_value(env, "CI_PIPELINE_SOURCE"),
        ref=_value(env, "CI_COMMIT_REF_NAME"),
        api_url=_value(env, "CI_API_V4_URL"),
        server_url=_value(env, "CI_SERVER_URL"),
        run_url=_value(env, "CI_PIPELINE_URL"),
        job_id=_value(env, "CI_JOB_ID"),
        fork=fork,
    )


def ci_context(env: Mapping[str, str] | None = None) -> CiContext:
    """The CI context of this job, read from ``GITHUB_*`` / ``CI_*`` and the event file."""
    env = os.environ if env is None else env
    if _truthy(env.get("GITHUB_ACTIONS")):
        return _github_context(env)
    if _truthy(env.get("GITLAB_CI")):
        return _gitlab_context(env)
    return CiContext(platform="local", actor=_value(env, "USER"))
