"""The pre-commit hooks (.pre-commit-hooks.yaml): pre-commit's manifest check, and each
hook's entry run the way pre-commit runs it, on real files, with the venv's signoff."""

from __future__ import annotations

import re
import shlex
import shutil
from pathlib import Path
from typing import Any

from ci_tools import ROOT, load, run, tool

HOOKS = ROOT / ".pre-commit-hooks.yaml"
SAMPLE = ROOT / "sample_migrations"


def hooks() -> dict[str, dict[str, Any]]:
    return {hook["id"]: hook for hook in load(HOOKS)}


def test_pre_commit_manifest_is_valid() -> None:
    result = run([tool("pre-commit"), "validate-manifest", str(HOOKS)])
    assert result.returncode == 0, result.stdout + result.stderr
    found = hooks()
    assert set(found) == {"signoff-lint", "signoff-plan"}
    assert found["signoff-lint"]["types"] == ["sql"]
    assert found["signoff-plan"]["pass_filenames"] is False
    assert all(hook["language"] == "python" for hook in found.values())
    files = re.compile(found["signoff-plan"]["files"])
    assert files.search("db/migrations/versions/2024_01_01-abc_add_table.py")
    assert files.search("alembic.ini") and files.search("db/env.py")
    assert not files.search("README.md") and not files.search("app/versions.txt")


def test_pre_commit_refuses_a_broken_manifest(tmp_path: Path) -> None:
    broken = tmp_path / "hooks.yaml"
    broken.write_text("- id: signoff-lint\n  name: x\n  language: python\n", encoding="utf-8")
    assert run([tool("pre-commit"), "validate-manifest", str(broken)]).returncode == 1


def run_hook(hook_id: str, cwd: Path, *files: str, args: list[str] | None = None) -> Any:
    """What pre-commit runs: the entry, the hook's args, then the file names."""
    hook = hooks()[hook_id]
    command = shlex.split(hook["entry"]) + (hook.get("args", []) if args is None else args)
    if hook.get("pass_filenames", True):
        command += list(files)
    # The venv's signoff, as pre-commit's own venv would have it on PATH.
    return run(command, cwd=cwd)


def write(directory: Path, name: str, text: str) -> str:
    (directory / name).write_text(text, encoding="utf-8")
    return name


def test_lint_hook_on_real_files(tmp_path: Path) -> None:
    safe = write(tmp_path, "safe.sql", "CREATE TABLE t (id bigint PRIMARY KEY);\n")
    drop = write(tmp_path, "drop.sql", "DROP TABLE visits_old;\n")
    index = write(tmp_path, "index.sql", "CREATE INDEX t_a ON t (a);\n")
    denied = write(
        tmp_path, "denied.sql", "BEGIN;\nCREATE INDEX CONCURRENTLY t_b ON t (b);\nCOMMIT;\n"
    )
    assert run_hook("signoff-lint", tmp_path, safe).returncode == 0
    # Needs a reviewer's approval: shown, and left for the pull request.
    needs_approval = run_hook("signoff-lint", tmp_path, drop)
    assert needs_approval.returncode == 0
    assert "SO101" in needs_approval.stdout
    assert run_hook("signoff-lint", tmp_path, denied).returncode == 1
    assert run_hook("signoff-lint", tmp_path, index).returncode == 0
    strict = run_hook("signoff-lint", tmp_path, index, args=["--fail-on", "warning"])
    assert strict.returncode == 1 and "SO201" in strict.stdout
    missing = run_hook("signoff-lint", tmp_path, "missing.sql")
    assert missing.returncode == 2
    assert "missing.sql" in missing.stderr and "Traceback" not in missing.stderr


def test_plan_hook_on_the_sample_project(tmp_path: Path) -> None:
    project = tmp_path / "project"
    shutil.copytree(SAMPLE, project)
    result = run_hook("signoff-plan", project)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Plan hash" in result.stdout
    strict = run_hook(
        "signoff-plan", project, args=["--alembic-ini", "alembic.ini", "--fail-on", "warning"]
    )
    assert strict.returncode == 1
    broken = next((project / "versions").glob("*drop_patients_ssn.py"))
    broken.write_text(broken.read_text(encoding="utf-8") + "\ndef (:\n", encoding="utf-8")
    failed = run_hook("signoff-plan", project)
    assert failed.returncode == 2, failed.stdout + failed.stderr
    assert "Traceback" not in failed.stderr
