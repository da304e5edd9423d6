"""``signoff demo``: the product doing what it is for, in one process, on loopback.

An embedded PostgreSQL (pgserver) holds a "production" database at the sample
project's revision before the last, with a few patients and their ssn values.
A loopback OIDC issuer, a loopback GitHub (PR #42 by dana, reviewer riley) and
the gateway run in this process, the gateway with its own signing key and its
own code-host credential. Then the CI jobs run exactly as ``signoff apply`` runs
them (runner.job, with a GitHub Actions environment):

1. the pull_request job plans the last revision through the gateway; the gateway
   finds the destructive ``DROP COLUMN ssn`` (SO101) and writes the plan comment;
2. riley approves (``--yes``, or a "y" in the terminal) or rejects on the PR;
3. the PR is merged and the push job on main runs: the gateway verifies the
   approval on the code host itself, grants exactly the approved statement and
   the plan applies through its PostgreSQL port, statement by statement;
4. the job's audit bundle is written to ``out_dir`` and verified offline with the
   gateway's public key (written next to it), and report.html is taken out of it.

Everything started here is stopped before ``run_demo`` returns, whatever happened:
the gateway, the loopback servers, the production database (dropped) and this
process's handle on the embedded server (which stops when nobody else holds it).
"""

from __future__ import annotations

import contextlib
import json
import tempfile
import urllib.parse
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import psycopg
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from runner.demo.codehost import CodeHostServer
from runner.demo.issuer import OidcIssuer
from runner.demo.token_endpoint import TokenEndpoint
from runner.errors import SignoffError
from runner.evidence import EvidenceOptions
from runner.job import JobOptions, JobOutcome, JobResult, run_job
from runner.plan.model import Plan

if TYPE_CHECKING:
    from runner.gateway.serve import GatewayThread

Say = Callable[[str], None]
Ask = Callable[[str], bool]

REPO = "acme/ehr-api"
PR_NUMBER = 42
AUTHOR = "dana"
REVIEWER = "riley"
BOT = "signoff-bot"
HEAD_SHA = "4e1d2c3b" * 5  # the PR's head commit
PREVIEW_SHA = "9a8b7c6d" * 5  # GitHub's refs/pull/42/merge preview commit
MERGE_SHA = "51f0e2d7" * 5  # the merge commit on main
DATABASE = "production"
# The gateway's upstream role: an owner of the tables, not a superuser (README: upstream roles).
OWNER = "signoff_owner"
BEFORE_LAST = "159bd3e0d7b6"  # the sample's revision before be942846c0a5 (drops patients.ssn)
AUDIENCE = "signoff-gateway"
PATIENTS = (
    (1, "MRN-0001", "Ada", "Lovelace", "123-45-6789", "1815-12-10", "ada@example.org"),
    (2, "MRN-0002", "Alan", "Turing", "234-56-7890", "1912-06-23", "alan@example.org"),
    (3, "MRN-0003", "Grace", "Hopper", "345-67-8901", "1906-12-09", "grace@example.org"),
)


@dataclass
class DemoResult:
    outcome: JobOutcome  # of the last job run (APPLIED when all went well)
    reason: str
    plan_hash: str | None = None
    needs_approval: list[str] = field(default_factory=list)  # rule ids the gateway named
    plan_comment: str = ""  # the gateway's plan comment, read back from the code host
    approved: bool = False  # riley approved (else rejected)
    ssn_column: bool = True  # patients.ssn still there when the demo ended
    bundle: Path | None = None
    report: Path | None = None
    public_key: Path | None = None
    verify_lines: list[str] = field(default_factory=list)
    verified: bool = False
    stopped: list[str] = field(default_factory=list)  # what was stopped, in order

    @property
    def exit_status(self) -> int:
        """0 only when the plan applied and the bundle verified."""
        return 0 if self.outcome is JobOutcome.APPLIED and self.verified else 1


class _Progress:
    """One numbered line per step; the job's own lines indented below it."""

    def __init__(self, say: Say) -> None:
        self.say = say
        self.number = 0
        self.stopped: list[str] = []

    def step(self, text: str) -> None:
        self.number += 1
        self.say(f"{self.number}. {text}")

    def detail(self, text: str) -> None:
        for line in text.splitlines() or [""]:
            self.say(f"     {line}" if line else "")

    def after(self, stack: contextlib.ExitStack, what: str) -> None:
        """Say ``what`` once the context entered next on ``stack`` has exited."""
        stack.callback(self.stopped_now, what)

    def stopped_now(self, what: str) -> None:
        self.stopped.append(what)
        self.detail(what)


