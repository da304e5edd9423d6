"""psql meta-commands in a linted script: told apart from SQL, reported in plain words,
and the statement after one analysed on its own."""

from __future__ import annotations

from pathlib import Path

from click.testing import CliRunner

from runner.cli import main
from runner.plan.lint import lint_text
from runner.plan.model import Category, Decision
from runner.plan.policy import Policy
from runner.plan.statements import split_statements


def _rules(sql: str) -> list[tuple[int, str]]:
    plan = lint_text(sql, "m.sql", policy=Policy(server_version=150000))
    return [(s.index, f.rule) for s, f in plan.findings]


def test_a_meta_command_no_longer_swallows_the_next_statement() -> None:
    plan = lint_text("\\set ON_ERROR_STOP on\nDROP TABLE visits;\n", "m.sql")
    assert [s.text for s in plan.statements] == ["DROP TABLE visits"]
    (statement,) = plan.statements
    rules = [f.rule for f in statement.findings]
    assert "SO001" not in rules and "SO101" in rules  # DROP TABLE judged as itself
    note = next(f for f in statement.findings if f.rule == "SO005")
    assert note.message == (
        "psql meta-command `\\set` (line 1): not SQL; Signoff skips it — apply does not run it"
    )
    assert note.category is Category.HYGIENE and note.decision is Decision.ADVISORY


def test_meta_commands_that_change_what_runs_need_approval() -> None:
    for meta, why in (
        ("\\i more.sql", "includes another file"),
        ("\\ir ../more.sql", "includes another file"),
        ("\\connect ehr", "connects to another database"),
        ("\\c ehr admin", "connects to another database"),
        ("\\! rm -rf /tmp/x", "runs a shell command"),
        ("\\if :is_prod", "only on a condition"),
        ("\\frobnicate", "not one Signoff knows"),
    ):
        plan = lint_text(f"SELECT 1;\n{meta}\nSELECT 2;\n", "m.sql")
        assert [s.text for s in plan.statements] == ["SELECT 1", "SELECT 2"], meta
        finding = next(f for _, f in plan.findings if f.rule == "SO006")
        assert why in finding.message and "line 2" in finding.message, finding.message
        assert finding.decision is Decision.NEEDS_APPROVAL, meta
        assert plan.needs_approval


def test_gset_ends_the_query_before_it_and_is_harmless() -> None:
    plan = lint_text("SELECT count(*) AS n FROM patients\n\\gset\n\\echo :n\nSELECT 2;\n", "m")
    assert [s.text for s in plan.statements] == ["SELECT count(*) AS n FROM patients", "SELECT 2"]
    assert [f.rule for f in plan.statements[0].findings] == ["SO005"]
    assert "`\\gset` (line 2)" in plan.statements[0].findings[0].message
    assert "`\\echo` (line 3)" in plan.statements[1].findings[0].message
    assert not plan.needs_approval


def test_gexec_and_a_meta_command_inside_a_statement_fail_closed() -> None:
    assert (0, "SO006") in _rules("SELECT format('DROP TABLE %I', t) FROM x\n\\gexec\n")
    plan = lint_text("SELECT 1 +\n\\echo half\n2;\n", "m.sql")
    finding = next(f for _, f in plan.findings if f.rule == "SO006")
    assert "middle of a statement" in finding.message


def test_backslash_lines_inside_strings_and_bodies_are_sql() -> None:
    sql = "SELECT 'a\n\\set not_meta';\nSELECT $f$\n\\i not_meta\n$f$;\n/* \\x\n\\q */ SELECT 3;\n"
    statements = split_statements(sql, psql_script=True)
    assert len(statements) == 3
    assert all(not s.meta_commands for s in statements)
    assert _rules(sql) == []


def test_double_backslash_ends_a_meta_command_early() -> None:
    (statement,) = split_statements("\\echo starting \\\\ DROP TABLE t;\n", psql_script=True)
    assert statement.text == "DROP TABLE t"
    assert statement.meta_commands[0].text == "\\echo starting \\\\"


def test_a_script_of_meta_commands_alone_still_reports_them() -> None:
    plan = lint_text("\\i schema.sql\n", "m.sql")
    (statement,) = plan.statements
    assert statement.kind == "psql_meta_command"
    assert [f.rule for f in statement.findings] == ["SO006"]
    assert plan.needs_approval


def test_what_a_driver_sends_keeps_the_backslash_a_syntax_error() -> None:
    """The gateway and alembic's SQL are not psql scripts: the server would refuse it."""
    (statement,) = split_statements("\\set x 1\nSELECT 1")
    assert statement.text == "\\set x 1\nSELECT 1" and not statement.meta_commands


def test_signoff_lint_reports_meta_commands_in_plain_words(tmp_path: Path) -> None:
    path = tmp_path / "m.sql"
    path.write_text("\\set ON_ERROR_STOP on\nALTER TABLE patients ADD COLUMN bio text;\n")
    result = CliRunner().invoke(main, ["lint", str(path), "--fail-on", "warning"])
    assert result.exit_code == 0, result.stdout
    assert "SO001" not in result.stdout
    assert "psql meta-command `\\set` (line 1): not SQL" in result.stdout
    path.write_text("\\connect prod\nALTER TABLE patients ADD COLUMN bio text;\n")
    result = CliRunner().invoke(main, ["lint", str(path)])
    assert result.exit_code == 3 and "SO006" in result.stdout
