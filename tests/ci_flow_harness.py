"""The CI flow end to end, all over real HTTP on loopback: a GitHub Actions-style
token endpoint minting real RS256 tokens from the loopback OIDC issuer, the
gateway in-process (its own code-host credential pointing at the loopback
GitHub/GitLab of tests/codehost.py), a small alembic project whose second
revision drops a table, and the CI job (runner.job) as ``signoff apply`` runs it.
"""

from __future__ import annotations

import contextlib
import json
import shutil
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from codehost import CodeHostServer
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from gateway_harness import Gateway, running_gateway

from runner.demo.token_endpoint import TokenEndpoint
from runner.evidence import EvidenceOptions
from runner.job import JobOptions, JobResult, run_job

REPO = "acme/ehr-api"
SAMPLE = Path(__file__).resolve().parents[1] / "sample_migrations"
HEAD = "a1" * 20
MERGED = "b2" * 20

_REVISION = '''"""{message}

Revision ID: {rev}
Revises: {down}
"""

from alembic import op

revision = "{rev}"
down_revision = {down_repr}
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute({sql!r})


def downgrade() -> None:
    pass
'''


def alembic_project(root: Path, revisions: list[tuple[str, str, str]]) -> Path:
    """An alembic project (the sample's env.py) with ``(rev, message, sql)`` in order."""
    root.mkdir(parents=True, exist_ok=True)
    for name in ("alembic.ini", "env.py", "script.py.mako"):
        shutil.copy(SAMPLE / name, root / name)
    versions = root / "versions"
    versions.mkdir(exist_ok=True)
    down: str | None = None
    for n, (rev, message, sql) in enumerate(revisions):
        (versions / f"{n:02d}_{rev}.py").write_text(
            _REVISION.format(message=message, rev=rev, down=down, down_repr=repr(down), sql=sql)
        )
        down = rev
    return root / "alembic.ini"


@dataclass
class Flow:
    gateway: Gateway
    host: CodeHostServer
    tokens: TokenEndpoint
    ini: Path
    tmp: Path
    lines: list[str] = field(default_factory=list)

    def github_env(self, event: str, payload: dict[str, Any], sha: str, ref: str) -> dict[str, str]:
        path = self.tmp / f"event-{len(self.lines)}-{event}.json"
        path.write_text(json.dumps(payload))
        return {
            "GITHUB_ACTIONS": "true",
            "ACTIONS_ID_TOKEN_REQUEST_URL": self.tokens.url,
            "ACTIONS_ID_TOKEN_REQUEST_TOKEN": TokenEndpoint.REQUEST_TOKEN,
            "GITHUB_EVENT_NAME": event,
            "GITHUB_EVENT_PATH": str(path),
            "GITHUB_REPOSITORY": REPO,
            "GITHUB_SHA": sha,
            "GITHUB_REF": ref,
            "GITHUB_ACTOR": "alice",
            "GITHUB_RUN_ID": "4242",
            "GITHUB_RUN_ATTEMPT": "1",
            "GITHUB_API_URL": self.host.github_url,
        }

    def pull_request_job(self, number: int = 7, head: str = HEAD) -> dict[str, str]:
        """The env of a ``pull_request`` run and the claims of its token."""
        self.tokens.claims = {
            "ref": f"refs/pull/{number}/merge",
            "sha": "c3" * 20,
            "event_name": "pull_request",
            "environment": None,
        }
        payload = {"pull_request": {"number": number, "head": {"sha": head}}}
        return self.github_env("pull_request", payload, "c3" * 20, f"refs/pull/{number}/merge")

    def push_job(self, sha: str = MERGED) -> dict[str, str]:
        self.tokens.claims = {"ref": "refs/heads/main", "sha": sha, "event_name": "push"}
        return self.github_env("push", {}, sha, "refs/heads/main")

    def comment_job(self, number: int = 7, comment_id: int = 1) -> dict[str, str]:
        self.tokens.claims = {
            "ref": "refs/heads/main",
            "sha": "d4" * 20,
            "event_name": "issue_comment",
        }
        payload = {
            "issue": {"number": number, "pull_request": {"url": "x"}},
            "comment": {"id": comment_id},
        }
        return self.github_env("issue_comment", payload, "d4" * 20, "refs/heads/main")

    def gitlab_env(self, *, source: str, sha: str, ref: str, **extra: str) -> dict[str, str]:
        """A GitLab CI job's env; its ``id_tokens:`` variable holds a token minted now."""
        token = self.gateway.token(
            project_path=REPO, user_login="alice", ref=ref, sha=sha, environment=None
        )
        return {
            "GITLAB_CI": "true",
            "SIGNOFF_ID_TOKEN": token,
            "CI_PROJECT_PATH": REPO,
            "CI_COMMIT_SHA": sha,
            "CI_COMMIT_REF_NAME": ref,
            "CI_PIPELINE_SOURCE": source,
            "CI_PIPELINE_ID": "314",
            "CI_JOB_ID": "2718",
            "GITLAB_USER_LOGIN": "alice",
            "CI_API_V4_URL": f"{self.host.gitlab_url}/api/v4",
            "CI_SERVER_URL": self.host.gitlab_url,
            **extra,
        }

    def merge_request_job(self, iid: int = 7, head: str = HEAD) -> dict[str, str]:
        return self.gitlab_env(
            source="merge_request_event",
            sha=head,
            ref="feature/drop-visits-old",
            CI_MERGE_REQUEST_IID=str(iid),
            CI_MERGE_REQUEST_SOURCE_BRANCH_SHA=head,
            CI_MERGE_REQUEST_PROJECT_PATH=REPO,
            CI_MERGE_REQUEST_SOURCE_PROJECT_PATH=REPO,
        )

    def default_branch_job(self, sha: str = MERGED) -> dict[str, str]:
        return self.gitlab_env(source="push", sha=sha, ref="main")

    def run(self, env: dict[str, str], **options: Any) -> JobResult:
        defaults: dict[str, Any] = {
            "gateway_url": self.gateway.http,
            "database": "ehr",
            "alembic_ini": self.ini,
            "audience": "signoff-gateway",
            "poll_min_s": 0.05,
            "poll_max_s": 0.2,
            "wait_s": 5.0,
            "evidence": EvidenceOptions(bundle_dir=self.tmp / "bundles"),
        }
        defaults.update(options)
        return run_job(JobOptions(**defaults), env=env, say=self.lines.append)

    def approve(self, login: str, plan_hash: str, number: int = 7) -> int:
        return self.host.add_comment(
            "github", REPO, number, login, f"/signoff approve {plan_hash[:12]}"
        )

    def gateway_log(self, caplog: pytest.LogCaptureFixture) -> str:
        return "\n".join(
            r.getMessage() for r in caplog.records if r.name.startswith("signoff.gateway")
        )


