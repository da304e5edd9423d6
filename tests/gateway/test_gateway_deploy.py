"""The gateway as deployments use it: alembic online through it, GitLab tokens
(and a fork's), and two gateway processes sharing one PostgreSQL state store."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import psycopg
import pytest
from oidc_issuer import OidcIssuer

from runner.audit.verify import verify_chain
from runner.dryrun import migrate
from runner.errors import SignoffError
from runner.gateway.config import load_gateway_config
from runner.gateway.serve import GatewayThread
from runner.gateway.store import open_store

PASSWORD = "Deploy-upstream-pw-Never-Shown"
BEFORE_DROP = "159bd3e0d7b6"


def _config(
    path: Path, *, dbname: str, state_url: str, github: str, gitlab: str, http: str, pg: str
) -> Path:
    path.write_text(
        f"""
[gateway]
audience = "signoff-gateway"
state_url = "{state_url}"

[listen]
http = "{http}"
pg = "{pg}"

[[issuers]]
name = "github"
issuer = "{github}"

[[issuers]]
name = "gitlab"
issuer = "{gitlab}"

[[databases]]
name = "ehr"
host = "127.0.0.1"
port = 5432
dbname = "{dbname}"
user = "signoff_gw_deploy"
password_env = "EHR_DB_PASSWORD"
sslmode = "disable"

[[access]]
database = "ehr"
role = "deployer"
issuer = "github"
claims = {{ repository = "acme/ehr-api", ref = "refs/heads/main" }}

[[access]]
database = "ehr"
role = "deployer"
issuer = "gitlab"
[access.claims]
project_path = "acme/ehr-api"
job_project_path = "acme/ehr-api"
ref_protected = "true"
pipeline_source = ["push", "web", "schedule"]

