"""The analysis engine: fail-closed classification, DO blocks, transactions, directives."""

from __future__ import annotations

from runner.plan.build import lint_text
from runner.plan.model import Category, Decision
from runner.plan.policy import Policy

PG15 = Policy(server_version=150000)


def findings(sql: str, policy: Policy = PG15) -> list[tuple[int, str, str]]:
    plan = lint_text(sql, "t.sql", policy=policy)
    return [(s.index, f.rule, f.decision.value) for s, f in plan.findings]


def test_no_statement_sqlglot_cannot_read_is_ever_safe() -> None:
    for sql in (
        "CALL purge()",
        "ALTER TABLE t ADD COLUMN a int, SET SCHEMA x",
        "FROBNICATE TABLE t",
        "SELECT 'unterminated",
        "ALTER TABLE patients FROBNICATE COLUMN ssn",
    ):
        plan = lint_text(sql, "t.sql", policy=PG15)
        categories = {f.category for _, f in plan.findings}
        assert Category.UNANALYSABLE in categories, sql
        assert plan.needs_approval, sql


def test_token_classified_statements_are_not_unanalysable() -> None:
    for sql in (
        "VACUUM ANALYZE patients",
        "ALTER TYPE encounter_status ADD VALUE 'cancelled'",
        "CREATE EXTENSION IF NOT EXISTS pgcrypto",
        "START TRANSACTION",
        "SET search_path TO ehr, public",
        "COMMENT ON TABLE patients IS 'PHI'",
        "ALTER TABLE patients OWNER TO app",
    ):
        plan = lint_text(sql, "t.sql", policy=PG15)
        assert not any(f.category is Category.UNANALYSABLE for _, f in plan.findings), sql


def test_do_block_with_raise_is_safe_and_with_drop_is_destructive() -> None:
    assert findings("DO $$ BEGIN RAISE NOTICE 'hello %', now(); END $$") == []
    sql = (
        "DO $$\nBEGIN\n  IF EXISTS (SELECT 1 FROM pg_tables WHERE tablename = 'tmp') THEN\n"
        "    DROP TABLE tmp;\n  END IF;\nEND\n$$;"
    )
    plan = lint_text(sql, "t.sql", policy=PG15)
    (statement,) = plan.statements
    destructive = [f for f in statement.findings if f.category is Category.DESTRUCTIVE]
    assert destructive and destructive[0].message.startswith("DO block, line 4:")
    assert statement.needs_approval


def test_execute_literal_is_analysed_and_computed_execute_is_unanalysable() -> None:
    literal = lint_text("DO $$ BEGIN EXECUTE 'TRUNCATE audit_log'; END $$", policy=PG15)
    assert any(f.category is Category.DESTRUCTIVE for _, f in literal.findings)
    computed = lint_text("DO $$ BEGIN EXECUTE 'SELECT ' || 1; END $$", policy=PG15)
    assert [f.rule for _, f in computed.findings] == ["SO003"]


def test_transactions_are_numbered_and_autocommit_statements_have_none() -> None:
    plan = lint_text(
        "BEGIN; SELECT 1; COMMIT; SELECT 2; START TRANSACTION; SELECT 3; END;", policy=PG15
    )
    assert [s.transaction for s in plan.statements] == [1, 1, 1, None, 2, 2, 2]


def test_inline_allow_cannot_waive_destructive_by_default_but_config_can() -> None:
    sql = "-- signoff: allow SO101 because archived to S3 first\nDROP TABLE old_visits;"
    plan = lint_text(sql, policy=PG15)
    (finding,) = [f for _, f in plan.findings if f.rule == "SO101"]
    assert finding.decision is Decision.NEEDS_APPROVAL
    assert finding.note and "refused" in finding.note
    permissive = Policy(server_version=150000, inline_allow=frozenset(Category))
    plan = lint_text(sql, policy=permissive)
    (finding,) = [f for _, f in plan.findings if f.rule == "SO101"]
    assert finding.decision is Decision.ADVISORY
    assert finding.allowed is not None and finding.allowed.reason == "archived to S3 first"
    assert not plan.needs_approval


