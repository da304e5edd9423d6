"""gateway.toml validation, check-config and keygen."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from runner.cli import main
from runner.errors import ConfigError
from runner.gateway.config import load_gateway_config, parse_gateway_config
from runner.gateway.model import Verdict
from runner.plan.model import Category

GOOD = """
[gateway]
audience = "signoff-gateway"
state_url = "sqlite:///tmp/gw.db"
session_ttl = "10m"
max_session_ttl = "30m"

[listen]
http = "127.0.0.1:8080"
pg = "127.0.0.1:6432"

[[issuers]]
name = "github"
issuer = "https://token.actions.githubusercontent.com"

[[databases]]
name = "ehr"
host = "db.internal"
dbname = "ehr"
user = "signoff_gateway"
password_env = "EHR_DB_PASSWORD"

[[access]]
database = "ehr"
role = "deployer"
issuer = "github"
claims = { repository = "acme/ehr-api", ref = "refs/heads/main" }

[roles.deployer]
locking = "allow"
rules = { SO104 = "deny" }
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "gateway.toml"
    path.write_text(text)
    return path


def test_good_config(tmp_path: Path) -> None:
    config = load_gateway_config(write(tmp_path, GOOD))
    role = config.roles["deployer"]
    assert role.verdict("SO201", Category.LOCKING) is Verdict.ALLOW
    assert role.verdict("SO104", Category.DESTRUCTIVE) is Verdict.DENY
    # unmentioned categories fail closed
    assert role.verdict("SO101", Category.DESTRUCTIVE) is Verdict.NEEDS_APPROVAL
    assert role.verdict("SO302", Category.INCOMPATIBLE) is Verdict.NEEDS_APPROVAL
    assert config.session_ttl.total_seconds() == 600


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (("[listen]", "[listen]\nbogus = 1"), "unknown key listen.bogus"),
        (
            ('password_env = "EHR_DB_PASSWORD"', 'password = "hunter2"'),
            "unknown key databases[0].password",
        ),
        (('session_ttl = "10m"', 'session_ttl = "2h"'), "exceeds gateway.max_session_ttl"),
        (
            ('issuer = "github"\nclaims', 'issuer = "gitlab"\nclaims'),
            "'gitlab' is not a configured issuer",
        ),
        (('role = "deployer"', 'role = "admin"'), "'admin' is not defined"),
        (('locking = "allow"', 'locking = "maybe"'), "'maybe'; use one of"),
        (('SO104 = "deny"', 'SO999 = "deny"'), "SO999 is not a rule id"),
        (
            ('claims = { repository = "acme/ehr-api", ref = "refs/heads/main" }', "claims = {}"),
            "claims is empty",
        ),
        (
            (
                'name = "github"\nissuer = "https://token.actions.githubusercontent.com"',
                'name = "github"\nissuer = "https://token.actions.githubusercontent.com"'
                '\nalgorithms = ["HS256"]',
            ),
            "issuers[0]",
        ),
        (('pg = "127.0.0.1:6432"', 'pg = "6432"'), "write host:port"),
    ],
)
def test_bad_config_one_line(tmp_path: Path, change: tuple[str, str], message: str) -> None:
    old, new = change
    assert old in GOOD
    with pytest.raises(ConfigError) as raised:
        load_gateway_config(write(tmp_path, GOOD.replace(old, new, 1)))
    assert message in str(raised.value)
    assert "\n" not in str(raised.value)
    assert "hunter2" not in str(raised.value)


def test_check_config_prints_what_it_enforces(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = write(tmp_path, GOOD)
    monkeypatch.delenv("EHR_DB_PASSWORD", raising=False)
    result = CliRunner().invoke(main, ["gateway", "check-config", "--config", str(path)])
    assert result.exit_code == 2  # the credential is not there
    assert "EHR_DB_PASSWORD is not set" in result.stderr
    monkeypatch.setenv("EHR_DB_PASSWORD", "s3cret-value")
    result = CliRunner().invoke(main, ["gateway", "check-config", "--config", str(path)])
    assert result.exit_code == 0, result.output
    assert "deployer" in result.stdout and "acme/ehr-api" in result.stdout
    assert "s3cret-value" not in result.output


def test_keygen_writes_a_private_key_only_the_owner_reads(tmp_path: Path) -> None:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import (
        Ed25519PrivateKey,
        Ed25519PublicKey,
    )
    from cryptography.hazmat.primitives.serialization import (
        load_pem_private_key,
        load_pem_public_key,
    )

    out = tmp_path / "gw.pem"
    result = CliRunner().invoke(main, ["gateway", "keygen", "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert out.stat().st_mode & 0o777 == 0o600
    private = load_pem_private_key(out.read_bytes(), None)
    public = load_pem_public_key((tmp_path / "gw.pem.pub").read_bytes())
    assert isinstance(private, Ed25519PrivateKey) and isinstance(public, Ed25519PublicKey)
    public.verify(private.sign(b"x"), b"x")
    # The public key is printed too, to hand to auditors as it is.
    assert result.stdout == (tmp_path / "gw.pem.pub").read_text()
    again = CliRunner().invoke(main, ["gateway", "keygen", "--out", str(out)])
    assert again.exit_code == 2 and "--force" in again.stderr


def test_parse_requires_issuers_and_databases() -> None:
    with pytest.raises(ConfigError, match="no \\[\\[issuers\\]\\]"):
        parse_gateway_config({})