def sample_project() -> Path:
    """The sample alembic project of this checkout (sample_migrations/alembic.ini)."""
    ini = Path(__file__).resolve().parents[2] / "sample_migrations" / "alembic.ini"
    if not ini.is_file():
        raise SignoffError(
            f"the sample project is not at {ini.parent}; run signoff demo from a checkout of "
            "signoff installed with `pip install -e .`"
        )
    return ini


def run_demo(out_dir: Path, *, yes: bool, say: Say, ask: Ask) -> DemoResult:
    """Run the whole flow (see the module doc); ``ask`` is called for the approval
    unless ``yes``. Raises SignoffError (one line) for what cannot start; what was
    started is stopped either way."""
    progress = _Progress(say)
    ini = sample_project()
    with contextlib.ExitStack() as stack:
        result = _flow(stack, progress, ini, out_dir.absolute(), yes=yes, ask=ask)
        # The stack closes here, in reverse order of start: the loopback servers and
        # the gateway first, then the production database, then the embedded server.
        progress.step("Stopping everything this demo started")
    result.stopped = list(progress.stopped)
    return result


def _flow(
    stack: contextlib.ExitStack,
    progress: _Progress,
    ini: Path,
    out_dir: Path,
    *,
    yes: bool,
    ask: Ask,
) -> DemoResult:
    from runner.dryrun.migrate import upgrade
    from runner.dryrun.scratch import scratch_database
    from runner.dryrun.server import data_dir, embedded_server_url

    progress.step("Starting an embedded PostgreSQL (pgserver; unix socket only)")
    server_url = embedded_server_url()
    stack.callback(_stop_embedded_server, progress, data_dir())
    progress.detail(f"data directory {data_dir()}")

    progress.step(f'Creating the "{DATABASE}" database at revision {BEFORE_LAST} with patients')
    progress.after(stack, f"{DATABASE} database dropped")
    db_url = stack.enter_context(scratch_database(server_url, prefix=DATABASE))
    upgrade(ini, db_url, BEFORE_LAST)
    _seed(db_url)
    progress.detail(
        f"alembic upgrade {BEFORE_LAST}: 10 of the sample's 11 revisions; "
        f"{len(PATIENTS)} patients, each with an ssn"
    )
    _owner_role(db_url)
    progress.detail(
        f"the gateway's upstream role {OWNER} owns the tables (not a superuser, no BYPASSRLS)"
    )
    _install_guard(db_url)
    progress.detail(
        "server-side guard installed (signoff gateway install-guard): the database itself "
        "refuses a DROP, TRUNCATE or table rewrite the gateway did not mark as granted"
    )

    tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="signoff-demo-")))
    progress.step("Starting a loopback OIDC issuer, a loopback GitHub and the gateway")
    progress.after(stack, "OIDC issuer stopped")
    issuer = stack.enter_context(OidcIssuer())
    progress.after(stack, "loopback GitHub stopped")
    host = stack.enter_context(CodeHostServer())
    _populate(host)
    key = Ed25519PrivateKey.generate()
    config = _gateway_config(tmp, issuer, host, key, server_url, db_url)
    progress.after(stack, "gateway stopped (its HTTP and PostgreSQL ports closed)")
    gateway = stack.enter_context(_gateway(config))
    progress.after(stack, "token endpoint stopped")
    tokens = stack.enter_context(TokenEndpoint(issuer))
    http = f"http://127.0.0.1:{gateway.running.http_port}"
    progress.detail(f"issuer {issuer.issuer}, GitHub {host.github_url}")
    progress.detail(f"gateway HTTP {http}, PostgreSQL port 127.0.0.1:{gateway.running.pg_port}")
    progress.detail(f"{REPO}#{PR_NUMBER} by {AUTHOR} (head {HEAD_SHA[:12]}); {REVIEWER} can write")

    jobs = _Jobs(tmp, tokens, host, http, ini, progress)
    progress.step(f"CI job on {REPO}#{PR_NUMBER} (pull_request, plan only)")
    planned = jobs.pull_request()
    result = DemoResult(planned.outcome, planned.reason)
    if planned.plan is None or planned.outcome is not JobOutcome.NEEDS_APPROVAL:
        raise SignoffError(
            f"the plan job ended {planned.outcome.value} ({planned.reason}); "
            "expected it to wait for an approval"
        )
    result.plan_hash = planned.plan.hash
    jobs.plan = planned.plan
    status = planned.status or {}
    result.needs_approval = sorted(
        {rule for s in status.get("needs_approval") or [] for rule in s.get("rules", [])}
    )
    progress.detail(f"exit {planned.exit_status}: {planned.reason}")

    progress.step(f"The plan comment the gateway wrote on {REPO}#{PR_NUMBER}")
    result.plan_comment = _plan_comment(host)
    progress.detail(result.plan_comment)

    approve_line = f"/signoff approve {planned.plan.short_hash}"
    progress.step(f"The review: {REVIEWER} answers on {REPO}#{PR_NUMBER}")
    result.approved = yes or ask(f"Approve as {REVIEWER} ({approve_line})? [y/N] ")
    body = approve_line if result.approved else "/signoff reject not before the billing export"
    host.add_comment("github", REPO, PR_NUMBER, REVIEWER, body)
    progress.detail(f"{REVIEWER}: {body}")

    merged = "merged" if result.approved else "merged anyway"
    progress.step(f"{REPO}#{PR_NUMBER} {merged}; CI job on main (push): the gateway decides")
    host.merge("github", REPO, PR_NUMBER, MERGE_SHA)
    applied = jobs.push(EvidenceOptions(bundle_dir=out_dir))
    result.outcome, result.reason = applied.outcome, applied.reason
    approvers = [a.get("login") for a in (applied.status or {}).get("approvers") or []]
    if approvers:
        progress.detail(
            f"the gateway verified the approval of {', '.join(map(str, approvers))} on the "
            "code host itself and granted exactly the statement(s) it approved"
        )
    progress.detail(f"exit {applied.exit_status}: {applied.outcome.value}: {applied.reason}")
    result.ssn_column = _has_ssn(db_url)
    progress.detail("patients.ssn is still there" if result.ssn_column else "patients.ssn is gone")

    progress.step("The audit bundle, verified offline with the gateway's public key")
    if applied.evidence is None:
        progress.detail(f"no bundle: {applied.evidence_error or 'the job left none'}")
        return result
    _verify(result, applied.evidence.path, key, progress)
    return result


