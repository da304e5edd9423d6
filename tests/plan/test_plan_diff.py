"""The statement-by-statement diff of two plans, with sqlglot's semantic diff."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from runner.errors import SignoffError
from runner.plan.build import lint_text
from runner.plan.diff import diff_files, diff_plans, diff_texts, render_markdown, render_text

OLD = lint_text(
    "CREATE TABLE t (a int);\n"
    "ALTER TABLE patients ALTER COLUMN name TYPE varchar(20);\n"
    "DROP TABLE patients;\n"
    "CREATE INDEX ix ON t (a);\n",
    "m.sql",
)
NEW = lint_text(
    "CREATE TABLE t (a int);\n"
    "ALTER TABLE patients ALTER COLUMN name TYPE varchar(40);\n"
    "DROP TABLE IF EXISTS patients CASCADE;\n"
    "CREATE INDEX ix ON t (a);\n"
    "DROP TABLE encounters;\n",
    "m.sql",
)


def test_added_removed_and_changed_statements() -> None:
    changes = diff_plans(OLD, NEW)
    assert [(c.kind, c.statement.index) for c in changes.changes] == [
        ("changed", 1),
        ("changed", 2),
        ("added", 4),
    ]
    assert changes.unchanged == 2
    back = diff_plans(NEW, OLD)
    assert [c.kind for c in back.changes] == ["changed", "changed", "removed"]
    assert back.changes[-1].old is not None and back.changes[-1].new is None
    assert back.changes[-1].old.text == "DROP TABLE encounters"


def test_a_changed_statement_carries_the_semantic_diff() -> None:
    alter, drop = diff_plans(OLD, NEW).changes[:2]
    assert any(line.startswith("+ ") and "VARCHAR(40)" in line for line in alter.semantic)
    assert any(line.startswith("- ") and "VARCHAR(20)" in line for line in alter.semantic)
    # A flag change is named, not the whole statement twice.
    assert drop.semantic == ("~ Drop cascade: False -> True, exists: False -> True",)


def test_a_statement_sqlglot_cannot_read_has_a_note_instead() -> None:
    old = lint_text("CREATE TABLE t (a int);\n", "m.sql")
    new = lint_text("CREATE TABLE t (a int, b int b);\n", "m.sql")
    (change,) = diff_plans(old, new).changes
    assert change.kind == "changed" and change.semantic == ()
    assert change.semantic_note is not None


def test_an_identical_plan_has_no_changes() -> None:
    same = diff_plans(OLD, OLD)
    assert same.identical and same.unchanged == 4
    assert "is the same as" in render_text(same)


def test_renderers() -> None:
    text = render_text(diff_plans(OLD, NEW))
    assert text.splitlines()[0] == (
        f"plan {OLD.short_hash} -> {NEW.short_hash}: 1 added, 2 changed, 2 unchanged"
    )
    assert "    was: DROP TABLE patients" in text
    assert "    now: DROP TABLE IF EXISTS patients CASCADE" in text
    markdown = "\n".join(render_markdown(diff_plans(OLD, NEW)))
    assert "- **added** `#4 m.sql:5`" in markdown


def test_diff_of_plan_files_checks_them() -> None:
    assert diff_texts(OLD.dumps(), NEW.dumps()) == render_text(diff_plans(OLD, NEW))
    tampered = json.loads(NEW.dumps())
    tampered["statements"][0]["text"] = "DROP TABLE t"
    with pytest.raises(ValueError, match="sha256 does not match"):
        diff_texts(OLD.dumps(), json.dumps(tampered))


def test_plan_files_and_their_errors(tmp_path: Path) -> None:
    old, new = tmp_path / "old.json", tmp_path / "new.json"
    old.write_text(OLD.dumps())
    new.write_text(NEW.dumps())
    assert diff_files(old, new) == render_text(diff_plans(OLD, NEW))
    new.write_text('{"format": "something else"}')
    with pytest.raises(SignoffError, match=r"new.json: not a valid plan \(not a Signoff plan"):
        diff_files(old, new)
    with pytest.raises(SignoffError, match=r"missing.json: cannot be read"):
        diff_files(tmp_path / "missing.json", new)
