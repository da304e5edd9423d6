"""The one PostgreSQL fixture every database test uses.

``pg_url`` is the server at 127.0.0.1:5432 when one answers there (CI starts
one), else the embedded server from pgserver (``runner.dryrun.server.embedded_server_url``).
Tests never touch a database they did not create: they ask for
``scratch_db_url``, a fresh database that is dropped afterwards.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from runner.dryrun.scratch import scratch_database
from runner.dryrun.server import embedded_server_url

LOCAL_SERVER_URL = "postgresql://postgres@127.0.0.1:5432/postgres"
REPO_ROOT = Path(__file__).resolve().parent.parent


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "embedded_postgres: starts the embedded PostgreSQL (pgserver) itself, even where a "
        "server answers on 127.0.0.1:5432; never skipped, so CI exercises that path too",
    )


def _answers(url: str) -> bool:
    try:
        with psycopg.connect(url, connect_timeout=2) as conn:
            conn.execute("SELECT 1")
    except psycopg.Error:
        return False
    return True


@pytest.fixture(scope="session")
def pg_url() -> str:
    """URL of a PostgreSQL server the tests may create databases on."""
    if _answers(LOCAL_SERVER_URL):
        return LOCAL_SERVER_URL
    return embedded_server_url()


@pytest.fixture
def scratch_db_url(pg_url: str) -> Iterator[str]:
    """A fresh, empty database for one test; dropped afterwards."""
    with scratch_database(pg_url, prefix="signoff_test") as url:
        yield url


@pytest.fixture(scope="session")
def sample_migrations() -> Path:
    """The repository's sample alembic project."""
    return REPO_ROOT / "sample_migrations"


@pytest.fixture(autouse=True)
def _bundles_in_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Commands that leave an audit bundle (dry-run, apply) leave it in the test's own
    directory, not in the checkout."""
    monkeypatch.setenv("SIGNOFF_BUNDLE_DIR", str(tmp_path / "signoff-audit"))

