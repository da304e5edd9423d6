"""SO4xx: advisory findings. They never need approval and never fail a plan.

Covers what the rules' own examples cannot: lock_timeout state across
statements and transactions, the policy forcing hygiene to advisory, enum
labels tracked per transaction, and that ordinary safe migrations stay quiet.
"""

from __future__ import annotations

import time

import pytest

from runner.plan.analyse import Analysis, view_of
from runner.plan.build import lint_text
from runner.plan.model import Category, Decision, Finding, Severity
from runner.plan.policy import Policy
from runner.plan.rules import catalogue
from runner.plan.rules.base import Context
from runner.plan.schema import SchemaState
from runner.plan.statements import split_statements


def _findings(sql: str, *, apply_lock_timeout: bool = True) -> list[Finding]:
    policy = Policy(server_version=150000, apply_lock_timeout=apply_lock_timeout)
    return [finding for _, finding in lint_text(sql, policy=policy).findings]


def _messages(sql: str, rule: str, *, apply_lock_timeout: bool = True) -> list[str]:
    findings = _findings(sql, apply_lock_timeout=apply_lock_timeout)
    return [f.message for f in findings if f.rule == rule]


def test_hygiene_rules_are_catalogued_in_their_range() -> None:
    mine = {r.id: r for r in catalogue().values() if "SO401" <= r.id <= "SO429"}
    assert set(mine) == {"SO401", "SO402", "SO403", "SO404", "SO405"}
    for rule in mine.values():
        assert rule.category is Category.HYGIENE
        assert rule.severity in (Severity.INFO, Severity.WARNING)


def test_hygiene_is_advisory_whatever_the_configuration_says() -> None:
    sql = (
        "BEGIN;\nALTER TYPE mood ADD VALUE 'meh';\n"
        "CREATE TABLE events (id serial PRIMARY KEY, at timestamp, code char(2), m mood);\n"
        "UPDATE people SET m = 'meh' WHERE id = 1;\n"
        "ALTER TABLE people ADD COLUMN note text;\nCOMMIT;"
    )
    overrides = {f"SO40{n}": Decision.DENY for n in range(1, 6)}
    plan = lint_text(
        sql,
        policy=Policy(
            server_version=150000,
            apply_lock_timeout=False,
            rule_decisions=overrides,
            fail_on=Severity.INFO,
        ),
    )
    hygiene = [f for _, f in plan.findings if f.category is Category.HYGIENE]
    assert {f.rule for f in hygiene} == {"SO401", "SO402", "SO403", "SO404", "SO405"}
    assert all(f.decision is Decision.ADVISORY for f in hygiene)
    assert not plan.needs_approval


# -- SO401 missing-lock-timeout -------------------------------------------------------


def test_lock_message_names_the_table_and_the_lock() -> None:
    (message,) = _messages(
        "ALTER TABLE users ADD COLUMN locale text", "SO401", apply_lock_timeout=False
    )
    assert message.startswith("takes an ACCESS EXCLUSIVE lock on users with no lock_timeout")
    (message,) = _messages(
        "CREATE INDEX idx_orders_user_id ON orders (user_id)", "SO401", apply_lock_timeout=False
    )
    assert message.startswith("takes a SHARE lock on orders")
    (message,) = _messages(
        "ALTER TABLE orders ADD CONSTRAINT fk FOREIGN KEY (u) REFERENCES users (id) NOT VALID",
        "SO401",
        apply_lock_timeout=False,
    )
    assert message.startswith("takes a SHARE ROW EXCLUSIVE lock on orders")


def test_apply_lock_timeout_silences_the_rule() -> None:
    assert _messages("TRUNCATE audit_staging", "SO401", apply_lock_timeout=True) == []
    assert _messages("TRUNCATE audit_staging", "SO401", apply_lock_timeout=False)


