"""Every command in the README's shell blocks runs exactly as written: here (the
ones that can run on this machine, against a scratch database and an in-process
gateway), in ``.ci/run`` (install, demo, dry-run, the tests), or it is named
below with the reason it is skipped. A command the README gains is none of these
until someone decides which: the first test fails on it."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tarfile
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from gateway_harness import GUARD_PASSWORD, PASSWORD, Gateway, running_gateway

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"
BIN = Path(sys.executable).parent  # the venv's bin: where `signoff` is

# Run by .ci/run on a clean clone, exactly as written (the install step runs it
# with $PYTHON for python3 and pip's --quiet; its step line quotes it).
CI_RUN = frozenset(
    {
        "python3 -m venv .venv && .venv/bin/pip install -e '.[dev]'",
        ".venv/bin/signoff demo --yes",
        "cd sample_migrations && ../.venv/bin/signoff dry-run",
        ".venv/bin/python -m pytest -q",
    }
)

# Not run anywhere as written, and why.
SKIPPED = {
    "signoff gateway serve --config gateway.toml           # HTTP API + PostgreSQL listener": (
        "runs until stopped; tests/gateway/test_gateway_deploy.py starts `signoff gateway "
        "serve --config` as a process and stops it"
    ),
    "curl -s -X POST localhost:8080/v1/sessions -H 'Content-Type: application/json' "
    '-d \'{"token": "\'"$ID_TOKEN"\'", "database": "ehr"}\'   # -> session_id, secret, pg': (
        "needs a CI job's OIDC token in $ID_TOKEN and a gateway on port 8080; the same "
        "request is made against the in-process gateway by the gateway tests"
    ),
    'PGPASSWORD=$SECRET psql "host=localhost port=6432 user=$SESSION_ID dbname=ehr"': (
        "interactive, and needs the session the curl above opens on port 6432; "
        "tests/gateway/test_gateway_pgproxy.py drives psql through the gateway"
    ),
}

# Run by the tests below, exactly as written (their blocks' lines, continuations joined).
PLAN_COMMANDS = (
    'signoff plan --alembic-ini alembic.ini --database-url "$DATABASE_URL" --format markdown',
    "signoff plan --from base --to head --format json > plan.json",
)
GATEWAY_COMMANDS = (
    "signoff gateway keygen --out gateway-ed25519.pem       # attestation signing key pair",
    "signoff gateway check-config --config gateway.toml    # validate; print what it enforces",
    'signoff gateway grant --config gateway.toml --database ehr --sql "DROP TABLE visits_old" '
    "--approver bob",
    "signoff gateway audit verify --config gateway.toml    # exit 1 if any entry was altered",
    "signoff gateway audit show --config gateway.toml --session $SESSION_ID",
    "signoff gateway install-guard --config gateway.toml --database ehr     # once, as a DBA",
    "signoff gateway uninstall-guard --config gateway.toml --database ehr",
    "signoff audit verify signoff-audit/BUNDLE.tar.gz --public-key gateway-ed25519.pem.pub",
)
OPENSSL_SCRIPT_FIRST = "tar -xzf bundle.tar.gz"  # the block run whole, as an auditor pastes it


def readme_blocks() -> list[list[str]]:
    """The README's shell blocks, each a list of commands (continuations joined)."""
    blocks: list[list[str]] = []
    current: list[str] | None = None
    for line in README.read_text().splitlines():
        if line.startswith("```"):
            if current is None and line.strip() in ("```sh", "```bash", "```shell"):
                current = []
            elif current is not None:
                blocks.append(current)
                current = None
            continue
        if current is None or not line.strip() or line.lstrip().startswith("#"):
            continue
        if current and current[-1].endswith("\\"):
            current[-1] = current[-1][:-1] + line.strip()
        else:
            current.append(line)
    return blocks


def readme_commands() -> list[str]:
    return [command for block in readme_blocks() for command in block]


def openssl_block() -> list[str]:
    [block] = [b for b in readme_blocks() if b and b[0] == OPENSSL_SCRIPT_FIRST]
    return block


