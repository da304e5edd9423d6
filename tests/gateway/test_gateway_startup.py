"""``signoff gateway serve`` and ``check-config`` at start: every problem is one line
naming the thing and the fix, exit 2, and nothing is left running or listening."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]

CONFIG = """
[gateway]
state_url = "sqlite:///{state}"
{signing_key}

[listen]
http = "127.0.0.1:{http}"
pg = "127.0.0.1:{pg}"
{tls}

[[issuers]]
name = "ci"
issuer = "https://issuer.invalid"

[[databases]]
name = "ehr"
host = "127.0.0.1"
user = "postgres"
password_env = "SIGNOFF_TEST_STARTUP_PASSWORD"

[[access]]
database = "ehr"
role = "deployer"
issuer = "ci"
claims = {{ repository = "acme/ehr" }}

[roles.deployer]
destructive = "needs-approval"
"""


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture
def taken() -> Iterator[int]:
    """A port something else listens on."""
    with socket.create_server(("127.0.0.1", 0)) as holder:
        yield int(holder.getsockname()[1])


def write_config(
    tmp_path: Path, *, http: int, pg: int, signing_key: str = "", tls: str = ""
) -> Path:
    path = tmp_path / "gateway.toml"
    path.write_text(
        CONFIG.format(state=tmp_path / "gw.db", http=http, pg=pg, signing_key=signing_key, tls=tls)
    )
    return path


def gateway(*args: str, password: str | None = "pw") -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "SIGNOFF_TEST_STARTUP_PASSWORD"}
    if password is not None:
        env["SIGNOFF_TEST_STARTUP_PASSWORD"] = password
    return subprocess.run(
        [sys.executable, "-m", "runner.cli", "gateway", *args],
        capture_output=True,
        text=True,
        check=False,
        env=env,
        cwd=REPO_ROOT,
        timeout=60,
    )


def one_line_error(run: subprocess.CompletedProcess[str], *needles: str) -> None:
    assert run.returncode == 2, (run.stdout, run.stderr)
    lines = run.stderr.strip().splitlines()
    assert len(lines) == 1, run.stderr
    assert lines[0].startswith("signoff: error: ")
    for needle in needles:
        assert needle in lines[0]
    assert "Traceback" not in run.stderr


def test_a_taken_postgresql_port_is_one_line(tmp_path: Path, taken: int) -> None:
    config = write_config(tmp_path, http=free_port(), pg=taken)
    one_line_error(gateway("serve", "--config", str(config)), "listen.pg", str(taken), "in use")


def test_a_taken_http_port_is_one_line_and_frees_the_pg_port(tmp_path: Path, taken: int) -> None:
    pg = free_port()
    config = write_config(tmp_path, http=taken, pg=pg)
    one_line_error(gateway("serve", "--config", str(config)), "listen.http", str(taken))
    with socket.create_server(("127.0.0.1", pg)):  # nothing was left listening there
        pass


def test_check_config_checks_the_password_source_before_saying_valid(tmp_path: Path) -> None:
    config = write_config(tmp_path, http=free_port(), pg=free_port())
    run = gateway("check-config", "--config", str(config), password=None)
    one_line_error(run, "SIGNOFF_TEST_STARTUP_PASSWORD is not set")
    assert "valid" not in run.stdout
    assert gateway("check-config", "--config", str(config)).returncode == 0


def test_a_missing_or_wrong_signing_key_stops_check_config_and_serve(tmp_path: Path) -> None:
    missing = tmp_path / "nope.pem"
    config = write_config(
        tmp_path, http=free_port(), pg=free_port(), signing_key=f'signing_key = "{missing}"'
    )
    for command in ("check-config", "serve"):
        one_line_error(gateway(command, "--config", str(config)), "gateway.signing_key", "keygen")

    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    rsa_key = tmp_path / "rsa.pem"
    rsa_key.write_bytes(
        rsa.generate_private_key(public_exponent=65537, key_size=2048).private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    config.write_text(config.read_text().replace(str(missing), str(rsa_key)))
    one_line_error(gateway("check-config", "--config", str(config)), "not an Ed25519 key")

    good = tmp_path / "good.pem"
    assert gateway("keygen", "--out", str(good)).returncode == 0
    config.write_text(config.read_text().replace(str(rsa_key), str(good)))
    assert gateway("check-config", "--config", str(config)).returncode == 0


def test_tls_files_that_do_not_load_are_named(tmp_path: Path) -> None:
    cert = tmp_path / "cert.pem"
    key = tmp_path / "key.pem"
    cert.write_text("not a certificate")
    key.write_text("not a key")
    config = write_config(
        tmp_path,
        http=free_port(),
        pg=free_port(),
        tls=f'tls_cert = "{cert}"\ntls_key = "{key}"',
    )
    one_line_error(gateway("check-config", "--config", str(config)), "listen.tls_cert/tls_key")
