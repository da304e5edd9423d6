"""`signoff lint` and `signoff rules`: formats, exit codes and one-line errors."""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner

from runner.cli import main


def run(*args: str, input: str | None = None) -> tuple[int, str, str]:
    result = CliRunner().invoke(main, list(args), input=input)
    return result.exit_code, result.stdout, result.stderr


def write(tmp_path: Path, name: str, sql: str) -> str:
    path = tmp_path / name
    path.write_text(sql)
    return str(path)


def test_safe_sql_exits_zero_and_stays_quiet(tmp_path: Path) -> None:
    path = write(tmp_path, "safe.sql", "ALTER TABLE patients ADD COLUMN bio text;\n")
    status, out, _ = run("lint", path, "--fail-on", "info")
    assert status == 0, out
    assert "No findings" in out


def test_destructive_sql_needs_approval_exit_3(tmp_path: Path) -> None:
    path = write(tmp_path, "drop.sql", "ALTER TABLE patients DROP COLUMN ssn;\n")
    status, out, _ = run("lint", path)
    assert status == 3, out
    assert "needs approval" in out


def test_unknown_statement_fails_closed(tmp_path: Path) -> None:
    status, out, _ = run("lint", "-", input="CALL purge_everything();\n")
    assert status == 3
    assert "SO002" in out


def test_fail_on_warning_turns_warnings_into_exit_1(tmp_path: Path) -> None:
    path = write(tmp_path, "rename.sql", "ALTER TABLE patients RENAME COLUMN mrn TO record_no;\n")
    assert run("lint", path)[0] == 0
    status, out, _ = run("lint", path, "--fail-on", "warning")
    assert status == 1, out


def test_json_format_carries_rule_category_severity_and_needs_approval(tmp_path: Path) -> None:
    path = write(tmp_path, "drop.sql", "DROP TABLE encounters;\n")
    status, out, _ = run("lint", path, "--format", "json")
    data = json.loads(out)
    finding = data["statements"][0]["findings"][0]
    assert set(finding) >= {"rule", "category", "severity", "needs_approval"}
    assert finding["needs_approval"] is True
    assert data["needs_approval"] is True
    assert status == 3


def test_github_and_sarif_formats(tmp_path: Path) -> None:
    path = write(tmp_path, "m.sql", "SELECT 1;\nDROP TABLE encounters;\n")
    _, out, _ = run("lint", path, "--format", "github")
    line = next(li for li in out.splitlines() if li.startswith("::error"))
    assert f"file={path}" in line and "line=2" in line
    _, out, _ = run("lint", path, "--format", "sarif")
    sarif = json.loads(out)
    result = sarif["runs"][0]["results"][0]
    assert sarif["version"] == "2.1.0"
    assert result["locations"][0]["physicalLocation"]["region"]["startLine"] == 2
    rule_ids = [r["id"] for r in sarif["runs"][0]["tool"]["driver"]["rules"]]
    assert result["ruleId"] in rule_ids


def test_missing_file_is_one_line_exit_2(tmp_path: Path) -> None:
    status, out, err = run("lint", str(tmp_path / "missing.sql"))
    assert status == 2
    assert err.count("\n") == 1 and "no such file" in err
    assert "Traceback" not in err + out


def test_bad_config_is_exit_2(tmp_path: Path) -> None:
    config = write(tmp_path, "signoff.toml", "bogus = 1\n")
    path = write(tmp_path, "m.sql", "SELECT 1;")
    status, _, err = run("--config", config, "lint", path)
    assert status == 2
    assert "unknown key 'bogus'" in err


def test_inline_allow_downgrades_and_is_shown(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "m.sql",
        "-- signoff: allow SO302 because no deployed reader uses mrn\n"
        "ALTER TABLE patients RENAME COLUMN mrn TO record_no;\n",
    )
    status, out, _ = run("lint", path, "--fail-on", "warning")
    assert status == 0, out
    assert "allowed inline: no deployed reader uses mrn" in out