@pytest.mark.parametrize(
    ("sql", "fires"),
    [
        ("SET lock_timeout = '2s';\nALTER TABLE users ADD COLUMN a text", False),
        ("SET SESSION lock_timeout TO 2000;\nALTER TABLE users ADD COLUMN a text", False),
        (
            "SET lock_timeout = '2s';\nRESET lock_timeout;\nALTER TABLE users ADD COLUMN a text",
            True,
        ),
        ("SET lock_timeout = '2s';\nRESET ALL;\nALTER TABLE users ADD COLUMN a text", True),
        ("SET lock_timeout = 0;\nALTER TABLE users ADD COLUMN a text", True),
        ("SET lock_timeout = DEFAULT;\nALTER TABLE users ADD COLUMN a text", True),
        ("SET statement_timeout = '30s';\nALTER TABLE users ADD COLUMN a text", True),
        (
            "BEGIN;\nSET LOCAL lock_timeout = '1s';\nALTER TABLE users ADD COLUMN a text;\nCOMMIT",
            False,
        ),
        (
            "BEGIN;\nSET LOCAL lock_timeout = '1s';\nROLLBACK;\n"
            "ALTER TABLE users ADD COLUMN a text",
            True,
        ),
        ("DO $$ BEGIN SET lock_timeout = '1s'; ALTER TABLE users ADD COLUMN a text; END $$", False),
        ("DO $$ BEGIN ALTER TABLE users ADD COLUMN a text; END $$", True),
    ],
)
def test_lock_timeout_state_across_statements(sql: str, fires: bool) -> None:
    assert bool(_messages(sql, "SO401", apply_lock_timeout=False)) is fires


@pytest.mark.parametrize(
    ("sql", "fires"),
    [
        ("DROP TABLE patients_old", True),
        ("DROP INDEX idx_a", True),
        ("DROP INDEX CONCURRENTLY idx_a", False),
        ("VACUUM FULL orders", True),
        ("VACUUM ANALYZE orders", False),
        ("CLUSTER orders USING orders_pkey", True),
        ("REFRESH MATERIALIZED VIEW daily_totals", True),
        ("REFRESH MATERIALIZED VIEW CONCURRENTLY daily_totals", False),
        ("REINDEX TABLE orders", True),
        ("REINDEX INDEX CONCURRENTLY orders_pkey", False),
        ("LOCK TABLE orders", True),
        ("LOCK TABLE orders IN ACCESS SHARE MODE", False),
        ("ALTER TABLE measurements DETACH PARTITION m_2019", True),
        ("ALTER TABLE measurements DETACH PARTITION m_2019 CONCURRENTLY", False),
        ("ALTER TABLE orders VALIDATE CONSTRAINT orders_user_fk", False),
        ("UPDATE users SET status = 'x' WHERE id = 1", False),
        (
            "CREATE TABLE t (id bigint);\nCREATE INDEX t_idx ON t (id);\nTRUNCATE t;\nDROP TABLE t",
            False,
        ),
    ],
)
def test_which_statements_take_a_strong_lock(sql: str, fires: bool) -> None:
    assert bool(_messages(sql, "SO401", apply_lock_timeout=False)) is fires


# -- SO402-SO404 column types ----------------------------------------------------------


def test_column_type_messages_name_the_column() -> None:
    (message,) = _messages("ALTER TABLE encounters ADD COLUMN admitted_at timestamp", "SO402")
    assert message.startswith("encounters.admitted_at is timestamp without time zone")
    (message,) = _messages("CREATE TABLE codes (id smallserial PRIMARY KEY)", "SO403")
    assert "codes.id is a 16-bit" in message and "32,767" in message
    (message,) = _messages("CREATE TABLE events (id serial PRIMARY KEY)", "SO403")
    assert "events.id is a 32-bit" in message and "2,147,483,647" in message
    (message,) = _messages("ALTER TABLE addresses ADD COLUMN country char(2)", "SO404")
    assert message.startswith("addresses.country is char(n)")


def test_existing_columns_are_not_relitigated() -> None:
    sql = "ALTER TABLE logs ALTER COLUMN message TYPE text;\nALTER TABLE logs RENAME TO app_logs"
    assert [f for f in _findings(sql) if f.rule in ("SO402", "SO403", "SO404")] == []