def test_category_decisions_come_from_policy() -> None:
    strict = Policy(
        server_version=150000,
        decisions={**Policy().decisions, Category.INCOMPATIBLE: Decision.NEEDS_APPROVAL},
    )
    sql = "ALTER TABLE patients RENAME COLUMN mrn TO record_no"
    assert not lint_text(sql, policy=PG15).needs_approval
    assert lint_text(sql, policy=strict).needs_approval


def test_safe_migration_stays_quiet() -> None:
    assert findings("ALTER TABLE patients ADD COLUMN bio text") == []
    assert findings("ALTER TABLE patients ADD COLUMN bio text", Policy()) == []


def test_rollback_to_savepoint_keeps_the_transaction() -> None:
    plan = lint_text("BEGIN; SAVEPOINT a; ROLLBACK TO SAVEPOINT a; SELECT 1; COMMIT;", policy=PG15)
    assert [s.transaction for s in plan.statements] == [1, 1, 1, 1, 1]
    assert plan.statements[2].kind == "savepoint"


def test_a_rule_that_fails_on_a_statement_fails_closed() -> None:
    from runner.plan.analyse import Analysis
    from runner.plan.model import Severity
    from runner.plan.rules.base import Rule
    from runner.plan.statements import split_statements

    def broken(view: object, context: object) -> list[str]:
        raise AttributeError("boom")

    rule = Rule("SO999", "broken", Category.HYGIENE, Severity.INFO, "s", "r", "x", broken, (), ())
    analysis = Analysis(PG15, server_version=150000, rules=[rule])
    (result,) = analysis.analyse(split_statements("SELECT 1"))
    (finding,) = result.findings
    assert finding.rule == "SO001" and finding.decision is Decision.NEEDS_APPROVAL
    assert "rule SO999 failed" in finding.message


def test_interval_type_change_does_not_crash() -> None:
    plan = lint_text("ALTER TABLE t ALTER COLUMN c TYPE interval day to second", policy=PG15)
    assert not any(f.rule == "SO001" for _, f in plan.findings)


def test_set_local_lock_timeout_counts_only_inside_its_transaction() -> None:
    policy = Policy(server_version=150000, apply_lock_timeout=False)
    alter = "ALTER TABLE patients ALTER COLUMN mrn SET DEFAULT 'x'"
    outside = lint_text(f"SET LOCAL lock_timeout = '2s'; {alter};", policy=policy)
    inside = lint_text(f"BEGIN; SET LOCAL lock_timeout = '2s'; {alter}; COMMIT;", policy=policy)
    after = lint_text(f"BEGIN; SET LOCAL lock_timeout = '2s'; COMMIT; {alter};", policy=policy)
    assert "SO401" in {f.rule for _, f in outside.findings}
    assert "SO401" not in {f.rule for _, f in inside.findings}
    assert "SO401" in {f.rule for _, f in after.findings}


def test_a_lock_timeout_switched_off_by_the_plan_is_not_assumed() -> None:
    # apply sets lock_timeout; the migration's own SET lock_timeout = 0 (or RESET,
    # which goes back to the server's default) takes it away again.
    policy = Policy(server_version=150000, apply_lock_timeout=True)
    alter = "ALTER TABLE patients ALTER COLUMN mrn SET DEFAULT 'x'"

    def rules(sql: str) -> set[str]:
        return {f.rule for _, f in lint_text(sql, policy=policy).findings}

    assert "SO401" not in rules(f"{alter};")
    assert "SO401" in rules(f"SET lock_timeout = 0; {alter};")
    assert "SO401" in rules(f"SET lock_timeout TO DEFAULT; {alter};")
    assert "SO401" in rules(f"RESET lock_timeout; {alter};")
    assert "SO401" in rules(f"BEGIN; SET LOCAL lock_timeout = 0; {alter}; COMMIT;")
    # A SET LOCAL ends with its transaction; a later non-zero SET restores one.
    assert "SO401" not in rules(f"BEGIN; SET LOCAL lock_timeout = 0; COMMIT; {alter};")
    assert "SO401" not in rules(f"SET lock_timeout = 0; SET lock_timeout = '3s'; {alter};")
