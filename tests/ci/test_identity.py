"""The job's OIDC token and CI context: a real loopback token endpoint, real files, real JWTs.

The GitHub endpoint here answers what GitHub's does (``?audience=`` on the
request URL, ``Authorization: bearer <request token>``, ``{"value": "<jwt>"}``)
with tokens signed by the loopback issuer, so the tests check them with the
gateway's own validator as well as count the requests.
"""

from __future__ import annotations

import json
import socket
import threading
import urllib.parse
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from oidc_issuer import OidcIssuer

from runner.gateway.oidc import IssuerConfig, OidcValidator
from runner.identity import (
    EnvTokenSource,
    FileTokenSource,
    GitHubTokenSource,
    IdentityError,
    ci_context,
    token_source,
)

REQUEST_TOKEN = "request-token-3f9c1e77-do-not-log"


@dataclass
class Seen:
    path: str
    query: dict[str, list[str]]
    authorization: str | None


@dataclass
class TokenEndpoint:
    """GitHub's ACTIONS_ID_TOKEN_REQUEST_URL, on loopback."""

    issuer: OidcIssuer
    url: str = ""
    seen: list[Seen] = field(default_factory=list)
    # Statuses to answer before succeeding (e.g. [503] = one failure, then a token).
    failures: list[int] = field(default_factory=list)
    body: bytes | None = None  # answer this instead of a token


@pytest.fixture
def issuer() -> Iterator[OidcIssuer]:
    with OidcIssuer() as running:
        yield running


@pytest.fixture
def endpoint(issuer: OidcIssuer) -> Iterator[TokenEndpoint]:
    state = TokenEndpoint(issuer)
    lock = threading.Lock()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            parts = urllib.parse.urlsplit(self.path)
            query = urllib.parse.parse_qs(parts.query)
            with lock:
                state.seen.append(Seen(parts.path, query, self.headers.get("Authorization")))
                failure = state.failures.pop(0) if state.failures else None
            if failure is not None:
                self._send(failure, b'{"message": "try later"}')
            elif self.headers.get("Authorization") != f"bearer {REQUEST_TOKEN}":
                self._send(401, b'{"message": "bad request token"}')
            elif state.body is not None:
                self._send(200, state.body)
            else:
                audience = query.get("audience", ["https://github.com/acme"])[0]
                token = issuer.token(audience=audience)
                self._send(200, json.dumps({"count": 1, "value": token}).encode())

        def _send(self, status: int, body: bytes) -> None:
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    # The real URL carries its own query (api-version), so the audience is appended with '&'.
    state.url = f"http://127.0.0.1:{server.server_address[1]}/run/8c1d/idtoken?api-version=2.0"
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def github_env(endpoint: TokenEndpoint | None = None, **extra: str) -> dict[str, str]:
    env = {
        "GITHUB_ACTIONS": "true",
        "GITHUB_REPOSITORY": "acme/ehr-api",
        "GITHUB_EVENT_NAME": "push",
    }
    if endpoint is not None:
        env["ACTIONS_ID_TOKEN_REQUEST_URL"] = endpoint.url
        env["ACTIONS_ID_TOKEN_REQUEST_TOKEN"] = REQUEST_TOKEN
    env.update(extra)
    return env


def write_event(tmp_path: Path, event: dict[str, Any]) -> str:
    path = tmp_path / "event.json"
    path.write_text(json.dumps(event), encoding="utf-8")
    return str(path)


def pull_request_event(head_repo: str, *, number: int = 42, sha: str = "a" * 40) -> dict[str, Any]:
    return {
        "action": "synchronize",
        "number": number,
        "pull_request": {
            "number": number,
            "head": {
                "sha": sha,
                "repo": {"full_name": head_repo, "fork": head_repo != "acme/ehr-api"},
            },
            "base": {"sha": "b" * 40, "repo": {"full_name": "acme/ehr-api"}},
        },
        "repository": {"full_name": "acme/ehr-api"},
    }


def no_sleep(seconds: float) -> None:
    pass


# -- GitHub ---------------------------------------------------------------------------