def test_rules_lists_and_explains() -> None:
    status, out, _ = run("rules")
    assert status == 0 and "SO001" in out
    status, out, _ = run("rules", "so001")
    assert status == 0 and "Why:" in out and "Safer:" in out
    status, _, err = run("rules", "SO999")
    assert status == 2 and "no rule" in err


def test_readme_rule_list_is_generated_from_the_catalogue() -> None:
    import subprocess
    import sys

    root = Path(__file__).resolve().parents[2]
    done = subprocess.run(
        [sys.executable, str(root / "tools" / "update_readme.py"), "--check"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr


def test_lint_takes_config_after_the_command(tmp_path: Path) -> None:
    config = write(tmp_path, "signoff.toml", 'target = "ehr"\npostgres_version = "11"\n')
    path = write(tmp_path, "m.sql", "SELECT 1;")
    status, out, err = run("lint", path, "--config", config, "--format", "json")
    assert status == 0, err
    data = json.loads(out)
    assert data["target"] == "ehr" and data["basis"]["server_version_num"] == 110000
    bogus = write(tmp_path, "bad.toml", "bogus = 1\n")
    status, _, err = run("lint", path, "--config", bogus)
    assert status == 2 and "unknown key 'bogus'" in err


def test_lint_with_a_database_reads_its_version_and_columns(
    tmp_path: Path, scratch_db_url: str
) -> None:
    import psycopg

    with psycopg.connect(scratch_db_url, autocommit=True) as conn:
        conn.execute("CREATE TABLE patients (nickname varchar(10), age int)")
        version = int(conn.execute("SHOW server_version_num").fetchone()[0])  # type: ignore[index]
    path = write(
        tmp_path,
        "m.sql",
        "ALTER TABLE patients ALTER COLUMN nickname TYPE varchar(20);\n"
        "ALTER TABLE patients ALTER COLUMN age TYPE bigint;\n",
    )
    status, out, err = run("lint", path, "--database-url", scratch_db_url, "--format", "json")
    assert status == 0, err
    data = json.loads(out)
    assert data["basis"] == {
        "server_version_num": version,
        "server_version_source": "database",
        "schema_source": "database+plan",
    }
    rules = [[f["rule"] for f in s["findings"]] for s in data["statements"]]
    assert "SO207" not in rules[0]  # varchar(10) -> varchar(20) only touches the catalog
    assert "SO207" in rules[1]  # int -> bigint rewrites the table
    status, _, err = run("lint", path, "--database-url", "postgresql://127.0.0.1:1/none")
    assert status == 2 and err.count("\n") == 1 and "Traceback" not in err


def test_streamed_formats_match_the_whole_plan_and_write_output_files(tmp_path: Path) -> None:
    from runner.plan import render
    from runner.plan.lint import lint_text

    sql = "\\set ON_ERROR_STOP on\nBEGIN;\nDROP TABLE visits;\nCOMMIT;\nSELECT 1;\n"
    path = write(tmp_path, "m.sql", sql)
    plan = lint_text(sql, path)
    for fmt in ("text", "json", "markdown"):
        status, out, _ = run("lint", path, "--format", fmt)
        assert status == 3
        assert out == render.render(plan, fmt, all_statements=False), fmt
    report = tmp_path / "report.json"
    status, out, err = run("lint", path, "--format", "json", "-o", str(report))
    assert status == 3 and out == ""
    assert err == f"needs approval: 1 statement; wrote {report}\n"
    assert json.loads(report.read_text())["hash"] == plan.hash


def test_lint_of_a_bad_second_file_writes_nothing(tmp_path: Path) -> None:
    good = write(tmp_path, "a.sql", "SELECT 1;\n")
    status, out, err = run("lint", good, str(tmp_path / "missing.sql"))
    assert status == 2 and out == "" and "no such file" in err
    latin = tmp_path / "latin.sql"
    latin.write_bytes(b"SELECT 'caf\xe9';\n")
    status, _, err = run("lint", good, str(latin), "-o", str(tmp_path / "r.txt"))
    assert status == 2 and "not UTF-8" in err and err.count("\n") == 1
    assert not (tmp_path / "r.txt").exists()