# -- SO405 enum label used in the transaction that added it ----------------------------


def test_enum_label_is_reported_once_per_statement() -> None:
    sql = (
        "BEGIN;\nALTER TYPE status ADD VALUE 'archived';\n"
        "UPDATE t SET s = 'archived' WHERE s = 'old' OR s2 = 'archived';\nCOMMIT;"
    )
    (message,) = _messages(sql, "SO405")
    assert message.startswith("uses 'archived', added to enum status earlier in this transaction")


def test_enum_label_after_rollback_and_new_transaction_is_quiet() -> None:
    sql = (
        "BEGIN;\nALTER TYPE status ADD VALUE 'archived';\nROLLBACK;\n"
        "BEGIN;\nUPDATE t SET s = 'archived' WHERE id = 1;\nCOMMIT;"
    )
    assert _messages(sql, "SO405") == []


def test_enum_label_outside_any_transaction_is_quiet() -> None:
    sql = "ALTER TYPE status ADD VALUE 'archived';\nUPDATE t SET s = 'archived' WHERE id = 1;"
    assert _messages(sql, "SO405") == []


def test_enum_label_of_a_type_created_in_the_same_transaction_is_quiet() -> None:
    sql = (
        "BEGIN;\nCREATE TYPE public.status AS ENUM ('new');\n"
        "ALTER TYPE status ADD VALUE 'archived';\n"
        "UPDATE t SET s = 'archived' WHERE id = 1;\nCOMMIT;"
    )
    assert _messages(sql, "SO405") == []


# -- safe migrations stay quiet --------------------------------------------------------


@pytest.mark.parametrize(
    "sql",
    [
        "ALTER TABLE users ADD COLUMN bio text",
        "ALTER TABLE users ADD COLUMN score integer NOT NULL DEFAULT 0",
        "CREATE TABLE payments (\n  id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,\n"
        "  amount_cents bigint NOT NULL,\n  created_at timestamptz NOT NULL DEFAULT now()\n)",
        "CREATE INDEX CONCURRENTLY IF NOT EXISTS idx_orders_user_id ON orders (user_id)",
        "CREATE TABLE alembic_version (\n    version_num VARCHAR(32) NOT NULL,\n"
        "    CONSTRAINT alembic_version_pkc PRIMARY KEY (version_num)\n)",
    ],
)
def test_safe_migrations_stay_quiet(sql: str) -> None:
    assert _findings(sql) == []


# -- speed -----------------------------------------------------------------------------


def test_rules_return_at_once_on_statements_they_do_not_judge() -> None:
    """10,000 parsed statements through SO3xx/SO4xx checks in well under the 1 s budget."""
    mix = [
        "UPDATE users SET status = 'active' WHERE id = 1",
        "INSERT INTO events (id, body) VALUES (1, 'x')",
        "ALTER TABLE users ADD COLUMN locale text",
        "CREATE TABLE t (id bigint PRIMARY KEY, at timestamptz)",
        "SELECT 1",
        "DROP VIEW IF EXISTS v",
        "ALTER TYPE mood ADD VALUE 'meh'",
        "REVOKE SELECT ON patients FROM app",
        "COMMENT ON TABLE users IS 'people'",
        "CREATE INDEX CONCURRENTLY i ON orders (user_id)",
    ]
    views = [view_of(raw) for sql in mix for raw in split_statements(sql)] * 1000
    rules = [r for r in catalogue().values() if r.id[:3] in ("SO3", "SO4")]
    context = Context(server_version=150000, schema=SchemaState(), apply_lock_timeout=False)
    start = time.perf_counter()
    for view in views:
        for rule in rules:
            for _ in rule.check(view, context):
                pass
    elapsed = time.perf_counter() - start
    assert elapsed < 0.5, f"{elapsed:.3f}s for {len(views)} statements"
    # And the engine agrees on what it would report.
    analysis = Analysis(Policy(server_version=150000), server_version=150000)
    assert analysis.analyse(split_statements("SELECT 1")) is not None