def test_github_mints_a_new_token_per_call_for_the_audience(
    endpoint: TokenEndpoint, issuer: OidcIssuer
) -> None:
    source = token_source(github_env(endpoint), audience="signoff")
    assert isinstance(source, GitHubTokenSource)
    assert source.mints_per_call

    first = source.token()
    second = source.token()

    assert len(endpoint.seen) == 2  # nothing cached: one request per exchange
    assert first != second
    for seen in endpoint.seen:
        assert seen.path == "/run/8c1d/idtoken"
        assert seen.query == {"api-version": ["2.0"], "audience": ["signoff"]}
        assert seen.authorization == f"bearer {REQUEST_TOKEN}"
    validator = OidcValidator([IssuerConfig("github", issuer.issuer)], "signoff")
    claims = [validator.validate_claims(token) for token in (first, second)]
    assert claims[0]["aud"] == claims[1]["aud"] == "signoff"
    assert claims[0]["jti"] != claims[1]["jti"]


def test_github_audience_is_quoted_and_appended_with_a_question_mark_when_no_query(
    endpoint: TokenEndpoint,
) -> None:
    bare = endpoint.url.split("?", 1)[0]
    source = GitHubTokenSource(bare, REQUEST_TOKEN, "https://gw.example/a b&c")
    source.token()
    assert endpoint.seen[0].query == {"audience": ["https://gw.example/a b&c"]}


def test_github_retries_a_5xx_then_returns_the_token(endpoint: TokenEndpoint) -> None:
    endpoint.failures = [503, 502]
    slept: list[float] = []
    source = GitHubTokenSource(endpoint.url, REQUEST_TOKEN, "signoff", sleep=slept.append)
    token = source.token()
    assert token.count(".") == 2
    assert len(endpoint.seen) == 3
    assert slept == [1.0, 2.0]


def test_github_gives_up_after_its_tries_with_a_line_naming_the_status(
    endpoint: TokenEndpoint,
) -> None:
    endpoint.failures = [500, 500, 500, 500]
    source = GitHubTokenSource(endpoint.url, REQUEST_TOKEN, "signoff", sleep=no_sleep)
    with pytest.raises(IdentityError) as caught:
        source.token()
    message = str(caught.value)
    assert "HTTP 500 after 3 tries" in message
    assert len(endpoint.seen) == 3
    assert "\n" not in message


def test_github_4xx_is_not_retried_and_leaks_neither_token_nor_url(
    endpoint: TokenEndpoint,
) -> None:
    endpoint.failures = [403]
    source = GitHubTokenSource(endpoint.url, REQUEST_TOKEN, "signoff", sleep=no_sleep)
    with pytest.raises(IdentityError) as caught:
        source.token()
    message = str(caught.value)
    assert "HTTP 403" in message and "id-token: write" in message
    assert len(endpoint.seen) == 1
    assert REQUEST_TOKEN not in message
    assert "8c1d" not in message and "api-version" not in message  # only scheme and host
    assert "http://127.0.0.1" in message


def test_github_wrong_request_token_is_refused_by_the_endpoint(endpoint: TokenEndpoint) -> None:
    source = GitHubTokenSource(endpoint.url, "stale", "signoff", sleep=no_sleep)
    with pytest.raises(IdentityError, match="HTTP 401"):
        source.token()


@pytest.mark.parametrize(
    ("body", "problem"),
    [
        (b"<html>proxy error</html>", "not JSON"),
        (b'{"count": 0}', "without a token"),
        (b'{"value": "not-a-jwt"}', "not a JWT"),
    ],
)
def test_github_answer_without_a_usable_token(
    endpoint: TokenEndpoint, body: bytes, problem: str
) -> None:
    endpoint.body = body
    source = GitHubTokenSource(endpoint.url, REQUEST_TOKEN, "signoff", sleep=no_sleep)
    with pytest.raises(IdentityError, match=problem):
        source.token()


def test_github_endpoint_unreachable() -> None:
    # A port nothing listens on: bind one, note it, close it.
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    source = GitHubTokenSource(
        f"http://127.0.0.1:{port}/x?y=1", REQUEST_TOKEN, "signoff", attempts=2, sleep=no_sleep
    )
    with pytest.raises(IdentityError, match=r"cannot be reached .* after 2 tries"):
        source.token()


def test_github_without_request_vars_says_add_the_permission() -> None:
    with pytest.raises(IdentityError) as caught:
        token_source(github_env())
    assert "add `permissions: id-token: write` to the job" in str(caught.value)