CODE_HOSTS = """
[[access]]
database = "ehr"
role = "planner"
issuer = "ci"
claims = {{ repository = "acme/ehr-api", ref = "refs/pull/*/merge" }}

[roles.planner]             # the pull_request job runs the PR's code: it changes nothing
destructive = "deny"
unanalysable = "deny"
locking = "deny"
incompatible = "deny"
review_as = "deployer"      # its plans are reviewed as the role that will apply them

[[access]]
database = "ehr"
role = "deployer"
issuer = "ci"
claims = {{ project_path = "acme/ehr-api" }}

[code_hosts.github]
api_url = "{github}"
token_env = "SIGNOFF_TEST_GITHUB_TOKEN"

[code_hosts.gitlab]
api_url = "{gitlab}"
token_env = "SIGNOFF_TEST_GITLAB_TOKEN"
"""


@contextlib.contextmanager
def ci_flow(
    scratch_db_url: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    *,
    session_ttl: str = "15m",
    max_session_ttl: str = "1h",
) -> Iterator[Flow]:
    key = tmp_path / "gateway-ed25519.pem"
    key.write_bytes(
        Ed25519PrivateKey.generate().private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    with CodeHostServer() as host:
        host.add_user("signoff-bot", bot=True)
        for login in ("alice", "bob", "carol", "dave", "erin"):
            host.add_user(login)
        host.add_user("renovate[bot]", bot=True)
        for platform in ("github", "gitlab"):
            host.add_repo(platform, REPO)
            host.grant(platform, REPO, "bob", "write" if platform == "github" else "developer")
            host.grant(platform, REPO, "erin", "write" if platform == "github" else "developer")
            host.grant(platform, REPO, "alice", "write" if platform == "github" else "developer")
            host.grant(platform, REPO, "dave", "read" if platform == "github" else "reporter")
            host.grant(
                platform, REPO, "renovate[bot]", "write" if platform == "github" else "developer"
            )
            host.add_review(platform, REPO, 7, author="carol", head_sha=HEAD)
            host.add_review(platform, REPO, 8, author="carol", head_sha="e5" * 20)
        monkeypatch.setenv("SIGNOFF_TEST_GITHUB_TOKEN", host.token_of("signoff-bot"))
        monkeypatch.setenv("SIGNOFF_TEST_GITLAB_TOKEN", host.token_of("signoff-bot"))
        extra = CODE_HOSTS.format(github=host.github_url, gitlab=host.gitlab_url)
        with (
            running_gateway(
                scratch_db_url,
                tmp_path,
                monkeypatch,
                extra_config=extra,
                session_ttl=session_ttl,
                max_session_ttl=max_session_ttl,
                signing_key=key,
                archive=tmp_path / "gateway-archive",
            ) as gateway,
            TokenEndpoint(gateway) as tokens,
        ):
            ini = alembic_project(
                tmp_path / "project",
                [
                    ("1a2b3c4d5e6f", "create notes", "CREATE TABLE notes (id bigint, body text)"),
                    ("6f5e4d3c2b1a", "drop visits_old", "DROP TABLE visits_old"),
                ],
            )
            yield Flow(gateway, host, tokens, ini, tmp_path)