class _Jobs:
    """The GitHub Actions environment of each job, and the job run with it."""

    def __init__(
        self,
        tmp: Path,
        tokens: TokenEndpoint,
        host: CodeHostServer,
        gateway_url: str,
        ini: Path,
        progress: _Progress,
    ) -> None:
        self.tmp, self.tokens, self.host = tmp, tokens, host
        self.gateway_url, self.ini, self.progress = gateway_url, ini, progress
        self.plan: Plan | None = None  # the PR job's plan, to show statements by their SQL

    def pull_request(self) -> JobResult:
        ref = f"refs/pull/{PR_NUMBER}/merge"
        self.tokens.claims = {
            "ref": ref,
            "sha": PREVIEW_SHA,
            "event_name": "pull_request",
            "environment": None,
            "actor": AUTHOR,
        }
        payload = {"pull_request": {"number": PR_NUMBER, "head": {"sha": HEAD_SHA}}}
        env = self._env("pull_request", payload, PREVIEW_SHA, ref, run_id="4201")
        return self._run(env, plan_only=True, evidence=None)

    def push(self, evidence: EvidenceOptions) -> JobResult:
        # The merge's pusher is the job's actor; the approver must be someone else.
        self.tokens.claims = {
            "ref": "refs/heads/main",
            "sha": MERGE_SHA,
            "event_name": "push",
            "actor": AUTHOR,
        }
        env = self._env("push", {}, MERGE_SHA, "refs/heads/main", run_id="4202")
        return self._run(env, plan_only=False, evidence=evidence)

    def _env(
        self, event: str, payload: dict[str, Any], sha: str, ref: str, *, run_id: str
    ) -> dict[str, str]:
        path = self.tmp / f"event-{run_id}.json"
        path.write_text(json.dumps(payload), encoding="utf-8")
        return {
            "GITHUB_ACTIONS": "true",
            "ACTIONS_ID_TOKEN_REQUEST_URL": self.tokens.url,
            "ACTIONS_ID_TOKEN_REQUEST_TOKEN": TokenEndpoint.REQUEST_TOKEN,
            "GITHUB_EVENT_NAME": event,
            "GITHUB_EVENT_PATH": str(path),
            "GITHUB_REPOSITORY": REPO,
            "GITHUB_SHA": sha,
            "GITHUB_REF": ref,
            "GITHUB_ACTOR": AUTHOR,
            "GITHUB_RUN_ID": run_id,
            "GITHUB_RUN_ATTEMPT": "1",
            "GITHUB_SERVER_URL": self.host.base_url,
            "GITHUB_API_URL": self.host.github_url,
        }

    def _run(
        self, env: dict[str, str], *, plan_only: bool, evidence: EvidenceOptions | None
    ) -> JobResult:
        options = JobOptions(
            gateway_url=self.gateway_url,
            database=DATABASE,
            alembic_ini=self.ini,
            audience=AUDIENCE,
            plan_only=plan_only,
            # The answer is on the PR before the job starts, so the gateway's first
            # reads of the code host normally settle it; the bound is for a loaded
            # machine, where a short one would end a good run as timed out.
            wait_s=60.0,
            poll_min_s=0.05,
            poll_max_s=0.25,
            evidence=evidence,
        )
        return run_job(options, env=env, say=self._say)

    def _say(self, line: str) -> None:
        self.progress.detail(line)