def test_github_same_repo_pull_request_without_vars_says_add_the_permission(
    tmp_path: Path,
) -> None:
    env = github_env(
        GITHUB_EVENT_NAME="pull_request",
        GITHUB_EVENT_PATH=write_event(tmp_path, pull_request_event("acme/ehr-api")),
    )
    with pytest.raises(IdentityError, match="id-token: write"):
        token_source(env)


def test_github_fork_pull_request_is_named_as_such(tmp_path: Path) -> None:
    env = github_env(
        GITHUB_EVENT_NAME="pull_request",
        GITHUB_EVENT_PATH=write_event(tmp_path, pull_request_event("mallory/ehr-api")),
    )
    with pytest.raises(IdentityError) as caught:
        token_source(env)
    message = str(caught.value)
    assert "fork mallory/ehr-api" in message
    assert "no OIDC token" in message
    assert "permissions" not in message  # adding the permission would not help


def test_github_without_request_vars_uses_an_explicit_signoff_id_token(
    issuer: OidcIssuer,
) -> None:
    token = issuer.token(audience="signoff")
    source = token_source(github_env(SIGNOFF_ID_TOKEN=token))
    assert isinstance(source, EnvTokenSource)
    assert source.token() == token


# -- GitLab ---------------------------------------------------------------------------


def gitlab_env(**extra: str) -> dict[str, str]:
    env = {"GITLAB_CI": "true", "CI_PROJECT_PATH": "acme/ehr-api"}
    env.update(extra)
    return env


def test_gitlab_reads_the_id_tokens_variable_on_every_call() -> None:
    with OidcIssuer(style="gitlab", path="/gitlab") as gitlab:
        env = gitlab_env(SIGNOFF_ID_TOKEN=gitlab.token(audience="signoff"))
        source = token_source(env)
        assert source.kind == "gitlab" and not source.mints_per_call
        first = source.token()
        # A variable that changes (a wrapper writing a new token) is read anew.
        env["SIGNOFF_ID_TOKEN"] = gitlab.token(audience="signoff")
        second = source.token()
        validator = OidcValidator([IssuerConfig("gitlab", gitlab.issuer)], "signoff")
        assert validator.validate_claims(first)["jti"] != validator.validate_claims(second)["jti"]


def test_gitlab_other_variable_name() -> None:
    with OidcIssuer(style="gitlab") as gitlab:
        token = gitlab.token(audience="signoff")
    source = token_source(gitlab_env(SIGNOFF_ID_TOKEN_VARIABLE="GATEWAY_JWT", GATEWAY_JWT=token))
    assert source.token() == token
    assert "GATEWAY_JWT" in source.describe()


@pytest.mark.parametrize("value", [None, "", "  "])
def test_gitlab_without_the_variable_says_which_id_tokens_block_to_add(value: str | None) -> None:
    env = gitlab_env() if value is None else gitlab_env(SIGNOFF_ID_TOKEN=value)
    with pytest.raises(IdentityError) as caught:
        token_source(env)
    message = str(caught.value)
    assert "id_tokens: {SIGNOFF_ID_TOKEN: {aud:" in message
    assert "\n" not in message


def test_gitlab_expired_token_is_named_before_the_exchange() -> None:
    with OidcIssuer(style="gitlab") as gitlab:
        token = gitlab.token(audience="signoff", lifetime_s=-60)
    source = token_source(gitlab_env(SIGNOFF_ID_TOKEN=token))
    with pytest.raises(IdentityError) as caught:
        source.token()
    message = str(caught.value)
    assert "SIGNOFF_ID_TOKEN expired at" in message and "timeout" in message
    assert token not in message


def test_audience_is_checked_only_when_asked() -> None:
    with OidcIssuer(style="gitlab") as gitlab:
        token = gitlab.token(audience="https://other.example")
    env = gitlab_env(SIGNOFF_ID_TOKEN=token)
    assert token_source(env, audience="signoff").token() == token  # the gateway decides
    with pytest.raises(IdentityError) as caught:
        token_source(env, audience="signoff", check_audience=True).token()
    assert "'https://other.example', not 'signoff'" in str(caught.value)
    assert "aud: signoff" in str(caught.value)


# -- files and plain env ---------------------------------------------------------------