def test_every_readme_command_is_run_or_skipped_on_purpose() -> None:
    commands = readme_commands()
    known = (
        CI_RUN | set(SKIPPED) | set(PLAN_COMMANDS) | set(GATEWAY_COMMANDS) | set(openssl_block())
    )
    unknown = [c for c in commands if c not in known]
    assert not unknown, (
        "README commands neither run by this test or .ci/run nor skipped on purpose "
        f"(add each to one of the lists in {Path(__file__).name}): {unknown}"
    )
    stale = sorted(known - set(commands))
    assert not stale, f"listed here but no longer in the README: {stale}"
    ci = (ROOT / ".ci" / "run").read_text()
    assert [c for c in CI_RUN if c not in ci] == []


def bash(command: str, cwd: Path, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["bash", "-c", "set -euo pipefail\n" + command],
        cwd=cwd,
        capture_output=True,
        text=True,
        check=False,
        timeout=300,
        env={**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}", **env},
    )


def test_the_plan_commands(scratch_db_url: str, tmp_path: Path) -> None:
    project = tmp_path / "sample_migrations"
    shutil.copytree(ROOT / "sample_migrations", project)
    for command in PLAN_COMMANDS:
        done = bash(command, project, DATABASE_URL=scratch_db_url)
        # 0, or 3 (the plan needs approval: the sample drops a table): a plan was made.
        assert done.returncode in (0, 3), (command, done.stderr)
    assert '"hash"' in (project / "plan.json").read_text()


@pytest.fixture
def keyed(tmp_path: Path) -> Path:
    """The working directory, with the README's keygen run in it."""
    work = tmp_path / "work"
    work.mkdir()
    done = bash(GATEWAY_COMMANDS[0], work)
    assert done.returncode == 0, done.stderr
    return work


@pytest.fixture
def gateway(
    keyed: Path, scratch_db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Gateway]:
    with running_gateway(
        scratch_db_url,
        tmp_path,
        monkeypatch,
        signing_key=keyed / "gateway-ed25519.pem",
        archive=tmp_path / "archive",
        guard=True,
    ) as running:
        shutil.copy(running.config_path, keyed / "gateway.toml")
        yield running


def test_the_gateway_and_audit_commands(gateway: Gateway, keyed: Path, tmp_path: Path) -> None:
    session = gateway.session()
    with gateway.connect(session) as conn:
        conn.execute("SHOW lock_timeout")  # housekeeping: the bundle needs no plan for it
    env = {
        "EHR_DB_PASSWORD": PASSWORD,
        "EHR_GUARD_PASSWORD": GUARD_PASSWORD,
        "SESSION_ID": session["session_id"],
    }
    for command in GATEWAY_COMMANDS[1:-1]:
        done = bash(command, keyed, **env)
        assert done.returncode == 0, (command, done.stdout, done.stderr)
    closed = httpx.delete(
        f"{gateway.http}/v1/sessions/{session['session_id']}",
        headers={"Authorization": f"Bearer {session['secret']}"},
        timeout=30,
    )
    assert closed.status_code in (200, 204), closed.text
    [bundle] = list((tmp_path / "archive").rglob("*.tar.gz"))
    (keyed / "signoff-audit").mkdir()
    shutil.copy(bundle, keyed / "signoff-audit" / "BUNDLE.tar.gz")
    done = bash(GATEWAY_COMMANDS[-1], keyed)
    assert done.returncode == 0, (done.stdout, done.stderr)
    shutil.copy(bundle, keyed / "bundle.tar.gz")
    done = bash("\n".join(openssl_block()), keyed)
    assert done.returncode == 0, done.stderr
    assert "Signature Verified Successfully" in done.stdout
    with tarfile.open(bundle) as archive:
        names = set(archive.getnames())
    # The attested files (all but the envelope and the manifest that lists them), each OK.
    attested = {n for n in names if n.endswith((".json", ".jsonl"))}
    attested -= {"attestation.dsse.json", "manifest.json"}
    assert sorted(done.stdout.split("\n")[1:-1]) == sorted(f"{n}: OK" for n in attested)
