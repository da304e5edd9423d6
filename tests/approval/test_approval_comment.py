"""The sticky plan comment's text: what a reviewer reads and what the rules read back."""

from __future__ import annotations

import pytest

from runner.approval.comment import MAX_BODY, marker, parse_marker, plan_comment
from runner.approval.policy import parse_commands
from runner.plan.build import lint_text

PLAN = lint_text("CREATE TABLE t (a int);\nDROP TABLE patients;\n", "m.sql")
OLD = lint_text("CREATE TABLE t (a int);\nDROP TABLE encounters;\n", "m.sql")
HEAD = "ab" * 20


def test_the_comment_shows_what_to_approve_and_why() -> None:
    body = plan_comment(PLAN, database="ehr", head_sha=HEAD)
    lines = body.splitlines()
    assert lines[0] == "<!-- signoff:plan db=ehr -->"
    assert f"/signoff approve {PLAN.short_hash}" in lines
    assert f"full: `{PLAN.hash}`" in body
    assert f"Head commit `{HEAD[:12]}`" in body
    assert "#### Statements that need approval" in body
    assert "DROP TABLE patients" in body
    assert "SO1" in body and "Why: " in body and "Safer: " in body
    assert "1 other statement(s)" in body
    assert "changed since" not in body
    # Its own approve line is inside a code fence: the comment approves nothing.
    assert parse_commands(body) == []


def test_the_marker_reads_back() -> None:
    body = plan_comment(PLAN, database="ehr", head_sha=HEAD)
    found = parse_marker(body)
    assert found is not None
    assert (found.database, found.head_sha, found.plan_hash) == ("ehr", HEAD, PLAN.hash)
    assert parse_marker("quoting:\n" + body) is None  # only a first line is a marker
    with pytest.raises(ValueError, match="database name"):
        marker("ehr -->")


def test_a_changed_plan_says_what_changed_and_that_approvals_are_void() -> None:
    body = plan_comment(
        PLAN, database="ehr", head_sha=HEAD, previous=OLD, previous_approvers=["alice"]
    )
    assert f"#### The plan changed since `{OLD.short_hash}`" in body
    assert f"The approvals of `{OLD.short_hash}` (by alice) no longer count." in body
    assert "- **changed** `#1 m.sql:2`" in body
    assert "was: DROP TABLE encounters" in body and "now: DROP TABLE patients" in body


def test_a_huge_plan_fits_in_one_comment() -> None:
    sql = "".join(f"DROP TABLE t{n} /* {'x' * 300} */;\n" for n in range(400))
    huge = lint_text(sql, "big.sql")
    body = plan_comment(huge, database="ehr", head_sha=HEAD)
    assert len(body) <= MAX_BODY
    assert body.rstrip().endswith(f"(full: `{huge.hash}`)")
    assert f"/signoff approve {huge.short_hash}" in body


def test_each_rule_is_explained_once() -> None:
    many = lint_text("DROP TABLE a;\nDROP TABLE b;\nDROP TABLE c;\n", "m.sql")
    body = plan_comment(many, database="ehr", head_sha=HEAD)
    assert body.count("SO101 drop-table") == 3
    assert body.count("Why: ") == 1