def test_file_is_read_on_every_call(tmp_path: Path, issuer: OidcIssuer) -> None:
    path = tmp_path / "token"
    path.write_text(issuer.token(audience="signoff") + "\n", encoding="utf-8")
    source = token_source({}, id_token_file=path)
    assert isinstance(source, FileTokenSource)
    first = source.token()
    assert not first.endswith("\n")
    path.write_text(issuer.token(audience="signoff"), encoding="utf-8")
    assert source.token() != first


def test_file_from_env_beats_github(
    tmp_path: Path, issuer: OidcIssuer, endpoint: TokenEndpoint
) -> None:
    path = tmp_path / "token"
    token = issuer.token(audience="signoff")
    path.write_text(token, encoding="utf-8")
    source = token_source(github_env(endpoint, SIGNOFF_ID_TOKEN_FILE=str(path)))
    assert source.token() == token
    assert endpoint.seen == []


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        (None, "does not exist; fix --id-token-file"),
        ("", "is empty"),
        ("ghp_not_a_jwt_secret_value\n", "is not a JWT"),
        ("a.!!!.c", "is not a JWT"),
    ],
)
def test_bad_token_files(tmp_path: Path, content: str | None, problem: str) -> None:
    path = tmp_path / "token"
    if content is not None:
        path.write_text(content, encoding="utf-8")
    with pytest.raises(IdentityError) as caught:
        FileTokenSource(path).token()
    message = str(caught.value)
    assert problem in message and str(path) in message
    assert "ghp_not_a_jwt_secret_value" not in message


def test_unreadable_token_file(tmp_path: Path) -> None:
    # Tests run as root here, so a mode-000 file would still be readable: a
    # directory is a path that cannot be read as a file for anyone.
    with pytest.raises(IdentityError, match=r"cannot read the ID token file .*directory"):
        FileTokenSource(tmp_path).token()


def test_plain_signoff_id_token_elsewhere(issuer: OidcIssuer) -> None:
    token = issuer.token(audience="signoff")
    source = token_source({"SIGNOFF_ID_TOKEN": token})
    assert source.kind == "env" and source.token() == token


def test_nothing_at_all() -> None:
    with pytest.raises(IdentityError, match="--id-token-file / SIGNOFF_ID_TOKEN_FILE"):
        token_source({"HOME": "/root"})


# -- CI context -----------------------------------------------------------------------


def test_github_pull_request_context_uses_the_head_not_the_merge_commit(tmp_path: Path) -> None:
    env = github_env(
        GITHUB_EVENT_NAME="pull_request",
        GITHUB_EVENT_PATH=write_event(tmp_path, pull_request_event("acme/ehr-api", number=7)),
        GITHUB_SHA="c" * 40,
        GITHUB_ACTOR="alice",
        GITHUB_RUN_ID="123456",
        GITHUB_RUN_ATTEMPT="2",
        GITHUB_REF="refs/pull/7/merge",
        GITHUB_SERVER_URL="https://github.example",
        GITHUB_API_URL="https://github.example/api/v3",
    )
    context = ci_context(env)
    assert context.platform == "github"
    assert context.number == 7
    assert context.head_sha == "a" * 40
    assert context.attempt == 2
    assert context.fork is None
    assert context.api_url == "https://github.example/api/v3"
    assert context.run_url == "https://github.example/acme/ehr-api/actions/runs/123456/attempts/2"
    assert context.review() == {
        "platform": "github",
        "repository": "acme/ehr-api",
        "number": 7,
        "head_sha": "a" * 40,
    }
    assert json.loads(json.dumps(context.as_dict()))["actor"] == "alice"


def test_github_fork_pull_request_context(tmp_path: Path) -> None:
    env = github_env(
        GITHUB_EVENT_NAME="pull_request",
        GITHUB_EVENT_PATH=write_event(tmp_path, pull_request_event("mallory/ehr-api")),
    )
    assert ci_context(env).fork == "mallory/ehr-api"


def test_github_issue_comment_on_a_pull_request(tmp_path: Path) -> None:
    event = {
        "action": "created",
        "issue": {"number": 9, "pull_request": {"url": "https://api.github.com/.../pulls/9"}},
        "comment": {"id": 5550001, "body": "/signoff approve 0123456789ab"},
        "repository": {"full_name": "acme/ehr-api"},
    }
    env = github_env(
        GITHUB_EVENT_NAME="issue_comment",
        GITHUB_EVENT_PATH=write_event(tmp_path, event),
        GITHUB_SHA="d" * 40,  # the default branch's head, not the PR's
    )
    context = ci_context(env)
    assert (context.number, context.comment_id, context.head_sha) == (9, 5550001, None)


