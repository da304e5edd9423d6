"""`signoff plan` on the sample EHR project, with and without a database."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from click.testing import CliRunner

from runner.cli import main
from runner.dryrun import migrate
from runner.plan.model import Plan

FIRST = "0d5b4ef5d34c"  # create clinicians and patients
DROP_SSN = "be942846c0a5"
BEFORE_DROP = "159bd3e0d7b6"


def run(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(main, list(args))
    return result.exit_code, result.stdout, result.stderr


def test_markdown_shows_every_revision_statement_finding_and_the_hash(
    sample_migrations: Path,
) -> None:
    ini = str(sample_migrations / "alembic.ini")
    status, out, _ = run("plan", "--alembic-ini", ini, "--from", FIRST, "--format", "markdown")
    _, plan_json, _ = run("plan", "--alembic-ini", ini, "--from", FIRST, "--format", "json")
    plan = Plan.loads(plan_json)
    assert status == 3  # patients exists, so dropping ssn loses data
    assert f"/signoff approve {plan.short_hash}" in out
    assert plan.hash in out
    for revision in plan.revisions:
        assert revision.id in out
    for statement in plan.statements:
        assert statement.text in out
        for finding in statement.findings:
            assert finding.rule in out
    drop = next(s for s in plan.statements if "DROP COLUMN ssn" in s.text)
    assert drop.needs_approval
    assert {f.category.value for f in drop.findings} >= {"destructive"}


def test_plan_from_base_is_all_new_tables(sample_migrations: Path) -> None:
    ini = str(sample_migrations / "alembic.ini")
    _, out, _ = run("plan", "--alembic-ini", ini, "--format", "json")
    plan = Plan.loads(out)
    assert len(plan.revisions) == 11
    # every table is created in the plan, so the final DROP COLUMN loses nothing
    drop = next(s for s in plan.statements if "DROP COLUMN ssn" in s.text)
    assert not drop.needs_approval


def test_json_hash_is_stable_and_changes_with_one_character(
    sample_migrations: Path, tmp_path: Path
) -> None:
    ini = str(sample_migrations / "alembic.ini")
    first = json.loads(run("plan", "--alembic-ini", ini, "--format", "json")[1])["hash"]
    again = json.loads(run("plan", "--alembic-ini", ini, "--format", "json")[1])["hash"]
    assert first == again
    copy = tmp_path / "project"
    shutil.copytree(sample_migrations, copy, ignore=shutil.ignore_patterns("__pycache__"))
    backfill = next((copy / "versions").glob("*normalise_patient_emails.py"))
    backfill.write_text(backfill.read_text().replace("lower(email)", "LOWER(email)", 1))
    changed_ini = str(copy / "alembic.ini")
    changed = json.loads(run("plan", "--alembic-ini", changed_ini, "--format", "json")[1])
    assert changed["hash"] != first


def test_plan_against_a_database_starts_at_its_revision(
    sample_migrations: Path, scratch_db_url: str
) -> None:
    ini = sample_migrations / "alembic.ini"
    migrate.upgrade(ini, scratch_db_url, BEFORE_DROP)
    status, out, _ = run(
        "plan", "--alembic-ini", str(ini), "--database-url", scratch_db_url, "--format", "json"
    )
    plan = Plan.loads(out)
    assert [r.id for r in plan.revisions] == [DROP_SSN]
    assert plan.basis.server_version_source == "database"
    assert plan.basis.schema_source == "database+plan"
    assert status == 3


def test_errors_are_one_line_and_exit_2(sample_migrations: Path, tmp_path: Path) -> None:
    cases = [
        (["plan", "--alembic-ini", str(tmp_path / "alembic.ini")], "alembic.ini"),
        (
            ["plan", "--alembic-ini", str(sample_migrations / "alembic.ini"), "--from", "abc123"],
            "abc123",
        ),
        (
            [
                "plan",
                "--alembic-ini",
                str(sample_migrations / "alembic.ini"),
                "--database-url",
                "postgresql://signoff:hunter2@127.0.0.1:1/ehr",
            ],
            "127.0.0.1:1",
        ),
    ]
    for args, needle in cases:
        status, out, err = run(*args)
        assert status == 2, (args, out, err)
        assert needle in err
        assert err.count("\n") == 1, err
        assert "Traceback" not in err
        assert "hunter2" not in err + out