def _seed(db_url: str) -> None:
    with psycopg.connect(db_url, autocommit=True) as conn:
        for row in PATIENTS:
            conn.execute(
                "INSERT INTO patients (id, mrn, first_name, last_name, ssn, date_of_birth, email)"
                " VALUES (%s, %s, %s, %s, %s, %s, %s)",
                row,
            )


def _owner_role(db_url: str) -> None:
    """The upstream role README recommends: owns the application's objects, no more.
    The embedded server outlives one demo, so the role may already be there."""
    with psycopg.connect(db_url, autocommit=True) as conn:
        exists = conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (OWNER,)).fetchone()
        if exists is None:
            conn.execute(f"CREATE ROLE {OWNER} LOGIN NOSUPERUSER NOBYPASSRLS NOCREATEROLE")
        conn.execute(f"GRANT USAGE, CREATE ON SCHEMA public TO {OWNER}")
        owned = conn.execute(
            "SELECT CASE c.relkind WHEN 'S' THEN 'SEQUENCE' ELSE 'TABLE' END, c.relname"
            " FROM pg_class c WHERE c.relnamespace = 'public'::regnamespace"
            " AND c.relkind IN ('r', 'p', 'S')"
            " AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.objid = c.oid"
            " AND d.deptype IN ('a', 'i'))"  # owned with their table
        ).fetchall()
        for kind, name in owned:
            conn.execute(f'ALTER {kind} public."{name}" OWNER TO {OWNER}')
        types = conn.execute(
            "SELECT typname FROM pg_type WHERE typnamespace = 'public'::regnamespace"
            " AND typtype = 'e'"
        ).fetchall()
        for (name,) in types:
            conn.execute(f'ALTER TYPE public."{name}" OWNER TO {OWNER}')


def _install_guard(db_url: str) -> None:
    from runner.gateway.dbguard.install import install

    install(db_url)  # as the embedded server's superuser: a DBA's one-time step


def _has_ssn(db_url: str) -> bool:
    with psycopg.connect(db_url, autocommit=True) as conn:
        row = conn.execute(
            "SELECT count(*) FROM information_schema.columns "
            "WHERE table_name = 'patients' AND column_name = 'ssn'"
        ).fetchone()
    return bool(row and row[0])


def _populate(host: CodeHostServer) -> None:
    host.add_user(BOT, bot=True)  # the gateway's own credential on the code host
    host.add_user(AUTHOR)
    host.add_user(REVIEWER)
    host.add_repo("github", REPO)
    host.grant("github", REPO, AUTHOR, "write")
    host.grant("github", REPO, REVIEWER, "write")
    host.add_review("github", REPO, PR_NUMBER, author=AUTHOR, head_sha=HEAD_SHA)


def _plan_comment(host: CodeHostServer) -> str:
    review = host.repo("github", REPO).reviews[PR_NUMBER]
    bot = host.user(BOT).id
    marker = f"<!-- signoff:plan db={DATABASE} -->"
    bodies = [c.body for c in review.comments if c.author == bot and c.body.startswith(marker)]
    if not bodies:
        raise SignoffError(f"the gateway wrote no plan comment on {REPO}#{PR_NUMBER}")
    return bodies[-1].removeprefix(marker).strip()