def test_github_issue_comment_on_an_issue_has_no_number(tmp_path: Path) -> None:
    event = {"issue": {"number": 3}, "comment": {"id": 1}}
    env = github_env(
        GITHUB_EVENT_NAME="issue_comment", GITHUB_EVENT_PATH=write_event(tmp_path, event)
    )
    context = ci_context(env)
    assert context.number is None and context.review() is None


def test_github_push_context(tmp_path: Path) -> None:
    env = github_env(
        GITHUB_EVENT_PATH=write_event(tmp_path, {"ref": "refs/heads/main"}),
        GITHUB_SHA="e" * 40,
        GITHUB_RUN_ID="99",
    )
    context = ci_context(env)
    assert (context.number, context.head_sha, context.event) == (None, "e" * 40, "push")
    assert context.run_url == "https://github.com/acme/ehr-api/actions/runs/99"


def test_github_context_bad_values(tmp_path: Path) -> None:
    with pytest.raises(IdentityError, match="GITHUB_RUN_ATTEMPT is 'two', not a number"):
        ci_context(github_env(GITHUB_RUN_ATTEMPT="two"))
    broken = tmp_path / "event.json"
    broken.write_text("{not json", encoding="utf-8")
    with pytest.raises(IdentityError, match=r"GITHUB_EVENT_PATH .* is not JSON"):
        ci_context(github_env(GITHUB_EVENT_PATH=str(broken)))
    with pytest.raises(IdentityError, match="is unreadable"):
        ci_context(github_env(GITHUB_EVENT_PATH=str(tmp_path / "missing.json")))


def test_gitlab_merge_request_context() -> None:
    env = gitlab_env(
        CI_MERGE_REQUEST_IID="12",
        CI_MERGE_REQUEST_SOURCE_BRANCH_SHA="f" * 40,
        CI_COMMIT_SHA="1" * 40,
        CI_MERGE_REQUEST_PROJECT_PATH="acme/ehr-api",
        CI_MERGE_REQUEST_SOURCE_PROJECT_PATH="mallory/ehr-api",
        GITLAB_USER_LOGIN="bob",
        CI_PIPELINE_ID="777",
        CI_JOB_ID="888",
        CI_PIPELINE_SOURCE="merge_request_event",
        CI_API_V4_URL="https://gitlab.example/api/v4",
        CI_PIPELINE_URL="https://gitlab.example/acme/ehr-api/-/pipelines/777",
    )
    context = ci_context(env)
    assert context.platform == "gitlab"
    assert (context.number, context.head_sha, context.fork) == (12, "f" * 40, "mallory/ehr-api")
    assert (context.actor, context.run_id, context.job_id) == ("bob", "777", "888")
    assert context.attempt is None
    assert context.api_url == "https://gitlab.example/api/v4"
    review = context.review()
    assert review is not None and review["platform"] == "gitlab" and review["number"] == 12


def test_gitlab_branch_pipeline_context() -> None:
    # GitLab sets unused variables to empty strings: they must read as absent.
    env = gitlab_env(
        CI_COMMIT_SHA="2" * 40, CI_MERGE_REQUEST_SOURCE_BRANCH_SHA="", CI_MERGE_REQUEST_IID=""
    )
    context = ci_context(env)
    assert (context.number, context.head_sha, context.fork) == (None, "2" * 40, None)
    with pytest.raises(IdentityError, match="CI_MERGE_REQUEST_IID"):
        ci_context(gitlab_env(CI_MERGE_REQUEST_IID="12a"))


def test_local_context() -> None:
    context = ci_context({"USER": "carol", "GITHUB_ACTIONS": "false"})
    assert context.platform == "local" and context.actor == "carol"
    assert context.review() is None


def test_an_unexpired_token_passes_the_expiry_check() -> None:
    with OidcIssuer() as running:
        token = running.token(audience="signoff", lifetime_s=300)
    assert EnvTokenSource({"T": token}, "T").token() == token
