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
GUARD_PASSWORD = "Gu4rd-s3cret-Do-Not-Leak"
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
    role: str = ""  # the upstream role (an owner role; a superuser only when asked)
    guard_role: str | None = None  # [databases.guard]'s role, when asked for

    def guard_cli(self, *args: str) -> subprocess.CompletedProcess[str]:
        """``signoff gateway ARGS --config ...`` with the guard's password too."""
        return subprocess.run(
            [*SIGNOFF, "gateway", *args, "--config", str(self.config_path)],
            capture_output=True,
            text=True,
            check=False,
            env={**os.environ, "EHR_DB_PASSWORD": PASSWORD, "EHR_GUARD_PASSWORD": GUARD_PASSWORD},
            cwd=Path(__file__).resolve().parents[1],
        )

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
    superuser: bool = False,
    guard: bool | None = None,
) -> Iterator[Gateway]:
    """The whole gateway in this process (GatewayThread): SQLite state, a loopback
    OIDC issuer, the scratch database behind it with a small ``patients`` table;
    ``tls`` (certificate, key) is offered on the PostgreSQL port; ``extra_config`` is
    appended to gateway.toml (more [[access]] rules, [code_hosts], [approvals]).

    The upstream role is what README recommends: an owner role (LOGIN, owns the test
    tables, may create in schema public), not a superuser; ``superuser=True`` makes it
    one for a test that needs it. ``guard=True`` adds a ``[databases.guard]`` role (a
    superuser: it installs the server-side guard's event triggers); installing the
    guard is the test's own step (``gateway.guard_cli("install-guard", ...)``).

    With ``SIGNOFF_TEST_WITH_GUARD=1`` in the environment, every gateway that does
    not say ``guard=`` gets the guard role and the guard installed before it starts:
    the whole suite then runs with the database's own check in place."""
    installed = guard is None and os.environ.get("SIGNOFF_TEST_WITH_GUARD") == "1"
    guard = bool(guard) or installed
    dbname = scratch_db_url.rsplit("/", 1)[1].split("?")[0]
    # A role of this gateway's own: tests running side by side (or a run that died
    # and left a database owned by the role) never share one.
    role = f"signoff_gw_{secrets.token_hex(6)}"
    guard_role = f"signoff_guard_{secrets.token_hex(6)}" if guard else None
    with psycopg.connect(scratch_db_url, autocommit=True) as conn:
        conn.execute(
            f"CREATE ROLE {role} LOGIN {'SUPERUSER' if superuser else ''} PASSWORD '{PASSWORD}'"
        )
        conn.execute(f"GRANT USAGE, CREATE ON SCHEMA public TO {role}")
        if guard_role is not None:
            conn.execute(f"CREATE ROLE {guard_role} LOGIN SUPERUSER PASSWORD '{GUARD_PASSWORD}'")
        conn.execute("CREATE TABLE patients (id bigint PRIMARY KEY, mrn text NOT NULL)")
        conn.execute("INSERT INTO patients SELECT g, 'M' || g FROM generate_series(1, 20) g")
        conn.execute("CREATE TABLE visits_old (id int)")
        for table in ("patients", "visits_old"):
            conn.execute(f"ALTER TABLE {table} OWNER TO {role}")
    guard_config = (
        ""
        if guard_role is None
        else f"""
    [databases.guard]
    user = "{guard_role}"
    password_env = "EHR_GUARD_PASSWORD"
"""
    )
    try:
        monkeypatch.setenv("EHR_DB_PASSWORD", PASSWORD)
        monkeypatch.setenv("EHR_GUARD_PASSWORD", GUARD_PASSWORD)
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
{guard_config}

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
            if installed:
                from runner.gateway.dbguard.install import install

                install(scratch_db_url)
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
                    role=role,
                    guard_role=guard_role,
                )
    finally:
        with psycopg.connect(scratch_db_url, autocommit=True) as conn:
            for made in (role, guard_role):
                if made is None:
                    continue
                conn.execute(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = %s",
                    (made,),
                )
                # What the role made in the scratch database goes with the database;
                # the role itself must not outlive the test.
                conn.execute(f"REASSIGN OWNED BY {made} TO CURRENT_USER")
                conn.execute(f"DROP OWNED BY {made}")
                conn.execute(f"DROP ROLE {made}")
