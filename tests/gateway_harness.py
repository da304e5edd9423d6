"""The whole gateway in-process for end-to-end tests: a loopback OIDC issuer, the
real proxy and HTTP API on SQLite state, the CLI against the same config."""

from __future__ import annotations

import contextlib
import os
import secrets
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest
from oidc_issuer import OidcIssuer

from runner.gateway.config import load_gateway_config
from runner.gateway.serve import GatewayThread

PASSWORD = "Upstr3am-s3cret-Do-Not-Leak"
SIGNOFF = [sys.executable, "-m", "runner.cli"]
EXPIRED = "2000-01-01T00:00:00.000000Z"


@dataclass
class Gateway:
    running: GatewayThread
    issuer: OidcIssuer
    http: str
    pg_port: int
    config_path: Path
    state_path: Path
    database: str
    upstream_url: str
    log: Path

    def token(self, **claims: Any) -> str:
        return self.issuer.token(**claims)

    def exchange(self, token: str, database: str | None = None) -> httpx.Response:
        return httpx.post(
            f"{self.http}/v1/sessions",
            json={"token": token, "database": database or "ehr"},
            timeout=10,
        )

    def session(self, **claims: Any) -> dict[str, Any]:
        response = self.exchange(self.token(**claims))
        assert response.status_code == 201, response.text
        return dict(response.json())

    def connect(self, session: dict[str, Any], **kwargs: Any) -> psycopg.Connection[Any]:
        return psycopg.connect(
            host="127.0.0.1",
            port=self.pg_port,
            user=session["session_id"],
            password=session["secret"],
            dbname="ehr",
            autocommit=True,
            **kwargs,
        )

    def cli(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [*SIGNOFF, "gateway", *args, "--config", str(self.config_path)],
            capture_output=True,
            text=True,
            check=False,
            env={**os.environ, "EHR_DB_PASSWORD": PASSWORD},
            cwd=Path(__file__).resolve().parents[1],
        )

    def audit(self, session: dict[str, Any]) -> list[dict[str, Any]]:
        response = httpx.get(
            f"{self.http}/v1/sessions/{session['session_id']}/audit",
            headers={"Authorization": f"Bearer {session['secret']}"},
            timeout=10,
        )
        assert response.status_code == 200, response.text
        return list(response.json()["records"])


@contextlib.contextmanager
def running_gateway(
    scratch_db_url: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    *,
    tls: tuple[Path, Path] | None = None,
    extra_config: str = "",
    session_ttl: str = "15m",
    max_session_ttl: str = "1h",
    signing_key: Path | None = None,
    archive: Path | None = None,
) -> Iterator[Gateway]:
    """The whole gateway in this process (GatewayThread): SQLite state, a loopback
    OIDC issuer, the scratch database behind it with a small ``patients`` table;
    ``tls`` (certificate, key) is offered on the PostgreSQL port; ``extra_config`` is
    appended to gateway.toml (more [[access]] rules, [code_hosts], [approvals])."""
    dbname = scratch_db_url.rsplit("/", 1)[1].split("?")[0]
    # A role of this gateway's own: tests running side by side (or a run that died
    # and left a database owned by the role) never share one.
    role = f"signoff_gw_{secrets.token_hex(6)}"
    with psycopg.connect(scratch_db_url, autocommit=True) as conn:
        conn.execute(f"CREATE ROLE {role} LOGIN SUPERUSER PASSWORD '{PASSWORD}'")
        conn.execute("CREATE TABLE patients (id bigint PRIMARY KEY, mrn text NOT NULL)")
        conn.execute("INSERT INTO patients SELECT g, 'M' || g FROM generate_series(1, 20) g")
        conn.execute("CREATE TABLE visits_old (id int)")
    try:
        monkeypatch.setenv("EHR_DB_PASSWORD", PASSWORD)
        state = tmp_path / "gateway.db"
        with OidcIssuer() as issuer:
            config_path = tmp_path / "gateway.toml"
            tls_lines = (
                ""
                if tls is None
                else f'tls_cert = "{tls[0]}"\ntls_key = "{tls[1]}"\n'
                "allow_cleartext_on_loopback = false"
            )
            config_path.write_text(
                f"""
    [gateway]
    audience = "signoff-gateway"
    state_url = "sqlite:///{state}"
    session_ttl = "{session_ttl}"
    max_session_ttl = "{max_session_ttl}"
{f'signing_key = "{signing_key}"' if signing_key else ""}
    {f'archive = "file://{archive}"' if archive else ""}

    [listen]
    http = "127.0.0.1:0"
    pg = "127.0.0.1:0"
    {tls_lines}

    [[issuers]]
    name = "ci"
    issuer = "{issuer.issuer}"

    [[databases]]
    name = "ehr"
    host = "127.0.0.1"
    port = 5432
    dbname = "{dbname}"
    user = "{role}"
    password_env = "EHR_DB_PASSWORD"
    sslmode = "disable"

    [[access]]
    database = "ehr"
    role = "deployer"
    issuer = "ci"
    claims = {{ repository = "acme/ehr-api", ref = ["refs/heads/main", "refs/tags/v*"] }}

    [roles.deployer]
    lock_timeout = "30s"            # in force on the role's upstream connections
    destructive = "needs-approval"
    unanalysable = "needs-approval"
    locking = "allow"
    incompatible = "allow"
    rules = {{ SO104 = "deny" }}
    {extra_config}
    """
            )
            log = tmp_path / "gateway.log"
            config = load_gateway_config(config_path)
            with GatewayThread(config) as running:
                yield Gateway(
                    running=running,
                    issuer=issuer,
                    http=f"http://127.0.0.1:{running.running.http_port}",
                    pg_port=running.running.pg_port,
                    config_path=config_path,
                    state_path=state,
                    database=dbname,
                    upstream_url=scratch_db_url,
                    log=log,
                )
    finally:
        with psycopg.connect(scratch_db_url, autocommit=True) as conn:
            conn.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = %s", (role,)
            )
            # What the role made in the scratch database goes with the database; the
            # role itself must not outlive the test.
            conn.execute(f"REASSIGN OWNED BY {role} TO CURRENT_USER")
            conn.execute(f"DROP OWNED BY {role}")
            conn.execute(f"DROP ROLE {role}")
