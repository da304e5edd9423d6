"""`signoff dry-run`: a scratch database, the plan applied as apply will, then dropped."""

from __future__ import annotations

import json
from pathlib import Path

import psycopg
from click.testing import CliRunner

from runner.cli import main
from runner.dryrun import migrate

BEFORE_DROP = "159bd3e0d7b6"


def _databases(pg_url: str) -> set[str]:
    with psycopg.connect(pg_url, autocommit=True) as conn:
        return {row[0] for row in conn.execute("SELECT datname FROM pg_database")}


def test_dry_run_applies_every_statement_reports_locks_and_drops_scratch(
    sample_migrations: Path, pg_url: str
) -> None:
    before = _databases(pg_url)
    result = CliRunner().invoke(
        main,
        [
            "dry-run",
            "--alembic-ini",
            str(sample_migrations / "alembic.ini"),
            "--database-url",
            pg_url,
            "--format",
            "json",
        ],
    )
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["failed"] is None
    statements = report["statements"]
    assert all(s["error"] is None for s in statements)
    index = next(s for s in statements if s["kind"] == "create_index" and s["locks"] is not None)
    assert any(
        lk["mode"] == "ShareLock" and lk["relation"] == "observations" for lk in index["locks"]
    )
    concurrent = next(s for s in statements if s["kind"] == "create_index" and s["locks"] is None)
    assert concurrent["revision"] == "7dc6e57d7249"
    # the scratch database is gone (other databases may come and go on a shared server)
    left = {d for d in _databases(pg_url) - before if d.startswith("signoff_dryrun_")}
    assert left == set()


def test_dry_run_starts_at_the_targets_revision_and_never_touches_it(
    sample_migrations: Path, pg_url: str, scratch_db_url: str
) -> None:
    ini = sample_migrations / "alembic.ini"
    migrate.upgrade(ini, scratch_db_url, BEFORE_DROP)
    with psycopg.connect(scratch_db_url, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO patients (mrn, first_name, last_name, ssn, date_of_birth)"
            " VALUES ('M1', 'Ada', 'L', '123-45-6789', '1980-01-01')"
        )
    result = CliRunner().invoke(
        main,
        ["dry-run", "--alembic-ini", str(ini), "--database-url", scratch_db_url],
    )
    assert result.exit_code == 0, result.output
    assert "be942846c0a5" in result.stdout
    assert "SO102" in result.stdout  # dropping ssn of the target's populated table
    with psycopg.connect(scratch_db_url, autocommit=True) as conn:
        version = conn.execute("SELECT version_num FROM alembic_version").fetchone()
        ssn = conn.execute("SELECT ssn FROM patients").fetchone()
    assert version == (BEFORE_DROP,)
    assert ssn == ("123-45-6789",)


def test_dry_run_reports_a_failing_statement_with_exit_1(
    sample_migrations: Path, pg_url: str, tmp_path: Path
) -> None:
    import shutil

    copy = tmp_path / "project"
    shutil.copytree(sample_migrations, copy, ignore=shutil.ignore_patterns("__pycache__"))
    broken = next((copy / "versions").glob("*drop_patients_ssn.py"))
    broken.write_text(broken.read_text().replace('"ssn"', '"no_such_column"', 1))
    result = CliRunner().invoke(
        main, ["dry-run", "--alembic-ini", str(copy / "alembic.ini"), "--database-url", pg_url]
    )
    assert result.exit_code == 1, result.output
    assert "FAILED at statement" in result.stdout
    assert "no_such_column" in result.stdout


def test_dry_run_leaves_an_unsigned_bundle_that_says_so(
    sample_migrations: Path, pg_url: str, tmp_path: Path
) -> None:
    from runner.audit.bundle import read_bundle
    from runner.plan.model import Plan

    bundles = tmp_path / "bundles"
    result = CliRunner().invoke(
        main,
        [
            "dry-run",
            "--alembic-ini",
            str(sample_migrations / "alembic.ini"),
            "--database-url",
            pg_url,
            "--bundle-dir",
            str(bundles),
        ],
    )
    assert result.exit_code == 0, result.output
    [path] = list(bundles.glob("dry-run-*.tar.gz"))
    assert str(path) in result.stderr and "unsigned" in result.stderr
    bundle = read_bundle(path)
    assert not bundle.signed
    assert "dry-run" in json.dumps(bundle.manifest)
    plan = Plan.loads(bundle.files["plan.json"].decode())
    assert len(plan.revisions) == 11
    runs = bundle.manifest["run"]["dry_run"]
    assert len(runs) == len(plan.statements) and all(r["error"] is None for r in runs)