[roles.deployer]
destructive = "needs-approval"
unanalysable = "needs-approval"
locking = "allow"
incompatible = "allow"
"""
    )
    return path


@pytest.fixture
def upstream(scratch_db_url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    with psycopg.connect(scratch_db_url, autocommit=True) as conn:
        conn.execute("DROP ROLE IF EXISTS signoff_gw_deploy")
        conn.execute(f"CREATE ROLE signoff_gw_deploy LOGIN SUPERUSER PASSWORD '{PASSWORD}'")
    monkeypatch.setenv("EHR_DB_PASSWORD", PASSWORD)
    yield scratch_db_url
    with psycopg.connect(scratch_db_url, autocommit=True) as conn:
        conn.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
            " WHERE usename = 'signoff_gw_deploy'"
        )


def _dbname(url: str) -> str:
    return url.rsplit("/", 1)[1].split("?")[0]


def _exchange(http: str, token: str) -> httpx.Response:
    return httpx.post(f"{http}/v1/sessions", json={"token": token, "database": "ehr"}, timeout=10)


@contextmanager
def _gateway(
    upstream: str, tmp_path: Path
) -> Iterator[tuple[OidcIssuer, OidcIssuer, Path, GatewayThread]]:
    """A GitHub-style and a GitLab-style issuer and one in-process gateway on SQLite."""
    with OidcIssuer() as github, OidcIssuer(style="gitlab", path="/gl") as gitlab:
        config = _config(
            tmp_path / "gateway.toml",
            dbname=_dbname(upstream),
            state_url=f"sqlite:///{tmp_path / 'state.db'}",
            github=github.issuer,
            gitlab=gitlab.issuer,
            http="127.0.0.1:0",
            pg="127.0.0.1:0",
        )
        with GatewayThread(load_gateway_config(config)) as gateway:
            yield github, gitlab, config, gateway


def _grant(config: Path, sql: str, approver: str, *extra: str) -> None:
    """`signoff gateway grant` as an operator runs it, in its own process."""
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "runner.cli",
            "gateway",
            "grant",
            "--config",
            str(config),
            "--database",
            "ehr",
            "--sql",
            sql,
            "--approver",
            approver,
            *extra,
        ],
        capture_output=True,
        text=True,
        check=False,
        env={**os.environ, "EHR_DB_PASSWORD": PASSWORD},
    )
    assert done.returncode == 0, done.stderr


def test_alembic_online_through_the_gateway_needs_a_grant_for_the_drop(
    upstream: str, tmp_path: Path, sample_migrations: Path
) -> None:
    with _gateway(upstream, tmp_path) as (github, _, config, gateway):
        http = f"http://127.0.0.1:{gateway.running.http_port}"

        def url() -> str:
            session = _exchange(http, github.token()).json()
            return (
                f"postgresql://{session['session_id']}:{quote(session['secret'], safe='')}"
                f"@127.0.0.1:{gateway.running.pg_port}/ehr?sslmode=disable"
            )

        ini = sample_migrations / "alembic.ini"
        migrate.upgrade(ini, url(), BEFORE_DROP)  # tables, indexes, renames: allowed
        with pytest.raises(SignoffError) as refused:
            migrate.upgrade(ini, url(), "head")  # DROP COLUMN ssn of a live table
        assert "42501" in str(refused.value) or "SO102" in str(refused.value)
        assert PASSWORD not in str(refused.value)
        with psycopg.connect(upstream) as direct:
            assert direct.execute("SELECT version_num FROM alembic_version").fetchone() == (
                BEFORE_DROP,
            )

        _grant(
            config,
            "ALTER TABLE patients DROP COLUMN ssn",
            "carol",
            "--evidence",
            "https://github.com/acme/ehr-api/pull/7#issuecomment-1",
        )
        migrate.upgrade(ini, url(), "head")
    with psycopg.connect(upstream) as direct:
        columns = {
            row[0]
            for row in direct.execute(
                "SELECT column_name FROM information_schema.columns WHERE table_name = 'patients'"
            )
        }
    assert "ssn" not in columns


def test_gitlab_project_token_is_admitted_and_a_forks_is_refused(
    upstream: str, tmp_path: Path
) -> None:
    with _gateway(upstream, tmp_path) as (_, gitlab, _config, gateway):
        http = f"http://127.0.0.1:{gateway.running.http_port}"
        own = _exchange(http, gitlab.token())
        assert own.status_code == 201, own.text
        assert own.json()["principal"]["repository"] == "acme/ehr-api"
        # A fork's merge-request pipeline running in the parent project.
        fork = _exchange(
            http,
            gitlab.token(
                project_path="mallory/ehr-api",
                job_project_path="acme/ehr-api",
                pipeline_source="merge_request_event",
            ),
        )
        assert fork.status_code == 403, fork.text
        assert fork.json()["error"] == "forbidden"
    store = open_store(f"sqlite:///{tmp_path / 'state.db'}")
    try:
        events = [e.data for e in store.entries() if e.data.get("event") == "exchange-refused"]
    finally:
        store.close()
    assert any(e.get("reason") == "no-access-rule" for e in events)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _serve(config: Path, log: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "runner.cli", "gateway", "serve", "--config", str(config)],
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
        env={**os.environ, "EHR_DB_PASSWORD": PASSWORD},
    )


def _wait_healthy(http: str, process: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"gateway exited: {log.read_text()}")
        try:
            if httpx.get(f"{http}/healthz", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            time.sleep(0.1)
    pytest.fail("gateway did not become healthy")


def test_two_gateway_processes_share_sessions_grants_and_one_chain(
    upstream: str, tmp_path: Path, pg_url: str
) -> None:
    with psycopg.connect(upstream, autocommit=True) as conn:
        conn.execute("CREATE TABLE visits_old (id int)")
    state = pg_url.rsplit("/", 1)[0] + f"/{_dbname(upstream)}"
    with OidcIssuer() as github, OidcIssuer(style="gitlab", path="/gl") as gitlab:
        ports = [(_free_port(), _free_port()) for _ in range(2)]
        processes: list[subprocess.Popen[bytes]] = []
        logs = [tmp_path / "a.log", tmp_path / "b.log"]
        configs = [
            _config(
                tmp_path / f"gateway-{n}.toml",
                dbname=_dbname(upstream),
                state_url=state,
                github=github.issuer,
                gitlab=gitlab.issuer,
                http=f"127.0.0.1:{h}",
                pg=f"127.0.0.1:{p}",
            )
            for n, (h, p) in enumerate(ports)
        ]
        try:
            for config, log in zip(configs, logs, strict=True):
                processes.append(_serve(config, log))
            for process, log, (h, _) in zip(processes, logs, ports, strict=True):
                _wait_healthy(f"http://127.0.0.1:{h}", process, log)
            # A session made on gateway A works on gateway B.
            session: dict[str, Any] = _exchange(
                f"http://127.0.0.1:{ports[0][0]}", github.token()
            ).json()
            conninfo = dict(
                host="127.0.0.1",
                user=session["session_id"],
                password=session["secret"],
                dbname="ehr",
                autocommit=True,
            )
            with psycopg.connect(port=ports[1][1], **conninfo) as conn:  # type: ignore[arg-type]
                conn.execute("SELECT count(*) FROM visits_old")
                with pytest.raises(psycopg.errors.InsufficientPrivilege):
                    conn.execute("DROP TABLE visits_old")
            # A grant made against the shared store is used once, on either gateway.
            _grant(configs[0], "DROP TABLE visits_old", "dave")
            with psycopg.connect(port=ports[0][1], **conninfo) as conn:  # type: ignore[arg-type]
                conn.execute("DROP TABLE visits_old")
            # Still connected when the gateway is stopped (SIGTERM): a clean shutdown.
            left_open = psycopg.connect(port=ports[1][1], **conninfo)  # type: ignore[arg-type]
            left_open.execute("SELECT 1")
        finally:
            for process in processes:
                process.terminate()
            codes = [process.wait(30) for process in processes]
        assert codes == [0, 0]
        with pytest.raises(psycopg.OperationalError):
            left_open.execute("SELECT 2")  # 57P01 from the gateway, then closed
        left_open.close()
    store = open_store(state)
    try:
        entries = store.entries()
    finally:
        store.close()
    report = verify_chain(entries)
    assert report.ok, report.problem
    # The connection open at SIGTERM has its end recorded, and each gateway logged
    # its totals on the way out.
    ends = [e.data.get("reason") for e in entries if e.data.get("event") == "closed"]
    assert "gateway-shutdown" in ends, ends
    assert all("audit log:" in log.read_text() for log in logs)
    texts = [e.data.get("text") for e in entries if e.data.get("text")]
    assert texts.count("DROP TABLE visits_old") == 2
    for log in logs:
        assert PASSWORD not in log.read_text()
    assert not any(PASSWORD in json.dumps(e.data) for e in entries)


def test_a_client_gone_mid_result_leaves_no_traceback_in_the_log(
    upstream: str, tmp_path: Path
) -> None:
    """Clients that leave while a large answer streams, on the loop `serve` runs
    (uvloop): the log stays clean and other clients are served. Clients that close
    politely; tests/gateway/test_gateway_client_reset.py resets them (SO_LINGER 0),
    which reproduces uvloop's 'the handler is closed' from the relay's write without
    the relay's is_closing check."""
    with OidcIssuer() as github, OidcIssuer(style="gitlab", path="/gl") as gitlab:
        http, pg = _free_port(), _free_port()
        config = _config(
            tmp_path / "gateway.toml",
            dbname=_dbname(upstream),
            state_url=f"sqlite:///{tmp_path / 'state.db'}",
            github=github.issuer,
            gitlab=gitlab.issuer,
            http=f"127.0.0.1:{http}",
            pg=f"127.0.0.1:{pg}",
        )
        log = tmp_path / "serve.log"
        process = _serve(config, log)
        try:
            _wait_healthy(f"http://127.0.0.1:{http}", process, log)
            session = _exchange(f"http://127.0.0.1:{http}", github.token()).json()
            for _ in range(5):
                conn = psycopg.connect(
                    host="127.0.0.1",
                    port=pg,
                    user=session["session_id"],
                    password=session["secret"],
                    dbname="ehr",
                    autocommit=True,
                )
                conn.pgconn.send_query(
                    b"SELECT repeat('x', 2000) FROM generate_series(1, 200000)"
                )
                time.sleep(0.05)  # the answer is streaming
                conn.pgconn.finish()  # the client goes without reading it
            time.sleep(1)
            with psycopg.connect(  # the gateway still serves others
                host="127.0.0.1",
                port=pg,
                user=session["session_id"],
                password=session["secret"],
                dbname="ehr",
            ) as other:
                assert other.execute("SELECT 1").fetchone() == (1,)
        finally:
            process.terminate()
            process.wait(30)
    text = log.read_text()
    assert "handler is closed" not in text, text
    assert "Traceback" not in text, text