def _gateway_config(
    tmp: Path,
    issuer: OidcIssuer,
    host: CodeHostServer,
    key: Ed25519PrivateKey,
    server_url: str,
    db_url: str,
) -> Path:
    """gateway.toml for this demo: the embedded server behind it over its unix socket
    (trust auth there, so no password), the PR job as a planner that changes nothing
    and is reviewed as the deployer that applies on main."""
    key_path = tmp / "gateway-ed25519.pem"
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    key_path.chmod(0o600)
    token_path = tmp / "github-token"
    token_path.write_text(host.token_of(BOT), encoding="utf-8")
    token_path.chmod(0o600)
    query = urllib.parse.parse_qs(urllib.parse.urlsplit(server_url).query)
    socket_dir, port = query["host"][0], int(query.get("port", ["5432"])[0])
    dbname = urllib.parse.urlsplit(db_url).path.lstrip("/")

    def q(value: object) -> str:
        return json.dumps(str(value))  # a TOML basic string

    config = tmp / "gateway.toml"
    config.write_text(
        f"""
[gateway]
audience = {q(AUDIENCE)}
state_url = {q(f"sqlite:///{tmp / 'gateway.db'}")}
session_ttl = "15m"
max_session_ttl = "1h"
signing_key = {q(key_path)}

[listen]
http = "127.0.0.1:0"
pg = "127.0.0.1:0"

[[issuers]]
name = "ci"
issuer = {q(issuer.issuer)}

[[databases]]
name = {q(DATABASE)}
host = {q(socket_dir)}
port = {port}
dbname = {q(dbname)}
user = {q(OWNER)}
sslmode = "disable"

[databases.guard]           # the server-side guard's marks are written as this role
user = "postgres"

[[access]]                  # the pull_request job runs the PR's code: it changes nothing
database = {q(DATABASE)}
role = "planner"
issuer = "ci"
claims = {{ repository = {q(REPO)}, ref = "refs/pull/*/merge" }}

[[access]]                  # the job on main applies
database = {q(DATABASE)}
role = "deployer"
issuer = "ci"
claims = {{ repository = {q(REPO)}, ref = "refs/heads/main" }}

[roles.planner]
destructive = "deny"
unanalysable = "deny"
locking = "deny"
incompatible = "deny"
review_as = "deployer"      # its plans are reviewed as the role that will apply them

[roles.deployer]
destructive = "needs-approval"
unanalysable = "needs-approval"
locking = "allow"
incompatible = "allow"

[code_hosts.github]
api_url = {q(host.github_url)}
token_file = {q(token_path)}
""",
        encoding="utf-8",
    )
    return config


@contextlib.contextmanager
def _gateway(config_path: Path) -> Iterator[GatewayThread]:
    from runner.gateway.config import load_gateway_config
    from runner.gateway.serve import GatewayThread

    with GatewayThread(load_gateway_config(config_path)) as running:
        yield running


def _verify(result: DemoResult, bundle: Path, key: Ed25519PrivateKey, progress: _Progress) -> None:
    from runner.audit.bundle import read_bundle
    from runner.audit.offline import verify_bundle

    stem = bundle.name.removesuffix(".tar.gz")
    public_pem = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    public_key = bundle.with_name(f"{stem}.gateway.pub.pem")
    public_key.write_bytes(public_pem)
    report = verify_bundle(str(bundle), public_pem)
    result.verify_lines = list(report.lines())
    result.verified = report.ok
    for line in result.verify_lines:
        progress.detail(line)
    page = read_bundle(bundle).files.get("report.html")
    if page is not None:
        result.report = bundle.with_name(f"{stem}.report.html")
        result.report.write_bytes(page)
    result.bundle, result.public_key = bundle, public_key
    progress.detail(f"bundle:     {bundle}")
    if result.report is not None:
        progress.detail(f"report:     {result.report} (open it in a browser)")
    progress.detail(f"public key: {public_key}")
    progress.detail("check it again, offline, at any time:")
    progress.detail(f"  signoff audit verify {bundle} --public-key {public_key}")


def _stop_embedded_server(progress: _Progress, pgdata: Path) -> None:
    from runner.dryrun.server import stop_embedded_server

    stop_embedded_server()
    if (pgdata / "postmaster.pid").exists():
        # Another process (a dry-run, another demo) still holds it: it stops with the last.
        progress.stopped_now("embedded PostgreSQL left running for the other process using it")
    else:
        progress.stopped_now("embedded PostgreSQL stopped")
